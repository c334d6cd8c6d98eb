"""The R2C-GAN trainer's data: decoded A/B training caches with step-addressed batches, and the validation set."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..data import (
    domain_frame,
    manifest_and_split,
    split_info,
)
from .config import TrainConfig
from .loader import (
    DomainCache,
    UnpairedBatches,
    decode_resized,
)

log = logging.getLogger(__name__)


@dataclass
class ValData:
    """Validation images at the working size (test transform) with labels, ids, domains and sources."""

    images: torch.Tensor  # (N, size, size) uint8
    labels: np.ndarray
    ids: list[str]
    domains: list[str]
    sources: list[str]

    @classmethod
    def from_split(cls, manifest: pd.DataFrame, split: pd.DataFrame, size: int, limit_per_domain: int, seed: int,
                   progress: bool = True) -> "ValData | None":
        """The validation images of both quality domains (at most ``2 * limit_per_domain`` when it is set), decoded at
        the working size; ``None`` when the split has none."""
        from ..data import label_index

        rows = pd.concat([domain_frame(manifest, split, "val", d).assign(domain=d) for d in ("A", "B")])
        rows = _limit(rows.sort_values("id"), 2 * limit_per_domain, seed)
        if not len(rows):
            return None
        return cls(decode_resized(list(rows["path"]), size, "val", progress), label_index(rows["label"]),
                   list(rows["id"]), list(rows["domain"]), list(rows["source"]))


@dataclass
class TrainData:
    batches: UnpairedBatches
    val: ValData | None
    split: dict[str, Any]

    @classmethod
    def from_config(cls, cfg: TrainConfig, progress: bool = True) -> "TrainData":
        """Decode the train A/B images (load size) and validation images (working size) named by the split file."""
        manifest, split, split_path = manifest_and_split(cfg.manifest, cfg.split_file)
        frames = {d: _limit(domain_frame(manifest, split, "train", d), cfg.limit_per_domain, cfg.seed) for d in ("A", "B")}
        a = DomainCache.from_frame(frames["A"], cfg.load_size, "train A", progress)
        b = DomainCache.from_frame(frames["B"], cfg.load_size, "train B", progress)
        batches = UnpairedBatches(a, b, size=cfg.train_crop, batch_size=cfg.batch_size, seed=cfg.seed)
        val = ValData.from_split(manifest, split, cfg.size, cfg.limit_per_domain, cfg.seed, progress)
        info = split_info(split_path)
        info["used"] = {"train_A": len(a), "train_B": len(b), "val": len(val.ids) if val is not None else 0}
        return cls(batches, val, info)


def _limit(rows: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if n <= 0 or len(rows) <= n:
        return rows.reset_index(drop=True)
    return rows.sample(n=n, random_state=seed).sort_values("id", kind="mergesort").reset_index(drop=True)


