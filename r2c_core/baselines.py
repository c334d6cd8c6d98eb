"""Supervised baseline classifiers (the paper's comparison models) and the compact training pack.

Baselines: EfficientNet-B4, EfficientNet-B5, ResNet-50 and Inception-v3, the timm definitions built with
``timm.create_model(name, pretrained=False, num_classes=2)``. No pretrained weights can be downloaded here, so every
baseline is **trained from scratch** (recorded as ``"pretrained": false`` in its checkpoint). They are trained on
the same data as R2C-GAN: the ``train`` rows of the A/B split file (both quality domains), the split file's ``val``
rows for choosing the epoch, and the manifest's ``test`` rows only for the final report.

Input and augmentation are R2C-GAN's (``r2c_core.training.loader``): images decoded once to uint8 at the load size
``round(size * 286 / 256)``, a random horizontal flip and a random ``size`` crop per image, ``x / 127.5 - 1``, gray
replicated to 3 channels; validation and classification use the test transform (resize straight to ``size``).
Class imbalance: class-weighted cross-entropy (``balance="loss"``, weights ``N / (2 n_c)``), a class-balanced
sampler (``"sampler"``), or neither. Adam; the rate is constant, then decays linearly to 0 (the R2C-GAN schedule).

Run folder (like the R2C-GAN trainer)::

    <out>/train_log.csv    step, epoch, lr, loss, batch accuracy, seconds
    <out>/val_log.jsonl    validation metrics at every epoch end
    <out>/state/           model + Adam state + step and best-so-far (resume with ``resume=``)
    <out>/classifier/      the exported classifier of the best validation epoch (kind "baseline-classifier")
    <out>/summary.json     steps, timings, images per second, the chosen epoch

Every random draw comes from a generator seeded by ``(seed, epoch)`` or ``(seed, step)``, so a resumed run sees
the same batches as an uninterrupted one.

The training pack (:func:`write_pack`, :func:`load_pack`, :func:`unpack_to_folder`) holds every image of the split
file resized to ``size`` x ``size`` as PNG bytes plus the manifest rows, ids, labels, splits and domains in one
``.npz``, small enough (< 64 MiB) to travel to a GPU machine, where ``unpack_to_folder`` recreates a data folder
(``MANIFEST.csv`` + ``images/``) that every command reads through ``R2C_DATA``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoints import load_checkpoint, load_model, load_state_into, save_checkpoint
from .data import (
    SPLIT_FILE,
    file_sha256,
    label_index,
    load_manifest,
    load_split,
    split_info,
)
from .errors import CheckpointError, ManifestError, R2CError
from .imageio import png_bytes, to_gray_uint8
from .inference import NORMALISATION, pick_device, to_model_tensor
from .metrics import nan_to_none, point_metrics
from .models import CLASS_NAMES
from .precision import autocast, use_bf16
from .runio import (
    read_json_object,
    resolve_state_dir,
    state_training_dict,
)
from .training.config import LOAD_RATIO, _build, _merge
from .training.loader import DomainCache, decode_resized, seeded_generator, to_input
from .training.loop import LoopResult, LoopSettings, RunLoop
from .training.schedule import linear_decay_lr

log = logging.getLogger(__name__)

BASELINE_NAMES = ("efficientnet_b4", "efficientnet_b5", "resnet50", "inception_v3")
BASELINE_KIND = "baseline-classifier"
STATE_KIND = "baseline-training-state"
#: smallest input each network accepts (Inception-v3's stem has unpadded stride-2 convolutions)
MIN_SIZE = {"inception_v3": 76}
LOG_COLUMNS = ("step", "epoch", "lr", "loss", "batch_accuracy", "seconds")
SELECT_METRICS = ("auc", "f1", "loss")
PACK_FORMAT = "r2c-pack/1"


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
def limit_rows(rows: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """At most ``n`` rows (0 = all): a seeded sample stratified by label (every present label keeps >= 1 row)."""
    if n <= 0 or len(rows) <= n:
        return rows.sort_values("id", kind="mergesort").reset_index(drop=True)
    parts = []
    for _, g in rows.groupby("label", sort=True):
        k = min(len(g), max(1, int(round(n * len(g) / len(rows)))))
        parts.append(g.sample(n=k, random_state=seed))
    return pd.concat(parts).sort_values("id", kind="mergesort").reset_index(drop=True)


def split_rows(manifest: pd.DataFrame, split: pd.DataFrame, which: str) -> pd.DataFrame:
    """Manifest rows of the split file's ``which`` split (train/val/test), with the split file's domain."""
    sel = split.loc[split["split"] == which, ["id", "domain"]]
    rows = manifest.merge(sel, on="id", how="inner")
    if len(rows) != len(sel):
        raise ManifestError(f"the split file names {len(sel) - len(rows)} {which} id(s) that are not in the manifest")
    return rows.sort_values("id", kind="mergesort").reset_index(drop=True)


@dataclass
class SupervisedData:
    """Decoded train images (load size) and validation images (working size), labels 0 control / 1 covid."""

    train: DomainCache
    val: DomainCache | None
    split: dict[str, Any]

    @classmethod
    def from_config(cls, cfg: BaselineConfig, progress: bool = True) -> "SupervisedData":
        manifest = load_manifest(cfg.manifest)
        split_path = Path(cfg.split_file) if cfg.split_file else SPLIT_FILE
        split = load_split(split_path)
        train_rows = limit_rows(split_rows(manifest, split, "train"), cfg.limit_train, cfg.seed)
        val_rows = limit_rows(split_rows(manifest, split, "val"), cfg.limit_val, cfg.seed)
        train = DomainCache.from_frame(train_rows, cfg.load_size, "train", progress)
        val = DomainCache.from_frame(val_rows, cfg.size, "val", progress) if len(val_rows) else None
        info = split_info(split_path)
        info["used"] = {"train": len(train_rows), "val": len(val_rows), "train_covid": int(train.labels.sum())}
        return cls(train, val, info)


def class_weights(labels: torch.Tensor, num_classes: int = len(CLASS_NAMES)) -> torch.Tensor:
    """``N / (num_classes * n_c)`` per class (1.0 for an absent class)."""
    counts = torch.bincount(labels.long(), minlength=num_classes).float()
    w = labels.numel() / (num_classes * counts.clamp(min=1))
    return torch.where(counts > 0, w, torch.ones_like(w))


def augment(images: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """R2C-GAN's training augmentation on (N, H, W) uint8: random horizontal flip, random ``size`` crop."""
    n, h, w = images.shape
    flips = torch.rand(n, generator=g) < 0.5
    ys = torch.randint(0, h - size + 1, (n,), generator=g)
    xs = torch.randint(0, w - size + 1, (n,), generator=g)
    out = torch.empty((n, size, size), dtype=images.dtype)
    for i in range(n):
        im = images[i].flip(-1) if flips[i] else images[i]
        out[i] = im[ys[i] : ys[i] + size, xs[i] : xs[i] + size]
    return out


