"""Training the lung U-Net: ``python -m r2c_core train-seg --config configs/lung-unet-cpu.json``.

* Data: masked manifest rows; human masks weight 1, lungVAE model masks ``data.model_mask_weight`` (see
  :mod:`r2c_core.segmentation.data`). A validation part is carved out of ``train`` by patient group (seeded);
  the ids of every part are saved in the checkpoint config.
* Loss: per-image weighted BCE + soft Dice. Adam, linear warm-up then cosine decay (per step).
* Each epoch: validation Dice (at the training size), one CSV log row, ``OUT/last`` (fp32 + optimizer state for
  ``--resume``) and, when validation Dice improves, ``OUT/best`` (fp16 weights + config: the shippable model).
* Stops on ``train.epochs``, ``--max-steps``, early stopping (``train.patience`` epochs without improvement) or
  the wall-clock budget ``train.max_minutes``. The test split is then evaluated once with the best model.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..checkpoints import load_checkpoint, load_state_into, read_config, save_checkpoint
from ..errors import CheckpointError, R2CError
from ..paths import REPO_ROOT, manifest_path
from ..precision import use_bf16
from ..training.loop import LoopResult, LoopSettings, RunLoop
from .config import DEFAULTS, load_config, merge  # noqa: F401  (load_config re-exported)
from .data import MaskSet, augment, load_set, read_mask_manifest, split_train_val
from .model import build_unet, check_preprocess, count_parameters, normalise
from .predict import KIND

log = logging.getLogger(__name__)

STATE_FILE = "train_state.pt"
LOG_FILE = "log.csv"
LOG_FIELDS = ["epoch", "step", "lr", "train_loss", "val_loss", "val_dice", "best_val_dice", "epoch_s", "elapsed_min"]

def seg_loss(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, bce_w: float = 1.0, dice_w: float = 1.0) -> torch.Tensor:
    """Per-image weighted BCE + soft Dice loss (weights normalised to their sum)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(dim=(1, 2, 3))
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    soft_dice = (2 * inter + 1.0) / (p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1.0)
    per = bce_w * bce + dice_w * (1.0 - soft_dice)
    return (per * weights).sum() / weights.sum().clamp_min(1e-6)


def lr_factor(step: int, total: int, warmup: int, min_ratio: float, time_progress: float = 0.0) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio``.

    The cosine position is the further along of the step count and ``time_progress`` (the fraction of the
    wall-clock budget used), so a run cut short by its time budget still ends with a small learning rate.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    t = min(1.0, max((step - warmup) / max(1, total - warmup), time_progress))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))


@torch.no_grad()
def validate(model: torch.nn.Module, data: MaskSet, device: torch.device, batch: int, threshold: float = 0.5) -> tuple[float, float]:
    """(mean loss, mean Dice of the thresholded prediction) at the training size."""
    model.eval()
    losses, dices = [], []
    for s in range(0, len(data.ids), batch):
        x = normalise(data.images[s:s + batch]).to(device)
        y = data.masks[s:s + batch].to(device)
        logits = model(x).float()
        losses.append(float(seg_loss(logits, y, torch.ones(len(x), device=device))) * len(x))
        pred = (torch.sigmoid(logits) >= threshold).float()
        inter = (pred * y).sum(dim=(1, 2, 3))
        tot = pred.sum(dim=(1, 2, 3)) + y.sum(dim=(1, 2, 3))
        dices.extend(torch.where(tot > 0, 2 * inter / tot.clamp_min(1), torch.ones_like(tot)).tolist())
    model.train()
    n = max(1, len(data.ids))
    return sum(losses) / n, float(np.mean(dices)) if dices else float("nan")


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}"
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU {name}, {torch.get_num_threads()} threads"


