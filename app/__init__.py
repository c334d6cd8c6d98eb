"""The Streamlit review app: blinded voting for readers, the researcher dashboard, the demo and administration.

``app/`` stays thin: pages call :mod:`study` (database, votes, statistics) and :mod:`r2c_core` (restoration,
classification, segmentation). Heavy objects are built only in :mod:`app.services`.
"""
