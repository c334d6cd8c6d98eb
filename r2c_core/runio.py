"""Small shared pieces of every training run (R2C-GAN, baselines, lung U-Net): JSON config files and the
per-step CSV log that a resumed run continues."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Mapping, Sequence, TextIO

from .checkpoints import read_config, save_checkpoint
from .errors import CheckpointError, R2CError


def read_json_object(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``; one-line :class:`R2CError` if the file is missing, not JSON or not an object."""
    p = Path(path)
    if not p.is_file():
        raise R2CError(f"config file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise R2CError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise R2CError(f"{p}: expected a JSON object")
    return data


def open_step_log(path: str | Path, columns: Sequence[str], step: int) -> TextIO:
    """Open a run's CSV log for writing from ``step`` on: rows of earlier steps (a resumed run) are kept, later
    ones (written after the state being resumed was saved) are dropped, so the log never holds a step twice."""
    path = Path(path)
    keep: list[dict[str, str]] = []
    if path.is_file() and step > 0:
        with open(path, newline="") as fh:
            keep = [r for r in csv.DictReader(fh) if r.get("step", "").isdigit() and int(r["step"]) < step]
    fh = open(path, "w", newline="")
    w = csv.DictWriter(fh, fieldnames=list(columns))
    w.writeheader()
    w.writerows(keep)
    return fh


def resolve_state_dir(path: str | Path) -> Path:
    """A run folder or its ``state`` sub-folder -> the state folder."""
    p = Path(path)
    if (p / "state" / "config.json").is_file():
        return p / "state"
    if not (p / "config.json").is_file():
        raise CheckpointError(f"{p}: no training state here (expected {p}/state/config.json)")
    return p


def state_training_dict(path: str | Path, kind: str, what: str) -> dict[str, Any]:
    """The training config stored in a training-state folder of ``kind`` (as a dict, to rebuild the config)."""
    cfg = read_config(resolve_state_dir(path))
    if cfg.get("kind") != kind or "training" not in cfg:
        raise CheckpointError(f"{path}: not {what}")
    return cfg["training"]


OPTIM_FILE = "optim.pt"


def save_training_state(state_dir: str | Path, tensors: Mapping[str, Any], config: Mapping[str, Any], optimizers: Any) -> Path:
    """Write a training state: networks (``model.safetensors``), ``config.json`` (the step) and the optimizer states
    (``optim.pt``), all three tied by one ``save_token``. Each file is written in full under a temporary name before
    any is renamed into place (the optimizers, the largest, first), so a kill while writing leaves the previous state
    whole, and a kill between the renames is caught on loading (:func:`load_optimizers`,
    :func:`r2c_core.checkpoints.load_checkpoint`) instead of resuming new weights with old Adam moments."""
    import uuid

    import torch

    d = Path(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    tmp = d / (OPTIM_FILE + ".tmp")
    torch.save({"save_token": token, "optimizers": optimizers}, tmp)
    save_checkpoint(d, tensors, config, token=token)
    tmp.replace(d / OPTIM_FILE)
    return d


def load_optimizers(state_dir: str | Path, device: Any, token: str | None = None) -> Any:
    """Read ``optim.pt`` of a training state (one-line :class:`CheckpointError` when it is missing, broken, or from
    another save than the state's ``config.json``, whose ``save_token`` is ``token``). States written before the
    token existed (a bare dict of optimizer states) still load."""
    import torch

    d = Path(state_dir)
    try:
        data = torch.load(d / OPTIM_FILE, map_location=device, weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"{d}: cannot read {OPTIM_FILE} ({exc})") from None
    if isinstance(data, dict) and set(data) == {"save_token", "optimizers"}:
        if token and data["save_token"] != token:
            raise CheckpointError(f"{d}: {OPTIM_FILE} comes from another save than config.json (a save was cut off "
                                  "between them); resume from an earlier state")
        return data["optimizers"]
    return data
