"""Where things live: the repository, the bundled weights and the X-ray data folder (R2C_DATA)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    """The real X-ray folder: ``$R2C_DATA`` or ``../shared/data/cxr`` beside the repository."""
    env = os.environ.get("R2C_DATA")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data" / "cxr").resolve()


def manifest_path() -> Path:
    return data_dir() / "MANIFEST.csv"


def has_data() -> bool:
    return manifest_path().is_file()


def weights_root() -> Path:
    """Bundled weights: ``$R2C_WEIGHTS`` or ``weights/`` in the repository."""
    env = os.environ.get("R2C_WEIGHTS")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "weights"


def golden_dir() -> Path:
    """The authors' TensorFlow reference outputs: ``$R2C_GOLDEN`` or ``../shared/data/reference-golden``."""
    env = os.environ.get("R2C_GOLDEN")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "data" / "reference-golden").resolve()
