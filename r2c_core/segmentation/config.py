"""The lung U-Net's training configuration: defaults, merging, and refusal of unknown keys (like the R2C-GAN and
baseline configs, which are frozen dataclasses built by :func:`r2c_core.training.config._build`)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

from ..errors import R2CError
from ..runio import read_json_object
from .model import ARCH

DEFAULTS: dict[str, Any] = {
    "name": "lung-unet",
    "model": dict(ARCH),
    "preprocess": {"size": 256, "resize": "stretch", "norm": "zscore"},
    "threshold": 0.5,
    "data": {"manifest": None, "val_fraction": 0.15, "split_seed": 20261123, "model_mask_weight": 0.5,
             "val_mask_sources": ["human"], "limit": None},
    "train": {"epochs": 30, "batch_size": 8, "lr": 1e-3, "weight_decay": 1e-4, "warmup_epochs": 1, "min_lr_ratio": 0.02,
              "patience": 8, "threads": 2, "seed": 0, "max_minutes": None, "device": None, "amp": False, "bce_weight": 1.0,
              "dice_weight": 1.0, "cpu_amp": False, "init_from": None},
    "augment": {"rotate_deg": 10.0, "scale": [0.9, 1.1], "translate": 0.05, "brightness": 0.08, "contrast": [0.8, 1.2],
                "gamma": [0.8, 1.25]},
}


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``over`` wins)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def check_keys(over: Mapping[str, Any], base: Mapping[str, Any] = DEFAULTS, prefix: str = "") -> None:
    """Refuse keys :data:`DEFAULTS` does not have (a typo would otherwise be ignored silently), naming the known
    ones, as the R2C-GAN and baseline configs do; keys starting with ``_`` are comments."""
    unknown = sorted(k for k in over if k not in base and not str(k).startswith("_"))
    if unknown:
        raise R2CError(f"config: unknown key(s) {', '.join(prefix + k for k in unknown)} "
                       f"(known: {', '.join(prefix + k for k in base)})")
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), Mapping):
            check_keys(v, base[k], f"{prefix}{k}.")


def load_config(path: str | Path) -> dict[str, Any]:
    """A training config JSON merged over :data:`DEFAULTS` (unknown keys refused)."""
    over = {k: v for k, v in read_json_object(path).items() if not str(k).startswith("_")}
    check_keys(over)
    return merge(DEFAULTS, over)
