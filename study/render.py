"""The renderer interface the study builder calls, the rendition contract, and a synthetic renderer.

A renderer turns one case image into one image per method. The builder calls it once per case with every
method of the study (``original`` included), so that every rendition of a case, the original too, goes through
the same pipeline (e.g. resized to the model's working size and back). The real renderer, which plugs
``r2c_core`` restoration and segmentation in, lives at the edge (``r2c_core/study_renderer.py``); ``study``'s
core never imports ``r2c_core``.

Rendition contract (checked by :func:`check_renditions` for every case):

* exactly the requested methods, each a 2-D ``uint8`` array (8-bit gray);
* all renditions of a case have the same size;
* they are stored as metadata-free PNG by :func:`study.assets.encode_png`;
* segmentation renditions draw the lung contour found on each version over that version (the renderer's job).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageFilter

from .errors import RenditionError
from .models import STUDY_KINDS

#: The paper's methods: the original, R2C-GAN CNN applied once, CNN-compact / Q=3 / Q=5 applied three times.
DEFAULT_METHODS: tuple[str, ...] = ("original", "cnn-x1", "cnn-compact-x3", "op-q3-x3", "op-q5-x3")
ORIGINAL = "original"


@runtime_checkable
class Renderer(Protocol):
    """What the builder needs: the study kind it renders for, and one image per method for a case."""

    study_kind: str

    def render(self, image: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
        """``image``: the case, HxW uint8. Returns ``{method: HxW uint8}`` for every method asked for."""
        ...


def renderer_kind(renderer: object) -> str | None:
    """The study kind a renderer produces (``study_kind``, or ``kind`` for renderers that name it so)."""
    kind = getattr(renderer, "study_kind", None) or getattr(renderer, "kind", None)
    return str(kind) if kind is not None else None


def check_renditions(out: object, methods: Sequence[str], case_key: str = "case") -> dict[str, np.ndarray]:
    """Enforce the rendition contract on a renderer's output; returns the arrays in ``methods`` order."""
    if not isinstance(out, dict):
        raise RenditionError(f"{case_key}: renderer returned {type(out).__name__}, expected a dict of method -> image")
    missing = [m for m in methods if m not in out]
    extra = [m for m in out if m not in methods]
    if missing or extra:
        raise RenditionError(f"{case_key}: renderer returned methods {sorted(out)}, expected {list(methods)}")
    checked: dict[str, np.ndarray] = {}
    shape: tuple[int, ...] | None = None
    for method in methods:
        arr = np.asarray(out[method])
        if arr.dtype != np.uint8 or arr.ndim != 2:
            raise RenditionError(
                f"{case_key}/{method}: rendition must be 8-bit gray (2-D uint8), got {arr.dtype} {arr.shape}"
            )
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise RenditionError(f"{case_key}/{method}: size {arr.shape} differs from the other renditions' {shape}")
        checked[method] = arr
    return checked


def _resize(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``(height, width)`` with bilinear interpolation."""
    h, w = size
    return np.asarray(Image.fromarray(arr).resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)


def _contour(version: np.ndarray) -> np.ndarray:
    """A crude "lung" contour: the outline of the darker-than-mean region, drawn white on ``version``."""
    mask = (version < version.mean()).astype(np.uint8) * 255
    eroded = np.asarray(Image.fromarray(mask).filter(ImageFilter.MinFilter(3)))
    edge = (mask > 0) & (eroded == 0)
    out = version.copy()
    out[edge] = 255
    return out


class SyntheticRenderer:
    """Deterministic stand-in for the real models: each method is a fixed blur / sharpen / gamma / noise
    variation of the input, computed at a working size and resized back, like the real pipeline.

    Used by the tests, by ``python -m study simulate`` and by ``python -m study build --renderer synthetic``.
    For ``segmentation`` the outline of a crude threshold mask is drawn over each version.
    """

    def __init__(self, kind: str = "restoration", working_size: int = 64) -> None:
        if kind not in STUDY_KINDS:
            raise RenditionError(f"unknown study kind {kind!r}; expected one of {', '.join(STUDY_KINDS)}")
        self.study_kind = kind
        self.working_size = int(working_size)
        self.methods = list(DEFAULT_METHODS)

    def _variant(self, work: np.ndarray, method: str, seed: int) -> np.ndarray:
        if method == ORIGINAL:
            return work
        h = zlib.crc32(method.encode("utf-8"))
        img = Image.fromarray(work)
        radius = 0.4 + (h % 7) / 6.0
        img = img.filter(ImageFilter.GaussianBlur(radius)) if h % 2 else img.filter(
            ImageFilter.UnsharpMask(radius=radius, percent=60 + h % 80, threshold=2)
        )
        out = np.asarray(img, dtype=np.float64) / 255.0
        gamma = 0.8 + ((h >> 4) % 9) / 20.0
        out = out**gamma
        rng = np.random.default_rng([seed, h])
        out = out + rng.normal(0.0, 0.004 + ((h >> 8) % 5) / 400.0, size=out.shape)
        return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)

    def render(self, image: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
        arr = np.asarray(image)
        if arr.ndim != 2 or arr.dtype != np.uint8:
            raise RenditionError(f"synthetic renderer needs a 2-D uint8 image, got {arr.dtype} {arr.shape}")
        size = (self.working_size, self.working_size)
        work = _resize(arr, size)
        seed = zlib.crc32(arr.tobytes())
        out: dict[str, np.ndarray] = {}
        for method in methods:
            version = _resize(self._variant(work, method, seed), arr.shape)
            out[method] = _contour(version) if self.study_kind == "segmentation" else version
        return out
