"""``python -m r2c_core``: the command line."""

from .cli import main

raise SystemExit(main())
