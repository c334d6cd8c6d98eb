"""Command groups of the ``python -m r2c_core`` CLI (one module per group)."""
