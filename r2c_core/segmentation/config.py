"""The lung U-Net's training configuration, declared as frozen dataclasses like the R2C-GAN and baseline configs:
unknown keys are refused with the known ones, every value is checked against its field's type, and keys starting
with ``_`` are comments. The trainer reads the plain nested dict :func:`load_config` returns
(``dataclasses.asdict`` of the checked config), which is also what run folders and checkpoints record.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from ..errors import R2CError
from ..runio import read_json_object
from .model import ARCH


@dataclass(frozen=True)
class SegModel:
    arch: str = ARCH["arch"]
    encoder: str = ARCH["encoder"]
    in_channels: int = ARCH["in_channels"]
    classes: int = ARCH["classes"]


@dataclass(frozen=True)
class SegPreprocess:
    size: int = 256
    resize: str = "stretch"
    norm: str = "zscore"


@dataclass(frozen=True)
class SegData:
    manifest: Optional[str] = None
    val_fraction: float = 0.15
    split_seed: int = 20261123
    model_mask_weight: float = 0.5
    val_mask_sources: tuple[str, ...] = ("human",)
    limit: Optional[int] = None


@dataclass(frozen=True)
class SegTrain:
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 1
    min_lr_ratio: float = 0.02
    patience: int = 8
    threads: int = 2
    seed: int = 0
    max_minutes: Optional[float] = None
    device: Optional[str] = None
    amp: bool = False
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    cpu_amp: bool = False
    init_from: Optional[str] = None


@dataclass(frozen=True)
class SegAugment:
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05
    brightness: float = 0.08
    contrast: tuple[float, float] = (0.8, 1.2)
    gamma: tuple[float, float] = (0.8, 1.25)


@dataclass(frozen=True)
class SegConfig:
    """Every setting of one lung U-Net run."""

    name: str = "lung-unet"
    model: SegModel = field(default_factory=SegModel)
    preprocess: SegPreprocess = field(default_factory=SegPreprocess)
    threshold: float = 0.5
    data: SegData = field(default_factory=SegData)
    train: SegTrain = field(default_factory=SegTrain)
    augment: SegAugment = field(default_factory=SegAugment)


def _check(value: Any, hint: Any, key: str) -> Any:
    """``value`` (from JSON) as the field's type, or a one-line error naming the key."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _check(value, next(a for a in args if a is not type(None)), key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise R2CError(f"config: {key} must be a list, got {value!r}")
        inner = args[0] if args else Any
        if len(args) == 2 and args[1] is not Ellipsis and len(value) != 2:
            raise R2CError(f"config: {key} must have 2 values, got {value!r}")
        return tuple(_check(v, inner, key) for v in value)
    if hint is bool:
        if not isinstance(value, bool):
            raise R2CError(f"config: {key} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise R2CError(f"config: {key} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise R2CError(f"config: {key} must be a number, got {value!r}")
        return float(value)
    if hint is str and not isinstance(value, str):
        raise R2CError(f"config: {key} must be a string, got {value!r}")
    return value


def build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """A frozen config dataclass from a (partial) mapping: unknown keys refused with the known ones."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(k for k in data if k not in names and not str(k).startswith("_"))
    if unknown:
        raise R2CError(f"config: unknown key(s) {', '.join(prefix + k for k in unknown)} "
                       f"(known: {', '.join(prefix + n for n in names)})")
    kwargs: dict[str, Any] = {}
    for k, v in data.items():
        if str(k).startswith("_"):
            continue
        hint = hints[k]
        if dataclasses.is_dataclass(hint):
            if not isinstance(v, Mapping):
                raise R2CError(f"config: {prefix}{k} must be an object")
            kwargs[k] = build(hint, v, f"{prefix}{k}.")
        else:
            kwargs[k] = _check(v, hint, prefix + k)
    return cls(**kwargs)


def _plain(cfg: SegConfig) -> dict[str, Any]:
    """The nested dict the trainer reads (tuples as lists, as JSON has them)."""
    def lists(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: lists(v) for k, v in x.items()}
        return list(x) if isinstance(x, tuple) else x

    return lists(dataclasses.asdict(cfg))


#: the defaults as the nested dict the trainer reads
DEFAULTS: dict[str, Any] = _plain(SegConfig())


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge (``over`` wins)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def checked(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A full config dict checked against :class:`SegConfig` and returned in its plain form."""
    return _plain(build(SegConfig, cfg))


def load_config(path: str | Path) -> dict[str, Any]:
    """A training config JSON over the defaults, checked (unknown keys and wrong types refused)."""
    over = {k: v for k, v in read_json_object(path).items() if not str(k).startswith("_")}
    return checked(merge(DEFAULTS, over))
