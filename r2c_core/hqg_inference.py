"""HQG-Net at inference, with the :class:`~r2c_core.inference.Restorer` interface (``restore``, ``restore_batch``,
``classify``, ``model_name``, ``config``), so the study renderer, the demo and the benchmark use it like any
restorer (method ``hqg-x<passes>``, weights in ``weights/hqg/``).

Pipeline: 8-bit gray, resized to the working size exactly as the R2C-GAN generators' input is
(:func:`~r2c_core.tensors.to_working_gray`), ``x / 255`` in [0, 1] on three channels, the generator with the
stored reference code (the style medoid chosen at export, :mod:`r2c_core.training.hqg`), the mean of the three
output channels, and back to the input's size as the R2C-GAN output is. HQG-Net has no classifier: the COVID
probability comes from ``classifier`` (e.g. the bundled op-q3) on the enhanced image, NaN without one. The
bi-level variant (``hqg-blo``, weights in ``weights/hqg-blo/``) carries its own downstream classifier, trained on
the generator's enhanced images: it gives the probability, on the enhanced image at the working size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoints import load_checkpoint, load_state_into, sub_state
from .errors import CheckpointError, R2CError
from .imageio import to_gray_uint8
from .inference import RestoreResult
from .models import CLASS_NAMES
from .models.hqg import HQGConfig, HQGGenerator, TaskClassifier, to_gray, to_rgb3
from .tensors import from_working_gray, pick_device, to_working_gray

KIND = "hqg-generator"


class HQGRestorer:
    """A loaded HQG-Net generator and its reference code, in eval mode."""

    def __init__(self, generator: HQGGenerator, code: torch.Tensor, config: dict[str, Any], device: Any = None,
                 classifier: Any | None = None, task: TaskClassifier | None = None) -> None:
        self.device = pick_device(device)
        self.generator = generator.to(self.device).eval()
        self.task = task.to(self.device).eval() if task is not None else None
        for p in [*self.generator.parameters(), *(self.task.parameters() if self.task is not None else [])]:
            p.requires_grad_(False)
        self.code = code.float().to(self.device)
        self.config = dict(config)
        self.model_name = str(config.get("model", "hqg"))
        self.size = int(config.get("working_size", 256))
        self.classifier = classifier

    @classmethod
    def from_dir(cls, weights_dir: str | Path, device: Any = None, classifier: Any | None = None) -> "HQGRestorer":
        tensors, cfg = load_checkpoint(weights_dir)
        if cfg.get("kind") != KIND:
            raise CheckpointError(f"{weights_dir}: not an HQG-Net export (kind {cfg.get('kind')!r})")
        if "reference_code" not in tensors:
            raise CheckpointError(f"{weights_dir}: HQG-Net export without its reference code")
        net = HQGGenerator(HQGConfig(img_size=int(cfg.get("working_size", 256)),
                                     adain_shortcut=bool(cfg.get("network", {}).get("adain_shortcut", False))))
        load_state_into(net, sub_state(tensors, "g"), what=f"{weights_dir} (HQG-Net generator)")
        task = None
        if any(k.startswith("task.") for k in tensors):
            task = TaskClassifier(len(CLASS_NAMES))
            load_state_into(task, sub_state(tensors, "task"), what=f"{weights_dir} (HQG+BLO classifier)")
        return cls(net, tensors["reference_code"], cfg, device, classifier, task)

    @torch.inference_mode()
    def restore_batch(self, images: Sequence[np.ndarray], passes: int = 1, batch_size: int = 8) -> list[RestoreResult]:
        """Enhance several images ``passes`` times (0: the resizing round trip alone)."""
        if passes < 0:
            raise R2CError(f"passes must be >= 0, got {passes}")
        grays = [to_gray_uint8(im) for im in images]
        results: list[RestoreResult] = []
        for start in range(0, len(grays), max(1, batch_size)):
            chunk = grays[start:start + batch_size]
            x = torch.stack([torch.from_numpy(to_working_gray(g, self.size)).float() / 255.0 for g in chunk])[:, None]
            x = to_rgb3(x.to(self.device))
            per_pass = []
            for _ in range(passes):
                x = to_rgb3(to_gray(self.generator(x, self.code.expand(x.shape[0], -1))))
                per_pass.append(x)
            outs = per_pass or [x]
            probs = np.full((len(chunk), len(CLASS_NAMES)), np.nan, dtype=np.float32)
            if self.task is not None and passes:
                probs = torch.softmax(self.task(x).float(), dim=1).cpu().numpy()
            for i, g in enumerate(chunk):
                imgs = [from_working_gray((p[i, 0] * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy(), g.shape)
                        for p in outs]
                results.append(RestoreResult(image=imgs[-1], probs=probs[i], passes_images=imgs if passes else []))
        if self.classifier is not None and self.task is None and passes:
            probs = self.classifier.classify([r.image for r in results], batch_size=batch_size)
            for r, p in zip(results, probs):
                r.probs = np.asarray(p, dtype=np.float32)
        return results

    def restore(self, image: np.ndarray, passes: int = 1) -> RestoreResult:
        return self.restore_batch([image], passes=passes, batch_size=1)[0]

    def classify(self, images: Sequence[np.ndarray], batch_size: int = 8) -> np.ndarray:
        """The probabilities on the enhanced images: the variant's own classifier, else ``classifier``'s, else NaN."""
        return np.stack([r.probs for r in self.restore_batch(images, batch_size=batch_size)])


__all__ = ["KIND", "HQGRestorer"]
