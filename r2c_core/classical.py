"""Classical enhancement methods as restorers: what every radiology viewer already offers, as the floor that a
learned restorer has to beat (restoration benchmark, study builder, demo page).

Each method is a fixed, documented scikit-image call on an 8-bit gray image, with no tuning per image beyond
what the method itself estimates (the automatic gamma's exponent, the denoiser's noise level):

=========  ==========================================================================================================
name       what it does (settings for the 256-px working size)
=========  ==========================================================================================================
clahe      contrast-limited adaptive histogram equalisation: ``exposure.equalize_adapthist``, tiles of 32 px (8 x 8
           tiles over the image), clip limit 0.01, 256 bins
histeq     global histogram equalisation: ``exposure.equalize_hist``, 256 bins
gamma      automatic gamma: exponent ``log(0.5) / log(mean)`` (mean grey level in [0, 1]) that maps the mean to mid
           grey, limited to [0.5, 2.0]: ``exposure.adjust_gamma``
unsharp    unsharp masking: ``filters.unsharp_mask``, Gaussian radius 2 px, amount 1.0
nlm        non-local means denoising: ``restoration.denoise_nl_means``, 5-px patches, search distance 6 px,
           ``h = 0.8 * sigma`` with ``sigma`` from ``restoration.estimate_sigma`` (wavelet MAD), fast mode
=========  ==========================================================================================================

:class:`ClassicalRestorer` runs a method through exactly the pipeline of the R2C generators
(:class:`~r2c_core.inference.Restorer`): the image is resized to the working size (256 x 256), enhanced there and
resized back, so that in a blinded study a classical rendition cannot be told apart by its sharpness or size.
A classical method has no classifier; given one (any :class:`Restorer`), the COVID probability it reports is that
classifier's on the enhanced image (does the enhancement keep the diagnosis?).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from skimage import exposure, filters, restoration

from .errors import R2CError
from .imageio import to_gray_uint8
from .inference import RestoreResult, from_working_gray, to_working_gray
from .models import CLASS_NAMES, WORKING_SIZE

KIND = "classical"


def _u8(x: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (rounded, clipped)."""
    return np.clip(np.round(np.asarray(x, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def clahe(gray: np.ndarray) -> np.ndarray:
    kernel = max(8, round(max(gray.shape) / 8))
    return _u8(exposure.equalize_adapthist(gray, kernel_size=kernel, clip_limit=0.01, nbins=256))


def histeq(gray: np.ndarray) -> np.ndarray:
    return _u8(exposure.equalize_hist(gray, nbins=256))


def auto_gamma_exponent(gray: np.ndarray) -> float:
    """The exponent that maps the mean grey level to mid grey, limited to [0.5, 2.0]."""
    m = float(np.clip(gray.mean() / 255.0, 1e-3, 1 - 1e-3))
    return float(np.clip(math.log(0.5) / math.log(m), 0.5, 2.0))


def gamma(gray: np.ndarray) -> np.ndarray:
    return _u8(exposure.adjust_gamma(gray.astype(np.float64) / 255.0, auto_gamma_exponent(gray)))


def unsharp(gray: np.ndarray) -> np.ndarray:
    return _u8(filters.unsharp_mask(gray.astype(np.float64) / 255.0, radius=2.0, amount=1.0, preserve_range=True))


def nlm(gray: np.ndarray) -> np.ndarray:
    x = gray.astype(np.float64) / 255.0
    sigma = float(restoration.estimate_sigma(x))
    if sigma <= 0:
        return gray.copy()
    return _u8(restoration.denoise_nl_means(x, h=0.8 * sigma, sigma=sigma, patch_size=5, patch_distance=6, fast_mode=True))


@dataclass(frozen=True)
class ClassicalMethod:
    name: str
    label: str
    fn: Callable[[np.ndarray], np.ndarray]
    settings: dict[str, Any]


METHODS: dict[str, ClassicalMethod] = {m.name: m for m in (
    ClassicalMethod("clahe", "CLAHE", clahe, {"call": "skimage.exposure.equalize_adapthist", "kernel_size": "side/8 (32 px at 256)", "clip_limit": 0.01, "nbins": 256}),
    ClassicalMethod("histeq", "Histogram equalisation", histeq, {"call": "skimage.exposure.equalize_hist", "nbins": 256}),
    ClassicalMethod("gamma", "Automatic gamma", gamma, {"call": "skimage.exposure.adjust_gamma", "gamma": "log(0.5)/log(mean), in [0.5, 2.0]"}),
    ClassicalMethod("unsharp", "Unsharp masking", unsharp, {"call": "skimage.filters.unsharp_mask", "radius": 2.0, "amount": 1.0}),
    ClassicalMethod("nlm", "Non-local means", nlm, {"call": "skimage.restoration.denoise_nl_means", "patch_size": 5, "patch_distance": 6,
                                                    "h": "0.8 * estimate_sigma", "fast_mode": True}),
)}
#: Method names, in the order the benchmark and the pages list them.
NAMES: tuple[str, ...] = tuple(METHODS)


def is_classical(name: str) -> bool:
    return name in METHODS


def enhance(gray: np.ndarray, name: str) -> np.ndarray:
    """Apply classical method ``name`` to an (H, W) uint8 image at its own size; uint8, same size."""
    if name not in METHODS:
        raise R2CError(f"unknown classical method {name!r} (known: {', '.join(NAMES)})")
    g = np.ascontiguousarray(to_gray_uint8(gray))
    out = METHODS[name].fn(g)
    assert out.dtype == np.uint8 and out.shape == g.shape
    return out


class ClassicalRestorer:
    """A classical method with the :class:`~r2c_core.inference.Restorer` interface (``restore``, ``restore_batch``,
    ``classify``, ``model_name``, ``config``); see the module doc for the pipeline."""

    def __init__(self, name: str, classifier: Any | None = None, size: int = WORKING_SIZE) -> None:
        if name not in METHODS:
            raise R2CError(f"unknown classical method {name!r} (known: {', '.join(NAMES)})")
        self.method = METHODS[name]
        self.model_name = name
        self.size = size
        self.classifier = classifier
        self.config = {"kind": KIND, "model": name, "label": self.method.label, "working_size": size,
                       "settings": self.method.settings, "version": "fixed"}

    def restore_batch(self, images: Sequence[np.ndarray], passes: int = 1, batch_size: int = 16) -> list[RestoreResult]:
        """Enhance several images; ``passes`` 0 is the resizing round trip alone, any other count applies the
        method once (a classical method is not iterated)."""
        if passes < 0:
            raise R2CError(f"passes must be >= 0, got {passes}")
        grays = [to_gray_uint8(im) for im in images]
        out = []
        for g in grays:
            work = to_working_gray(g, self.size)
            out.append(from_working_gray(enhance(work, self.method.name) if passes else work, g.shape))
        if self.classifier is not None and passes:
            probs = self.classifier.classify(out, batch_size=batch_size)
        else:
            probs = np.full((len(out), len(CLASS_NAMES)), np.nan, dtype=np.float32)
        return [RestoreResult(image=im, probs=p, passes_images=[im] if passes else []) for im, p in zip(out, probs)]

    def restore(self, image: np.ndarray, passes: int = 1) -> RestoreResult:
        return self.restore_batch([image], passes=passes, batch_size=1)[0]

    def classify(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """The classifier's probabilities on the enhanced images (NaN without a classifier)."""
        return np.stack([r.probs for r in self.restore_batch(images, batch_size=batch_size)])
