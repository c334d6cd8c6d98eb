"""Training configuration: a frozen dataclass loaded from JSON, with ``key=value`` overrides.

Unknown keys are an error (a typo must not silently fall back to a default). Loss weights live in the nested
``loss`` object (fields of :class:`r2c_core.losses.LossConfig`); override them as ``loss.lambda_class=0``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import R2CError
from ..losses import LossConfig
from ..models import get_spec
from ..runio import read_json_object

#: the reference resizes to 286 then crops 256; reduced-size runs keep that ratio
LOAD_RATIO = 286 / 256


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of one training run (defaults: the reference's, spec 1.12, except epochs)."""

    model: str = "op-q3"
    #: working size (inference and validation); the load size is ``round(size * 286 / 256)``
    size: int = 256
    #: training crop (0 = ``size``, the reference). Smaller = patch training at the inference scale: images are
    #: still loaded at ``round(size * 286 / 256)`` and a random ``crop`` x ``crop`` patch is taken (docs/TRAINING.md)
    crop: int = 0
    batch_size: int = 1
    epochs: int = 200
    #: epochs at the full rate before the linear decay to 0 starts
    epoch_decay: int = 100
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    #: Keras Adam epsilon (the reference's optimiser)
    adam_eps: float = 1e-7
    pool_size: int = 50
    #: bf16 autocast (CUDA only; ignored on CPU)
    amp: bool = True
    #: bf16 autocast on CPU too, when the processor has native bf16 (avx512_bf16 / AMX); float32 master weights,
    #: optimiser state and normalisation statistics. Falls back to float32 (with a log line) elsewhere
    cpu_amp: bool = False
    channels_last: bool = False
    #: on CUDA switch on the fast path whatever the fields above say: bf16 autocast, channels_last, fused Adam
    #: (each checked equal to eager in tests/test_fast.py and tests/test_training_fast.py)
    cuda_fast_path: bool = True
    #: Adam's fused kernel (CPU and CUDA); numerically equal to the plain one to float32 rounding
    fused_adam: bool = True
    #: torch.compile the four networks (mode below); pays on CUDA for long runs, costs minutes of compile on CPU
    compile: bool = False
    compile_mode: str = "max-autotune-no-cudagraphs"
    seed: int = 0
    device: str = "auto"
    #: stop after this many steps (0 = run the whole schedule); the schedule itself is unchanged
    max_steps: int = 0
    #: wall-clock safety limit in minutes (0 = none): stop after the step that passes it, save and export
    #: (the learning rate then has not reached 0; the summary records ``stopped_early``)
    max_minutes: float = 0.0
    #: torch CPU threads (0 = leave torch's default)
    threads: int = 0
    #: manifest CSV (null = the shared data folder, R2C_DATA) and the A/B split file (null = configs/splits/...)
    manifest: str | None = None
    split_file: str | None = None
    #: use at most this many images per domain (0 = all; for smoke runs), picked deterministically
    limit_per_domain: int = 0
    #: validate and export the generator every N epochs (0 = only at the end)
    export_every: int = 1
    #: save the full training state every N steps as well as at every epoch end (0 = epoch ends only)
    checkpoint_every: int = 0
    #: also save the training state when this many minutes of wall time passed since the last save (0 = off)
    checkpoint_minutes: float = 0.0
    #: also write a compact resumable state (bf16 weights and Adam moments, no pools) to this folder at every save,
    #: replaced in place, at most ``compact_state_mib`` MiB (moments are left out, discriminators' first, to fit)
    compact_state: str | None = None
    compact_state_mib: float = 20.0
    #: keep a copy of every exported generator in ``<out>/exports/step-NNNNNNN/`` (choose one on validation later)
    keep_exports: bool = False
    #: validation restoration metrics on this many validation images (0 = off): SSIM to the input and grey-level
    #: change after ``val_passes`` passes, and PSNR on a blurred + noisy copy (r2c_core.training.restval)
    val_restoration: int = 0
    val_passes: int = 3
    #: warm start: this many steps of identity pre-training of both generators (L1(G(x), x) on both domains)
    #: before the GAN schedule starts (0 = the reference's random initialisation)
    warm_start_steps: int = 0
    #: weight of the cross-entropy of both generators' class heads during the warm start (0 = identity only)
    warm_start_class: float = 0.0
    #: also train both discriminators during the warm start (LSGAN terms on the real images against the warming
    #: generators' detached outputs, an Adam of their own, discarded). Tried against op-q5's Q=5 discriminators, whose
    #: scores start in the hundreds to thousands: it shrinks them tenfold but does not keep the warm start's identity
    #: through the first GAN steps, so no recipe uses it (docs/TRAINING.md, "Discriminator warm-up for op-q5")
    warm_start_disc: bool = False
    #: initialise from earlier weights instead of at random (a fresh run only, never on resume): a training state
    #: or compact state (all four networks) or an exported generator (G_A2B only; the rest stays random)
    init_from: str | None = None
    #: weights dtype of the exported generator: "auto" = float16 for the deep cnn, float32 otherwise
    export_dtype: str = "auto"
    version: str = "dev"
    #: free text kept in the checkpoint (e.g. why the lr or batch differs from the paper)
    note: str = ""
    loss: LossConfig = field(default_factory=LossConfig)

    @property
    def load_size(self) -> int:
        return int(round(self.size * LOAD_RATIO))

    @property
    def train_crop(self) -> int:
        return self.crop or self.size

    def validate(self) -> "TrainConfig":
        get_spec_checked(self.model)
        checks = [
            (self.size >= 16 and self.size % 4 == 0, f"size must be a multiple of 4 and >= 16, got {self.size}"),
            (self.crop == 0 or (self.crop >= 16 and self.crop % 4 == 0 and self.crop <= self.load_size), f"crop must be 0 or a multiple of 4 in [16, load size {self.load_size}], got {self.crop}"),
            (self.warm_start_steps >= 0 and self.val_restoration >= 0 and self.val_passes >= 1 and self.checkpoint_minutes >= 0, "warm_start_steps, val_restoration, checkpoint_minutes must be >= 0 and val_passes >= 1"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (0 <= self.epoch_decay < self.epochs, f"epoch_decay must be in [0, epochs), got {self.epoch_decay} (epochs {self.epochs})"),
            (self.lr > 0, f"lr must be > 0, got {self.lr}"),
            (self.pool_size >= 0, f"pool_size must be >= 0, got {self.pool_size}"),
            (self.max_steps >= 0, f"max_steps must be >= 0, got {self.max_steps}"),
            (self.max_minutes >= 0, f"max_minutes must be >= 0, got {self.max_minutes}"),
            (self.export_dtype in ("auto", "float32", "float16", "bfloat16"), f"export_dtype must be auto/float32/float16/bfloat16, got {self.export_dtype!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise R2CError(f"config: {msg}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def get_spec_checked(name: str) -> None:
    try:
        get_spec(name)
    except KeyError as exc:
        raise R2CError(f"config: {exc.args[0]}") from None


def _coerce(value: Any, default: Any, key: str) -> Any:
    """Convert ``value`` (JSON value or CLI string) to the type of the field's default."""
    if isinstance(value, str) and not isinstance(default, str) and default is not None:
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise R2CError(f"config: {key}={value!r} is not a valid value") from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise R2CError(f"config: {key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise R2CError(f"config: {key} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise R2CError(f"config: {key} must be a number, got {value!r}")
        return float(value)
    if default is None or isinstance(default, str):
        if default is None and value in ("null", ""):
            return None
        if value is not None and not isinstance(value, str):
            raise R2CError(f"config: {key} must be a string, got {value!r}")
        return value
    return value


def _build(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    names = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise R2CError(f"config: unknown key(s) {', '.join(prefix + k for k in unknown)} (known: {', '.join(prefix + n for n in names)})")
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for k, v in data.items():
        d = getattr(defaults, k)
        if dataclasses.is_dataclass(d):
            if not isinstance(v, Mapping):
                raise R2CError(f"config: {prefix}{k} must be an object")
            kwargs[k] = _build(type(d), v, prefix=f"{prefix}{k}.")
        else:
            kwargs[k] = _coerce(v, d, prefix + k)
    return cls(**kwargs)


def _nested_set(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = data
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
        if not isinstance(cur, dict):
            raise R2CError(f"config: {key}: {p} is not an object")
    cur[parts[-1]] = value


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["a=1", "loss.lambda_class=0"]`` -> nested dict of raw strings (typed later against the fields)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise R2CError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        _nested_set(out, k.strip(), v.strip())
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def config_from_dict(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    merged = _merge(dict(data), overrides or {})
    merged.pop("_comment", None)
    return _build(TrainConfig, merged).validate()


def load_config(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Config from a JSON file (``None`` = defaults) with overrides; keys starting with ``_`` are comments."""
    data: dict[str, Any] = {}
    if path is not None:
        data = {k: v for k, v in read_json_object(path).items() if not k.startswith("_")}
    return config_from_dict(data, overrides)
