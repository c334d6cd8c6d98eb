"""Lung segmentation: a U-Net with a DenseNet-121 encoder (segmentation-models-pytorch, no downloaded weights),
its post-processing, metrics, display renditions, training and evaluation.

Typical use::

    from r2c_core.segmentation import LungSegmenter, overlay
    seg = LungSegmenter.from_dir()          # weights/lung-unet
    mask = seg.mask(gray)                   # bool (H, W) at the input's size
    rgb = overlay(gray, mask)               # (H, W, 3) uint8 with the lung contour
"""

from .model import (
    DEFAULT_PREPROCESS,
    EXPECTED_PARAMETERS,
    build_unet,
    count_parameters,
    preprocess_batch,
)
from .postprocess import (
    contour,
    contour_gray,
    dice,
    fill_holes,
    iou,
    keep_largest_components,
    overlay,
    postprocess,
)
from .predict import LungSegmenter, default_weights_dir, lung_mask

__all__ = [
    "DEFAULT_PREPROCESS", "EXPECTED_PARAMETERS", "LungSegmenter", "build_unet", "contour", "contour_gray",
    "count_parameters", "default_weights_dir", "dice", "fill_holes", "iou", "keep_largest_components",
    "lung_mask", "overlay", "postprocess", "preprocess_batch",
]
