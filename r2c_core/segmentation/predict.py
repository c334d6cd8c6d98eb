"""Running the trained lung U-Net on any image: :class:`LungSegmenter` and :func:`lung_mask`.

``LungSegmenter.from_dir()`` loads ``weights/lung-unet`` (a safetensors + config.json checkpoint; fp16 on disk,
fp32 in memory). Every output is at the input image's size: the network sees the image resized as the
checkpoint's ``preprocess`` says, and its logits are resized back before thresholding and post-processing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..checkpoints import load_checkpoint, load_state_into
from ..errors import CheckpointError, ImageLoadError
from ..imageio import read_xray, to_gray_uint8
from ..paths import weights_root
from .model import build_unet, check_preprocess, preprocess_batch, resize_float
from .postprocess import postprocess

log = logging.getLogger(__name__)

DEFAULT_DIR_NAME = "lung-unet"
KIND = "lung-unet"


def default_weights_dir() -> Path:
    """``weights_root() / "lung-unet"``."""
    return weights_root() / DEFAULT_DIR_NAME


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class LungSegmenter:
    """A loaded lung U-Net plus its preprocessing and threshold."""

    def __init__(self, model: torch.nn.Module, config: dict[str, Any], device: str | torch.device | None = None, batch_size: int = 8):
        self.device = _pick_device(device)
        self.model = model.to(self.device).eval()
        self.config = config
        self.preprocess = check_preprocess(config.get("preprocess", {}))
        self.threshold = float(config.get("threshold", 0.5))
        self.batch_size = batch_size

    @classmethod
    def from_dir(cls, weights_dir: str | Path | None = None, device: str | torch.device | None = None) -> "LungSegmenter":
        """Load a checkpoint folder (default ``weights/lung-unet``); one clear CheckpointError if unusable."""
        d = Path(weights_dir) if weights_dir is not None else default_weights_dir()
        tensors, cfg = load_checkpoint(d)
        kind = cfg.get("kind")
        if kind is not None and kind != KIND:
            raise CheckpointError(f"{d}: checkpoint is a {kind!r}, not a lung U-Net ({KIND!r})")
        model = build_unet(cfg.get("model"))
        load_state_into(model, tensors, what=f"{d}")
        return cls(model, cfg, device=device)

    @torch.no_grad()
    def _logits(self, grays: Sequence[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for start in range(0, len(grays), self.batch_size):
            chunk = [self._check(g) for g in grays[start:start + self.batch_size]]
            x = preprocess_batch(chunk, self.preprocess).to(self.device)
            logits = self.model(x).float().cpu()
            for g, lg in zip(chunk, logits):
                out.append(resize_float(lg[None], tuple(g.shape))[0, 0].numpy())
        return out

    @staticmethod
    def _check(gray: np.ndarray) -> np.ndarray:
        g = np.asarray(gray)
        if g.ndim == 3 or g.dtype != np.uint8:
            g = to_gray_uint8(g)
        if g.ndim != 2 or min(g.shape) < 8:
            raise ImageLoadError(f"image of shape {g.shape} is too small to segment")
        return g

    def predict_probs(self, grays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Lung probability (float32, input size) for each image."""
        return [(1.0 / (1.0 + np.exp(-lg))).astype(np.float32) for lg in self._logits(grays)]

    def predict_prob(self, gray: np.ndarray) -> np.ndarray:
        """Lung probability map (H, W) float32 in [0, 1] of one (H, W) uint8 image."""
        return self.predict_probs([gray])[0]

    def masks(self, grays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Post-processed bool masks (input size) for a list of images, run in batches."""
        return [postprocess(p, self.threshold) for p in self.predict_probs(grays)]

    def mask(self, gray: np.ndarray) -> np.ndarray:
        """Post-processed bool lung mask (H, W) of one image."""
        return self.masks([gray])[0]


_DEFAULT: LungSegmenter | None = None


def default_segmenter() -> LungSegmenter:
    """The bundled segmenter, loaded once per process."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = LungSegmenter.from_dir()
    return _DEFAULT


def lung_mask(image: np.ndarray | str | Path | bytes, segmenter: LungSegmenter | None = None) -> np.ndarray:
    """Bool lung mask at the input's size; ``image`` is an array or anything :func:`read_xray` accepts."""
    gray = image if isinstance(image, np.ndarray) else read_xray(image)
    return (segmenter or default_segmenter()).mask(gray)
