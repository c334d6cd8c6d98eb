"""Manifest loading, labels, the quality score and the A (poor) / B (high quality) + validation split.

The real X-rays have no quality labels. R2C-GAN needs two unpaired domains, so this module defines a
reproducible quality *proxy* from manifest columns only (no pixels are read, so the split is fast and exactly
reproducible) and splits every (split, source, label) cell at its median into domain A (poor, lower half) and
domain B (high, upper half). Neither domain therefore stands for a source or a label: both hold every source and
label in the same proportions. See ``docs/DATA.md``.

Quality score (higher = better), each continuous component robust-standardised over the whole manifest
(``(x - median) / IQR``):

* ``q_resolution``: ``log(orig_width * orig_height)`` (upstream pixels; figures and re-hosted copies are small);
* ``q_sharpness``: ``log1p(lap_var)`` (variance of the Laplacian of the stored image);
* ``q_range``: ``(px_p99 - px_p1) / 255`` (used dynamic range);
* ``q_contrast``: ``px_std / max(px_p99 - px_p1, 1)`` (spread inside that range; flat, washed-out images are low);

plus penalties of -1 each for ``q_jpeg`` (upstream file was JPEG, i.e. lossy history), ``q_figure``
(``source_kind`` is a publication figure, a case-report website or an app image rather than a clinical export)
and ``q_colour`` (coloured pixels: arrows, letters or overlays burnt in). ``quality_score`` is the sum.

Validation: ``val`` is carved out of the manifest's ``train`` by whole patient groups (``group_id``), seeded and
stratified by each group's (source, label) cell, about ``VAL_FRACTION`` of the groups of every cell. The test
split is the manifest's and is only reported once.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from .errors import ManifestError
from .models import CLASS_NAMES
from .paths import REPO_ROOT, manifest_path

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "file", "label", "split", "source")
#: manifest columns the quality score needs (absent ones make ``make_ab_split`` fail with one line)
QUALITY_COLUMNS = ("orig_width", "orig_height", "lap_var", "px_std", "px_p1", "px_p99", "orig_format", "source_kind", "group_id")
SPLIT_FILE = REPO_ROOT / "configs" / "splits" / "r2c-ab-split.csv"
SPLIT_SEED = 20261123
VAL_FRACTION = 0.15
SPLITS = ("train", "val", "test")
DOMAINS = ("A", "B")
CONTINUOUS = ("q_resolution", "q_sharpness", "q_range", "q_contrast")
PENALTIES = ("q_jpeg", "q_figure", "q_colour")
SPLIT_COLUMNS = ("id", "split", "domain", "source", "label", "group_id", "quality_score", *CONTINUOUS, *PENALTIES)
_FIGURE_KINDS = ("figure", "website", "app image")


# ----------------------------------------------------------------------------------------------- manifest
def load_manifest(path: str | Path | None = None, *, check_files: bool = False) -> pd.DataFrame:
    """Read a manifest CSV (format of the shared ``MANIFEST.csv``); one-line :class:`ManifestError` on bad input.

    The returned frame has ``attrs["root"]`` = the manifest's folder (image paths are relative to it) and an
    extra ``path`` column with absolute image paths. ``check_files`` verifies that every image exists.
    """
    from study.errors import (
        StudyError,  # the one manifest reader is the study's (docs/ARCHITECTURE.md)
    )
    from study.manifest import read_manifest_table

    p = Path(path) if path is not None else manifest_path()
    try:
        df = read_manifest_table(p)
    except StudyError as exc:
        raise ManifestError(str(exc)) from None
    root = p.resolve().parent
    df["path"] = [str(root / f) for f in df["file"]]
    df.attrs["root"] = str(root)
    df.attrs["manifest"] = str(p.resolve())
    if check_files:
        check_images_exist(df)
    return df


def check_images_exist(df: pd.DataFrame) -> None:
    """Raise :class:`ManifestError` naming the first missing image (and how many are missing)."""
    missing = [pth for pth in df["path"] if not Path(pth).is_file()]
    if missing:
        raise ManifestError(f"{len(missing)} image(s) listed in the manifest do not exist (first: {missing[0]})")


def select_split(df: pd.DataFrame, split: str | None, split_file: str | Path | None = None) -> pd.DataFrame:
    """Rows of ``split`` (``train``/``test`` from the manifest; ``val`` or ``train`` minus val from the split file)."""
    if split in (None, "", "all"):
        return df
    if split == "val" or (split == "train" and split_file is not None):
        ab = load_split(split_file or SPLIT_FILE)
        ids = set(ab.loc[ab["split"] == split, "id"])
        out = df[df["id"].isin(ids)]
    else:
        known = sorted(set(df["split"].dropna()))
        if split not in known:
            raise ManifestError(f"unknown split {split!r}; this manifest has {', '.join(known) or 'none'} (and val from the A/B split file)")
        out = df[df["split"] == split]
    if out.empty:
        raise ManifestError(f"split {split!r} selects no rows of the manifest")
    return out


def label_index(labels: Iterable[str]) -> np.ndarray:
    """covid -> 1, control -> 0 (``CLASS_NAMES`` order)."""
    return np.array([CLASS_NAMES.index(str(v)) for v in labels], dtype=np.int64)


# ------------------------------------------------------------------------------------------ quality score
def _robust_z(x: pd.Series) -> pd.Series:
    q1, med, q3 = np.nanpercentile(x.to_numpy(dtype=float), [25, 50, 75])
    scale = (q3 - q1) or 1.0
    return (x.astype(float) - med) / scale


def quality_components(df: pd.DataFrame) -> pd.DataFrame:
    """The score's components (see module doc) and ``quality_score``, indexed like ``df``."""
    missing = [c for c in QUALITY_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"manifest lacks the quality columns {', '.join(missing)}")
    num = lambda c: pd.to_numeric(df[c], errors="coerce")  # noqa: E731
    rng = (num("px_p99") - num("px_p1")).clip(lower=0)
    raw = pd.DataFrame(
        {
            "q_resolution": np.log(num("orig_width").clip(lower=1) * num("orig_height").clip(lower=1)),
            "q_sharpness": np.log1p(num("lap_var").clip(lower=0)),
            "q_range": rng / 255.0,
            "q_contrast": num("px_std") / rng.clip(lower=1),
        },
        index=df.index,
    )
    if raw.isna().any().any():
        col = raw.columns[raw.isna().any()][0]
        raise ManifestError(f"id {df.loc[raw[col].isna(), 'id'].iloc[0]}: quality column for {col} is empty or not numeric")
    out = raw.apply(_robust_z)
    kind = df["source_kind"].fillna("").str.lower()
    out["q_jpeg"] = (df["orig_format"].fillna("").str.upper().isin(["JPEG", "JPG"])).astype(int)
    out["q_figure"] = kind.apply(lambda k: any(w in k for w in _FIGURE_KINDS)).astype(int)
    colour = pd.to_numeric(df["orig_has_colour"], errors="coerce").fillna(0) if "orig_has_colour" in df else 0
    out["q_colour"] = (pd.Series(colour, index=df.index) > 0).astype(int)
    out["quality_score"] = out[list(CONTINUOUS)].sum(axis=1) - out[list(PENALTIES)].sum(axis=1)
    return out.round(6)


