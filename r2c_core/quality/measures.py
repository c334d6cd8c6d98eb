"""Image quality measures for the restoration benchmark, each from a library that already computes it.

All take 8-bit gray images (2-D uint8) at the working size and return plain floats.

Full reference (a restored image against the clean original, :func:`full_reference`):
``psnr`` and ``ssim`` (scikit-image, data range 255, SSIM with its default 7-px window; PSNR capped at 100 dB, which
identical images would exceed), ``ms_ssim`` and ``gmsd``
(piq, images scaled to [0, 1]; MS-SSIM needs a side above 160 px and is NaN below). Higher is better for all but
GMSD (a gradient-magnitude deviation: 0 is identical).

No reference (:func:`no_reference`): ``piqe`` (pypiqe, MATLAB's PIQE; 0 best, 100 worst), ``brisque`` (the brisque
package's bundled LIVE-trained SVM; lower is better), ``entropy`` (Shannon entropy of the grey levels, bits;
scikit-image), ``blur`` (scikit-image ``blur_effect``, Crété-Roffet et al.; 0 sharp, 1 blurred), ``noise`` (the
wavelet noise estimate ``restoration.estimate_sigma``, grey levels) and, given a lung mask:

* ``cnr``: contrast-to-noise ratio of the lungs against the tissue around them,
  ``|mean(ring) - mean(lung)| / sqrt((var(lung) + var(ring)) / 2)``, where ``ring`` is the mask dilated by 8 px
  (at 256 px) minus the mask (ribs, mediastinum, diaphragm edge);
* ``eme``: Agaian's measure of enhancement inside the lungs, the mean over 8 x 8 blocks lying at least 90 % inside
  the mask of ``20 * log10((max + 1) / (min + 1))``.

Preservation (:func:`preservation`): SSIM between the original and the restored image, and the Dice overlap of
the lung masks found on each.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import torch
from scipy.ndimage import binary_dilation
from skimage.measure import blur_effect, shannon_entropy
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from skimage.morphology import disk
from skimage.restoration import estimate_sigma

from ..errors import R2CError

#: Which way is better, per measure (+1 higher, -1 lower): gains are signed so that positive is always better.
DIRECTION = {"psnr": 1, "ssim": 1, "ms_ssim": 1, "gmsd": -1, "piqe": -1, "brisque": -1, "entropy": 1, "blur": -1,
             "noise": -1, "cnr": 1, "eme": 1}
FULL_REFERENCE = ("psnr", "ssim", "ms_ssim", "gmsd")
NO_REFERENCE = ("piqe", "brisque", "entropy", "blur", "noise", "cnr", "eme")
MS_SSIM_MIN_SIDE = 161
#: PSNR of identical images is infinite; capped so that one identical pair does not make a mean infinite
PSNR_CAP = 100.0
RING_PX = 8
EME_BLOCK = 8


def _check(*images: np.ndarray) -> None:
    for im in images:
        if im.dtype != np.uint8 or im.ndim != 2:
            raise R2CError(f"quality measures take 8-bit gray images (2-D uint8), got {im.dtype} {im.shape}")
    if len({im.shape for im in images}) > 1:
        raise R2CError(f"images differ in size: {[im.shape for im in images]}")


def _t(im: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(im)).float()[None, None] / 255.0


def full_reference(test: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM, MS-SSIM and GMSD of ``test`` against ``ref``."""
    import piq

    _check(test, ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # identical images: inf, capped below
        psnr = min(PSNR_CAP, float(peak_signal_noise_ratio(ref, test, data_range=255)))
    out = {"psnr": psnr, "ssim": float(structural_similarity(ref, test, data_range=255))}
    x, y = _t(test), _t(ref)
    out["ms_ssim"] = float(piq.multi_scale_ssim(x, y, data_range=1.0)) if min(ref.shape) >= MS_SSIM_MIN_SIDE else math.nan
    out["gmsd"] = float(piq.gmsd(x, y, data_range=1.0))
    return out


@functools.lru_cache(maxsize=1)
def _brisque_model():
    from brisque import BRISQUE

    class _Brisque(BRISQUE):
        # brisque 0.2.0 keeps some fitted features as 1-element arrays, which numpy >= 2.3 refuses to float():
        # flatten them before its own scaling (same values)
        def scale_features(self, features):
            return super().scale_features(np.array([np.asarray(f, dtype=np.float64).reshape(-1)[0] for f in features], dtype=object))

    return _Brisque(url=False)


def piqe(im: np.ndarray) -> float:
    from pypiqe import piqe as _piqe

    _check(im)
    return float(_piqe(im)[0])


def brisque(im: np.ndarray) -> float:
    _check(im)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(_brisque_model().score(np.repeat(im[..., None], 3, axis=2)))


def lung_cnr(im: np.ndarray, mask: np.ndarray) -> float:
    """Contrast-to-noise ratio of the lungs against the ring of tissue around them (module doc)."""
    m = np.asarray(mask, dtype=bool)
    ring = binary_dilation(m, structure=disk(max(1, round(RING_PX * max(im.shape) / 256)))) & ~m
    if m.sum() < 16 or ring.sum() < 16:
        return math.nan
    x = im.astype(np.float64)
    a, b = x[m], x[ring]
    denom = math.sqrt((a.var() + b.var()) / 2.0)
    return float(abs(b.mean() - a.mean()) / denom) if denom > 0 else math.nan


def lung_eme(im: np.ndarray, mask: np.ndarray, block: int = EME_BLOCK) -> float:
    """Agaian's EME over the 8 x 8 blocks at least 90 % inside the lung mask (module doc)."""
    h, w = (im.shape[0] // block) * block, (im.shape[1] // block) * block
    x = im[:h, :w].astype(np.float64).reshape(h // block, block, w // block, block).swapaxes(1, 2)
    inside = np.asarray(mask, dtype=bool)[:h, :w].reshape(h // block, block, w // block, block).swapaxes(1, 2).mean(axis=(2, 3)) >= 0.9
    if not inside.any():
        return math.nan
    b = x[inside]
    return float(np.mean(20.0 * np.log10((b.max(axis=(1, 2)) + 1.0) / (b.min(axis=(1, 2)) + 1.0))))


def no_reference(im: np.ndarray, lung_mask: np.ndarray | None = None) -> dict[str, float]:
    """Every no-reference measure of ``im`` (``cnr`` and ``eme`` NaN without a lung mask)."""
    _check(im)
    out = {"piqe": piqe(im), "brisque": brisque(im), "entropy": float(shannon_entropy(im)),
           "blur": float(blur_effect(im)), "noise": float(estimate_sigma(im.astype(np.float64)))}
    out["cnr"] = lung_cnr(im, lung_mask) if lung_mask is not None else math.nan
    out["eme"] = lung_eme(im, lung_mask) if lung_mask is not None else math.nan
    return out


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    s = a.sum() + b.sum()
    return float(2.0 * (a & b).sum() / s) if s else 1.0


def preservation(original: np.ndarray, restored: np.ndarray, mask_original: np.ndarray | None = None,
                 mask_restored: np.ndarray | None = None) -> dict[str, float]:
    """SSIM between original and restored, and the Dice of their lung masks (NaN without masks)."""
    _check(original, restored)
    out = {"ssim": float(structural_similarity(original, restored, data_range=255))}
    out["dice"] = dice(mask_original, mask_restored) if mask_original is not None and mask_restored is not None else math.nan
    return out
