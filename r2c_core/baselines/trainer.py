"""The baseline trainer on the shared run loop (:mod:`r2c_core.training.loop`): step, epoch-end validation and selection, export, exact resume."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_checkpoint, load_state_into, save_checkpoint
from ..errors import CheckpointError
from ..metrics import nan_to_none, point_metrics
from ..models import CLASS_NAMES
from ..precision import autocast, use_bf16
from ..runio import (
    load_optimizers,
    resolve_state_dir,
    save_training_state,
    state_training_dict,
)
from ..tensors import NORMALISATION, pick_device
from ..training.loader import to_input
from ..training.loop import LoopResult, LoopSettings, RunLoop, resume_and_run
from ..training.schedule import linear_decay_lr
from .config import (
    BASELINE_KIND,
    LOG_COLUMNS,
    STATE_KIND,
    BaselineConfig,
    baseline_config_from_dict,
    build_baseline,
)
from .data import SupervisedBatches, SupervisedData, class_weights

log = logging.getLogger(__name__)


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
        save_training_state(d, self.model.state_dict(), json.loads(json.dumps(cfg, default=str)), self.opt.state_dict())
        return d

    def load_state(self, state_dir: str | Path) -> None:
        d = resolve_state_dir(state_dir)
        tensors, cfg = load_checkpoint(d, same_save=True)
        if cfg.get("kind") != STATE_KIND:
            raise CheckpointError(f"{d}: not a baseline training state (kind {cfg.get('kind')!r})")
        if cfg.get("model") != self.cfg.model:
            raise CheckpointError(f"{d}: state is for {cfg.get('model')!r}, config says {self.cfg.model!r}")
        if int(cfg.get("steps_per_epoch", -1)) != self.steps_per_epoch:
            raise CheckpointError(f"{d}: steps per epoch differ ({cfg.get('steps_per_epoch')} vs {self.steps_per_epoch}): data or batch size changed")
        load_state_into(self.model, tensors, what=f"{d} ({self.cfg.model})")
        self.opt.load_state_dict(load_optimizers(d, self.device, cfg.get("save_token")))
        self.step = int(cfg["step"])
        self.best = dict(cfg.get("best") or self.best)


def state_baseline_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> BaselineConfig:
    """The config stored in a baseline state folder, with overrides (e.g. a larger ``max_steps``)."""
    return baseline_config_from_dict(state_training_dict(path, STATE_KIND, "a baseline training state"), overrides)


def train_baseline(cfg: BaselineConfig, out_dir: str | Path, *, resume: str | Path | None = None,
                   data: SupervisedData | None = None, progress: bool = True) -> dict[str, Any]:
    """Build the data and trainer, optionally resume, run. Returns the summary."""
    data = data or SupervisedData.from_config(cfg, progress)
    return resume_and_run(BaselineTrainer(cfg, out_dir, data, progress=progress), resume)


# ----------------------------------------------------------------------------------------- classifier