# --------------------------------------------------------------------------------------------- the split
def _seed_for(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little")


def assign_val(df: pd.DataFrame, fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED) -> pd.Series:
    """train/val/test per row: ``val`` = ~``fraction`` of each (source, label) cell's train groups (seeded)."""
    split = df["split"].astype(str).copy()
    train = df[split == "train"]
    # a group's cell = its source and its majority label (ties -> the first in sorted order)
    cell = train.groupby("group_id").agg(source=("source", "first"), label=("label", lambda s: s.value_counts().sort_index().idxmax()))
    val_groups: list[str] = []
    for (src, lab), grp in cell.groupby(["source", "label"], sort=True):
        groups = sorted(grp.index.astype(str))
        n_val = int(round(fraction * len(groups)))
        if n_val == 0 and len(groups) >= 4:
            n_val = 1
        order = np.random.default_rng(_seed_for(seed, src, lab)).permutation(len(groups))
        val_groups += [groups[i] for i in order[:n_val]]
    split[(split == "train") & df["group_id"].astype(str).isin(set(val_groups))] = "val"
    return split


def assign_domains(df: pd.DataFrame, score: pd.Series, split: pd.Series) -> pd.Series:
    """A (lower half of the score) / B (upper half) within every (split, source, label) cell.

    A cell of n images gives ``n // 2`` to A and the rest to B; ties are broken by id, so the result is stable.
    """
    dom = pd.Series("B", index=df.index, dtype=object)
    keys = pd.DataFrame({"split": split, "source": df["source"], "label": df["label"], "score": score, "id": df["id"]})
    for _, cell in keys.groupby(["split", "source", "label"], sort=True):
        ordered = cell.sort_values(["score", "id"], kind="mergesort")
        dom.loc[ordered.index[: len(ordered) // 2]] = "A"
    return dom


def make_ab_split(df: pd.DataFrame, *, fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED) -> pd.DataFrame:
    """The full split table (``SPLIT_COLUMNS``), sorted by id."""
    if "group_id" not in df:
        raise ManifestError("manifest lacks the group_id column needed for the validation split")
    comp = quality_components(df)
    split = assign_val(df, fraction, seed)
    dom = assign_domains(df, comp["quality_score"], split)
    out = pd.DataFrame({"id": df["id"], "split": split, "domain": dom, "source": df["source"], "label": df["label"], "group_id": df["group_id"]})
    out = pd.concat([out, comp], axis=1)[list(SPLIT_COLUMNS)]
    return out.sort_values("id", kind="mergesort").reset_index(drop=True)


def save_split(split: pd.DataFrame, path: str | Path = SPLIT_FILE) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    split.to_csv(p, index=False, float_format="%.6f", lineterminator="\n")
    return p


def load_split(path: str | Path = SPLIT_FILE) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"A/B split file not found: {p} (run: python -m r2c_core make-split)")
    try:
        df = pd.read_csv(p, dtype={"id": str, "split": str, "domain": str})
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise ManifestError(f"{p}: not a readable split CSV ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("id", "split", "domain") if c not in df.columns]
    if missing:
        raise ManifestError(f"{p}: missing column(s) {', '.join(missing)}")
    return df


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def split_summary(split: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Counts per split and domain: ``{"train": {"A": n, "B": m}, ...}``."""
    out: dict[str, dict[str, int]] = {}
    for (s, d), n in split.groupby(["split", "domain"]).size().items():
        out.setdefault(str(s), {})[str(d)] = int(n)
    return out


def split_info(path: str | Path = SPLIT_FILE) -> dict[str, object]:
    """What a checkpoint records about the data split: file name, sha256 and counts."""
    p = Path(path)
    return {"file": p.name, "sha256": file_sha256(p), "counts": split_summary(load_split(p))}


def domain_frame(manifest: pd.DataFrame, split: pd.DataFrame, which_split: str, domain: str) -> pd.DataFrame:
    """Manifest rows of one split and domain (label from the manifest), sorted by id."""
    ids = split.loc[(split["split"] == which_split) & (split["domain"] == domain), "id"]
    rows = manifest[manifest["id"].isin(set(ids))].sort_values("id", kind="mergesort")
    if len(rows) != len(ids):
        raise ManifestError(f"the split file names {len(ids) - len(rows)} id(s) of {which_split}/{domain} that are not in the manifest")
    return rows.reset_index(drop=True)


def manifest_and_split(manifest: str | Path | None, split_file: str | Path | None) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """The manifest (default: the data folder's), the A/B split file (default :data:`SPLIT_FILE`) a trainer reads,
    and that file's path."""
    path = Path(split_file) if split_file else SPLIT_FILE
    return load_manifest(manifest), load_split(path), path


