"""The demo's work, free of Streamlit: restore an X-ray, classify it, segment the lungs of the original and the
restored image, and time each step (``bench/bench_demo.py`` uses the same function).

Steps and their timing keys: ``restore`` (``passes`` generator passes at the model's working size; the COVID
probability comes from the first pass), ``segment`` (the lung U-Net on the original and the restored image as
one batch of two; the restored one only when the original's mask is known from an earlier run), ``overlay`` (the lung contour drawn on each, RGB).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from .inference import Restorer

Progress = Callable[[str, float], None]


@dataclass
class DemoResult:
    """Everything the demo page shows, plus how long each step took (seconds)."""

    original: np.ndarray
    restored: np.ndarray
    prob_covid: float
    model: str
    passes: int
    overlay_original: np.ndarray | None = None
    overlay_restored: np.ndarray | None = None
    mask_original: np.ndarray | None = None
    lung_fraction: tuple[float, float] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return float(sum(self.timings.values()))


def downsized(result: DemoResult, max_side: int = 1460) -> DemoResult:
    """The result with every image shrunk to at most ``max_side`` pixels a side (what the page can show anyway),
    and the original's lung mask dropped, so that a session keeps kilobytes, not full-size arrays (issue 16)."""
    import dataclasses

    import torch
    import torch.nn.functional as F

    def shrink(a: np.ndarray | None) -> np.ndarray | None:
        if a is None or max(a.shape[:2]) <= max_side:
            return a
        h, w = a.shape[:2]
        s = max_side / max(h, w)
        t = torch.from_numpy(np.ascontiguousarray(a)).float()
        t = t[None, None] if a.ndim == 2 else t.permute(2, 0, 1)[None]
        t = F.interpolate(t, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear", antialias=True, align_corners=False)
        out = t[0, 0] if a.ndim == 2 else t[0].permute(1, 2, 0)
        return out.round().clamp(0, 255).to(torch.uint8).numpy()

    return dataclasses.replace(result, original=shrink(result.original), restored=shrink(result.restored),
                               overlay_original=shrink(result.overlay_original), overlay_restored=shrink(result.overlay_restored),
                               mask_original=None)


def display_png(image: np.ndarray) -> bytes:
    """Lossless PNG (gray or RGB) with light compression: what the page sends to the browser. About 3x faster
    to encode than Pillow's default level for a few percent more bytes, which do not matter on the app's links."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def run_demo(gray: np.ndarray, restorer: Restorer, segmenter: Any | None, passes: int = 3,
             progress: Progress | None = None, original_mask: np.ndarray | None = None) -> DemoResult:
    """Restore ``gray`` (H, W uint8) ``passes`` times and segment the original and the restored image.

    ``original_mask``: the original's lung mask from an earlier run on the same image (it does not depend on
    the model or the passes), so only the restored image is segmented."""
    tell = progress or (lambda _msg, _frac: None)
    timings: dict[str, float] = {}
    tell(f"Restoring ({passes} pass{'es' if passes != 1 else ''})…", 0.05)
    t0 = time.perf_counter()
    res = restorer.restore(gray, passes=passes)
    timings["restore"] = time.perf_counter() - t0
    result = DemoResult(original=gray, restored=res.image, prob_covid=res.prob_covid, model=restorer.model_name,
                        passes=passes, timings=timings)
    if segmenter is None:
        tell("Done", 1.0)
        return result
    from r2c_core.segmentation import overlay

    tell("Segmenting the lungs…", 0.6)
    t0 = time.perf_counter()
    if original_mask is not None and original_mask.shape == gray.shape:
        masks = [original_mask, segmenter.masks([res.image])[0]]
    else:
        masks = segmenter.masks([gray, res.image])
    timings["segment"] = time.perf_counter() - t0
    result.mask_original = masks[0]
    t0 = time.perf_counter()
    result.overlay_original = overlay(gray, masks[0])
    result.overlay_restored = overlay(res.image, masks[1])
    timings["overlay"] = time.perf_counter() - t0
    result.lung_fraction = (float(masks[0].mean()), float(masks[1].mean()))
    tell("Done", 1.0)
    return result
