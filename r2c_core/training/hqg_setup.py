"""HQG-Net's training config and data (:mod:`r2c_core.training.hqg` trains it).

:class:`HQGTrainConfig` is one run's settings (JSON keys; unknown keys refused); :class:`HQGData` the unpaired
train batches of the quality split and the candidates for the inference reference image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import R2CError
from ..hqg_losses import HQGLossWeights
from .config import _build, _merge
from .loader import DomainCache, UnpairedBatches, decode_resized

STATE_KIND = "hqg-training-state"


@dataclass(frozen=True)
class HQGTrainConfig:
    """One HQG-Net run (JSON keys; unknown keys refused). Defaults: the public config's, at 256 px."""

    size: int = 256
    batch_size: int = 1
    epochs: int = 300
    lr: float = 1e-4
    beta1: float = 0.9
    beta2: float = 0.999
    #: epoch of the GAN phase from which the rate is halved (the code's MultiStepLR milestone 15); 0 = never
    lr_halve_epoch: int = 15
    swap_prob: float = 0.2
    #: autoencoder pretraining steps before the GAN (the code pretrains it for 300 epochs, separately)
    ae_steps: int = 0
    weights: HQGLossWeights = field(default_factory=HQGLossWeights)
    adain_shortcut: bool = False
    #: train-split high-quality images the reference is chosen among (0 = all)
    reference_limit: int = 64
    #: bi-level variant (``weights.task`` > 0): the classifier's learning rate (0 = ``lr``) and its warm-up steps
    task_lr: float = 0.0
    task_warmup_steps: int = 0
    #: an HQG-Net state (run or state folder) every network starts from; the step count starts at 0
    init_from: str = ""
    seed: int = 0
    threads: int = 0
    device: str = ""
    cpu_amp: bool = True
    manifest: str = ""
    split_file: str = ""
    limit_per_domain: int = 0
    #: validation at every export, for choosing on validation: restoration metrics on ``val_restoration`` validation
    #: images after ``val_passes`` passes (0 = none) and, with the bi-level classifier, its AUC on every one
    val_restoration: int = 24
    val_passes: int = 1
    #: dtype of the exported networks (float16 halves the 146 MB of the float32 generator)
    export_dtype: str = "float16"
    max_steps: int = 0
    max_minutes: float = 0.0
    checkpoint_every: int = 0
    checkpoint_minutes: float = 10.0
    export_every: int = 1
    version: str = "v1-cpu"

    @property
    def load_size(self) -> int:
        """The whole frame resized to the working size (flips only, no zoomed crop): the scale of the reference
        candidates, of validation and of inference (the code: centre crop + flip at its data's own size)."""
        return self.size

    def validate(self) -> "HQGTrainConfig":
        if self.size % 64:
            raise R2CError(f"config: size must be a multiple of 64 for HQG-Net (got {self.size})")
        if self.ae_steps and self.size < 128:  # the autoencoder's decoder reflection-pads a 1 x 1 map at 64 px
            raise R2CError(f"config: the style-autoencoder pretraining (ae_steps) needs size at least 128 (got {self.size})")
        if self.batch_size < 1 or self.epochs < 1 or not 0.0 <= self.swap_prob <= 1.0:
            raise R2CError("config: batch_size and epochs must be at least 1, swap_prob in [0, 1]")
        if self.weights.task < 0 or self.task_lr < 0 or self.task_warmup_steps < 0:
            raise R2CError("config: weights.task, task_lr and task_warmup_steps must not be negative")
        if self.export_dtype not in ("float16", "float32"):
            raise R2CError(f"config: export_dtype must be float16 or float32 (got {self.export_dtype!r})")
        if self.task_warmup_steps and not self.bilevel:
            raise R2CError("config: task_warmup_steps needs the bi-level variant (weights.task > 0)")
        return self

    @property
    def bilevel(self) -> bool:
        """The bi-level variant (HQG+BLO) with its downstream COVID classifier."""
        return self.weights.task > 0

    @property
    def gan_start(self) -> int:
        """The first GAN step (after the autoencoder pretraining and the classifier warm-up)."""
        return self.ae_steps + self.task_warmup_steps

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def hqg_config_from_dict(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> HQGTrainConfig:
    merged = _merge({k: v for k, v in data.items() if not str(k).startswith("_")}, overrides or {})
    return _build(HQGTrainConfig, merged).validate()


def load_hqg_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> HQGTrainConfig:
    """Config from a JSON file (``None`` = defaults) with overrides; keys starting with ``_`` are comments."""
    from ..runio import read_json_object

    return hqg_config_from_dict(read_json_object(path) if path else {}, overrides)


def state_hqg_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> HQGTrainConfig:
    """The config stored in an HQG-Net state folder, with overrides (e.g. a larger ``max_steps``)."""
    from ..runio import state_training_dict

    return hqg_config_from_dict(state_training_dict(path, STATE_KIND, "an HQG-Net training state"), overrides)


@dataclass
class HQGData:
    """Train batches (A and B at the load size), the reference candidates (train B at the working size) and the
    validation images (both domains, working size; ``None`` = no validation)."""

    batches: UnpairedBatches
    references: list[tuple[str, torch.Tensor]]
    split: dict[str, Any]
    val: Any = None

    @classmethod
    def from_config(cls, cfg: HQGTrainConfig, progress: bool = True) -> "HQGData":
        from ..data import domain_frame, manifest_and_split, split_info
        from .r2c_data import ValData, _limit

        manifest, split, split_path = manifest_and_split(cfg.manifest or None, cfg.split_file or None)
        frames = {d: _limit(domain_frame(manifest, split, "train", d), cfg.limit_per_domain, cfg.seed) for d in ("A", "B")}
        a = DomainCache.from_frame(frames["A"], cfg.load_size, "train A", progress)
        b = DomainCache.from_frame(frames["B"], cfg.load_size, "train B", progress)
        batches = UnpairedBatches(a, b, size=cfg.size, batch_size=cfg.batch_size, seed=cfg.seed)
        refs = _limit(frames["B"], cfg.reference_limit, cfg.seed)
        imgs = decode_resized(list(refs["path"]), cfg.size, "references", progress)
        references = [(str(i), (img.float() / 255.0)[None].expand(3, -1, -1).contiguous()) for i, img in zip(refs["id"], imgs)]
        validates = cfg.val_restoration > 0 or cfg.bilevel
        val = ValData.from_split(manifest, split, cfg.size, cfg.limit_per_domain, cfg.seed, progress) if validates else None
        info = split_info(split_path)
        info["used"] = {"train_A": len(a), "train_B": len(b), "reference_candidates": len(references),
                        "val": len(val.ids) if val is not None else 0}
        return cls(batches, references, info, val)


__all__ = ["HQGData", "HQGTrainConfig", "STATE_KIND", "hqg_config_from_dict", "load_hqg_config", "state_hqg_config"]
