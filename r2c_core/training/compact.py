"""Compact resumable training states: small enough to commit, replaced in place (training campaigns, TRAINING.md).

A full state (``<out>/state/``) keeps float32 weights, both Adam states and the history pools, and resumes a run
bit for bit; for op-q3 at 128-px crops it is about 50 MB. The compact state keeps the weights of every network
and the Adam moments in bfloat16 and no pools (they refill within 50 steps), so that a campaign can continue on a
fresh machine from what is committed. Resuming from it is close to, not equal to, the uninterrupted run: every
weight and moment is rounded to bf16 once, and the pools start empty.

If the state would exceed its byte budget, Adam moments are left out, the discriminators' first, then the
generators'; the config records what was kept (``kept``), and a resume then starts those moments from zero.

When a run's schedule ends, its compact state has nothing left to resume: :func:`mark_finished` replaces it by a
record (``finished.json``: the run's summary and training config) beside the logs, so that a campaign on a fresh
machine knows the recipe is done and the repository no longer carries its weights (the chosen export ships under
``weights/``).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..checkpoints import WEIGHTS_FILE, load_state_into, save_checkpoint, sub_state
from ..errors import CheckpointError
from ..paths import REPO_ROOT

log = logging.getLogger(__name__)

KIND = "r2c-compact-state"
FINISHED = "finished.json"


def resolve(directory: str | Path) -> Path:
    """A compact-state folder from a config (``campaign/op-q3``): relative paths are relative to the repository,
    whatever the working directory, as the campaign reads them."""
    d = Path(directory)
    return d if d.is_absolute() else REPO_ROOT / d


MOMENTS = ("exp_avg", "exp_avg_sq")


def _moments(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], float]:
    out: dict[str, torch.Tensor] = {}
    step = 0.0
    for idx, st in opt.state_dict()["state"].items():
        for m in MOMENTS:
            if m in st:
                out[f"{name}.{idx}.{m}"] = st[m].detach().to("cpu", torch.bfloat16)
        if "step" in st:
            step = float(st["step"])
    return out, step


def _nbytes(tensors: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def save(directory: str | Path, nets: Mapping[str, Mapping[str, torch.Tensor]], opts: Mapping[str, torch.optim.Optimizer],
         config: Mapping[str, Any], *, max_bytes: int, drop_order: tuple[str, ...] = ("opt_d", "opt_g")) -> Path | None:
    """Write the compact state of ``nets`` (name -> state dict) and ``opts`` into ``directory`` (in place).

    Returns the folder, or ``None`` (with a warning) when even the bf16 weights exceed ``max_bytes``.
    """
    tensors = {f"{n}.{k}": (v.detach().to("cpu", torch.bfloat16) if v.is_floating_point() else v.detach().cpu())
               for n, sd in nets.items() for k, v in sd.items()}
    moments, steps = {}, {}
    for name, opt in opts.items():
        moments[name], steps[name] = _moments(name, opt)
    kept = list(opts)
    for name in drop_order:
        if _nbytes(tensors) + sum(_nbytes(m) for k, m in moments.items() if k in kept) <= max_bytes:
            break
        if name in kept:
            kept.remove(name)
    for name in kept:
        tensors.update(moments[name])
    size = _nbytes(tensors)
    if size > max_bytes:
        log.warning("compact state not written: %d bytes of bf16 weights exceed the %d-byte budget", size, max_bytes)
        return None
    if len(kept) < len(opts):
        log.info("compact state: left out the Adam moments of %s to stay under %d bytes", sorted(set(opts) - set(kept)), max_bytes)
    meta = {**dict(config), "kind": KIND, "kept": kept, "optimizer_steps": steps, "nets": list(nets), "weights_bytes": size}
    out = save_checkpoint(directory, tensors, json.loads(json.dumps(meta, default=str)))
    (Path(directory) / FINISHED).unlink(missing_ok=True)  # a run trains here again: an older record no longer holds
    return out


LOGS = ("train_log.csv", "val_log.jsonl", "warm_log.csv", "progress.log")


def copy_logs(src: str | Path, dest: str | Path) -> None:
    """Copy a run's logs (small text files) between a run folder and its compact state, atomically each."""
    src, dest = Path(src), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in LOGS:
        if (src / name).is_file():
            tmp = dest / (name + ".tmp")
            shutil.copyfile(src / name, tmp)
            tmp.replace(dest / name)