class SupervisedBatches:
    """``(x, y)`` for any global step: a pure function of the seed and the step (see module doc)."""

    def __init__(self, data: DomainCache, *, size: int, batch_size: int, seed: int, balance: str) -> None:
        self.data, self.size, self.batch_size, self.seed, self.balance = data, size, batch_size, seed, balance
        self.steps_per_epoch = len(data) // batch_size
        if self.steps_per_epoch < 1:
            raise ManifestError(f"fewer training images ({len(data)}) than one batch ({batch_size})")
        self._epoch = -1
        self._order = torch.empty(0, dtype=torch.long)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        g = seeded_generator(self.seed, "order", epoch)
        need = self.steps_per_epoch * self.batch_size
        if self.balance == "sampler":
            w = class_weights(self.data.labels)[self.data.labels.long()]
            return torch.multinomial(w, need, replacement=True, generator=g)
        return torch.randperm(len(self.data), generator=g)[:need]

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._order, self._epoch = self.epoch_order(epoch), epoch
        idx = self._order[k * self.batch_size : (k + 1) * self.batch_size]
        g = seeded_generator(self.seed, "augment", step)
        return to_input(augment(self.data.images[idx], self.size, g)), self.data.labels[idx].long()


# ----------------------------------------------------------------------------------------------- trainer
def _better(value: float | None, best: float | None, metric: str) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    if best is None:
        return True
    return value < best if metric == "loss" else value > best


