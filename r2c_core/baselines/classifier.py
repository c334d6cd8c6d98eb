"""A trained baseline as a classifier (``BaselineClassifier.from_dir``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoints import load_model
from ..imageio import to_gray_uint8
from ..models import CLASS_NAMES
from ..tensors import pick_device, to_model_tensor
from .config import BASELINE_KIND, build_baseline


class BaselineClassifier:
    """A loaded baseline classifier in eval mode (test transform: resize straight to the working size)."""

    def __init__(self, model: nn.Module, config: dict[str, Any], device: str | torch.device | None = None) -> None:
        self.device = pick_device(device)
        self.config = dict(config)
        self.model_name = str(config.get("model"))
        self.size = int(config.get("working_size", 256))
        self.model = model.to(self.device).eval()

    @classmethod
    def from_dir(cls, weights_dir: str | Path, device: str | torch.device | None = None) -> "BaselineClassifier":
        model, cfg = load_model(weights_dir, BASELINE_KIND, build_baseline, what="a baseline classifier")
        return cls(model, cfg, device)

    @torch.inference_mode()
    def predict_proba(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, 2) in ``CLASS_NAMES`` order for gray/RGB arrays of any size."""
        out = []
        for s in range(0, len(images), max(1, batch_size)):
            x = torch.cat([to_model_tensor(to_gray_uint8(im), self.size) for im in images[s : s + batch_size]]).to(self.device)
            out.append(torch.softmax(self.model(x).float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(CLASS_NAMES)), dtype=np.float32)


# ------------------------------------------------------------------------------------------------- pack
