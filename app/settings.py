"""Where the app finds its database, rendition assets, X-ray data and weights (environment, with defaults).

* ``R2C_DB_URL``  study database URL (default: SQLite ``<repo>/var/study.db``, see :func:`study.db.default_url`)
* ``R2C_ASSETS``  rendition store (default ``<repo>/var/assets``)
* ``R2C_DATA``    X-ray folder with ``MANIFEST.csv`` (default ``../shared/data/cxr``)
* ``R2C_WEIGHTS`` bundled weights (default ``<repo>/weights``)
* ``R2C_DEVICE``  ``cpu``, ``cuda`` or ``auto`` (default: CUDA when present)
* ``R2C_DEMO_DB`` ``1`` to create the demo contents in a *new* database at ``R2C_DB_URL`` (tests, screenshots);
  without it the demo database is created only at the default location.
* ``R2C_PUBLIC_DEMO`` ``1`` to give visitors who are not signed in the demo page, ``0`` to hide it from them.
  Unset (or empty): on for the demo database only (:meth:`AppSettings.demo_page_public`), so a real study never
  offers it by default: a signed-out reader could otherwise restore the study's images with the study's models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from r2c_core.paths import data_dir, weights_root
from study.assets import assets_dir
from study.db import default_url, resolve_url


@dataclass(frozen=True)
class AppSettings:
    """The resolved locations and switches the app runs with."""

    db_url: str
    assets: Path
    data_dir: Path
    weights_root: Path
    device: str | None
    #: whether the demo database may be created (default location, or ``R2C_DEMO_DB=1``)
    demo_allowed: bool
    #: whether visitors who are not signed in get the demo page (``R2C_PUBLIC_DEMO``); None when it is not set:
    #: then only on the demo database (:meth:`demo_page_public`)
    public_demo: bool | None = None

    @property
    def has_data(self) -> bool:
        return (self.data_dir / "MANIFEST.csv").is_file()

    def demo_page_public(self, is_demo_database: bool) -> bool:
        """Whether signed-out visitors get the demo page: ``R2C_PUBLIC_DEMO`` when set, else only when the app runs
        on the demo database (whose codes are public anyway)."""
        return bool(is_demo_database) if self.public_demo is None else self.public_demo


def _truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def _flag(value: str | None) -> bool | None:
    """An on/off variable: None when unset or empty, else whether it is truthy."""
    return None if not str(value or "").strip() else _truthy(value)


def load_settings() -> AppSettings:
    """The settings from the environment (see the module doc)."""
    explicit_db = bool(os.environ.get("R2C_DB_URL"))
    device = os.environ.get("R2C_DEVICE") or None
    return AppSettings(
        db_url=resolve_url(default_url()),
        assets=assets_dir(),
        data_dir=data_dir(),
        weights_root=weights_root(),
        device=None if device in (None, "auto") else device,
        demo_allowed=(not explicit_db) or _truthy(os.environ.get("R2C_DEMO_DB")),
        public_demo=_flag(os.environ.get("R2C_PUBLIC_DEMO")),
    )
