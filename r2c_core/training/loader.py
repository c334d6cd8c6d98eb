"""Unpaired A/B batches from a pre-decoded uint8 tensor cache (CPU-friendly: no I/O inside the step loop).

Images are decoded once with :func:`~r2c_core.imageio.read_xray` and resized (bilinear, no antialiasing, as the
reference's ``tf.image.resize`` and the :class:`~r2c_core.inference.Restorer`) to the load size
``round(size * 286 / 256)``, stored as uint8. Training augmentation on tensors (spec 1.13): random horizontal
flip and a random ``size`` crop, then ``x / 127.5 - 1`` and gray replicated to 3 channels. The test transform
(validation) resizes straight to ``size``.

Order: ``steps_per_epoch = max(|A|, |B|) // batch``; each epoch both domains are reshuffled, the shorter one is
cycled (a fresh permutation every pass). Every random draw comes from a generator seeded by ``(seed, epoch)`` or
``(seed, step)``, so the batch of any step is a pure function of the seed and the step number: resuming needs
nothing but the step.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..errors import ImageLoadError, ManifestError
from ..imageio import read_xray
from ..tensors import to_model_tensor

log = logging.getLogger(__name__)


def seeded_generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded from any tuple (stable across runs and platforms)."""
    seed = int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "little") & ((1 << 63) - 1)
    return torch.Generator().manual_seed(seed)


def decode_resized(paths: Sequence[str], size: int, desc: str = "decode", progress: bool = True) -> torch.Tensor:
    """(N, size, size) uint8: every image read and resized (bilinear, no antialias) to ``size`` x ``size``."""
    out = torch.empty((len(paths), size, size), dtype=torch.uint8)
    for i, p in enumerate(tqdm(paths, desc=desc, unit="img", leave=False, disable=not progress or len(paths) < 50)):
        try:
            gray = read_xray(p)
        except ImageLoadError as exc:
            raise ManifestError(f"cannot read a manifest image: {exc}") from None
        t = to_model_tensor(gray, size)[0, 0]  # [-1, 1]
        out[i] = ((t + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return out


def to_input(u8: torch.Tensor) -> torch.Tensor:
    """(N, H, W) uint8 -> (N, 3, H, W) float32 in [-1, 1]."""
    return (u8.float() / 127.5 - 1.0)[:, None].expand(-1, 3, -1, -1).contiguous()


@dataclass
class DomainCache:
    """One domain's decoded images (uint8, load size) and labels (0 control, 1 covid)."""

    ids: list[str]
    images: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def from_frame(cls, rows: pd.DataFrame, load_size: int, desc: str, progress: bool = True) -> "DomainCache":
        from ..data import label_index

        if rows.empty:
            raise ManifestError(f"{desc}: no images")
        imgs = decode_resized(list(rows["path"]), load_size, desc=desc, progress=progress)
        return cls(list(rows["id"]), imgs, torch.from_numpy(label_index(rows["label"])))

    def __len__(self) -> int:
        return len(self.ids)


class UnpairedBatches:
    """Batches ``(real_a, real_b, onehot_a, onehot_b)`` for any global step (see module doc)."""

    def __init__(self, a: DomainCache, b: DomainCache, *, size: int, batch_size: int, seed: int, num_classes: int = 2) -> None:
        self.a, self.b = a, b
        self.size, self.batch_size, self.seed, self.num_classes = size, batch_size, seed, num_classes
        self.steps_per_epoch = max(len(a), len(b)) // batch_size
        if self.steps_per_epoch < 1:
            raise ManifestError(f"fewer images ({max(len(a), len(b))}) than one batch ({batch_size})")
        self._epoch = -1
        self._order: dict[str, torch.Tensor] = {}

    def _epoch_order(self, epoch: int, name: str, n: int) -> torch.Tensor:
        need = self.steps_per_epoch * self.batch_size
        g = seeded_generator(self.seed, "order", name, epoch)
        parts, have = [], 0
        while have < need:
            parts.append(torch.randperm(n, generator=g))
            have += n
        return torch.cat(parts)[:need]

    def _augment(self, imgs: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, h, w = imgs.shape
        flips = torch.rand(n, generator=g) < 0.5
        ys = torch.randint(0, h - self.size + 1, (n,), generator=g)
        xs = torch.randint(0, w - self.size + 1, (n,), generator=g)
        out = torch.empty((n, self.size, self.size), dtype=imgs.dtype)
        for i in range(n):
            im = imgs[i].flip(-1) if flips[i] else imgs[i]
            out[i] = im[ys[i] : ys[i] + self.size, xs[i] : xs[i] + self.size]
        return out

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._order = {"A": self._epoch_order(epoch, "A", len(self.a)), "B": self._epoch_order(epoch, "B", len(self.b))}
            self._epoch = epoch
        sl = slice(k * self.batch_size, (k + 1) * self.batch_size)
        ia, ib = self._order["A"][sl], self._order["B"][sl]
        g = seeded_generator(self.seed, "augment", step)
        xa = to_input(self._augment(self.a.images[ia], g))
        xb = to_input(self._augment(self.b.images[ib], g))
        la = F.one_hot(self.a.labels[ia], self.num_classes).float()
        lb = F.one_hot(self.b.labels[ib], self.num_classes).float()
        return xa, xb, la, lb