class BaselineTrainer:
    """One supervised baseline run; ``train_step(batch)`` is the unit of work."""

    def __init__(self, cfg: BaselineConfig, out_dir: str | Path, data: SupervisedData, *, progress: bool = True) -> None:
        self.cfg, self.out, self.data, self.progress = cfg, Path(out_dir), data, progress
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device)
        self.amp = use_bf16(self.device, bool(cfg.amp), bool(cfg.cpu_amp))
        self.channels_last = bool(cfg.channels_last) and self.device.type == "cuda"
        torch.manual_seed(cfg.seed)
        self.model = build_baseline(cfg.model).to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.net: nn.Module = torch.compile(self.model) if cfg.compile else self.model
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
        self.batches = SupervisedBatches(data.train, size=cfg.size, batch_size=cfg.batch_size, seed=cfg.seed, balance=cfg.balance)
        self.loss_weight = class_weights(data.train.labels).to(self.device) if cfg.balance == "loss" else None
        self.steps_per_epoch = self.batches.steps_per_epoch
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.step = 0
        self.best: dict[str, Any] = {"value": None, "epoch": None, "step": None, "metrics": {}}
        self.last_val: dict[str, Any] = {}

    def end_step(self) -> int:
        return min(self.total_steps, self.cfg.max_steps) if self.cfg.max_steps else self.total_steps

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp)

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        x, y = self._prepare(batch[0]), batch[1].to(self.device)
        lr = linear_decay_lr(self.step, self.cfg.lr, self.total_steps, self.cfg.epoch_decay * self.steps_per_epoch)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.net.train()
        self.opt.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.net(x)
        loss = F.cross_entropy(logits.float(), y, weight=self.loss_weight)
        loss.backward()
        self.opt.step()
        acc = (logits.detach().argmax(1) == y).float().mean()
        return {"lr": lr, "loss": float(loss.detach()), "batch_accuracy": float(acc)}

    def run(self) -> dict[str, Any]:
        """Train from ``self.step`` to the end (or ``max_steps`` / ``max_minutes``), validating every epoch
        (:class:`~r2c_core.training.loop.RunLoop`)."""
        return RunLoop(self).run()

    # -------------------------------------------------------------------------------- the run loop's hooks
    def loop_settings(self) -> LoopSettings:
        return LoopSettings(end=self.end_step(), desc=f"train {self.cfg.model}", log_columns=LOG_COLUMNS,
                            max_minutes=self.cfg.max_minutes, checkpoint_every=self.cfg.checkpoint_every,
                            progress=self.progress)

    def batch_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batches.batch(step)

    def postfix(self, terms: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{terms['loss']:.3f}", "lr": f"{terms['lr']:.2e}"}

    def on_epoch_end(self, last: bool) -> None:
        self.validate_and_select()

    def finish(self, result: LoopResult) -> dict[str, Any]:
        return self._finish(result.seconds, result.steps_run, result.stopped_early)

    def _finish(self, elapsed: float, steps_done: int, stopped_early: bool) -> dict[str, Any]:
        if self.step % self.steps_per_epoch != 0 or not self.last_val:
            self.validate_and_select()
        if self.best["step"] is None:  # no validation data: export the last weights
            self.export()
        self.save_state()
        summary = {
            "model": self.cfg.model, "step": self.step, "total_steps": self.total_steps, "finished": self.step >= self.total_steps,
            "stopped_early": stopped_early, "steps_per_epoch": self.steps_per_epoch, "steps_run": steps_done, "batch_size": self.cfg.batch_size,
            "seconds": round(elapsed, 2), "images_per_second": round(steps_done * self.cfg.batch_size / elapsed, 2) if elapsed > 0 else None,
            "device": str(self.device), "best": self.best, "last_validation": self.last_val,
            "classifier": str(self.out / "classifier"), "state": str(self.out / "state"),
        }
        summary = nan_to_none(summary)
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        return summary

    # ----------------------------------------------------------------------------- validate / select / export
    @torch.no_grad()
    def predict(self, images_u8: torch.Tensor, batch_size: int = 64) -> np.ndarray:
        """P(covid) of (N, size, size) uint8 images (eval mode)."""
        self.net.eval()
        probs = []
        for s in range(0, len(images_u8), batch_size):
            with self._autocast():
                logits = self.net(self._prepare(to_input(images_u8[s : s + batch_size])))
            probs.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
        return torch.cat(probs).numpy() if probs else np.zeros(0)

    def validate_and_select(self) -> dict[str, Any]:
        """Validation metrics now; export the classifier when ``select_by`` improves on the best so far."""
        val = self.data.val
        if val is None:
            self.last_val = {}
            return {}
        p = self.predict(val.images)
        y = val.labels.numpy()
        eps = 1e-7
        loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
        metrics = {**point_metrics(y, p), "loss": loss}
        epoch = self.step / self.steps_per_epoch
        self.last_val = nan_to_none({"step": self.step, "epoch": epoch, "n": int(len(p)), **metrics})
        with open(self.out / "val_log.jsonl", "a") as fh:
            fh.write(json.dumps(self.last_val) + "\n")
        value = metrics[self.cfg.select_by]
        if _better(value, self.best["value"], self.cfg.select_by):
            self.best = {"value": value, "epoch": epoch, "step": self.step, "metrics": self.last_val}
            self.export()
        log.info("validation at step %d: %s", self.step, self.last_val)
        return self.last_val

    def export(self, out_dir: str | Path | None = None) -> Path:
        dtype = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}[self.cfg.export_dtype]
        training = {**self.cfg.to_dict(), "load_size": self.cfg.load_size, "step": self.step, "epoch": self.step / self.steps_per_epoch,
                    "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps, "device": str(self.device)}
        cfg = {
            "kind": BASELINE_KIND, "model": self.cfg.model, "source": "timm", "pretrained": False,
            "trained_from_scratch": True, "working_size": self.cfg.size, "normalisation": NORMALISATION,
            "class_names": list(CLASS_NAMES), "positive_class": "covid", "version": self.cfg.version,
            "training": training, "data_split": self.data.split, "validation": self.last_val, "selected_by": self.cfg.select_by,
        }
        return save_checkpoint(out_dir or self.out / "classifier", self.model.state_dict(), json.loads(json.dumps(cfg, default=str)), dtype=dtype)

    # ---------------------------------------------------------------------------------------- state
    def save_state(self, state_dir: str | Path | None = None) -> Path:
        d = Path(state_dir) if state_dir else self.out / "state"
        cfg = {"kind": STATE_KIND, "model": self.cfg.model, "step": self.step, "steps_per_epoch": self.steps_per_epoch,
               "total_steps": self.total_steps, "training": self.cfg.to_dict(), "best": nan_to_none(self.best), "data_split": self.data.split}
        save_checkpoint(d, self.model.state_dict(), json.loads(json.dumps(cfg, default=str)))
        tmp = d / "optim.pt.tmp"
        torch.save(self.opt.state_dict(), tmp)
        tmp.replace(d / "optim.pt")
        return d

    def load_state(self, state_dir: str | Path) -> None:
        d = resolve_state_dir(state_dir)
        tensors, cfg = load_checkpoint(d)
        if cfg.get("kind") != STATE_KIND:
            raise CheckpointError(f"{d}: not a baseline training state (kind {cfg.get('kind')!r})")
        if cfg.get("model") != self.cfg.model:
            raise CheckpointError(f"{d}: state is for {cfg.get('model')!r}, config says {self.cfg.model!r}")
        if int(cfg.get("steps_per_epoch", -1)) != self.steps_per_epoch:
            raise CheckpointError(f"{d}: steps per epoch differ ({cfg.get('steps_per_epoch')} vs {self.steps_per_epoch}): data or batch size changed")
        load_state_into(self.model, tensors, what=f"{d} ({self.cfg.model})")
        try:
            self.opt.load_state_dict(torch.load(d / "optim.pt", map_location=self.device, weights_only=True))
        except (OSError, RuntimeError) as exc:
            raise CheckpointError(f"{d}: cannot read optim.pt ({exc})") from None
        self.step = int(cfg["step"])
        self.best = dict(cfg.get("best") or self.best)


def state_baseline_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> BaselineConfig:
    """The config stored in a baseline state folder, with overrides (e.g. a larger ``max_steps``)."""
    return baseline_config_from_dict(state_training_dict(path, STATE_KIND, "a baseline training state"), overrides)


def train_baseline(cfg: BaselineConfig, out_dir: str | Path, *, resume: str | Path | None = None,
                   data: SupervisedData | None = None, progress: bool = True) -> dict[str, Any]:
    """Build the data and trainer, optionally resume, run. Returns the summary."""
    data = data or SupervisedData.from_config(cfg, progress)
    trainer = BaselineTrainer(cfg, out_dir, data, progress=progress)
    if resume is not None:
        trainer.load_state(resume)
        if trainer.step >= trainer.end_step():
            raise R2CError(f"nothing to do: the state is at step {trainer.step}, the run ends at step {trainer.end_step()} (raise --max-steps or epochs)")
    return trainer.run()


# ----------------------------------------------------------------------------------------- classifier
class BaselineClassifier:
    """A loaded baseline classifier in eval mode (test transform: resize straight to the working size)."""

    def __init__(self, model: nn.Module, config: dict[str, Any], device: str | torch.device | None = None) -> None:
        self.device = pick_device(device)
        self.config = dict(config)
        self.model_name = str(config.get("model"))
        self.size = int(config.get("working_size", 256))
        self.model = model.to(self.device).eval()

    @classmethod
    def from_dir(cls, weights_dir: str | Path, device: str | torch.device | None = None) -> "BaselineClassifier":
        model, cfg = load_model(weights_dir, BASELINE_KIND, build_baseline, what="a baseline classifier")
        return cls(model, cfg, device)

    @torch.inference_mode()
    def predict_proba(self, images: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """Class probabilities (N, 2) in ``CLASS_NAMES`` order for gray/RGB arrays of any size."""
        out = []
        for s in range(0, len(images), max(1, batch_size)):
            x = torch.cat([to_model_tensor(to_gray_uint8(im), self.size) for im in images[s : s + batch_size]]).to(self.device)
            out.append(torch.softmax(self.model(x).float(), dim=1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(CLASS_NAMES)), dtype=np.float32)


# ------------------------------------------------------------------------------------------------- pack
@dataclass
class Pack:
    """A loaded training pack: per-image PNG bytes and table columns, manifest rows and metadata."""

    ids: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    domains: np.ndarray
    sources: np.ndarray
    png: np.ndarray
    offsets: np.ndarray
    manifest_csv: str
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    def png_of(self, i: int) -> bytes:
        return self.png[self.offsets[i] : self.offsets[i + 1]].tobytes()

    def image(self, i: int) -> np.ndarray:
        """(size, size) uint8 of image ``i``."""
        from PIL import Image

        with Image.open(io.BytesIO(self.png_of(i))) as im:
            return np.asarray(im.convert("L"))

    def images(self, index: Sequence[int] | None = None) -> np.ndarray:
        """(N, size, size) uint8 of the given (default all) images."""
        idx = range(len(self)) if index is None else index
        return np.stack([self.image(int(i)) for i in idx]) if len(idx) else np.zeros((0, self.size, self.size), np.uint8)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"id": self.ids, "label": self.labels, "split": self.splits, "domain": self.domains, "source": self.sources})

    def domain_cache(self, split: str, domain: str | None, load_size: int) -> DomainCache:
        """One split (and optionally one domain) as a :class:`DomainCache`, resized to ``load_size``."""
        t = self.table()
        sel = np.flatnonzero((t["split"] == split).to_numpy() & ((t["domain"] == domain).to_numpy() if domain else True))
        if not len(sel):
            raise ManifestError(f"the pack has no {split}{'/' + domain if domain else ''} images")
        imgs = torch.from_numpy(self.images(sel))
        if load_size != self.size:
            imgs = torch.stack([((to_model_tensor(im.numpy(), load_size)[0, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8) for im in imgs])
        return DomainCache([str(x) for x in self.ids[sel]], imgs, torch.from_numpy(label_index(self.labels[sel])))


def write_pack(out: str | Path, *, size: int = 256, manifest: str | Path | None = None, split_file: str | Path | None = None,
               limit: int = 0, progress: bool = True) -> dict[str, Any]:
    """Write every image of the split file (or the first ``limit`` ids) at ``size`` x ``size`` into one ``.npz``.

    Images go through the model's test transform (bilinear, no antialiasing, rounded to uint8), so classifying a
    pack image at ``size`` sees the same pixels as classifying the original. Returns the pack's metadata.
    """
    man = load_manifest(manifest)
    split_path = Path(split_file) if split_file else SPLIT_FILE
    split = load_split(split_path)
    rows = man.merge(split[["id", "split", "domain"]].rename(columns={"split": "ab_split"}), on="id", how="inner")
    if len(rows) != len(split):
        raise ManifestError(f"the split file names {len(split) - len(rows)} id(s) that are not in the manifest")
    rows = rows.sort_values("id", kind="mergesort").reset_index(drop=True)
    if limit > 0:
        rows = rows.head(limit)
    imgs = decode_resized(list(rows["path"]), size, desc="pack", progress=progress)
    blobs = [png_bytes(im.numpy()) for im in imgs]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    man_rows = man[man["id"].isin(set(rows["id"]))].drop(columns=["path"]).sort_values("id", kind="mergesort")
    meta = {"format": PACK_FORMAT, "size": size, "n": len(rows), "encoding": "png", "resize": "bilinear, no antialias (test transform), rounded to uint8",
            "split_file": split_path.name, "split_sha256": file_sha256(split_path), "manifest": man.attrs.get("manifest"),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "png_bytes": int(offsets[-1])}
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp.npz")
    np.savez(tmp, png=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets,
             ids=rows["id"].to_numpy(str), labels=rows["label"].to_numpy(str), splits=rows["ab_split"].to_numpy(str),
             domains=rows["domain"].to_numpy(str), sources=rows["source"].to_numpy(str),
             manifest_csv=np.frombuffer(man_rows.to_csv(index=False, lineterminator="\n").encode(), dtype=np.uint8),
             meta_json=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    tmp.replace(p)
    meta["file_bytes"] = p.stat().st_size
    return meta


def load_pack(path: str | Path) -> Pack:
    """Read a pack written by :func:`write_pack` (one-line :class:`ManifestError` when it is not one)."""
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"pack not found: {p} (build it with: python scripts/make_pack.py)")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ManifestError(f"{p}: not a readable pack ({exc})") from None
    need = ("png", "offsets", "ids", "labels", "splits", "domains", "sources", "manifest_csv", "meta_json")
    missing = [k for k in need if k not in arrays]
    if missing:
        raise ManifestError(f"{p}: not an r2c pack (missing {', '.join(missing)})")
    meta = json.loads(arrays["meta_json"].tobytes().decode())
    if meta.get("format") != PACK_FORMAT:
        raise ManifestError(f"{p}: pack format {meta.get('format')!r}, expected {PACK_FORMAT!r}")
    return Pack(arrays["ids"], arrays["labels"], arrays["splits"], arrays["domains"], arrays["sources"], arrays["png"],
                arrays["offsets"], arrays["manifest_csv"].tobytes().decode(), meta)


def unpack_to_folder(pack: Pack | str | Path, folder: str | Path) -> Path:
    """Recreate a data folder (``MANIFEST.csv`` + ``images/<id>.png``) from a pack; returns the manifest path.

    The manifest keeps every column of the original rows; ``file`` points at the packed image, ``width``/``height``
    are the pack's size, and lung masks are not packed (``has_mask`` 0, ``mask_file`` empty).
    """
    pk = pack if isinstance(pack, Pack) else load_pack(pack)
    d = Path(folder)
    (d / "images").mkdir(parents=True, exist_ok=True)
    for i, pid in enumerate(pk.ids):
        (d / "images" / f"{pid}.png").write_bytes(pk.png_of(i))
    man = pd.read_csv(io.StringIO(pk.manifest_csv), dtype={"id": str, "file": str, "label": str, "split": str, "source": str})
    man["file"] = [f"images/{i}.png" for i in man["id"]]
    for col in ("width", "height"):
        if col in man:
            man[col] = pk.size
    if "has_mask" in man:
        man["has_mask"] = 0
    for col in ("mask_file", "mask_source", "mask_origin", "mask_orig_size"):
        if col in man:
            man[col] = ""
    out = d / "MANIFEST.csv"
    man.to_csv(out, index=False, lineterminator="\n")
    return out
