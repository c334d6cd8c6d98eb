"""The R2C-GAN trainer's exactly resumable state (all four networks, pools, both Adam states, step) and its compact
form (methods of :class:`~r2c_core.training.trainer.Trainer`)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoints import load_checkpoint, load_state_into, sub_state
from ..errors import CheckpointError
from ..runio import (
    load_optimizers,
    resolve_state_dir,
    save_training_state,
    state_training_dict,
)
from . import compact
from .config import TrainConfig, config_from_dict

log = logging.getLogger(__name__)

STATE_KIND = "r2c-training-state"
G_TERMS = (
    "A2B_g_loss", "B2A_g_loss", "A2B2A_cycle_loss", "B2A2B_cycle_loss", "A2A_id_loss", "B2B_id_loss",
    "A2B_c_loss", "B2A_c_loss", "A2B2A_c_loss", "B2A2B_c_loss", "A2A_c_loss", "B2B_c_loss", "G_loss",
)
D_TERMS = ("D_A_real_loss", "D_A_fake_loss", "D_B_real_loss", "D_B_fake_loss", "D_loss")
LOG_COLUMNS = ("step", "epoch", "lr", *G_TERMS, *D_TERMS, "seconds")
NETS = ("gen_ab", "gen_ba", "disc_a", "disc_b")


class StateMixin:
    """``save_state`` / ``load_state`` for :class:`~r2c_core.training.trainer.Trainer`."""

    # ------------------------------------------------------------------------------------- training state
    def save_state(self, state_dir: str | Path | None = None) -> Path:
        d = Path(state_dir) if state_dir else self.out / "state"
        tensors: dict[str, torch.Tensor] = {}
        for name in NETS:
            for k, v in getattr(self.gan, name).state_dict().items():
                tensors[f"{name}.{k}"] = v
        for name, pool in (("pool_a", self.pool_a), ("pool_b", self.pool_b)):
            if len(pool):
                tensors[name] = pool.state()
        cfg = {"kind": STATE_KIND, "model": self.cfg.model, "step": self.step, "steps_per_epoch": self.steps_per_epoch,
               "total_steps": self.total_steps, "warm_done": self.warm_done, "training": self.cfg.to_dict(), "data_split": self.data.split}
        cfg = json.loads(json.dumps(cfg, default=_json_default))
        save_training_state(d, tensors, cfg, {"opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()})
        if self.cfg.compact_state and state_dir is None:
            nets = {name: getattr(self.gan, name).state_dict() for name in NETS}
            where = compact.resolve(self.cfg.compact_state)
            if compact.save(where, nets, {"opt_g": self.opt_g, "opt_d": self.opt_d}, {**cfg, "kind": compact.KIND},
                            max_bytes=int(self.cfg.compact_state_mib * 2**20)):
                compact.copy_logs(self.out, where)
        return d

    def load_state(self, state_dir: str | Path) -> None:
        d = resolve_state_dir(state_dir)
        tensors, cfg = load_checkpoint(d, same_save=True)
        if cfg.get("kind") == compact.KIND:
            self._load_compact(d, tensors, cfg)
            return
        if cfg.get("kind") != STATE_KIND:
            raise CheckpointError(f"{d}: not a training state (kind {cfg.get('kind')!r})")
        if cfg.get("model") != self.cfg.model:
            raise CheckpointError(f"{d}: state is for model {cfg.get('model')!r}, config says {self.cfg.model!r}")
        for name in NETS:
            load_state_into(getattr(self.gan, name), sub_state(tensors, name), what=f"{d} ({name})")
        self.pool_a.load_state(tensors.get("pool_a", torch.empty(0)), self.device)
        self.pool_b.load_state(tensors.get("pool_b", torch.empty(0)), self.device)
        opt = load_optimizers(d, self.device, cfg.get("save_token"))
        self.opt_g.load_state_dict(opt["opt_g"])
        self.opt_d.load_state_dict(opt["opt_d"])
        self._set_step(d, cfg)

    def _set_step(self, d: Path, cfg: dict[str, Any]) -> None:
        self._resumed = True
        self.step = int(cfg["step"])
        self.warm_done = bool(cfg.get("warm_done", True))
        if int(cfg.get("steps_per_epoch", self.steps_per_epoch)) != self.steps_per_epoch:
            raise CheckpointError(f"{d}: steps per epoch differ ({cfg.get('steps_per_epoch')} vs {self.steps_per_epoch}): data or batch size changed")

    def _load_compact(self, d: Path, tensors: dict[str, torch.Tensor], cfg: dict[str, Any]) -> None:
        """Resume from a compact state (bf16 weights and Adam moments, no pools): close to, not bit-equal to, the run."""
        if cfg.get("model") != self.cfg.model:
            raise CheckpointError(f"{d}: compact state is for model {cfg.get('model')!r}, config says {self.cfg.model!r}")
        nets = {name: getattr(self.gan, name) for name in NETS}
        compact.load(d, tensors, nets, {"opt_g": self.opt_g, "opt_d": self.opt_d}, self.device)
        if not (self.out / "train_log.csv").exists():
            compact.copy_logs(d, self.out)  # the run's history, so that logs and curves continue on a fresh machine
        self._set_step(d, cfg)
        log.info("resumed from the compact state %s at step %d (bf16 weights and moments; history pools empty)", d, self.step)



def state_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """The training config stored in a state folder, with overrides (e.g. a larger ``max_steps``)."""
    from ..checkpoints import read_config

    if read_config(resolve_state_dir(path)).get("kind") == compact.KIND:
        return config_from_dict(state_training_dict(path, compact.KIND, "a compact training state"), overrides)
    return config_from_dict(state_training_dict(path, STATE_KIND, "a training state"), overrides)



def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


