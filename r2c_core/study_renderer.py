"""The r2c-backed renderer the study builder plugs in (``python -m study build --renderer r2c``, the admin page).

``study`` never imports ``r2c_core``; this module is the edge that does. A method name is ``original`` or
``<model>-x<passes>`` (``cnn-x1``, ``cnn-compact-x3``, ``op-q3-x3``, ``op-q5-x3``: the paper's reader-study set).
Every rendition, the original included, goes through the same resize-to-working-size-and-back pipeline
(:func:`r2c_core.inference.roundtrip` for the original), so all are the same size and 8-bit gray. For the
``segmentation`` kind each version gets the lung contour found on that version drawn over it.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path

import numpy as np

from .errors import R2CError
from .inference import Restorer, roundtrip
from .paths import weights_root as default_weights_root

#: The paper's qualitative-study set: original, R2C-GAN CNN once, CNN-compact / Q=3 / Q=5 three times.
PAPER_METHODS = ["original", "cnn-x1", "cnn-compact-x3", "op-q3-x3", "op-q5-x3"]
_METHOD = re.compile(r"^(?P<model>[a-z0-9-]+?)-x(?P<passes>\d+)$")


def parse_method(method: str) -> tuple[str, int]:
    """``"op-q3-x3"`` -> ``("op-q3", 3)``; ``"original"`` -> ``("original", 0)``."""
    if method == "original":
        return "original", 0
    m = _METHOD.match(method)
    if not m or int(m.group("passes")) < 1:
        raise R2CError(f"bad method name {method!r}: expected 'original' or '<model>-x<passes>' such as 'op-q3-x3'")
    return m.group("model"), int(m.group("passes"))


def available_methods(root: Path | None = None, passes_for: dict[str, int] | None = None) -> list[str]:
    """``original`` plus one method per bundled generator under ``weights/r2c-<model>/`` (paper's pass counts)."""
    root = root or default_weights_root()
    out = ["original"]
    for d in sorted(root.glob("r2c-*")):
        if (d / "config.json").is_file() and (d / "model.safetensors").is_file():
            model = d.name[len("r2c-"):]
            passes = (passes_for or {}).get(model, 1 if model == "cnn" else 3)
            out.append(f"{model}-x{passes}")
    return out


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
        self._restorers: dict[str, Restorer] = {}
        for m in self.methods:
            self._restorer(parse_method(m)[0])  # fail early, naming the missing weights

    def _restorer(self, model: str) -> Restorer | None:
        if model == "original":
            return None
        if model not in self._restorers:
            d = self.root / f"r2c-{model}"
            if not (d / "config.json").is_file():
                raise R2CError(f"no weights for model {model!r}: expected {d}/config.json")
            self._restorers[model] = Restorer.from_dir(d, device=self.device)
        return self._restorers[model]

    @cached_property
    def segmenter(self):
        from .segmentation import LungSegmenter

        return LungSegmenter.from_dir(None, device=self.device)

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
