"""The only place in the app that builds heavy objects: database session factories, the demo-database
bootstrap, restorers and the lung segmenter. Each is built once per server process (``st.cache_resource``)
and shared by every session; pages receive them from here and never build their own.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st
from sqlalchemy.orm import Session, sessionmaker

from r2c_core.classical import ClassicalRestorer, is_classical
from r2c_core.errors import R2CError
from r2c_core.inference import Restorer, pick_device
from r2c_core.methods import (
    COMPARED_MODELS,
    bundled_models,
    compared_models,
    load_restorer,
)
from study.db import connect
from study.errors import StudyError

from .demo_db import DemoStatus, ensure_demo_database
from .settings import AppSettings, load_settings

log = logging.getLogger(__name__)

#: Restoration models the demo page offers, in this order, when their weights are bundled.
MODEL_ORDER = ("op-q3", "cnn-compact", "op-q5", "cnn", "op-q1")


@dataclass(frozen=True)
class Backend:
    """The database side of the app: its session factory and what the demo bootstrap found (or the error)."""

    factory: sessionmaker[Session] | None
    demo: DemoStatus
    error: str = ""


_FROZEN: list[bool] = []


def torch_threads() -> int:
    """Threads for the models: ``$R2C_TORCH_THREADS``, else the number of cores, at most 4 (the server and
    other sessions share the process). Idle threads sleep rather than spin (``OMP_WAIT_POLICY=PASSIVE``, set in
    ``app/streamlit_app.py``), which keeps two threads fast on a busy 2-core machine (docs/APP.md)."""
    env = os.environ.get("R2C_TORCH_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    return max(1, min(4, os.cpu_count() or 1))


def configure_process() -> None:
    """Once per server process: set the model threads (:func:`torch_threads`), and exempt everything allocated
    so far (imported libraries) from the cyclic garbage collector (``gc.freeze``), so a full collection after a
    rerun (Streamlit's ``runner.postScriptGC``, which ``scripts/run_app.sh`` turns off) stays cheap instead of
    walking torch, pandas and plotly objects."""
    if not _FROZEN:
        import torch

        torch.set_num_threads(torch_threads())
        gc.collect()
        gc.freeze()
        _FROZEN.append(True)


def settings() -> AppSettings:
    """The app's settings (cheap: read from the environment on every run)."""
    return load_settings()


@st.cache_resource(show_spinner="Preparing the study database (first start only)…")
def _backend(db_url: str, assets: str, data: str, weights: str, device: str | None, demo_allowed: bool) -> Backend:
    cfg = AppSettings(db_url=db_url, assets=Path(assets), data_dir=Path(data), weights_root=Path(weights),
                      device=device, demo_allowed=demo_allowed)
    try:
        demo = ensure_demo_database(cfg)
        factory = connect(db_url, migrate=True)
    except (StudyError, R2CError) as exc:
        log.warning("study database unavailable: %s", exc)
        return Backend(factory=None, demo=DemoStatus(is_demo=False), error=str(exc))
    return Backend(factory=factory, demo=demo)


def backend(cfg: AppSettings | None = None) -> Backend:
    """The session factory for the configured database, after the demo bootstrap (once per process)."""
    cfg = cfg or settings()
    return _backend(cfg.db_url, str(cfg.assets), str(cfg.data_dir), str(cfg.weights_root), cfg.device, cfg.demo_allowed)


def factory() -> sessionmaker[Session]:
    """The session factory; stops the page with the database error when there is none."""
    b = backend()
    if b.factory is None:
        st.error(f"The study database is not available: {b.error}")
        st.stop()
    return b.factory


def available_models(weights_root: Path | None = None) -> list[str]:
    """Restoration models with bundled weights (``weights/r2c-<model>/``), in :data:`MODEL_ORDER` first."""
    root = weights_root or settings().weights_root
    found = bundled_models(root)
    return [m for m in MODEL_ORDER if m in found] + [m for m in found if m not in MODEL_ORDER] + compared_models(root)


@st.cache_resource(show_spinner="Loading the restoration model…")
def _restorer(weights_dir: str, device: str | None) -> Restorer:
    # channels_last is the fastest eager layout on CPU and GPU; bf16 autocast applies on CUDA only (r2c_core.fast)
    return Restorer.from_dir(weights_dir, device=device, channels_last=True, amp=True)


@st.cache_resource(show_spinner=False)
def _classical(name: str, classifier_dir: str | None, device: str | None) -> ClassicalRestorer:
    return ClassicalRestorer(name, classifier=_restorer(classifier_dir, device) if classifier_dir else None)


def restorer(model: str) -> Restorer | ClassicalRestorer:
    """The loaded restorer of a bundled model or a classical method (raises :class:`R2CError` when weights are
    unusable). A classical method's COVID probability comes from the first bundled generator's classifier, run
    on the enhanced image."""
    cfg = settings()
    if is_classical(model) or model in COMPARED_MODELS:
        models = [m for m in available_models(cfg.weights_root) if m not in COMPARED_MODELS]
        classifier_dir = str(cfg.weights_root / f"r2c-{models[0]}") if models else None
        if model in COMPARED_MODELS:
            return _compared(model, classifier_dir, cfg.device)
        return _classical(model, classifier_dir, cfg.device)
    return _restorer(str(cfg.weights_root / f"r2c-{model}"), cfg.device)


@st.cache_resource(show_spinner="Loading HQG-Net…")
def _compared(name: str, classifier_dir: str | None, device: str | None) -> Any:
    return load_restorer(name, settings().weights_root, device,
                         classifier=_restorer(classifier_dir, device) if classifier_dir else None)


@st.cache_resource(show_spinner="Loading the lung segmentation model…")
def _segmenter(weights_dir: str, device: str | None):
    from r2c_core.segmentation import LungSegmenter

    return LungSegmenter.from_dir(weights_dir, device=device)


def segmenter_dir() -> Path:
    return settings().weights_root / "lung-unet"


def segmenter():
    """The loaded lung U-Net, or None when ``weights/lung-unet`` is missing (the demo then skips segmentation)."""
    d = segmenter_dir()
    if not (d / "config.json").is_file():
        return None
    return _segmenter(str(d), settings().device)


def device_label() -> str:
    """``CPU`` or ``CUDA (<gpu name>)``: where the models run."""
    dev = pick_device(settings().device)
    if dev.type == "cuda":
        import torch

        return f"CUDA ({torch.cuda.get_device_name(dev)})"
    return dev.type.upper()


#: one demo job at a time in this server process: restoring and segmenting an upload takes seconds of every core,
#: so a second visitor waits (up to DEMO_WAIT_S) instead of both competing with the voting readers (issue 16)
_DEMO_SLOT = threading.BoundedSemaphore(1)
DEMO_WAIT_S = 60.0


@contextlib.contextmanager
def demo_slot(timeout: float | None = None):
    """Yields True while this session holds the server's one demo slot, False when it waited ``timeout`` s in vain."""
    got = _DEMO_SLOT.acquire(timeout=DEMO_WAIT_S if timeout is None else timeout)
    try:
        yield got
    finally:
        if got:
            _DEMO_SLOT.release()
