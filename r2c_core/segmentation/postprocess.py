"""Mask post-processing, overlap metrics and display renditions of a lung mask.

* :func:`postprocess`: threshold, keep the two largest connected components (the two lungs), fill holes.
* :func:`dice`, :func:`iou`: overlap of two binary masks (both empty counts as a perfect 1.0).
* :func:`overlay`: RGB display image with a coloured lung contour; :func:`contour_gray`: a gray rendition with a
  white contour edged in black, for the blinded reader study's gray PNGs.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Components smaller than this fraction of the largest kept one are dropped (noise), even among the top two.
MIN_COMPONENT_FRACTION = 0.1

_STRUCT = ndimage.generate_binary_structure(2, 1)


def keep_largest_components(mask: np.ndarray, n: int = 2, min_fraction: float = MIN_COMPONENT_FRACTION) -> np.ndarray:
    """Keep the ``n`` largest 4-connected components of a binary mask (and drop tiny ones)."""
    m = np.asarray(mask, dtype=bool)
    labels, count = ndimage.label(m, structure=_STRUCT)
    if count == 0:
        return m.copy()
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1][:n]
    largest = sizes[order[0]]
    keep = [i + 1 for i in order if sizes[i] >= min_fraction * largest]
    return np.isin(labels, keep)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes inside each component."""
    return ndimage.binary_fill_holes(np.asarray(mask, dtype=bool))


def postprocess(prob: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Probability map (H, W) -> bool lung mask: threshold, two largest components, holes filled."""
    m = np.asarray(prob) >= threshold
    return fill_holes(keep_largest_components(m))


def _as_bool_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.shape != y.shape:
        raise ValueError(f"masks differ in shape: {x.shape} vs {y.shape}")
    return x, y


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A∩B| / (|A|+|B|); 1.0 when both masks are empty."""
    x, y = _as_bool_pair(a, b)
    total = int(x.sum()) + int(y.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(x, y).sum()) / total


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union |A∩B| / |A∪B|; 1.0 when both masks are empty."""
    x, y = _as_bool_pair(a, b)
    union = int(np.logical_or(x, y).sum())
    return 1.0 if union == 0 else int(np.logical_and(x, y).sum()) / union


def contour(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The inner boundary of a mask, ``width`` pixels thick."""
    m = np.asarray(mask, dtype=bool)
    eroded = ndimage.binary_erosion(m, structure=_STRUCT, iterations=max(1, width), border_value=0)
    return m & ~eroded


def _line_width(shape: tuple[int, ...]) -> int:
    return max(1, round(max(shape[:2]) / 256))


def overlay(gray: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (0, 220, 90), alpha: float = 0.18) -> np.ndarray:
    """RGB uint8 (H, W, 3): the X-ray with the lung area lightly tinted and its contour drawn in ``color``."""
    g = np.asarray(gray, dtype=np.uint8)
    m = np.asarray(mask, dtype=bool)
    if g.shape != m.shape:
        raise ValueError(f"image {g.shape} and mask {m.shape} differ in shape")
    rgb = np.repeat(g[..., None], 3, axis=2).astype(np.float32)
    col = np.asarray(color, dtype=np.float32)
    rgb[m] = (1 - alpha) * rgb[m] + alpha * col
    rgb[contour(m, _line_width(g.shape))] = col
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def contour_gray(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Gray uint8 (H, W): the X-ray with the lung contour in white, edged by a thin dark line on both sides."""
    g = np.asarray(gray, dtype=np.uint8).copy()
    m = np.asarray(mask, dtype=bool)
    if g.shape != m.shape:
        raise ValueError(f"image {g.shape} and mask {m.shape} differ in shape")
    w = _line_width(g.shape)
    line = contour(m, w)
    edge = ndimage.binary_dilation(line, structure=np.ones((3, 3), bool), iterations=max(1, w // 2 + 1)) & ~line
    g[edge] = 0
    g[line] = 255
    return g
