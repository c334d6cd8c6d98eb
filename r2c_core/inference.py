"""Restoration and classification with a trained R2C-GAN generator (G_A2B), on CPU or CUDA, batched.

Pipeline for any input (8/16-bit gray or RGB array, or anything :func:`~r2c_core.imageio.read_xray` reads):

1. to 8-bit gray (:func:`~r2c_core.imageio.to_gray_uint8`; 16-bit is percentile-windowed, see imageio);
2. resize to the model's working size (256x256, bilinear without antialiasing: the reference's test transform,
   ``tf.image.resize``), scale to [-1, 1], replicate to 3 channels;
3. ``passes`` applications of the generator; the class probabilities come from the FIRST pass (reference test.py);
4. mean of the three output channels, resize back to the input's size (bilinear, antialiased when shrinking),
   back to 8-bit (``round((x + 1) / 2 * 255)``).

``passes=0`` runs steps 1, 2 and 4 only: the original "round-tripped" through the same resizing, which is what
the reader study shows as the original so that no rendition stands out by its sharpness alone.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from .checkpoints import GENERATOR_KIND, export_generator, load_model  # noqa: F401  (export_generator: re-exported)
from .errors import R2CError
from .imageio import to_gray_uint8
from .models import CLASS_NAMES, WORKING_SIZE, build_generator
from .tensors import (  # noqa: F401  (re-exported: the inference API)
    NORMALISATION,
    from_model_tensor,
    from_working_gray,
    pick_device,
    to_model_tensor,
    to_working_gray,
)

log = logging.getLogger(__name__)



@dataclass
class RestoreResult:
    """One restored image: ``image`` (uint8 gray, input size), class ``probs`` (control, covid) of the first pass."""

    image: np.ndarray
    probs: np.ndarray
    #: every pass's image (uint8 gray, input size); ``passes_images[-1] is image``
    passes_images: list[np.ndarray] = field(default_factory=list)

    @property
    def prob_covid(self) -> float:
        return float(self.probs[CLASS_NAMES.index("covid")])


class Restorer:
    """A loaded G_A2B in eval mode. Safe to share between threads (no per-call state)."""

    def __init__(
        self,
        generator: nn.Module,
        config: dict[str, Any],
        device: str | torch.device | None = None,
        *,
        amp: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.device = pick_device(device)
        #: bf16 autocast (CUDA only; instance-norm statistics and the softmax stay float32 in autocast)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.channels_last = channels_last
        self.config = dict(config)
        self.model_name = str(config.get("model", "unknown"))
        self.size = int(config.get("working_size", WORKING_SIZE))
        self.generator = generator.to(self.device).eval()
        if channels_last:
            self.generator = self.generator.to(memory_format=torch.channels_last)
        for p in self.generator.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_dir(cls, weights_dir: str | Path, device: str | torch.device | None = None, **options: Any) -> "Restorer":
        gen, cfg = load_model(weights_dir, GENERATOR_KIND, build_generator, what="an R2C-GAN generator")
        return cls(gen, cfg, device, **options)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def restore_batch(self, images: Sequence[np.ndarray], passes: int = 1, batch_size: int = 16) -> list[RestoreResult]:
        """Restore several images (any sizes) in batches at the working size."""
        if passes < 0:
            raise R2CError(f"passes must be >= 0, got {passes}")
        grays = [to_gray_uint8(im) for im in images]
        results: list[RestoreResult] = []
        for start in range(0, len(grays), max(1, batch_size)):
            chunk = grays[start : start + batch_size]
            x = torch.cat([to_model_tensor(g, self.size) for g in chunk]).to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            per_pass: list[torch.Tensor] = []
            probs = None
            with self._autocast():
                for k in range(passes):
                    x, logits = self.generator(x)
                    if k == 0:
                        probs = torch.softmax(logits.float(), dim=1).cpu().numpy()
                    per_pass.append(x)
                if passes == 0:
                    per_pass.append(x)
            for i, g in enumerate(chunk):
                imgs = [from_model_tensor(p[i], g.shape) for p in per_pass]
                pr = probs[i] if probs is not None else np.full(len(CLASS_NAMES), np.nan, dtype=np.float32)
                results.append(RestoreResult(image=imgs[-1], probs=pr, passes_images=imgs if passes else []))
        return results

    def restore(self, image: np.ndarray, passes: int = 1) -> RestoreResult:
        """Restore one image ``passes`` times (see module doc)."""
        return self.restore_batch([image], passes=passes, batch_size=1)[0]

    def classify(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, 2) from one generator pass."""
        return np.stack([r.probs for r in self.restore_batch(images, passes=1, batch_size=batch_size)])


def roundtrip(image: np.ndarray, size: int = WORKING_SIZE) -> np.ndarray:
    """The original through the same resize-to-working-size-and-back pipeline as restored images (no model)."""
    g = to_gray_uint8(image)
    return from_model_tensor(to_model_tensor(g, size)[0], g.shape)
