"""The R2C-GAN trainer: unpaired A/B batches, history pools, one D step per G step, linear LR decay to 0,
exactly resumable training states, CSV loss log, validation and generator export.

Output folder layout::

    <out>/train_log.csv      one row per step: step, epoch, lr and every loss term (reference names)
    <out>/state/             training state (all four nets + pools in model.safetensors, both Adam states in
                             optim.pt, config.json with the step, the training config and the data split)
    <out>/generator/         the exported G_A2B (what :class:`~r2c_core.inference.Restorer` loads)
    <out>/val_log.jsonl      validation metrics at every export (choose epochs or thresholds on these only)
    <out>/summary.json       the last validation metrics and timings

Determinism: the networks are initialised from ``torch.manual_seed(seed)``; every later random draw (batch
order, flips, crops, pool swaps) comes from a generator seeded by ``(seed, step)`` or ``(seed, epoch)``. A run
resumed from a state therefore reproduces the uninterrupted run bit for bit (on the same device and threads).

Fast path: on CUDA (``cuda_fast_path``, default on) bf16 autocast, channels_last and fused Adam; ``compile``
wraps the four networks in ``torch.compile``. Several GPUs or processes: run the same command under
``torchrun --nproc_per_node N -m r2c_core train ...``. ``batch_size`` is then the *global* batch: every process
reads the same data, takes its contiguous share of each global batch, and the gradients are averaged with one
all-reduce per optimiser step (gloo on CPU, NCCL on CUDA), so N processes compute what one process computes with
the same global batch (tested on CPU). Each process keeps its own history pools; only process 0 writes the log,
the checkpoints and the exported generator; the summary records the world size, global batch and learning rate.
We average gradients explicitly instead of wrapping the networks in ``DistributedDataParallel``: each generator
runs three times per step (translation, cycle, identity) and the discriminators are frozen during the G step,
which DDP's one-forward-per-backward reducer does not support without ``find_unused_parameters`` and static-graph
work-arounds; the explicit all-reduce is the same mathematics with one collective per step.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoints import export_generator
from ..errors import R2CError
from ..losses import discriminator_losses, generator_losses, r2c_forward
from ..metrics import nan_to_none, point_metrics
from ..models import R2CGAN
from ..precision import autocast, use_bf16
from ..tensors import pick_device
from . import compact, restval
from .config import TrainConfig
from .loader import (
    seeded_generator,
    to_input,
)
from .loop import LoopResult, LoopSettings, RunLoop, resume_and_run
from .pool import ImagePool
from .r2c_data import TrainData, ValData
from .r2c_state import (
    LOG_COLUMNS,
    NETS,
    STATE_KIND,
    StateMixin,
    _json_default,
    state_config,
)
from .r2c_warm import WarmStartMixin
from .schedule import linear_decay_lr

log = logging.getLogger(__name__)



def dist_rank_world() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


@dataclass
class _Nets:
    """The four networks as the loss functions see them (possibly torch.compile'd)."""

    gen_ab: nn.Module
    gen_ba: nn.Module
    disc_a: nn.Module
    disc_b: nn.Module

    def generators(self) -> list[nn.Module]:
        return [self.gen_ab, self.gen_ba]

    def discriminators(self) -> list[nn.Module]:
        return [self.disc_a, self.disc_b]


def _set_requires_grad(modules: list[nn.Module], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


class Trainer(WarmStartMixin, StateMixin):
    """One R2C-GAN training run. ``train_step(batch)`` is the unit of work (usable under DDP later)."""

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, data: TrainData, *, progress: bool = True) -> None:
        self.cfg = cfg
        self.out = Path(out_dir)
        self.data = data
        self.progress = progress
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.rank, self.world = dist_rank_world()
        self.is_main = self.rank == 0
        if cfg.batch_size % self.world:
            raise R2CError(f"config: batch_size {cfg.batch_size} (the global batch) must be divisible by the {self.world} processes")
        self.device = pick_device(cfg.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", self.rank)))
        fast = cfg.cuda_fast_path and self.device.type == "cuda"
        self.amp = use_bf16(self.device, bool(cfg.amp) or fast, cfg.cpu_amp)
        self.channels_last = bool(cfg.channels_last) or fast
        torch.manual_seed(cfg.seed)
        self.gan = R2CGAN(cfg.model).to(self.device)
        if self.channels_last:
            self.gan = self.gan.to(memory_format=torch.channels_last)
        self.gen_params = [p for g in self.gan.generators() for p in g.parameters()]
        self.disc_params = [p for d in self.gan.discriminators() for p in d.parameters()]
        betas = (cfg.beta1, cfg.beta2)
        fused = {"fused": True} if (cfg.fused_adam or fast) else {}
        self.opt_g = torch.optim.Adam(self.gen_params, lr=cfg.lr, betas=betas, eps=cfg.adam_eps, **fused)
        self.opt_d = torch.optim.Adam(self.disc_params, lr=cfg.lr, betas=betas, eps=cfg.adam_eps, **fused)
        self.nets = {name: getattr(self.gan, name) for name in NETS}
        if cfg.compile:
            self.nets = {name: torch.compile(net, mode=cfg.compile_mode) for name, net in self.nets.items()}
        self.pool_a = ImagePool(cfg.pool_size)  # fakes of domain A (B2A) for D_A
        self.pool_b = ImagePool(cfg.pool_size)  # fakes of domain B (A2B) for D_B
        self.steps_per_epoch = data.batches.steps_per_epoch
        self.total_steps = cfg.epochs * self.steps_per_epoch
        self.decay_start = cfg.epoch_decay * self.steps_per_epoch
        self.step = 0
        self.warm_done = cfg.warm_start_steps == 0
        self._resumed = False
        self.last_val: dict[str, Any] = {}
        self._last_progress = 0.0
        self._recent: list[tuple[float, int]] = []

    # ------------------------------------------------------------------------------------------- one step
    def lr_at(self, step: int) -> float:
        return linear_decay_lr(step, self.cfg.lr, self.total_steps, self.decay_start)

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp)

    def _to_device(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        out = []
        for t in batch:
            t = t.to(self.device, non_blocking=True)
            if self.channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            out.append(t)
        return tuple(out)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, float]:
        """One G step (D frozen) then one D step on pooled fakes, at the scheduled rate of ``self.step``."""
        real_a, real_b, label_a, label_b = self._to_device(self._share(batch))  # this process's share
        lr = self.lr_at(self.step)
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr
        gan = _Nets(**self.nets)
        # generator step
        _set_requires_grad(self.gan.discriminators(), False)
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            fw = r2c_forward(gan, real_a, real_b)
            g_terms = generator_losses(gan, real_a, real_b, label_a, label_b, fw, self.cfg.loss)
        g_terms["G_loss"].backward()
        self._average_gradients(self.gen_params)
        self.opt_g.step()
        # discriminator step on history-pooled fakes (one pool per process)
        _set_requires_grad(self.gan.discriminators(), True)
        g = seeded_generator(self.cfg.seed, "pool", self.step, *((self.rank,) if self.rank else ()))
        fake_b = self.pool_b.query(fw["A2B"].detach(), g)
        fake_a = self.pool_a.query(fw["B2A"].detach(), g)
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            d_terms = discriminator_losses(gan, real_a, real_b, fake_a, fake_b)
        d_terms["D_loss"].backward()
        self._average_gradients(self.disc_params)
        self.opt_d.step()
        terms = {**g_terms, **d_terms}
        values = torch.stack([v.detach().float() for v in terms.values()])
        if self.world > 1:
            torch.distributed.all_reduce(values)
            values /= self.world
        out = dict(zip(terms, values.cpu().tolist()))
        out["lr"] = lr
        return out

    def _average_gradients(self, params: list[nn.Parameter]) -> None:
        """Data parallelism: one all-reduce of the flattened gradients, divided by the number of processes."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset : offset + n].view_as(g))
            offset += n

    # ------------------------------------------------------------------------------------------ the loop
    def end_step(self) -> int:
        return min(self.total_steps, self.cfg.max_steps) if self.cfg.max_steps else self.total_steps

    def _share(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        if self.world == 1:
            return batch
        per = self.cfg.batch_size // self.world
        return tuple(t[self.rank * per : (self.rank + 1) * per] for t in batch)

    def run(self) -> dict[str, Any]:
        """Train from ``self.step`` to the end (or ``max_steps``); save, validate and export on the way
        (:class:`~r2c_core.training.loop.RunLoop`)."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.step == 0 and self.cfg.init_from and not self._resumed:
            self.init_from(self.cfg.init_from)
        if not self.warm_done and self.step == 0:
            self.warm_start()
        return RunLoop(self).run()

    # -------------------------------------------------------------------------------- the run loop's hooks
    def loop_settings(self) -> LoopSettings:
        return LoopSettings(end=self.end_step(), desc=f"train {self.cfg.model}", log_columns=LOG_COLUMNS,
                            max_minutes=self.cfg.max_minutes, checkpoint_every=self.cfg.checkpoint_every,
                            checkpoint_minutes=self.cfg.checkpoint_minutes, progress=self.progress, is_main=self.is_main)

    def batch_at(self, step: int) -> tuple[torch.Tensor, ...]:
        return self.data.batches.batch(step)

    def postfix(self, terms: dict[str, float]) -> dict[str, str]:
        return {"G": f"{terms['G_loss']:.3f}", "D": f"{terms['D_loss']:.3f}", "lr": f"{terms['lr']:.2e}"}

    def on_step_end(self, terms: dict[str, float], end: int) -> None:
        self._recent.append((time.perf_counter(), self.step))
        self._progress_step(terms, end)

    def on_epoch_end(self, last: bool) -> None:
        epoch = self.step // self.steps_per_epoch
        if self.cfg.export_every and epoch % self.cfg.export_every == 0 and not last:
            self.validate()
            self.export()

    def finish(self, result: LoopResult) -> dict[str, Any]:
        """The final save, validation and export (main process), then the summary."""
        gen_dir = None
        if self.is_main:
            self.save_state()
            self.validate()
            gen_dir = self.export()
        elapsed = result.seconds
        summary = {"step": self.step, "total_steps": self.total_steps, "stopped_early": result.stopped_early,
                   "steps_per_epoch": self.steps_per_epoch, "steps_run": result.steps_run,
                   "seconds": round(elapsed, 2), "seconds_per_step": round(elapsed / max(1, result.steps_run), 4),
                   "validation": self.last_val, "generator": str(gen_dir), "state": str(self.out / "state")}
        summary["processes"] = {"world_size": self.world, "global_batch": self.cfg.batch_size,
                                "per_process_batch": self.cfg.batch_size // self.world, "lr": self.cfg.lr}
        summary = nan_to_none(summary)
        if not self.is_main:
            return summary
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=_json_default) + "\n")
        if self.cfg.compact_state and self.step >= self.total_steps:  # nothing left to resume: keep only the record
            compact.mark_finished(compact.resolve(self.cfg.compact_state), json.loads(json.dumps(summary, default=_json_default)), self.out)
        return summary

    def _progress(self, text: str, every_s: float = 0.0) -> None:
        """Append one line to ``<out>/progress.log`` (human-readable; at most every ``every_s`` seconds)."""
        now = time.perf_counter()
        if not self.is_main or (every_s and now - self._last_progress < every_s):
            return
        self._last_progress = now
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        with open(self.out / "progress.log", "a") as fh:
            fh.write(f"{stamp} {self.cfg.model} {text}\n")

    def _progress_step(self, terms: dict[str, float], end: int) -> None:
        self._recent = self._recent[-50:]
        (t_a, s_a), (t_b, s_b) = self._recent[0], self._recent[-1]
        rate = (s_b - s_a) * self.cfg.batch_size / (t_b - t_a) if t_b > t_a else float("nan")
        val = f" | last {_val_text(self.last_val)}" if self.last_val else ""
        eta_h = (end - self.step) * self.cfg.batch_size / rate / 3600 if rate == rate and rate > 0 else float("nan")
        self._progress(f"step {self.step}/{end} epoch {self.step / self.steps_per_epoch:.2f}/{self.cfg.epochs} | {rate:.2f} crops/s "
                       f"(ETA {eta_h:.1f} h) | G {terms['G_loss']:.3f} D {terms['D_loss']:.3f} lr {terms['lr']:.2e}{val}", every_s=120)

    # ---------------------------------------------------------------------------------- validate / export
    @torch.no_grad()
    def validate(self, batch_size: int = 16) -> dict[str, Any]:
        """Classification of the validation images by G_A2B (test transform); pooled and domain A only."""
        val = self.data.val
        if val is None:
            self.last_val = {}
            return {}
        gen = self.gan.gen_ab
        gen.eval()
        probs = []
        for s in range(0, len(val.ids), batch_size):
            x = to_input(val.images[s : s + batch_size]).to(self.device)
            with self._autocast():
                _, logits = gen(x)
            probs.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
        gen.train()
        p = torch.cat(probs).numpy()
        is_a = np.array([d == "A" for d in val.domains])
        self.last_val = nan_to_none({"step": self.step, "epoch": round(self.step / self.steps_per_epoch, 3), "n": int(len(p)),
                                     "all": point_metrics(val.labels, p), "domain_A": point_metrics(val.labels[is_a], p[is_a])})
        if self.cfg.val_restoration:
            self.last_val["restoration"] = restval.restoration_metrics(
                gen, restval.pick_images(val.images, val.domains, self.cfg.val_restoration), passes=self.cfg.val_passes,
                seed=self.cfg.seed, device=self.device, autocast=self._autocast)
        log.info("validation at step %d: %s", self.step, self.last_val)
        self._last_progress = 0.0
        self._progress(_val_text(self.last_val))
        with open(self.out / "val_log.jsonl", "a") as fh:  # one line per validation, for choosing an epoch
            fh.write(json.dumps(self.last_val, default=_json_default) + "\n")
        return self.last_val

    def export(self, out_dir: str | Path | None = None) -> Path:
        dtype = {"auto": torch.float16 if self.cfg.model == "cnn" else None, "float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}[self.cfg.export_dtype]
        extra = {
            "version": self.cfg.version,
            "working_size": self.cfg.size,
            "training": {**self.cfg.to_dict(), "load_size": self.cfg.load_size, "step": self.step, "epoch": self.step / self.steps_per_epoch,
                         "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps, "device": str(self.device)},
            "data_split": self.data.split,
            "validation": self.last_val,
        }
        extra = json.loads(json.dumps(extra, default=_json_default))
        gen_dir = export_generator(self.gan.gen_ab, self.cfg.model, out_dir or self.out / "generator", extra=extra, dtype=dtype)
        if self.cfg.keep_exports and out_dir is None:
            export_generator(self.gan.gen_ab, self.cfg.model, self.out / "exports" / f"step-{self.step:07d}", extra=extra, dtype=dtype)
        return gen_dir

def _val_text(v: dict[str, Any]) -> str:
    """One readable line of validation figures (progress log)."""
    def f(x: Any, fmt: str = ".3f") -> str:
        return "-" if x is None else format(x, fmt)

    text = (f"val @ step {v.get('step')} (epoch {v.get('epoch')}): AUC {f(v.get('all', {}).get('auc'))}, "
            f"F1 {f(v.get('all', {}).get('f1'))}, AUC domain A {f(v.get('domain_A', {}).get('auc'))}")
    r = v.get("restoration")
    if r:
        text += (f" | {r['passes']} passes: SSIM to input {r['ssim_to_input']:.3f}, change {r['mean_abs_change']:.2f} grey levels, "
                 f"blur+noise PSNR {r['psnr_degraded']:.2f} -> {r['psnr_restored']:.2f} dB ({r['psnr_gain']:+.2f})")
    return text


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: str | Path | None = None, data: TrainData | None = None, progress: bool = True) -> dict[str, Any]:
    """Build the data and trainer, optionally resume, run. Returns the summary."""
    own_group = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        # started by torchrun: gloo on CPU, NCCL on CUDA; every process reads the same data and takes its share
        backend = "nccl" if pick_device(cfg.device).type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
        own_group = True
    try:
        return _train(cfg, out_dir, resume=resume, data=data, progress=progress)
    finally:
        if own_group:
            torch.distributed.destroy_process_group()


def _train(cfg: TrainConfig, out_dir: str | Path, *, resume: str | Path | None, data: TrainData | None, progress: bool) -> dict[str, Any]:
    if data is None:
        data = TrainData.from_config(cfg, progress)
    return resume_and_run(Trainer(cfg, out_dir, data, progress=progress), resume)


__all__ = ["LOG_COLUMNS", "NETS", "STATE_KIND", "TrainData", "Trainer", "ValData", "dist_rank_world", "state_config", "train"]
