"""Images to model tensors and back, and the device choice: what inference, training and the benchmark share.

``to_model_tensor`` is the reference's test transform (bilinear resize to the working size without antialiasing,
``x / 127.5 - 1``, gray replicated to 3 channels); ``from_model_tensor`` the way back (mean of the channels,
bilinear resize, antialiased when shrinking, ``round((x + 1) * 127.5)``).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .models import WORKING_SIZE

NORMALISATION = "gray uint8 -> x / 127.5 - 1 in [-1, 1], replicated to 3 channels; output mean of 3 channels"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when present, else CPU."""
    if device is not None and str(device) != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def to_model_tensor(gray: np.ndarray, size: int = WORKING_SIZE) -> torch.Tensor:
    """(H, W) uint8 -> (1, 3, size, size) float32 in [-1, 1] (reference test transform)."""
    t = torch.from_numpy(np.ascontiguousarray(gray)).float()[None, None]
    if t.shape[-2:] != (size, size):
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
    t = t.clamp(0, 255) / 127.5 - 1.0
    return t.expand(-1, 3, -1, -1).contiguous()


def from_model_tensor(x: torch.Tensor, out_hw: tuple[int, int]) -> np.ndarray:
    """(3, s, s) or (1, s, s) in [-1, 1] -> (H, W) uint8 at ``out_hw``."""
    g = x.float().mean(dim=0, keepdim=True)[None]
    if tuple(g.shape[-2:]) != tuple(out_hw):
        shrink = out_hw[0] < g.shape[-2] or out_hw[1] < g.shape[-1]
        g = F.interpolate(g, size=out_hw, mode="bilinear", align_corners=False, antialias=shrink)
    g = ((g.clamp(-1, 1) + 1.0) * 127.5).round()
    return g[0, 0].to(torch.uint8).cpu().numpy()


def to_working_gray(gray: np.ndarray, size: int = WORKING_SIZE) -> np.ndarray:
    """(H, W) uint8 -> (size, size) uint8, resized exactly as the generators' input is (:func:`to_model_tensor`)."""
    return ((to_model_tensor(gray, size)[0, 0] + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def from_working_gray(work: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(s, s) uint8 -> (H, W) uint8 at ``out_hw``, resized back exactly as the generators' output is."""
    return from_model_tensor(torch.from_numpy(np.ascontiguousarray(work)).float()[None] / 127.5 - 1.0, out_hw)


__all__ = ["NORMALISATION", "from_model_tensor", "from_working_gray", "pick_device", "to_model_tensor", "to_working_gray"]