def mark_finished(directory: str | Path, summary: Mapping[str, Any], src: str | Path | None = None) -> Path:
    """Replace the compact state in ``directory`` by the record of a finished run (its weights and config go).

    ``summary`` is the run's ``summary.json``; it must say the schedule ran to its end. The logs are copied from the
    run folder ``src`` first (when given), so the record keeps the whole history.
    """
    d = Path(directory)
    if int(summary.get("step", 0)) < int(summary.get("total_steps", 1)):
        raise CheckpointError(f"{d}: the run is not finished (step {summary.get('step')} of {summary.get('total_steps')})")
    if src is not None:
        copy_logs(src, d)
    d.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"kind": "r2c-finished-run", "summary": dict(summary)}
    cfg_file = d / "config.json"
    if cfg_file.is_file():
        cfg = json.loads(cfg_file.read_text())
        record.update({k: cfg[k] for k in ("model", "training", "data_split", "code_version") if k in cfg})
    out = write_record(d, record)
    # config.json first: a folder with the record and without config.json reads as finished whatever else is left
    for name in ("config.json", WEIGHTS_FILE):
        (d / name).unlink(missing_ok=True)
    return out


def write_record(directory: str | Path, record: Mapping[str, Any]) -> Path:
    """Write ``finished.json`` (atomically) into ``directory``: the record that a campaign recipe is done, for the
    recipes without a compact state too (the lung U-Net, HQG-Net), so that a fresh machine skips them."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / (FINISHED + ".tmp")
    tmp.write_text(json.dumps({**dict(record), "finished": True}, indent=2, default=str) + "\n")
    tmp.replace(d / FINISHED)
    return d / FINISHED


def is_finished_record(directory: str | Path) -> bool:
    """Whether ``directory`` holds the record of a finished run (:func:`mark_finished`) and no newer state."""
    rec = Path(directory) / FINISHED
    if (Path(directory) / "config.json").is_file():
        return False
    try:
        data = json.loads(rec.read_text())
        s = data.get("summary", {})
    except (OSError, json.JSONDecodeError, AttributeError):
        return False
    if "step" in s:
        return int(s["step"]) >= int(s.get("total_steps", 1))
    return data.get("finished") is True


def load(directory: str | Path, tensors: Mapping[str, torch.Tensor], nets: Mapping[str, nn.Module],
         opts: Mapping[str, torch.optim.Optimizer], device: torch.device) -> None:
    """Load a compact state's weights into ``nets`` and its kept moments into ``opts`` (float32, on ``device``)."""
    d = Path(directory)
    cfg = json.loads((d / "config.json").read_text())
    for name, module in nets.items():
        load_state_into(module, sub_state(tensors, name), what=f"{d / WEIGHTS_FILE} ({name})")
    for name in cfg.get("kept", []):
        opt = opts[name]
        sd = opt.state_dict()
        params = [p for g in opt.param_groups for p in g["params"]]
        step = float(cfg.get("optimizer_steps", {}).get(name, 0.0))
        state: dict[int, dict[str, torch.Tensor]] = {}
        for idx, p in enumerate(params):
            entry = {"step": torch.tensor(step, dtype=torch.float32)}
            for m in MOMENTS:
                t = tensors.get(f"{name}.{idx}.{m}")
                if t is None or t.shape != p.shape:
                    raise CheckpointError(f"{d}: Adam moment {name}.{idx}.{m} missing or of the wrong shape")
                entry[m] = t.to(device=device, dtype=torch.float32)
            state[idx] = entry
        sd["state"] = state
        opt.load_state_dict(sd)
