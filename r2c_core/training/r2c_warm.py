"""Starting an R2C-GAN run: the identity warm start of the generators, and initialisation from an export or a state
(methods of :class:`~r2c_core.training.trainer.Trainer`)."""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ..checkpoints import load_checkpoint, load_state_into, sub_state
from ..errors import CheckpointError
from ..runio import resolve_state_dir
from . import compact
from .r2c_state import NETS, STATE_KIND

log = logging.getLogger(__name__)


class WarmStartMixin:
    """``warm_start`` and ``init_from`` for :class:`~r2c_core.training.trainer.Trainer`."""

    def warm_start(self) -> None:
        """Identity pre-training of both generators (``warm_start_steps`` steps; docs/TRAINING.md, "Warm start").

        Each step: both generators map a batch of A and a batch of B images onto themselves, loss
        ``L1(G(x), x)`` summed over the four passes, plus ``warm_start_class`` times the cross-entropy of the four
        class outputs against the images' labels. A separate Adam (the run's lr and betas) is discarded afterwards,
        so the GAN schedule starts exactly as without a warm start, only from other weights. Batches are those of
        the GAN's first steps (a pure function of the seed). With ``warm_start_disc`` both discriminators take a
        step of their own per warm step (:meth:`_warm_disc_step`, another discarded Adam). Logged to
        ``<out>/warm_log.csv``; the state is saved when it ends, so an interruption during the GAN phase never
        repeats it.
        """
        from ..losses import class_loss, l1

        cfg = self.cfg
        n = cfg.warm_start_steps
        opt = torch.optim.Adam(self.gen_params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)
        opt_d = torch.optim.Adam(self.disc_params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps) \
            if cfg.warm_start_disc else None
        gens = (self.nets["gen_ab"], self.nets["gen_ba"])
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / "warm_log.csv"
        t0 = time.perf_counter()
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["step", "id_loss", "class_loss", "d_loss", "seconds"])
            writer.writeheader()
            bar = tqdm(range(n), desc=f"warm start {cfg.model}", unit="step", disable=not (self.progress and self.is_main), dynamic_ncols=True)
            for i in bar:
                ts = time.perf_counter()
                real_a, real_b, label_a, label_b = self._to_device(self._share(self.data.batches.batch(i)))
                opt.zero_grad(set_to_none=True)
                with self._autocast():
                    id_terms, cls_terms = [], []
                    for gen in gens:
                        for x, lab in ((real_a, label_a), (real_b, label_b)):
                            y, logits = gen(x)
                            id_terms.append(l1(x, y))
                            cls_terms.append(class_loss(logits, lab, cfg.loss.cross_entropy))
                    id_loss, cls_loss = sum(id_terms), sum(cls_terms)
                    loss = id_loss + cfg.warm_start_class * cls_loss
                loss.backward()
                self._average_gradients(self.gen_params)
                opt.step()
                d_v = self._warm_disc_step(opt_d, real_a, real_b) if opt_d is not None else float("nan")
                id_v, cls_v = float(id_loss.detach()), float(cls_loss.detach())
                writer.writerow({"step": i, "id_loss": f"{id_v:.6g}", "class_loss": f"{cls_v:.6g}", "d_loss": f"{d_v:.6g}",
                                 "seconds": round(time.perf_counter() - ts, 4)})
                bar.set_postfix(id=f"{id_v:.4f}", cls=f"{cls_v:.3f}")
                if i % 10 == 9:
                    fh.flush()
                    self._progress(f"warm start {i + 1}/{n}: id {id_v:.4f} class {cls_v:.3f}", every_s=120)
        self.warm_done = True
        log.info("warm start: %d steps in %.1f s", n, time.perf_counter() - t0)
        if self.is_main:
            self.save_state()

    def _warm_disc_step(self, opt_d: torch.optim.Optimizer, real_a: torch.Tensor, real_b: torch.Tensor) -> float:
        """One step of both discriminators during the warm start: the GAN's D terms (spec 1.11) on the real images
        against the generators' current translations, detached (no pool)."""
        from ..losses import discriminator_losses

        with torch.no_grad(), self._autocast():
            fake_b, _ = self.nets["gen_ab"](real_a)
            fake_a, _ = self.nets["gen_ba"](real_b)
        opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            d_loss = discriminator_losses(self.gan, real_a, real_b, fake_a, fake_b)["D_loss"]
        d_loss.backward()
        self._average_gradients(self.disc_params)
        opt_d.step()
        return float(d_loss.detach())

    def init_from(self, path: str | Path) -> list[str]:
        """Load the networks found in ``path`` (see ``TrainConfig.init_from``); returns the names loaded."""
        from ..checkpoints import GENERATOR_KIND, read_config
        from ..paths import REPO_ROOT

        p = Path(path)
        p = p if p.is_absolute() or p.exists() else REPO_ROOT / p
        d = resolve_state_dir(p) if (p / "state" / "config.json").is_file() else p
        cfg = read_config(d)
        if cfg.get("model") != self.cfg.model:
            raise CheckpointError(f"init_from {d}: weights of model {cfg.get('model')!r}, config says {self.cfg.model!r}")
        tensors, _ = load_checkpoint(d)
        if cfg.get("kind") == GENERATOR_KIND:
            load_state_into(self.gan.gen_ab, tensors, what=f"init_from {d}")
            loaded = ["gen_ab"]
        elif cfg.get("kind") in (STATE_KIND, compact.KIND):
            loaded = []
            for name in NETS:
                load_state_into(getattr(self.gan, name), sub_state(tensors, name), what=f"init_from {d} ({name})")
                loaded.append(name)
        else:
            raise CheckpointError(f"init_from {d}: kind {cfg.get('kind')!r} is neither a generator export nor a training state")
        log.info("initialised %s from %s", ", ".join(loaded), d)
        return loaded

