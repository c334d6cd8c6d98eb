"""Training HQG-Net on our quality domains, on the shared run loop (:mod:`r2c_core.training.loop`).

Data: the R2C-GAN trainer's unpaired A/B batches (:class:`~r2c_core.training.loader.UnpairedBatches`, train split
of the split file), each whole frame resized to ``size`` with a random flip (no zoomed crop: the scale of the
reference candidates, validation and inference), mapped to [0, 1]. Each
step takes a low-quality image (domain A, label 0) and a high-quality reference (domain B, label 1); with
probability ``swap_prob`` (seeded per step) the two roles swap, as in the public code.

Two phases in one run, by step: the first ``ae_steps`` steps pretrain the style autoencoder on both domains
(MSE + the clamped (1 - SSIM) / 2 on 3 x 3 windows, as the code's pre-training), the rest train the GAN: one D step (R1 on real images), then one
step of G and the style encoder together (:func:`r2c_core.hqg_losses.generator_loss`), three Adams (lr 1e-4,
betas 0.9 / 0.999), the rate halved from epoch ``lr_halve_epoch`` of the GAN phase. HQG-Net trains at the full
working size (no smaller crops): its style encoder and discriminator end in a convolution over what is left of
the image, so their weights depend on the input size.

Bi-level variant (HQG+BLO; the paper's bi-level learning, absent from the public code), on when
``weights.task`` > 0: the downstream task is COVID-19 classification (our study asks which image a doctor would
rather *diagnose* from, and R2C-GAN optimises the same classification jointly), by a ResNet-18
(:class:`~r2c_core.models.hqg.TaskClassifier`). Lower level: the classifier takes one Adam step on the enhanced
low-quality images (detached) with their COVID labels; upper level: G's loss carries ``weights.task`` x the
classifier's cross-entropy on the same enhanced images, the classifier frozen for that backward (a first-order
alternation: one lower step per upper step, as bi-level enhancement methods do in practice). Swapped steps (a
high-quality input made low-quality) carry no task terms. ``task_warmup_steps`` train the classifier alone first,
on the outputs of G in eval mode (as in use; G's statistics untouched), so G's first task gradients come from a
classifier that has learnt something; ``init_from`` starts every network from a finished HQG-Net run's state
when a run starts (e.g. HQG+BLO fine-tuned from the trained HQG-Net; :meth:`HQGTrainer.init_networks`). Its exports hold the classifier too
(model ``hqg-blo``), which then gives the method its COVID probability.

Exports (``<out>/generator``): the generator and the *reference code*: the style code of the train-split
high-quality image chosen by :func:`r2c_core.models.hqg.style_medoid` (its id is in ``config.json``), so
inference needs neither the style encoder nor a reference image and is reproducible.
Resume is exact: every random draw comes from a generator seeded by the step.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoints import load_checkpoint, load_state_into, save_checkpoint, sub_state
from ..errors import CheckpointError
from ..hqg_losses import HQGNets, autoencoder_loss, discriminator_loss, generator_loss, task_loss
from ..metrics import nan_to_none, point_metrics
from ..models import CLASS_NAMES
from ..models.hqg import (
    HIGH_QUALITY,
    AutoEncoder,
    HQGConfig,
    HQGDiscriminator,
    HQGGenerator,
    StyleEncoder,
    TaskClassifier,
    style_medoid,
    to_gray,
    to_rgb3,
)
from ..precision import autocast, use_bf16
from ..runio import load_optimizers, resolve_state_dir, save_training_state
from ..tensors import pick_device
from .hqg_setup import STATE_KIND, HQGData, HQGTrainConfig, hqg_config_from_dict, load_hqg_config, state_hqg_config
from . import restval
from .loader import seeded_generator, to_input
from .loop import LoopResult, LoopSettings, RunLoop, resume_and_run

log = logging.getLogger(__name__)

EXPORT_KIND = "hqg-generator"
#: phases in the step log: 0 autoencoder pretraining, 1 GAN, 2 the bi-level variant's classifier warm-up
LOG_COLUMNS = ("step", "epoch", "phase", "lr", "ae", "d_real", "d_fake", "r1", "g_adv", "style", "cycle", "structure",
               "luminance", "wavelet", "task", "seconds")
NETS = ("g", "ae", "s_heads", "d")


class HQGTrainer:
    """One HQG-Net run: the hooks of :class:`~r2c_core.training.loop.RunLoop` plus state, export and resume."""

    def __init__(self, cfg: HQGTrainConfig, out_dir: str | Path, data: HQGData, *, progress: bool = True) -> None:
        self.cfg, self.out, self.data, self.progress = cfg, Path(out_dir), data, progress
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.device = pick_device(cfg.device or None)
        self.amp = use_bf16(self.device, True, cfg.cpu_amp)
        torch.manual_seed(cfg.seed)
        net_cfg = HQGConfig(img_size=cfg.size, adain_shortcut=cfg.adain_shortcut)
        self.ae = AutoEncoder(net_cfg).to(self.device)
        style = StyleEncoder(net_cfg, self.ae).to(self.device)
        self.nets = HQGNets(g=HQGGenerator(net_cfg).to(self.device), s=style, d=HQGDiscriminator(net_cfg).to(self.device))
        betas = (cfg.beta1, cfg.beta2)
        self.opt_ae = torch.optim.Adam(self.ae.parameters(), lr=cfg.lr, betas=betas)
        self.opt_g = torch.optim.Adam(self.nets.g.parameters(), lr=cfg.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.nets.d.parameters(), lr=cfg.lr, betas=betas)
        # the style encoder's trunk is the autoencoder's encoder (shared modules), fine-tuned with its heads
        self.opt_s = torch.optim.Adam([*self.ae.encoder.parameters(), *style.heads.parameters()], lr=cfg.lr, betas=betas)
        self.task: TaskClassifier | None = None
        if cfg.bilevel:
            self.task = TaskClassifier(len(CLASS_NAMES)).to(self.device)
            self.opt_t = torch.optim.Adam(self.task.parameters(), lr=cfg.task_lr or cfg.lr, betas=betas)
        self.steps_per_epoch = data.batches.steps_per_epoch
        self.total_steps = cfg.gan_start + cfg.epochs * self.steps_per_epoch
        self.step = 0
        self.reference_id = ""
        self.last_val: dict[str, Any] = {}

    # -------------------------------------------------------------------------------- the run loop's hooks
    def end_step(self) -> int:
        return min(self.total_steps, self.cfg.max_steps) if self.cfg.max_steps else self.total_steps

    def loop_settings(self) -> LoopSettings:
        return LoopSettings(end=self.end_step(), desc="train hqg", log_columns=LOG_COLUMNS,
                            max_minutes=self.cfg.max_minutes or None, checkpoint_every=self.cfg.checkpoint_every,
                            checkpoint_minutes=self.cfg.checkpoint_minutes, progress=self.progress)

    def batch_at(self, step: int) -> tuple[torch.Tensor, ...]:
        """Images in [0, 1] and COVID class indices of both domains. The GAN phase starts its own epochs at batch
        0; the autoencoder steps and the classifier warm-up use the first batches."""
        cfg = self.cfg
        index = step - cfg.gan_start if step >= cfg.gan_start else step - cfg.ae_steps if step >= cfg.ae_steps else step
        xa, xb, la, lb = self.data.batches.batch(index)
        return (xa + 1) / 2, (xb + 1) / 2, la.argmax(1), lb.argmax(1)

    def at_epoch_end(self) -> bool:
        gan = self.step - self.cfg.gan_start
        return gan > 0 and gan % self.steps_per_epoch == 0

    def epoch_at(self, step: int) -> int:
        """The GAN epoch of ``step`` (0 during the autoencoder pretraining and the classifier warm-up)."""
        return max(0, step - self.cfg.gan_start) // self.steps_per_epoch

    def lr_at(self, step: int) -> float:
        epoch = self.epoch_at(step)
        halve = self.cfg.lr_halve_epoch and epoch >= self.cfg.lr_halve_epoch
        return self.cfg.lr * (0.5 if halve else 1.0)

    def train_step(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        xa, xb, ca, _ = (t.to(self.device) for t in batch)
        if self.step < self.cfg.ae_steps:
            return {"phase": 0.0, "lr": self.cfg.lr, "ae": self._ae_step(torch.cat([xa, xb]))}
        if self.step < self.cfg.gan_start:  # the bi-level variant's classifier warm-up on the current enhancement:
            self.nets.g.eval()  # G and s as they enhance in use, and their BatchNorm statistics left as they are
            self.nets.s.eval()
            try:
                with torch.no_grad(), autocast(self.device, self.amp):
                    fake = self.nets.g(xa, self.nets.s(xb, torch.full_like(ca, HIGH_QUALITY)))
            finally:
                self.nets.g.train()
                self.nets.s.train()
            return {"phase": 2.0, "lr": self.cfg.task_lr or self.cfg.lr, "task": self._task_step(fake, ca)}
        lr = self.lr_at(self.step)
        for opt in (self.opt_g, self.opt_d, self.opt_s):
            for group in opt.param_groups:
                group["lr"] = lr
        n = xa.shape[0]
        y_low, y_high = torch.zeros(n, dtype=torch.long, device=self.device), torch.ones(n, dtype=torch.long, device=self.device)
        x_org, y_org, x_ref, y_trg = xa, y_low, xb, y_high
        g = seeded_generator(self.cfg.seed, "hqg-swap", self.step)
        swapped = float(torch.rand((), generator=g)) < self.cfg.swap_prob
        if swapped:
            x_org, y_org, x_ref, y_trg = xb, y_high, xa, y_low
        task = self.task if self.task is not None and not swapped else None
        outputs: dict[str, torch.Tensor] = {}
        with autocast(self.device, self.amp):
            d_loss, d_terms = discriminator_loss(self.nets, x_org, y_org, x_ref, y_trg, self.cfg.weights)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        frozen = [self.nets.d] + ([task] if task is not None else [])  # G's step needs no gradients for D's weights (2-3 %
        try:  # of a step, same result); the upper level: gradients through the classifier to G, none for its weights
            for m in frozen:
                m.requires_grad_(False)
            with autocast(self.device, self.amp):
                g_loss, g_terms = generator_loss(self.nets, x_org, y_org, x_ref, y_trg, self.cfg.weights,
                                                 generator=seeded_generator(self.cfg.seed, "hqg-noise", self.step),
                                                 task=task, task_labels=ca, outputs=outputs)
            self.opt_g.zero_grad(set_to_none=True)
            self.opt_s.zero_grad(set_to_none=True)
            g_loss.backward()
        finally:
            for m in frozen:
                m.requires_grad_(True)
        self.opt_g.step()
        self.opt_s.step()
        if task is not None:  # the lower level: the classifier on the enhanced images it is meant to read (its loss
            self._task_step(outputs["fake"].detach(), ca)  # before the step equals the upper level's ``task`` term)
        return {"phase": 1.0, "lr": lr, **d_terms, **g_terms}

    def _task_step(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        assert self.task is not None
        with autocast(self.device, self.amp):
            loss = task_loss(self.task, images, labels)
        self.opt_t.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_t.step()
        return float(loss.detach())

    def _ae_step(self, x: torch.Tensor) -> float:
        with autocast(self.device, self.amp):
            rec = self.ae(x)
        loss = autoencoder_loss(rec, x)  # float32, the public code's pre-training loss
        self.opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_ae.step()
        return float(loss.detach())

    def postfix(self, terms: dict[str, float]) -> dict[str, str]:
        if terms.get("phase") == 0.0:
            return {"ae": f"{terms['ae']:.3f}"}
        if terms.get("phase") == 2.0:
            return {"task": f"{terms['task']:.3f}"}
        return {"G": f"{terms['g_adv']:.3f}", "D": f"{terms['d_real'] + terms['d_fake']:.3f}", "lr": f"{terms['lr']:.1e}"}

    def on_step_end(self, terms: dict[str, float], end: int) -> None:
        """One readable line in ``<out>/progress.log`` at most every 2 minutes (the campaign follows it)."""
        now = time.perf_counter()
        if now - getattr(self, "_last_progress", 0.0) < 120:
            return
        self._last_progress = now
        phase = terms.get("phase")
        what = (f"autoencoder {terms['ae']:.4f}" if phase == 0.0 else f"classifier warm-up CE {terms['task']:.4f}"
                if phase == 2.0 else
                f"G {terms['g_adv']:.3f} D {terms['d_real'] + terms['d_fake']:.3f} R1 {terms['r1']:.3g} lr {terms['lr']:.1e}"
                + (f" task CE {terms['task']:.3f}" if "task" in terms else ""))
        epoch = max(0, self.step - self.cfg.gan_start) / self.steps_per_epoch
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        with open(self.out / "progress.log", "a") as fh:
            fh.write(f"{stamp} hqg step {self.step}/{end} GAN epoch {epoch:.2f}/{self.cfg.epochs} | {what}\n")

    def on_epoch_end(self, last: bool) -> None:
        epoch = (self.step - self.cfg.gan_start) // self.steps_per_epoch
        if self.cfg.export_every and epoch % self.cfg.export_every == 0 and not last:
            code = self.reference_code()
            self.validate(code)
            self.export(self.out / "exports" / f"step-{self.step:07d}", code)

    def finish(self, result: LoopResult) -> dict[str, Any]:
        # the exports before the state: a stop by SIGTERM may be followed by SIGKILL (the GPU run's stage limit), and the
        # generator is what must come out of it, not the ~1 GB state
        code = self.reference_code()
        if self.step > self.cfg.gan_start and self.last_val.get("step") != self.step:
            # a candidate for choosing on validation, as every epoch export is (unless this step's export exists)
            self.validate(code)
            self.export(self.out / "exports" / f"step-{self.step:07d}", code)
        gen_dir = self.export(None, code)
        self.save_state()
        summary = nan_to_none({"step": self.step, "total_steps": self.total_steps, "stopped_early": result.stopped_early,
                               "steps_run": result.steps_run, "seconds": round(result.seconds, 2),
                               "seconds_per_step": round(result.seconds / max(1, result.steps_run), 4),
                               "generator": str(gen_dir), "reference_id": self.reference_id, "state": str(self.out / "state")})
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        return summary

    def run(self) -> dict[str, Any]:
        return RunLoop(self).run()

    # ------------------------------------------------------------------------------------- export / state
    def reference_code(self) -> torch.Tensor:
        """The inference reference: the style medoid of the train-split high-quality candidates (its id is kept)."""
        self.reference_id, code = style_medoid(self.nets.s, self.data.references, domain=HIGH_QUALITY)
        return code

    @torch.no_grad()
    def validate(self, code: torch.Tensor, batch_size: int = 8) -> dict[str, Any]:
        """Validation for choosing an export (never the test split), appended to ``<out>/val_log.jsonl``: the
        restoration metrics of :mod:`~r2c_core.training.restval` on ``val_restoration`` validation images of both
        domains after ``val_passes`` passes with the reference ``code``; with the bi-level classifier, also its
        classification of every validation image after one pass (pooled and domain A), as the method reports it."""
        val = self.data.val
        if val is None or not (self.cfg.val_restoration or self.task is not None):
            self.last_val = {}
            return {}
        rec: dict[str, Any] = {"step": self.step, "epoch": round(max(0, self.step - self.cfg.gan_start) / self.steps_per_epoch, 3),
                               "n": len(val.ids)}
        enhancer = _AsR2CGenerator(self.nets.g, code.to(self.device))
        modes = {m: m.training for m in (self.nets.g, self.task) if m is not None}  # put back as found
        if self.task is not None:
            self.task.eval()
            probs = []
            for s in range(0, len(val.ids), batch_size):
                x = to_input(val.images[s : s + batch_size]).to(self.device)  # [-1, 1], 3 channels
                with autocast(self.device, self.amp):
                    y, _ = enhancer.eval()(x)
                    probs.append(torch.softmax(self.task((y.float() + 1) / 2).float(), dim=1)[:, 1].cpu())
            p = torch.cat(probs).numpy()
            is_a = np.array([d == "A" for d in val.domains])
            rec["all"] = point_metrics(val.labels, p)
            rec["domain_A"] = point_metrics(val.labels[is_a], p[is_a])
        if self.cfg.val_restoration:
            rec["restoration"] = restval.restoration_metrics(
                enhancer, restval.pick_images(val.images, val.domains, self.cfg.val_restoration), passes=self.cfg.val_passes,
                seed=self.cfg.seed, device=self.device, autocast=lambda: autocast(self.device, self.amp))
        for m, was_training in modes.items():
            m.train(was_training)
        self.last_val = nan_to_none(rec)
        with open(self.out / "val_log.jsonl", "a") as fh:
            fh.write(json.dumps(self.last_val) + "\n")
        r = self.last_val.get("restoration") or {}
        auc = (self.last_val.get("all") or {}).get("auc")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        with open(self.out / "progress.log", "a") as fh:
            fh.write(f"{stamp} hqg val @ step {self.step}: " + (f"AUC {auc:.3f} | " if auc is not None else "")
                     + (f"{r['passes']} pass(es): SSIM to input {r['ssim_to_input']:.3f}, change {r['mean_abs_change']:.2f} "
                        f"grey levels, blur+noise PSNR {r['psnr_degraded']:.2f} -> {r['psnr_restored']:.2f} dB "
                        f"({r['psnr_gain']:+.2f})" if r else "") + "\n")
        return self.last_val

    def export(self, out_dir: str | Path | None = None, code: torch.Tensor | None = None) -> Path:
        """The generator and the reference code of the style medoid (see the module doc), in ``export_dtype``."""
        code = self.reference_code() if code is None else code
        tensors = {**{f"g.{k}": v for k, v in self.nets.g.state_dict().items()}, "reference_code": code.cpu()}
        extra: dict[str, Any] = {}
        if self.task is not None:
            tensors.update({f"task.{k}": v for k, v in self.task.state_dict().items()})
            extra["task"] = {"network": "resnet18", "classes": list(CLASS_NAMES), "weight": self.cfg.weights.task,
                             "trained_on": "the generator's enhanced train-split low-quality images"}
        cfg = {"kind": EXPORT_KIND, "model": "hqg-blo" if self.task is not None else "hqg", "working_size": self.cfg.size,
               "version": self.cfg.version, **extra,
               "normalisation": "gray uint8 -> x / 255 in [0, 1], replicated to 3 channels; output mean of 3 channels",
               "network": {"adain_shortcut": self.cfg.adain_shortcut},
               "reference": {"id": self.reference_id, "rule": "style medoid of the train-split high-quality images",
                             "candidates": len(self.data.references)},
               "training": {**self.cfg.to_dict(), "step": self.step, "steps_per_epoch": self.steps_per_epoch,
                            "total_steps": self.total_steps, "device": str(self.device)},
               "data_split": self.data.split, "validation": self.last_val,
               "weights_dtype": self.cfg.export_dtype}
        dtype = torch.float16 if self.cfg.export_dtype == "float16" else None
        return save_checkpoint(out_dir or self.out / "generator", tensors, json.loads(json.dumps(cfg, default=str)), dtype=dtype)

    def _modules(self) -> dict[str, torch.nn.Module]:
        mods = {"g": self.nets.g, "ae": self.ae, "s_heads": self.nets.s.heads, "d": self.nets.d}
        return {**mods, "task": self.task} if self.task is not None else mods

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"opt_ae": self.opt_ae, "opt_g": self.opt_g, "opt_d": self.opt_d, "opt_s": self.opt_s}
        return {**opts, "opt_t": self.opt_t} if self.task is not None else opts

    def init_networks(self, path: str | Path) -> None:
        """Every network from a *finished* HQG-Net run's state (the classifier too if that state has one); optimisers
        and the step count start fresh. :func:`train_hqg` calls it for ``init_from`` when a run starts (not when it
        resumes: its own state then holds everything)."""
        d = resolve_state_dir(Path(path))
        tensors, cfg = load_checkpoint(d)
        if cfg.get("kind") != STATE_KIND:
            raise CheckpointError(f"{d}: not an HQG-Net training state (kind {cfg.get('kind')!r}), cannot start from it")
        src = hqg_config_from_dict(cfg.get("training", {}))
        total = src.gan_start + src.epochs * int(cfg.get("steps_per_epoch", 0))
        if int(cfg.get("step", 0)) < total:
            raise CheckpointError(f"{d}: that HQG-Net run has not finished (step {cfg.get('step')} of {total}); "
                                  "finish it first (python -m r2c_core campaign run --only hqg)")
        for name, module in self._modules().items():
            part = sub_state(tensors, name)
            if name == "task" and not part:
                continue
            load_state_into(module, part, what=f"{d} ({name})")
        log.info("HQG-Net networks initialised from %s (step %s)", d, cfg.get("step"))

    def save_state(self, state_dir: str | Path | None = None) -> Path:
        d = Path(state_dir) if state_dir else self.out / "state"
        tensors = {f"{name}.{k}": v for name, m in self._modules().items() for k, v in m.state_dict().items()}
        cfg = {"kind": STATE_KIND, "step": self.step, "steps_per_epoch": self.steps_per_epoch, "total_steps": self.total_steps,
               "gan_start": self.cfg.gan_start, "training": self.cfg.to_dict(), "data_split": self.data.split}
        # the autoencoder's own Adam is used only for the first ae_steps steps: after them its moments (315 MB of the
        # ~1.3 GB state at 256 px) are not written, and a resume past that point leaves it fresh (never used again)
        opts = {k: o.state_dict() for k, o in self._optimizers().items() if not (k == "opt_ae" and self.step >= self.cfg.ae_steps)}
        save_training_state(d, tensors, json.loads(json.dumps(cfg, default=str)), opts)
        return d

    def load_state(self, state_dir: str | Path) -> None:
        d = resolve_state_dir(state_dir)
        tensors, cfg = load_checkpoint(d, same_save=True)
        if cfg.get("kind") != STATE_KIND:
            raise CheckpointError(f"{d}: not an HQG-Net training state (kind {cfg.get('kind')!r})")
        if int(cfg.get("steps_per_epoch", -1)) != self.steps_per_epoch:
            raise CheckpointError(f"{d}: steps per epoch differ ({cfg.get('steps_per_epoch')} vs {self.steps_per_epoch})")
        for name, module in self._modules().items():
            load_state_into(module, sub_state(tensors, name), what=f"{d} ({name})")
        opt = load_optimizers(d, self.device, cfg.get("save_token"))
        step = int(cfg["step"])
        for k, o in self._optimizers().items():
            if k == "opt_ae" and k not in opt and step >= self.cfg.ae_steps:
                continue  # not saved past the autoencoder pretraining (save_state)
            if k not in opt:
                raise CheckpointError(f"{d}: optim.pt has no {k} state")
            o.load_state_dict(opt[k])
        self.step = step


class _AsR2CGenerator(torch.nn.Module):
    """HQG-Net's generator with a fixed reference code, seen as an R2C-GAN generator by
    :mod:`~r2c_core.training.restval`: 3 channels in [-1, 1] in, (the gray result on 3 channels in [-1, 1], None) out."""

    def __init__(self, g: torch.nn.Module, code: torch.Tensor) -> None:
        super().__init__()
        self.g, self.code = g, code

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        y = self.g((x + 1) / 2, self.code.to(x.dtype).expand(x.shape[0], -1))
        return to_rgb3(to_gray(y)) * 2 - 1, None


def train_hqg(cfg: HQGTrainConfig, out_dir: str | Path, *, resume: str | Path | None = None,
              data: HQGData | None = None, progress: bool = True) -> dict[str, Any]:
    """Build the data and trainer, optionally resume, run. Returns the summary."""
    t0 = time.perf_counter()
    data = data or HQGData.from_config(cfg, progress)
    log.info("HQG-Net data ready in %.1f s", time.perf_counter() - t0)
    trainer = HQGTrainer(cfg, out_dir, data, progress=progress)
    if cfg.init_from and resume is None:
        trainer.init_networks(cfg.init_from)
    return resume_and_run(trainer, resume)


__all__ = ["EXPORT_KIND", "HQGData", "HQGTrainConfig", "HQGTrainer", "STATE_KIND", "hqg_config_from_dict", "load_hqg_config",
           "state_hqg_config", "train_hqg"]
