"""Small shared pieces of every training run (R2C-GAN, baselines, lung U-Net): JSON config files and the
per-step CSV log that a resumed run continues."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence, TextIO

from .checkpoints import read_config
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


def save_optimizers(state_dir: str | Path, states: Any) -> None:
    """Write a training state's optimizer states (``optim.pt``) atomically: a crash never leaves half a file."""
    import torch

    d = Path(state_dir)
    tmp = d / "optim.pt.tmp"
    torch.save(states, tmp)
    tmp.replace(d / "optim.pt")


def load_optimizers(state_dir: str | Path, device: Any) -> Any:
    """Read ``optim.pt`` of a training state (one-line :class:`CheckpointError` when it is missing or broken)."""
    import torch

    d = Path(state_dir)
    try:
        return torch.load(d / "optim.pt", map_location=device, weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise CheckpointError(f"{d}: cannot read optim.pt ({exc})") from None
