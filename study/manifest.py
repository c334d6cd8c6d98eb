"""Reading a case manifest (the format of ``../shared/data/cxr/MANIFEST.csv``) and picking study cases.

Only the columns ``id``, ``file`` (relative to the manifest's folder), ``label`` (covid/control), ``split`` and
``source`` are needed. Case selection is seeded and stratified by label: as equal a number of each label as
the split allows.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import ManifestError
from .models import LABELS

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "file", "label", "split", "source")
REPO_ROOT = Path(__file__).resolve().parent.parent


def default_manifest() -> Path:
    """``$R2C_DATA/MANIFEST.csv``, else ``../shared/data/cxr/MANIFEST.csv`` beside the repository."""
    env = os.environ.get("R2C_DATA")
    root = Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data" / "cxr"
    return (root / "MANIFEST.csv").resolve()


def read_manifest_table(path: str | Path) -> pd.DataFrame:
    """The whole manifest, every column (the required ones read as text, the rest typed by pandas), validated:
    the file exists and parses, the required columns are there, it has rows, no empty id or file, ids are unique,
    labels are covid or control. One-line :class:`ManifestError` otherwise. The one manifest reader: the study's
    :func:`read_manifest` and ``r2c_core.data.load_manifest`` are both built on it."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        df = pd.read_csv(path, dtype={c: str for c in REQUIRED_COLUMNS})
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{path}: manifest is empty (no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ManifestError(f"{path}: not a readable CSV manifest ({first})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{path}: manifest lacks column(s) {', '.join(missing)} "
                            f"(missing columns; need {', '.join(REQUIRED_COLUMNS)})")
    if df.empty:
        raise ManifestError(f"{path}: manifest has no rows")
    text = {c: df[c].fillna("").str.strip() for c in ("id", "file", "label")}
    empty = (text["id"] == "") | (text["file"] == "")
    if empty.any():
        raise ManifestError(f"{path}: manifest has rows with an empty id or file (row {int(np.flatnonzero(empty)[0]) + 2})")
    dup = text["id"][text["id"].duplicated()]
    if not dup.empty:
        raise ManifestError(f"{path}: manifest id {dup.iloc[0]!r} appears more than once")
    bad = ~text["label"].isin(LABELS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ManifestError(f"{path}: unknown label {df['label'].iloc[i]!r} for id {text['id'].iloc[i]} "
                            f"(expected {' or '.join(LABELS)})")
    return df


def read_manifest(path: str | Path) -> pd.DataFrame:
    """The manifest's required columns as stripped text (:func:`read_manifest_table` validates it)."""
    df = read_manifest_table(path)
    return df[list(REQUIRED_COLUMNS)].apply(lambda col: col.fillna("").str.strip()).reset_index(drop=True)


def _quotas(available: dict[str, int], n: int, rng: np.random.Generator) -> dict[str, int]:
    """Equal shares per label, the remainder to randomly chosen labels, shortfalls moved to the others."""
    labels = sorted(available)
    quota = {lab: n // len(labels) for lab in labels}
    for lab in rng.permutation(labels)[: n - sum(quota.values())]:
        quota[str(lab)] += 1
    while True:
        short = sum(max(0, quota[lab] - available[lab]) for lab in labels)
        quota = {lab: min(quota[lab], available[lab]) for lab in labels}
        room = [lab for lab in labels if quota[lab] < available[lab]]
        if short == 0 or not room:
            return quota
        for i in range(short):
            quota[room[i % len(room)]] += 1


def select_cases(
    manifest: pd.DataFrame,
    *,
    split: str | None,
    n: int,
    seed: int,
    labels: Sequence[str] = LABELS,
    exclude: Iterable[str] = (),
) -> pd.DataFrame:
    """``n`` cases of ``split`` (all splits if None), stratified by label, reproducible for a given seed."""
    if n < 1:
        raise ManifestError("the number of cases must be at least 1")
    pool = manifest if split is None else manifest[manifest["split"] == split]
    if pool.empty:
        splits = ", ".join(sorted(manifest["split"].unique()))
        raise ManifestError(f"manifest has no cases in split {split!r} (splits: {splits})")
    pool = pool[pool["label"].isin(labels) & ~pool["id"].isin(set(exclude))].sort_values("id")
    if len(pool) < n:
        raise ManifestError(f"asked for {n} cases but the manifest has only {len(pool)} in split {split!r}")
    rng = np.random.default_rng(seed)
    groups = {str(lab): g for lab, g in pool.groupby("label")}
    quota = _quotas({lab: len(g) for lab, g in groups.items()}, n, rng)
    picked = []
    for lab in sorted(groups):
        g = groups[lab]
        idx = rng.choice(len(g), size=quota[lab], replace=False) if quota[lab] else []
        picked.append(g.iloc[sorted(int(i) for i in idx)])
    out = pd.concat(picked).sort_values("id").reset_index(drop=True)
    counts = out["label"].value_counts().to_dict()
    if len(counts) > 1 and max(counts.values()) - min(counts.values()) > 1:
        log.warning("label balance not possible with this split: %s", counts)
    return out


#: Images the study builder can read (it decodes with Pillow; DICOM is for the demo page only).
FOLDER_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def slug(text: str) -> str:
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
        key = slug(str(f.resolve().relative_to(root.resolve()).with_suffix("")))
        while key in seen:
            key += "_"
        seen.add(key)
        rows.append({"id": key, "file": str(f.resolve()), "label": label, "split": "all", "source": slug(root.name)})
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out_csv, index=False)
    return out_csv, len(rows)
