"""Lung-mask data: manifest rows with masks, the seeded group-wise validation split, loading and augmentation.

Mask policy (see docs/SEGMENTATION.md): human (v7labs) masks are ground truth. Model-made (lungVAE) masks are
used for training only, with a lower per-image loss weight (``model_mask_weight``, 0.5 by default), because they
are the only masks on control images; they are never used for validation/early stopping, and evaluation reports
them separately from the human-mask figures.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..errors import ManifestError
from ..imageio import read_xray
from .model import resize_float

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "file", "split", "source", "group_id", "has_mask", "mask_file", "mask_source")


def read_mask_manifest(manifest: str | Path) -> pd.DataFrame:
    """Rows of ``MANIFEST.csv`` that have a lung mask (``has_mask == 1``), with a ``root`` column for paths."""
    path = Path(manifest)
    if path.is_dir():
        path = path / "MANIFEST.csv"
    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        df = pd.read_csv(path, dtype={"id": str, "group_id": str, "mask_file": str, "mask_source": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise ManifestError(f"{path}: not a readable CSV ({exc})") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {', '.join(missing)}")
    df = df[pd.to_numeric(df["has_mask"], errors="coerce").fillna(0).astype(int) == 1].copy()
    if df.empty:
        raise ManifestError(f"{path}: no rows with has_mask == 1")
    df["root"] = str(path.parent)
    return df.reset_index(drop=True)


def split_train_val(df: pd.DataFrame, val_fraction: float, seed: int, val_sources: Sequence[str] = ("human",)) -> dict[str, list[str]]:
    """Carve a validation part out of ``split == 'train'`` by whole patient groups (seeded).

    Only groups whose masks are all of ``val_sources`` can go to validation; the others stay in train.
    Returns ``{"train": ids, "val": ids, "test": ids}`` (test = the manifest's test rows, untouched).
    """
    train = df[df["split"] == "train"]
    test = df[df["split"] == "test"]
    if train.empty:
        raise ManifestError("no masked rows in the train split")
    by_group = train.groupby("group_id")["mask_source"].agg(lambda s: set(s))
    eligible = sorted(g for g, srcs in by_group.items() if srcs <= set(val_sources))
    rng = np.random.default_rng(seed)
    n_val = max(1, int(round(val_fraction * len(eligible)))) if eligible else 0
    val_groups = set(rng.choice(eligible, size=n_val, replace=False).tolist()) if n_val else set()
    is_val = train["group_id"].isin(val_groups)
    return {
        "train": sorted(train.loc[~is_val, "id"].tolist()),
        "val": sorted(train.loc[is_val, "id"].tolist()),
        "test": sorted(test["id"].tolist()),
    }


def load_pair(row: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8 HxW, mask bool HxW) of one manifest row."""
    root = Path(row["root"])
    img = read_xray(root / row["file"])
    mask = read_xray(root / row["mask_file"]) >= 128
    if mask.shape != img.shape:
        raise ManifestError(f"{row['id']}: mask {mask.shape} and image {img.shape} differ in size")
    return img, mask


@dataclass
class MaskSet:
    """Images and masks of one part, resized to the training size and kept in memory."""

    ids: list[str]
    images: torch.Tensor  # (N, 1, S, S) float in [0, 1]
    masks: torch.Tensor  # (N, 1, S, S) float {0, 1}
    weights: torch.Tensor  # (N,) per-image loss weight
    sources: list[str]  # mask_source per image


def load_set(df: pd.DataFrame, ids: Sequence[str], size: int, model_mask_weight: float = 0.5) -> MaskSet:
    """Load ``ids`` (rows of ``df``) at ``size`` x ``size``."""
    rows = df.set_index("id").loc[list(ids)].reset_index()
    imgs, masks, weights, sources = [], [], [], []
    for row in rows.to_dict("records"):
        img, mask = load_pair(row)
        imgs.append(resize_float(torch.from_numpy(img).float().div_(255.0)[None, None], (size, size)))
        m = resize_float(torch.from_numpy(mask.astype(np.float32))[None, None], (size, size))
        masks.append((m >= 0.5).float())
        src = str(row["mask_source"])
        sources.append(src)
        weights.append(1.0 if src == "human" else float(model_mask_weight))
    if not imgs:
        return MaskSet([], torch.zeros(0, 1, size, size), torch.zeros(0, 1, size, size), torch.zeros(0), [])
    return MaskSet(list(rows["id"]), torch.cat(imgs), torch.cat(masks), torch.tensor(weights), sources)


def augment(images: torch.Tensor, masks: torch.Tensor, aug: Mapping[str, Any], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random small affine (rotation, scale, shift) on image+mask, then brightness/contrast/gamma on the image.

    ``images`` in [0, 1] and ``masks`` {0, 1}, both (N, 1, S, S). Returns new tensors.
    """
    n = images.shape[0]

    def uni(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    rot = float(aug.get("rotate_deg", 0.0))
    s_lo, s_hi = aug.get("scale", (1.0, 1.0))
    tr = float(aug.get("translate", 0.0))
    ang = uni(-rot, rot) * math.pi / 180.0
    scale = uni(float(s_lo), float(s_hi))
    tx, ty = uni(-tr, tr) * 2.0, uni(-tr, tr) * 2.0
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    x = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = (F.grid_sample(masks, grid, mode="bilinear", padding_mode="zeros", align_corners=False) >= 0.5).float()
    b = float(aug.get("brightness", 0.0))
    c_lo, c_hi = aug.get("contrast", (1.0, 1.0))
    g_lo, g_hi = aug.get("gamma", (1.0, 1.0))
    gamma = torch.exp(uni(math.log(g_lo), math.log(g_hi))).view(n, 1, 1, 1)
    x = x.clamp(0, 1).pow(gamma)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * uni(float(c_lo), float(c_hi)).view(n, 1, 1, 1) + mean + uni(-b, b).view(n, 1, 1, 1)
    return x.clamp(0, 1), y
