"""A deterministic, seeded degradation suite for 8-bit gray X-rays (the restoration benchmark's inputs).

Seven degradations, each at three severities (1 mild, 2 moderate, 3 severe), applied at the working size
(256 x 256, where the generators work, so no resizing enters the comparison):

============  ===============================================================================================
blur          Gaussian blur, sigma 0.8 / 1.5 / 2.5 px
gauss         additive Gaussian noise, sigma 4 / 8 / 16 grey levels
poisson       photon (Poisson) noise with 1000 / 300 / 100 counts at white: ``Poisson(x / 255 * peak) / peak * 255``
under         under-exposure: ``255 * c * (x / 255) ** g`` with (g, c) = (1.3, 0.85) / (1.7, 0.70) / (2.2, 0.55):
              darker, mid-tones crushed, highlights compressed
over          over-exposure: ``255 * (b + (1 - b) * (x / 255) ** (1 / g))`` with (g, b) = (1.3, 0.15) / (1.7, 0.30)
              / (2.2, 0.45): brighter, shadows lifted and compressed
jpeg          JPEG blocking (Pillow, 4:2:0 irrelevant for gray), quality 40 / 20 / 10
mix           blur sigma 0.6 / 1.0 / 1.5, then under-exposure (1.15, 0.92) / (1.3, 0.85) / (1.5, 0.75), then Gaussian
              noise sigma 3 / 6 / 10, then JPEG quality 60 / 40 / 25
============  ===============================================================================================

Every random draw comes from ``numpy.random.default_rng`` seeded by ``(seed, crc32(image id), degradation index,
severity)``, so the degraded set is regenerated bit for bit from the seed, whatever the order or subset of images.
All results are rounded and clipped to uint8, as a stored image would be.
"""

from __future__ import annotations

import io
import zlib
from typing import Callable

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..errors import R2CError

SEVERITIES = (1, 2, 3)

BLUR = (0.8, 1.5, 2.5)
GAUSS = (4.0, 8.0, 16.0)
POISSON_PEAK = (1000.0, 300.0, 100.0)
UNDER = ((1.3, 0.85), (1.7, 0.70), (2.2, 0.55))
OVER = ((1.3, 0.15), (1.7, 0.30), (2.2, 0.45))
JPEG = (40, 20, 10)
MIX = {"blur": (0.6, 1.0, 1.5), "under": ((1.15, 0.92), (1.3, 0.85), (1.5, 0.75)), "gauss": (3.0, 6.0, 10.0), "jpeg": (60, 40, 25)}


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (float64 out, not rounded)."""
    return gaussian_filter(np.asarray(x, dtype=np.float64), sigma)


def gaussian_noise(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``x`` plus Gaussian noise of ``sigma`` grey levels (float64 out, not rounded)."""
    return np.asarray(x, dtype=np.float64) + rng.normal(0.0, sigma, np.shape(x))


def poisson_noise(x: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    return rng.poisson(np.asarray(x, dtype=np.float64) / 255.0 * peak) / peak * 255.0


def under_exposure(x: np.ndarray, g: float, c: float) -> np.ndarray:
    return 255.0 * c * (np.asarray(x, dtype=np.float64) / 255.0) ** g


def over_exposure(x: np.ndarray, g: float, b: float) -> np.ndarray:
    return 255.0 * (b + (1.0 - b) * (np.asarray(x, dtype=np.float64) / 255.0) ** (1.0 / g))


def jpeg(x: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(to_u8(x)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("L"), dtype=np.uint8)


def _mix(x: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    i = s - 1
    y = blur(x, MIX["blur"][i])
    y = under_exposure(to_u8(y), *MIX["under"][i])
    y = gaussian_noise(y, MIX["gauss"][i], rng)
    return jpeg(to_u8(y), MIX["jpeg"][i])


_APPLY: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "blur": lambda x, s, rng: blur(x, BLUR[s - 1]),
    "gauss": lambda x, s, rng: gaussian_noise(x, GAUSS[s - 1], rng),
    "poisson": lambda x, s, rng: poisson_noise(x, POISSON_PEAK[s - 1], rng),
    "under": lambda x, s, rng: under_exposure(x, *UNDER[s - 1]),
    "over": lambda x, s, rng: over_exposure(x, *OVER[s - 1]),
    "jpeg": lambda x, s, rng: jpeg(x, JPEG[s - 1]),
    "mix": _mix,
}
#: The degradations, in the order of the tables.
DEGRADATIONS: tuple[str, ...] = tuple(_APPLY)


def rng_for(seed: int, image_id: str, degradation: str, severity: int) -> np.random.Generator:
    """The generator of one (image, degradation, severity): independent of order and subset."""
    return np.random.default_rng([int(seed), zlib.crc32(str(image_id).encode()), DEGRADATIONS.index(degradation), int(severity)])


def apply(gray: np.ndarray, degradation: str, severity: int, seed: int = 0, image_id: str = "") -> np.ndarray:
    """Degrade an (H, W) uint8 image; uint8, same size (see module doc)."""
    if degradation not in _APPLY:
        raise R2CError(f"unknown degradation {degradation!r} (known: {', '.join(DEGRADATIONS)})")
    if severity not in SEVERITIES:
        raise R2CError(f"severity must be one of {SEVERITIES}, got {severity}")
    g = np.asarray(gray)
    if g.dtype != np.uint8 or g.ndim != 2:
        raise R2CError(f"degradations take 8-bit gray images (2-D uint8), got {g.dtype} {g.shape}")
    return to_u8(_APPLY[degradation](g, severity, rng_for(seed, image_id, degradation, severity)))


def suite(degradations: tuple[str, ...] | list[str] = DEGRADATIONS, severities: tuple[int, ...] | list[int] = SEVERITIES) -> list[tuple[str, int]]:
    """Every (degradation, severity) pair asked for, checked, in table order."""
    bad = [d for d in degradations if d not in _APPLY]
    if bad:
        raise R2CError(f"unknown degradation(s) {', '.join(bad)} (known: {', '.join(DEGRADATIONS)})")
    bad_s = [s for s in severities if s not in SEVERITIES]
    if bad_s:
        raise R2CError(f"severities must be among {SEVERITIES}, got {bad_s}")
    return [(d, s) for d in DEGRADATIONS if d in degradations for s in SEVERITIES if s in severities]
