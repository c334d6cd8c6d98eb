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
        val_rows = pd.concat([domain_frame(manifest, split, "val", d).assign(domain=d) for d in ("A", "B")])
        val_rows = _limit(val_rows.sort_values("id"), 2 * cfg.limit_per_domain, cfg.seed)
        val = None
        if len(val_rows):
            from ..data import label_index

            val = ValData(decode_resized(list(val_rows["path"]), cfg.size, "val", progress), label_index(val_rows["label"]),
                          list(val_rows["id"]), list(val_rows["domain"]), list(val_rows["source"]))
        info = split_info(split_path)
        info["used"] = {"train_A": len(a), "train_B": len(b), "val": len(val_rows)}
        return cls(batches, val, info)


def _limit(rows: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if n <= 0 or len(rows) <= n:
        return rows.reset_index(drop=True)
    return rows.sample(n=n, random_state=seed).sort_values("id", kind="mergesort").reset_index(drop=True)


