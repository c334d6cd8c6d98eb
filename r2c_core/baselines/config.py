"""Which baselines exist, how they are built, and their frozen run configuration."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from ..errors import R2CError
from ..models import CLASS_NAMES
from ..runio import (
    read_json_object,
)
from ..training.config import LOAD_RATIO, _build, _merge

BASELINE_NAMES = ("efficientnet_b4", "efficientnet_b5", "resnet50", "inception_v3")
BASELINE_KIND = "baseline-classifier"
STATE_KIND = "baseline-training-state"
#: smallest input each network accepts (Inception-v3's stem has unpadded stride-2 convolutions)
MIN_SIZE = {"inception_v3": 76}
LOG_COLUMNS = ("step", "epoch", "lr", "loss", "batch_accuracy", "seconds")
SELECT_METRICS = ("auc", "f1", "loss")


# ------------------------------------------------------------------------------------------------ models
def build_baseline(name: str, num_classes: int = len(CLASS_NAMES)) -> nn.Module:
    """A timm baseline with random weights (``pretrained=False``: nothing is downloaded)."""
    import timm

    if name not in BASELINE_NAMES:
        raise R2CError(f"unknown baseline {name!r}; known: {', '.join(BASELINE_NAMES)}")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ------------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class BaselineConfig:
    """Every setting of one baseline training run (JSON keys; ``_``-prefixed keys are comments)."""

    model: str = "resnet50"
    #: working (crop) size; the load size is ``round(size * 286 / 256)`` as for R2C-GAN
    size: int = 256
    batch_size: int = 32
    epochs: int = 60
    #: epochs at the full rate before the linear decay to 0
    epoch_decay: int = 30
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    #: class imbalance handling: "loss" (weighted cross-entropy), "sampler" (balanced draws) or "none"
    balance: str = "loss"
    #: validation metric that picks the exported epoch: auc, f1 (maximised) or loss (minimised)
    select_by: str = "auc"
    amp: bool = True
    #: bf16 autocast on CPU too where the processor has native bf16 (r2c_core.precision); float32 elsewhere
    cpu_amp: bool = False
    channels_last: bool = True
    compile: bool = False
    seed: int = 0
    device: str = "auto"
    max_steps: int = 0
    max_minutes: float = 0.0
    threads: int = 0
    manifest: str | None = None
    split_file: str | None = None
    #: use at most this many train / val images (0 = all), a seeded sample stratified by label
    limit_train: int = 0
    limit_val: int = 0
    #: also save the training state every N steps (0 = epoch ends only)
    checkpoint_every: int = 0
    export_dtype: str = "float32"
    version: str = "dev"
    note: str = ""

    @property
    def load_size(self) -> int:
        return int(round(self.size * LOAD_RATIO))

    def validate(self) -> "BaselineConfig":
        min_size = MIN_SIZE.get(self.model, 32)
        checks = [
            (self.model in BASELINE_NAMES, f"model must be one of {', '.join(BASELINE_NAMES)}, got {self.model!r}"),
            (self.size >= min_size and self.size % 4 == 0, f"size must be a multiple of 4 and >= {min_size} for {self.model}, got {self.size}"),
            (self.batch_size >= 2, f"batch_size must be >= 2 (batch norm), got {self.batch_size}"),
            (self.epochs >= 1 and 0 <= self.epoch_decay < self.epochs, f"need epochs >= 1 and 0 <= epoch_decay < epochs, got {self.epochs}/{self.epoch_decay}"),
            (self.lr > 0 and self.weight_decay >= 0, f"lr must be > 0 and weight_decay >= 0, got {self.lr}/{self.weight_decay}"),
            (self.balance in ("loss", "sampler", "none"), f"balance must be loss, sampler or none, got {self.balance!r}"),
            (self.select_by in SELECT_METRICS, f"select_by must be one of {', '.join(SELECT_METRICS)}, got {self.select_by!r}"),
            (self.max_steps >= 0 and self.max_minutes >= 0, "max_steps and max_minutes must be >= 0"),
            (self.limit_train >= 0 and self.limit_val >= 0, "limit_train and limit_val must be >= 0"),
            (self.export_dtype in ("float32", "float16", "bfloat16"), f"export_dtype must be float32/float16/bfloat16, got {self.export_dtype!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise R2CError(f"config: {msg}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def baseline_config_from_dict(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> BaselineConfig:
    merged = {k: v for k, v in _merge(dict(data), overrides or {}).items() if not str(k).startswith("_")}
    return _build(BaselineConfig, merged).validate()


def load_baseline_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> BaselineConfig:
    """Config from a JSON file (``None`` = defaults) with ``key=value`` overrides; unknown keys are an error."""
    data = read_json_object(path) if path is not None else {}
    return baseline_config_from_dict(data, overrides)


# -------------------------------------------------------------------------------------------------- data
