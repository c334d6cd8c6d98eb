"""The r2c-backed renderer the study builder plugs in (``python -m study build --renderer r2c``, the admin page).

``study`` never imports ``r2c_core``; this module is the edge that does. A method name is ``original``,
``<model>-x<passes>`` (``cnn-x1``, ``cnn-compact-x3``, ``op-q3-x3``, ``op-q5-x3``: the paper's reader-study set) or a
classical method (``clahe``, ``histeq``, ``gamma``, ``unsharp``, ``nlm``; :mod:`r2c_core.methods`).
Every rendition, the original included, goes through the same resize-to-working-size-and-back pipeline
(:func:`r2c_core.inference.roundtrip` for the original), so all are the same size and 8-bit gray. For the
``segmentation`` kind each version gets the lung contour found on that version drawn over it.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import R2CError
from .imageio import read_xray
from .inference import roundtrip
from .methods import PAPER_METHODS, available_methods, load_restorer, parse_method
from .paths import weights_root as default_weights_root

__all__ = ["PAPER_METHODS", "R2CRenderer", "available_methods", "parse_method"]


class R2CRenderer:
    """Renders every method's version of a case image (see module doc)."""

    def __init__(self, kind: str = "restoration", weights_root: Path | None = None, device: str | None = None,
                 methods: list[str] | None = None) -> None:
        if kind not in ("restoration", "segmentation"):
            raise R2CError(f"unknown study kind {kind!r}: expected 'restoration' or 'segmentation'")
        self.study_kind = kind
        self.root = Path(weights_root) if weights_root else default_weights_root()
        self.device = device
        self.methods = list(methods) if methods else available_methods(self.root)
        self._restorers: dict[str, object] = {}
        for m in self.methods:
            self._restorer(parse_method(m)[0])  # fail early, naming the missing weights
        if kind == "segmentation":
            _ = self.segmenter  # the lung U-Net too, before any study is created

    def _restorer(self, model: str):
        if model == "original":
            return None
        if model not in self._restorers:
            self._restorers[model] = load_restorer(model, self.root, self.device)
        return self._restorers[model]

    @cached_property
    def segmenter(self):
        from .segmentation import LungSegmenter

        own = self.root / "lung-unet"  # a weights folder with its own lung U-Net, else the bundled one
        return LungSegmenter.from_dir(own if own.is_dir() else None, device=self.device)

    @staticmethod
    def read_image(path: Path) -> np.ndarray:
        """A case image as the app and the CLIs read X-rays (:func:`r2c_core.imageio.read_xray`: DICOM, 16-bit
        windowing, transparency, size limits, one-line errors); the study builder reads cases with it."""
        return read_xray(path)

    def render(self, image: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
        """``{method: uint8 gray (H, W)}``, all at the input's size."""
        out: dict[str, np.ndarray] = {}
        for method in methods:
            model, passes = parse_method(method)
            rest = self._restorer(model)
            version = roundtrip(image) if rest is None else rest.restore(image, passes=passes).image
            if self.study_kind == "segmentation":
                from .segmentation import contour_gray

                version = contour_gray(version, self.segmenter.mask(version))
            out[method] = version
        return out
