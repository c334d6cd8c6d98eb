"""The lung U-Net (DenseNet-121 encoder, 1 input channel, 1 output class) and its preprocessing.

The network is built by segmentation-models-pytorch with ``encoder_weights=None``: nothing is downloaded, the
weights come only from our own checkpoints. Preprocessing is fully described by a small dict stored in every
checkpoint's ``config.json`` (key ``"preprocess"``), so inference always matches training:

* ``size``: the square side the image is resized to (256 on CPU, 512 for the GPU model); must be a multiple of 32.
* ``resize``: ``"stretch"`` (both axes resized independently to ``size``; the prediction is resized back).
* ``norm``: ``"zscore"`` (each image scaled to [0, 1], then to zero mean and unit standard deviation).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CheckpointError

log = logging.getLogger(__name__)

ARCH = {"arch": "unet", "encoder": "densenet121", "in_channels": 1, "classes": 1}
DEFAULT_PREPROCESS: dict[str, Any] = {"size": 256, "resize": "stretch", "norm": "zscore"}
#: Trainable parameters of ``build_unet()`` (smp 0.6, densenet121, in_channels=1, classes=1).
EXPECTED_PARAMETERS = 13_601_361


def build_unet(arch: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """The lung U-Net: ``smp.Unet("densenet121", encoder_weights=None, in_channels=1, classes=1)``."""
    import segmentation_models_pytorch as smp

    a = dict(ARCH, **(arch or {}))
    if a["arch"] != "unet":
        raise CheckpointError(f"unsupported segmentation architecture {a['arch']!r} (expected 'unet')")
    try:
        return smp.Unet(a["encoder"], encoder_weights=None, in_channels=int(a["in_channels"]), classes=int(a["classes"]))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"cannot build U-Net with encoder {a['encoder']!r}: {exc}") from exc


def count_parameters(module: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def check_preprocess(prep: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a preprocessing dict (raising :class:`CheckpointError`), filling defaults."""
    p = dict(DEFAULT_PREPROCESS, **dict(prep or {}))
    size = p["size"]
    if not isinstance(size, int) or size < 32 or size % 32:
        raise CheckpointError(f"preprocess.size must be a multiple of 32 (>= 32), got {size!r}")
    if p["resize"] != "stretch":
        raise CheckpointError(f"unsupported preprocess.resize {p['resize']!r} (expected 'stretch')")
    if p["norm"] != "zscore":
        raise CheckpointError(f"unsupported preprocess.norm {p['norm']!r} (expected 'zscore')")
    return p


def resize_float(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of an (N, C, H, W) float tensor, antialiased when shrinking."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrink = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Per-image z-score of an (N, 1, H, W) tensor in [0, 1]."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
    return (x - mean) / std


def to_unit_tensor(gray: np.ndarray, size: int) -> torch.Tensor:
    """(H, W) uint8 gray -> (1, 1, size, size) float in [0, 1] (stretched)."""
    g = np.asarray(gray)
    if g.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got shape {g.shape}")
    t = torch.from_numpy(np.array(g, dtype=np.uint8, order="C")).float().div_(255.0)[None, None]
    return resize_float(t, (size, size))


def preprocess_batch(grays: Sequence[np.ndarray], prep: Mapping[str, Any]) -> torch.Tensor:
    """A list of (H, W) uint8 images -> the network input (N, 1, S, S), normalised as ``prep`` says."""
    p = check_preprocess(prep)
    x = torch.cat([to_unit_tensor(g, p["size"]) for g in grays], dim=0)
    return normalise(x)
