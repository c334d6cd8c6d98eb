"""The supervised data: split rows, decoded image caches, augmentation and step-addressed batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from ..data import manifest_and_split, split_info
from ..errors import ManifestError
from ..models import CLASS_NAMES
from ..training.loader import DomainCache, seeded_generator, to_input
from .config import BaselineConfig


def limit_rows(rows: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most ``n`` rows (0 = all): a seeded sample stratified by label (every present label keeps >= 1 row)."""
    if n <= 0 or len(rows) <= n:
        return rows.sort_values("id", kind="mergesort").reset_index(drop=True)
    parts = []
    for _, g in rows.groupby("label", sort=True):
        k = min(len(g), max(1, int(round(n * len(g) / len(rows)))))
        parts.append(g.sample(n=k, random_state=seed))
    return pd.concat(parts).sort_values("id", kind="mergesort").reset_index(drop=True)


def split_rows(manifest: pd.DataFrame, split: pd.DataFrame, which: str) -> pd.DataFrame:
    """Manifest rows of the split file's ``which`` split (train/val/test), with the split file's domain."""
    sel = split.loc[split["split"] == which, ["id", "domain"]]
    rows = manifest.merge(sel, on="id", how="inner")
    if len(rows) != len(sel):
        raise ManifestError(f"the split file names {len(sel) - len(rows)} {which} id(s) that are not in the manifest")
    return rows.sort_values("id", kind="mergesort").reset_index(drop=True)


@dataclass
class SupervisedData:
    """Decoded train images (load size) and validation images (working size), labels 0 control / 1 covid."""

    train: DomainCache
    val: DomainCache | None
    split: dict[str, Any]

    @classmethod
    def from_config(cls, cfg: BaselineConfig, progress: bool = True) -> "SupervisedData":
        manifest, split, split_path = manifest_and_split(cfg.manifest, cfg.split_file)
        train_rows = limit_rows(split_rows(manifest, split, "train"), cfg.limit_train, cfg.seed)
        val_rows = limit_rows(split_rows(manifest, split, "val"), cfg.limit_val, cfg.seed)
        train = DomainCache.from_frame(train_rows, cfg.load_size, "train", progress)
        val = DomainCache.from_frame(val_rows, cfg.size, "val", progress) if len(val_rows) else None
        info = split_info(split_path)
        info["used"] = {"train": len(train_rows), "val": len(val_rows), "train_covid": int(train.labels.sum())}
        return cls(train, val, info)


def class_weights(labels: torch.Tensor, num_classes: int = len(CLASS_NAMES)) -> torch.Tensor:
    """``N / (num_classes * n_c)`` per class (1.0 for an absent class)."""
    counts = torch.bincount(labels.long(), minlength=num_classes).float()
    w = labels.numel() / (num_classes * counts.clamp(min=1))
    return torch.where(counts > 0, w, torch.ones_like(w))


def augment(images: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """R2C-GAN's training augmentation on (N, H, W) uint8: random horizontal flip, random ``size`` crop."""
    n, h, w = images.shape
    flips = torch.rand(n, generator=g) < 0.5
    ys = torch.randint(0, h - size + 1, (n,), generator=g)
    xs = torch.randint(0, w - size + 1, (n,), generator=g)
    out = torch.empty((n, size, size), dtype=images.dtype)
    for i in range(n):
        im = images[i].flip(-1) if flips[i] else images[i]
        out[i] = im[ys[i] : ys[i] + size, xs[i] : xs[i] + size]
    return out


class SupervisedBatches:
    """``(x, y)`` for any global step: a pure function of the seed and the step (see module doc)."""

    def __init__(self, data: DomainCache, *, size: int, batch_size: int, seed: int, balance: str) -> None:
        self.data, self.size, self.batch_size, self.seed, self.balance = data, size, batch_size, seed, balance
        self.steps_per_epoch = len(data) // batch_size
        if self.steps_per_epoch < 1:
            raise ManifestError(f"fewer training images ({len(data)}) than one batch ({batch_size})")
        self._epoch = -1
        self._order = torch.empty(0, dtype=torch.long)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        g = seeded_generator(self.seed, "order", epoch)
        need = self.steps_per_epoch * self.batch_size
        if self.balance == "sampler":
            w = class_weights(self.data.labels)[self.data.labels.long()]
            return torch.multinomial(w, need, replacement=True, generator=g)
        return torch.randperm(len(self.data), generator=g)[:need]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._order, self._epoch = self.epoch_order(epoch), epoch
        idx = self._order[k * self.batch_size : (k + 1) * self.batch_size]
        g = seeded_generator(self.seed, "augment", step)
        return to_input(augment(self.data.images[idx], self.size, g)), self.data.labels[idx].long()


# ----------------------------------------------------------------------------------------------- trainer
