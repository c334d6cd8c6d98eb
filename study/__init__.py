"""study: the blinded reader-study engine (database, builder, voting service, statistics, CLI).

No UI here and no ``r2c_core`` import in the core modules: the app (``app/``) and the command line
(``python -m study``) call it. Modules:

* :mod:`study.db`        engines (SQLite / PostgreSQL), migrations (:func:`study.db.init_db`), sessions
* :mod:`study.models`    the schema
* :mod:`study.accounts`  readers, access codes, sign-in and its rate limit, sittings
* :mod:`study.lookup`    studies and readers by id or name
* :mod:`study.builder`   study creation from a manifest, rendering, assignment to readers
* :mod:`study.render`    the renderer protocol, the rendition contract, :class:`~study.render.SyntheticRenderer`
* :mod:`study.voting`    what readers see and how votes are recorded
* :mod:`study.export`    the tidy vote table and CSV / Parquet export
* :mod:`study.analysis` every statistic: the dashboard tables (:mod:`study.analysis.tables`: selection
  ratios, Tables III/IV, tests) and the full analysis
* :mod:`study.simstudy`  a simulated study in a database (``python -m study simulate``)

Importing ``study`` itself is cheap; import the submodule you need.
"""

__version__ = "0.1.0"
