"""Checkpoints: a folder with ``model.safetensors`` (weights) and ``config.json`` (everything needed to rebuild).

The same format serves R2C-GAN generators, full training states' networks and the lung U-Net. Loading into a
model that does not fit fails with one :class:`~r2c_core.errors.CheckpointError` line naming the mismatch.
"""

from __future__ import annotations

import datetime as _dt
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from . import __version__
from .errors import CheckpointError, R2CError
from .paths import REPO_ROOT

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "r2c-checkpoint/1"


def code_version() -> str:
    """Package version plus the git commit when run from a checkout (``0.1.0+g1a2b3c4``)."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__}+g{sha}" if sha else __version__


def save_checkpoint(
    directory: str | Path,
    tensors: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    *,
    dtype: torch.dtype | None = None,
    token: str | None = None,
) -> Path:
    """Write ``tensors`` (optionally cast to ``dtype``, e.g. fp16) and ``config`` into ``directory``.

    Both files are written in full under temporary names first, then renamed into place one after the other, and
    they carry the same ``save_token`` (the weights in their safetensors metadata, the config as a key): a save cut
    between the two renames (a SIGKILL) is caught by :func:`load_checkpoint` instead of pairing weights of one save
    with the config (the step) of another. ``token`` lets a caller tie other files of the same save to it (a training
    state's ``optim.pt``, :func:`r2c_core.runio.save_training_state`)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        t = v.detach().to("cpu")
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[k] = t.contiguous()
    meta = dict(config)
    meta.setdefault("format", FORMAT)
    meta.setdefault("code_version", code_version())
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    meta["weights_dtype"] = str(dtype or next((t.dtype for t in out.values() if t.is_floating_point()), torch.float32)).replace("torch.", "")
    meta["save_token"] = token = token or uuid.uuid4().hex
    tmp, cfg_tmp = d / (WEIGHTS_FILE + ".tmp"), d / (CONFIG_FILE + ".tmp")
    save_file(out, str(tmp), metadata={"format": FORMAT, "save_token": token})
    cfg_tmp.write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(d / WEIGHTS_FILE)
    cfg_tmp.replace(d / CONFIG_FILE)
    return d


def weights_token(path: str | Path) -> str | None:
    """The ``save_token`` in a safetensors file's metadata (``None`` for files written without one)."""
    with safe_open(str(path), framework="pt") as fh:
        return (fh.metadata() or {}).get("save_token")


#: suffixes of pickle checkpoints: never loaded (unpickling runs code), only named in the error
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a checkpoint folder as a dict (one-line :class:`CheckpointError` when it is missing or
    not a JSON object)."""
    d = Path(directory)
    cfg_path = d / CONFIG_FILE
    if not d.exists():
        raise CheckpointError(f"{d}: checkpoint folder not found")
    if d.is_file():
        pickled = d.suffix.lower() in PICKLE_SUFFIXES
        hint = "; pickle checkpoints are not loaded (unpickling can run code)" if pickled else ""
        raise CheckpointError(f"{d}: is a file, not a checkpoint folder (one holding {WEIGHTS_FILE} and "
                              f"{CONFIG_FILE}){hint}")
    if not cfg_path.is_file():
        raise CheckpointError(f"{d}: no {CONFIG_FILE} (a checkpoint folder holds {WEIGHTS_FILE} and {CONFIG_FILE})")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # ValueError: JSON and UTF-8 errors; RecursionError: nesting
        raise CheckpointError(f"{cfg_path}: not valid JSON ({' '.join(str(exc).split())[:200]})") from exc
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object")
    return cfg


def load_checkpoint(directory: str | Path, *, same_save: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint folder: (tensors on CPU, config dict). ``same_save``: refuse weights and a config written by
    different saves (their ``save_token`` differ), as training states do before resuming; weights folders are checked
    by fitting them to their model instead (:func:`load_model`: a config paired by hand with other weights "does not fit")."""
    d = Path(directory)
    cfg = read_config(d)
    w = d / WEIGHTS_FILE
    if not w.is_file():
        raise CheckpointError(f"{d}: no {WEIGHTS_FILE}")
    try:
        tensors = load_file(str(w), device="cpu")
        token = weights_token(w) if same_save else None
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{w}: not a readable safetensors file ({exc})") from exc
    if token and cfg.get("save_token") and token != cfg["save_token"]:
        raise CheckpointError(f"{d}: {WEIGHTS_FILE} and {CONFIG_FILE} come from different saves (a save was cut off "
                              "between them); use an earlier checkpoint or export")
    return tensors, cfg


def load_model(
    directory: str | Path, kind: str, build: "Callable[[str], torch.nn.Module]", *, what: str
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild and load the model a checkpoint folder describes: its config must say ``kind``; ``build(config
    ["model"])`` makes the empty model (an unknown name becomes a :class:`CheckpointError`). Returns (model, config)."""
    d = Path(directory)
    cfg = read_config(d)
    if cfg.get("kind") != kind:
        raise CheckpointError(f"{d}: config kind is {cfg.get('kind')!r}, expected {kind!r} (is this {what}?)")
    try:
        model = build(str(cfg.get("model")))
    except (KeyError, R2CError) as exc:
        raise CheckpointError(f"{d}: {exc.args[0] if exc.args else exc}") from None
    tensors, cfg = load_checkpoint(d)
    load_state_into(model, tensors, what=f"checkpoint {d} (model {cfg.get('model')})")
    return model, cfg


def sub_state(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a flat multi-network state under ``prefix.`` with that prefix removed (``gen_ab.x`` -> ``x``)."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "bool"
    if dtype.is_complex:
        return "complex"
    return "float" if dtype.is_floating_point else "int"


def load_state_into(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], *, what: str = "checkpoint") -> None:
    """Strictly load ``tensors`` into ``module``; any missing/unexpected key, shape mismatch or dtype of another kind
    (an integer or bool tensor for float weights, a float for an integer buffer; fp16 for fp32 fits) is one clear error."""
    own = module.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    shape = [
        f"{k} {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in tensors and tuple(tensors[k].shape) != tuple(own[k].shape)
    ]
    dtype = [
        f"{k} {str(tensors[k].dtype).replace('torch.', '')} vs {str(own[k].dtype).replace('torch.', '')}"
        for k in own
        if k in tensors and _dtype_kind(tensors[k].dtype) != _dtype_kind(own[k].dtype)
    ]
    if missing or unexpected or shape or dtype:
        parts = []
        if shape:
            parts.append(f"{len(shape)} shape mismatch(es), first: {shape[0]}")
        if dtype:
            parts.append(f"{len(dtype)} dtype mismatch(es), first: {dtype[0]}")
        if missing:
            parts.append(f"{len(missing)} missing key(s), first: {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s), first: {unexpected[0]}")
        raise CheckpointError(f"{what} does not fit {module.__class__.__name__}: " + "; ".join(parts))
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(tensors[k].to(dtype=v.dtype))


GENERATOR_KIND = "r2c-generator"


def export_generator(
    generator: nn.Module,
    model_name: str,
    out_dir: str | Path,
    *,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Save a generator (G_A2B) as a self-describing checkpoint folder :class:`r2c_core.inference.Restorer` loads."""
    from .models import (  # here: models import the checkpoint helpers
        CLASS_NAMES,
        WORKING_SIZE,
        get_spec,
    )
    from .tensors import NORMALISATION

    cfg: dict[str, Any] = {
        "kind": GENERATOR_KIND,
        "model": model_name,
        "component": "G_A2B",
        "working_size": WORKING_SIZE,
        "normalisation": NORMALISATION,
        "class_names": list(CLASS_NAMES),
        "positive_class": "covid",
        "study_passes": get_spec(model_name).study_passes,
    }
    cfg.update(extra or {})
    raw = getattr(generator, "_orig_mod", generator)  # unwrap torch.compile
    return save_checkpoint(out_dir, raw.state_dict(), cfg, dtype=dtype)
