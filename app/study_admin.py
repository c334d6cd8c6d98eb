"""What the admin page does besides calling :mod:`study` directly: turn any folder of images into a manifest
the study builder reads, choose the renderer, and build a study with a progress callback."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from study.builder import StudySpec, build_study
from study.errors import ManifestError, StudyError
from study.models import LABELS
from study.render import DEFAULT_METHODS, SyntheticRenderer

#: Images the study builder can read (it decodes with Pillow; DICOM is for the demo page only).
FOLDER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
RENDERERS = ("r2c", "synthetic")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def folder_manifest(folder: str | Path, out_csv: Path, default_label: str = "covid") -> tuple[Path, int]:
    """Write a manifest of every image directly in ``folder`` or in its ``covid`` / ``control`` subfolders.

    Images in a subfolder named after a label get that label; the others get ``default_label``. File paths
    are absolute, the split is ``all`` and the source the folder's name. Returns the CSV path and the count."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")
    if default_label not in LABELS:
        raise ManifestError(f"unknown label {default_label!r} (expected {' or '.join(LABELS)})")
    files = [(f, default_label) for f in sorted(root.iterdir()) if f.is_file() and f.suffix.lower() in FOLDER_SUFFIXES]
    for label in LABELS:
        sub = root / label
        if sub.is_dir():
            files += [(f, label) for f in sorted(sub.iterdir()) if f.is_file() and f.suffix.lower() in FOLDER_SUFFIXES]
    if not files:
        raise ManifestError(f"{root}: no images ({', '.join(FOLDER_SUFFIXES)}) in the folder or its covid/control subfolders")
    rows, seen = [], set()
    for f, label in files:
        key = _slug(str(f.resolve().relative_to(root.resolve()).with_suffix("")))
        while key in seen:
            key += "_"
        seen.add(key)
        rows.append({"id": key, "file": str(f.resolve()), "label": label, "split": "all", "source": _slug(root.name)})
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out_csv, index=False)
    return out_csv, len(rows)


def method_choices(weights_root: Path) -> tuple[list[str], list[str]]:
    """``(every method the bundled weights can render, the paper's reader-study set among them)``; both fall back
    to the synthetic renderer's methods when no restoration weights are bundled."""
    from r2c_core.study_renderer import PAPER_METHODS, available_methods

    bundled = available_methods(weights_root)
    if len(bundled) < 2:
        return list(DEFAULT_METHODS), list(DEFAULT_METHODS)
    return bundled, [m for m in PAPER_METHODS if m in bundled] or bundled


def make_renderer(name: str, kind: str, weights_root: Path, device: str | None = None,
                  methods: list[str] | None = None) -> tuple[object, list[str]]:
    """``(renderer, the methods it renders)`` for ``r2c`` (bundled weights) or ``synthetic``; ``methods``
    picks some of them (default: all)."""
    if name == "synthetic":
        r = SyntheticRenderer(kind, working_size=256)
        return r, _pick(list(DEFAULT_METHODS), methods)
    if name != "r2c":
        raise StudyError(f"unknown renderer {name!r} (expected {' or '.join(RENDERERS)})")
    from r2c_core.errors import R2CError
    from r2c_core.study_renderer import R2CRenderer, available_methods

    bundled = available_methods(weights_root)
    if len(bundled) < 2:
        raise StudyError(f"no restoration weights in {weights_root} (weights/r2c-<model>/): use the synthetic renderer")
    chosen = _pick(bundled, methods)
    try:
        return R2CRenderer(kind, weights_root=weights_root, device=device, methods=chosen), chosen
    except R2CError as exc:
        raise StudyError(str(exc)) from exc


def _pick(possible: list[str], wanted: list[str] | None) -> list[str]:
    if not wanted:
        return possible
    missing = [m for m in wanted if m not in possible]
    if missing:
        raise StudyError(f"this renderer cannot make {', '.join(missing)} (it can make {', '.join(possible)})")
    return list(wanted)


def build(factory: sessionmaker[Session], spec: StudySpec, renderer: object, assets: Path,
          progress: Callable[[int, int], None] | None = None, open_for_voting: bool = True) -> int:
    """Build (or resume) a study; returns its id. Errors are :class:`StudyError` with one line."""
    return build_study(factory, spec, renderer, assets=assets, progress=progress, show_bar=False,
                       open_for_voting=open_for_voting)