def _checkpoint_config(cfg: Mapping[str, Any], split: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = {"kind": KIND, "model": cfg["model"], "preprocess": cfg["preprocess"], "threshold": cfg["threshold"],
           "training_config": {k: cfg[k] for k in ("name", "data", "train", "augment")}, "split": split}
    out.update(extra)
    return out


class Trainer:
    """One training run (fresh or resumed) writing into ``out``."""

    def __init__(self, cfg: dict[str, Any], out: Path, max_steps: int | None = None, resume: Path | None = None):
        self.cfg, self.out, self.max_steps = cfg, out, max_steps
        tc = cfg["train"]
        torch.set_num_threads(int(tc["threads"]))
        torch.manual_seed(int(tc["seed"]))
        self.device = torch.device(tc["device"] or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.prep = check_preprocess(cfg["preprocess"])
        self.manifest = Path(cfg["data"]["manifest"] or manifest_path())
        self.df = read_mask_manifest(self.manifest)
        self.split = self._split(resume)
        size, mw = self.prep["size"], float(cfg["data"]["model_mask_weight"])
        log.info("loading %d train / %d val images at %d px", len(self.split["ids"]["train"]), len(self.split["ids"]["val"]), size)
        self.train_set = load_set(self.df, self.split["ids"]["train"], size, mw)
        self.val_set = load_set(self.df, self.split["ids"]["val"], size, mw)
        self.model = build_unet(cfg["model"]).to(self.device)
        if tc.get("init_from") and resume is None:
            init = Path(tc["init_from"])
            init = init if init.is_absolute() else REPO_ROOT / init
            tensors, icfg = load_checkpoint(init)
            if icfg.get("kind") != KIND:
                raise CheckpointError(f"{init}: train.init_from must be a {KIND} checkpoint (kind {icfg.get('kind')!r})")
            load_state_into(self.model, tensors, what=f"train.init_from {init}")
            log.info("initialised from %s (epoch %s, val Dice %s)", init, icfg.get("epoch"), icfg.get("val_dice", icfg.get("best_val_dice")))
        self.use_amp = use_bf16(self.device, bool(tc["amp"]), bool(tc.get("cpu_amp")))
        if self.device.type == "cpu":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=float(tc["lr"]), weight_decay=float(tc["weight_decay"]))
        self.steps_per_epoch = max(1, math.ceil(len(self.train_set.ids) / int(tc["batch_size"])))
        self.gen = torch.Generator().manual_seed(int(tc["seed"]))
        self.epoch, self.step, self.best, self.best_epoch, self.stale, self.elapsed = 0, 0, -1.0, 0, 0, 0.0
        self.last_epoch_s, self._epoch_t0 = 0.0, time.monotonic()
        # the epoch in progress: steps taken in it, its sample order, its losses and last learning rate
        self._i, self._order, self._losses, self._lr = 0, torch.empty(0, dtype=torch.long), [], 0.0
        if resume is not None:
            self._restore(resume)

    def _split(self, resume: Path | None) -> dict[str, Any]:
        d = self.cfg["data"]
        if resume is not None:
            return read_config(resume / "last")["split"]
        ids = split_train_val(self.df, float(d["val_fraction"]), int(d["split_seed"]), d["val_mask_sources"])
        if d.get("limit"):
            ids = {k: v[: int(d["limit"])] for k, v in ids.items()}
        return {"seed": int(d["split_seed"]), "val_fraction": float(d["val_fraction"]), "by": "group_id",
                "manifest": str(self.manifest), "counts": {k: len(v) for k, v in ids.items()}, "ids": ids}

    def _restore(self, resume: Path) -> None:
        tensors, _ = load_checkpoint(resume / "last")
        load_state_into(self.model, tensors, what=f"{resume / 'last'}")
        state_path = resume / "last" / STATE_FILE
        if not state_path.is_file():
            raise CheckpointError(f"{state_path}: no training state to resume from")
        st = torch.load(state_path, map_location="cpu", weights_only=True)
        self.opt.load_state_dict(st["optimizer"])
        self.gen.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        for k in ("epoch", "step", "best", "best_epoch", "stale", "elapsed"):
            setattr(self, k, st[k])
        self.last_epoch_s = float(st.get("last_epoch_s", 0.0))
        log.info("resumed from %s at epoch %d (best val Dice %.4f)", resume, self.epoch, self.best)

    @property
    def total_steps(self) -> int:
        return int(self.cfg["train"]["epochs"]) * self.steps_per_epoch

    def _set_lr(self) -> float:
        tc = self.cfg["train"]
        budget = float(tc["max_minutes"] or 0) * 60
        used = self.elapsed + (time.monotonic() - self._epoch_t0)
        lr = float(tc["lr"]) * lr_factor(self.step, self.total_steps, int(tc["warmup_epochs"]) * self.steps_per_epoch,
                                         float(tc["min_lr_ratio"]), used / budget if budget else 0.0)
        for g in self.opt.param_groups:
            g["lr"] = lr
        return lr

    # -------------------------------------------------------------------------------- the run loop's hooks
    def loop_settings(self) -> LoopSettings:
        end = self.total_steps if self.max_steps is None else min(self.total_steps, int(self.max_steps))
        # no per-step log (the log is per epoch) and no loop checkpoints: an epoch end saves `last` itself; the
        # time budget counts over resumes, so it is a stop rule (stop_reason), not the loop's max_minutes
        return LoopSettings(end=end, desc=f"train {self.cfg['name']}", checkpoint_at_epoch_end=False, progress=True)

    def at_epoch_end(self) -> bool:
        """Epochs are counted by this trainer (an epoch cut short by ``max_steps`` still counts as one)."""
        return self._i == 0 or self._i >= self.steps_per_epoch

    def batch_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next augmented batch of the epoch in progress (a new epoch draws its order first)."""
        if self._i == 0:
            self._epoch_t0 = time.monotonic()
            self._order = torch.randperm(len(self.train_set.ids), generator=self.gen)
            self._losses = []
        bs = int(self.cfg["train"]["batch_size"])
        idx = self._order[self._i * bs:(self._i + 1) * bs]
        x, y = augment(self.train_set.images[idx], self.train_set.masks[idx], self.cfg["augment"], self.gen)
        x, y, w = normalise(x).to(self.device), y.to(self.device), self.train_set.weights[idx].to(self.device)
        if self.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y, w

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, float]:
        tc = self.cfg["train"]
        x, y, w = batch
        self.model.train()
        lr = self._set_lr()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            logits = self.model(x)
        loss = seg_loss(logits.float(), y, w, float(tc["bce_weight"]), float(tc["dice_weight"]))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self._i += 1
        self._losses.append(loss.detach().item())
        self._lr = lr
        return {"lr": lr, "loss": self._losses[-1]}

    def postfix(self, terms: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{np.mean(self._losses):.4f}", "lr": f"{terms['lr']:.2e}"}

    def save_state(self) -> None:
        self._save_last()

    def stop_reason(self) -> str | None:
        return self._should_stop()

    def on_epoch_end(self, last: bool) -> None:
        """Validation, best / early-stopping bookkeeping, ``last`` (and ``best``), the epoch's log row."""
        t0 = self._epoch_t0
        train_loss = float(np.mean(self._losses)) if self._losses else float("nan")
        lr = self._lr
        self._i = 0
        self.epoch += 1
        val_loss, val_dice = validate(self.model, self.val_set, self.device, int(self.cfg["train"]["batch_size"]), float(self.cfg["threshold"]))
        self.last_epoch_s = time.monotonic() - t0
        self.elapsed += self.last_epoch_s
        improved = val_dice > self.best or not self.val_set.ids
        if improved:
            self.best, self.best_epoch, self.stale = val_dice, self.epoch, 0
            self._save_best(val_dice)
        else:
            self.stale += 1
        self._save_last()
        self._log({"epoch": self.epoch, "step": self.step, "lr": f"{lr:.3e}", "train_loss": f"{train_loss:.5f}",
                   "val_loss": f"{val_loss:.5f}", "val_dice": f"{val_dice:.5f}", "best_val_dice": f"{self.best:.5f}",
                   "epoch_s": f"{time.monotonic() - t0:.1f}", "elapsed_min": f"{self.elapsed / 60:.2f}"})
        log.warning("epoch %d: train loss %.4f, val Dice %.4f (best %.4f @ %d), %.1f min", self.epoch, train_loss, val_dice, self.best, self.best_epoch, self.elapsed / 60)
        self._progress(f"epoch {self.epoch}/{self.cfg['train']['epochs']} step {self.step}: train loss {train_loss:.4f}, val Dice {val_dice:.4f} "
                       f"(best {self.best:.4f} @ {self.best_epoch}), lr {lr:.2e}, {self.last_epoch_s:.0f} s/epoch, "
                       f"{len(self.train_set.ids) / max(self.last_epoch_s, 1e-9):.2f} images/s incl. validation")

    def finish(self, result: LoopResult) -> str:
        """Close an epoch cut short (``max_steps``, a signal) as the last one, then say why training stopped."""
        if self._i:
            self.on_epoch_end(True)
        reason = self._should_stop() or result.reason or "end of the step budget"
        if result.stopped_early and result.reason:
            reason = f"{result.reason} (state saved)"
        log.warning("stopped: %s; best val Dice %.4f at epoch %d", reason, self.best, self.best_epoch)
        self._progress(f"stopped: {reason}; best val Dice {self.best:.4f} at epoch {self.best_epoch}")
        return reason

    def _save_last(self) -> None:
        extra = {"epoch": self.epoch, "best_val_dice": self.best, "best_epoch": self.best_epoch}
        d = save_checkpoint(self.out / "last", self.model.state_dict(), _checkpoint_config(self.cfg, self.split, extra))
        state = {"optimizer": self.opt.state_dict(), "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                 "epoch": self.epoch, "step": self.step, "best": self.best, "best_epoch": self.best_epoch,
                 "stale": self.stale, "elapsed": self.elapsed, "last_epoch_s": self.last_epoch_s}
        tmp = d / (STATE_FILE + ".tmp")
        torch.save(state, tmp)
        tmp.replace(d / STATE_FILE)

    def _save_best(self, val_dice: float) -> None:
        extra = {"epoch": self.epoch, "val_dice": round(val_dice, 5), "training": self.provenance()}
        save_checkpoint(self.out / "best", self.model.state_dict(), _checkpoint_config(self.cfg, self.split, extra), dtype=torch.float16)

    def provenance(self) -> dict[str, Any]:
        return {"machine": machine_description(self.device), "date": _dt.date.today().isoformat(),
                "command": " ".join(["python -m r2c_core"] + sys.argv[1:]),
                "steps": self.step, "epochs_run": self.epoch, "wall_minutes": round(self.elapsed / 60, 1),
                "parameters": count_parameters(self.model), "torch": torch.__version__}

    def _log(self, row: dict[str, Any]) -> None:
        path = self.out / LOG_FILE
        new = not path.exists()
        with path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=LOG_FIELDS)
            if new:
                w.writeheader()
            w.writerow(row)

    def _should_stop(self) -> str | None:
        tc = self.cfg["train"]
        if self.max_steps is not None and self.step >= self.max_steps:
            return f"max steps ({self.max_steps})"
        if self.epoch >= int(tc["epochs"]):
            return f"epochs ({tc['epochs']})"
        if self.stale >= int(tc["patience"]):
            return f"early stopping (no val Dice gain for {tc['patience']} epochs)"
        if tc.get("max_minutes") and (self.elapsed + self.last_epoch_s) / 60 > float(tc["max_minutes"]):
            return f"time budget ({tc['max_minutes']} min; another epoch would exceed it)"
        return None

    def run(self) -> str:
        """Train until a stop condition (:class:`~r2c_core.training.loop.RunLoop`); returns the reason."""
        self.out.mkdir(parents=True, exist_ok=True)
        log.info("training %s: %d params, %d steps/epoch on %s", self.cfg["name"], count_parameters(self.model), self.steps_per_epoch, self.device)
        if (reason := self._should_stop()) is not None:  # e.g. resumed after the last epoch
            log.warning("stopped: %s; best val Dice %.4f at epoch %d", reason, self.best, self.best_epoch)
            return reason
        return RunLoop(self).run()

    def _progress(self, text: str) -> None:
        """One human-readable line in ``<out>/progress.log`` (the training campaign follows it)."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        with open(self.out / "progress.log", "a") as fh:
            fh.write(f"{stamp} {self.cfg['name']} {text}\n")


def evaluate_test(out: Path, manifest: Path, split_ids: list[str], device: str | None = None) -> dict[str, Any]:
    """Evaluate ``out/best`` once on the test ids; writes ``test_metrics.json`` and records it in the config."""
    from .evaluate import evaluate
    from .predict import LungSegmenter

    seg = LungSegmenter.from_dir(out / "best", device=device)
    summary, records = evaluate(seg, manifest, split="test", ids=split_ids,
                                progress=lambda it: tqdm(list(it), desc="test", leave=False, file=sys.stderr))
    (out / "test_metrics.json").write_text(json.dumps({"summary": summary, "per_image": records}, indent=2) + "\n")
    cfg_path = out / "best" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["test_metrics"] = summary
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str) + "\n")
    return summary


def train(config: str | Path | None, out: str | Path | None = None, epochs: int | None = None, max_steps: int | None = None,
          resume: str | Path | None = None, evaluate_on_test: bool = True, max_minutes: float | None = None) -> dict[str, Any]:
    """Run training as the CLI does; returns ``{"out", "reason", "best_val_dice", "test"}``."""
    res = Path(resume) if resume else None
    if res is not None and not (res / "last" / STATE_FILE).is_file():
        raise CheckpointError(f"{res}: not a training run to resume (no last/{STATE_FILE})")
    if res is not None:  # a resumed run keeps its own config (and split)
        saved = read_config(res / "last")
        cfg = merge(DEFAULTS, {**saved["training_config"], "model": saved["model"], "preprocess": saved["preprocess"], "threshold": saved["threshold"]})
        if config:
            log.warning("--resume: using the run's saved config, not %s", config)
    elif config:
        cfg = load_config(config)
    else:
        raise R2CError("give --config FILE (or --resume DIR)")
    if epochs is not None:
        cfg["train"]["epochs"] = int(epochs)
    if max_minutes is not None:
        cfg["train"]["max_minutes"] = float(max_minutes) if max_minutes > 0 else None
    out_dir = Path(out) if out else (res or REPO_ROOT / "runs" / cfg["name"])
    trainer = Trainer(cfg, out_dir, max_steps=max_steps, resume=res)
    (out_dir).mkdir(parents=True, exist_ok=True)
    (out_dir / "train_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    reason = trainer.run()
    result: dict[str, Any] = {"out": str(out_dir), "reason": reason, "best_val_dice": round(trainer.best, 5), "best_epoch": trainer.best_epoch}
    if evaluate_on_test and trainer.split["ids"]["test"]:
        try:
            result["test"] = evaluate_test(out_dir, trainer.manifest, trainer.split["ids"]["test"], device=str(trainer.device))
        except R2CError as exc:
            log.error("test evaluation failed: %s", exc)
    return result
