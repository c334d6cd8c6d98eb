"""Restoration metrics on validation images, for choosing checkpoints while training (never the test split).

On validation images of both quality domains (spread evenly, A and B alternating) at the working size, after
``passes`` passes of G_A2B:

* ``ssim_to_input``: SSIM (scikit-image, data range 255) between the restored and the input image: does the
  restorer keep the anatomy?
* ``mean_abs_change``: mean absolute grey-level difference between them: does it change the image at all?
* ``psnr_degraded`` / ``psnr_restored`` / ``psnr_gain``: the input blurred (Gaussian, sigma 1.5 px) plus Gaussian
  noise (sigma 8 grey levels, seeded), then restored; PSNR to the clean image after a global grey-level fit
  (least squares ``a * x + b``, so a global brightness or contrast shift is not counted as damage), restored
  minus degraded. A restorer that damages a degraded image has a negative gain.

The full benchmark (many degradations and severities, classical comparators, no-reference metrics) is the
restoration benchmark (:mod:`r2c_core.quality`); this is its cheap, fixed subset run at every export, built from the
same primitives (:func:`r2c_core.quality.degrade.blur` and :func:`~r2c_core.quality.degrade.gaussian_noise`).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from ..quality.degrade import blur, gaussian_noise, to_u8
from .loader import to_input

BLUR_SIGMA = 1.5
NOISE_SIGMA = 8.0


def pick_images(images: torch.Tensor, domains: Sequence[str], n: int) -> torch.Tensor:
    """``n`` images, half of each quality domain (B gets the odd one), each half spread evenly over the id-sorted
    validation images of its domain; all of them if there are fewer."""
    doms = np.array(list(domains))
    picked = []
    for d, k in (("A", n // 2), ("B", n - n // 2)):
        idx = np.flatnonzero(doms == d)
        if len(idx) > k:
            idx = idx[np.linspace(0, len(idx) - 1, k).round().astype(int)] if k else idx[:0]
        picked.append(idx)
    return images[torch.as_tensor(np.sort(np.concatenate(picked)), dtype=torch.long)]


def degrade(u8: np.ndarray, seed: int, blur_sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Blur (``blur_sigma`` px) + Gaussian noise (NOISE_SIGMA grey levels) of (N, H, W) uint8 images, seeded; uint8."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(u8)
    for i, im in enumerate(u8):
        out[i] = to_u8(gaussian_noise(blur(im, blur_sigma), NOISE_SIGMA, rng))
    return out


def fitted_psnr(test: np.ndarray, ref: np.ndarray) -> float:
    """PSNR of ``test`` to ``ref`` (uint8) after the least-squares global grey-level fit ``a * test + b``."""
    t, r = test.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    a, b = np.polyfit(t, r, 1) if t.std() > 0 else (0.0, r.mean())
    fit = np.clip(a * test.astype(np.float64) + b, 0, 255)
    return float(peak_signal_noise_ratio(ref.astype(np.float64), fit, data_range=255))


@torch.no_grad()
def run_passes(gen: nn.Module, u8: np.ndarray, passes: int, device: torch.device,
               autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext, batch_size: int = 8) -> np.ndarray:
    """(N, H, W) uint8 -> (N, H, W) uint8 after ``passes`` passes (mean of the three output channels)."""
    was_training = gen.training
    gen.eval()
    out = np.empty_like(u8)
    for s in range(0, len(u8), batch_size):
        x = to_input(torch.from_numpy(u8[s : s + batch_size])).to(device)
        for _ in range(passes):
            with autocast():
                y, _ = gen(x)
            x = y.float()
        g = ((x.mean(dim=1).clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).cpu().numpy()
        out[s : s + batch_size] = g
    gen.train(was_training)
    return out


def restoration_metrics(gen: nn.Module, images: torch.Tensor, *, passes: int, seed: int, device: torch.device,
                        autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext) -> dict[str, float]:
    """The metrics of the module doc, averaged over ``images`` ((N, H, W) uint8)."""
    clean = images.numpy()
    restored = run_passes(gen, clean, passes, device, autocast)
    deg = degrade(clean, seed)
    restored_deg = run_passes(gen, deg, passes, device, autocast)
    ssim = [structural_similarity(r, c, data_range=255) for r, c in zip(restored, clean)]
    change = np.abs(restored.astype(np.float64) - clean.astype(np.float64)).mean(axis=(1, 2))
    p_deg = [fitted_psnr(d, c) for d, c in zip(deg, clean)]
    p_res = [fitted_psnr(r, c) for r, c in zip(restored_deg, clean)]
    return {"n": int(len(clean)), "passes": int(passes), "ssim_to_input": float(np.mean(ssim)), "mean_abs_change": float(change.mean()),
            "psnr_degraded": float(np.mean(p_deg)), "psnr_restored": float(np.mean(p_res)),
            "psnr_gain": float(np.mean(p_res) - np.mean(p_deg))}
