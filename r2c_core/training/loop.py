"""The one run loop every trainer shares (R2C-GAN, the supervised baselines, the lung U-Net).

A trainer supplies only what differs (:class:`LoopTask`): how to get the batch of a step and take the step,
what to do at the end of an epoch (validate, select, export), how to save its state, when to stop early, and how
to finish (final save, validation, export, summary). :class:`RunLoop` owns the rest, once:

* the step loop from ``task.step`` to ``settings.end`` with a tqdm bar;
* the per-step CSV log (``train_log.csv``; rows after the resumed step are dropped first, so a step is never
  logged twice), flushed every 10 steps and at every checkpoint;
* checkpoints: at every epoch end (unless the task saves itself there), every ``checkpoint_every`` steps and every
  ``checkpoint_minutes`` of wall-clock time, never at the last step (``finish`` saves that one);
* limits: ``max_minutes`` for this run, and the task's own stop rules (early stopping, a time budget over resumes)
  checked before each epoch;
* SIGTERM / SIGINT: the current step finishes, the loop stops, and ``finish`` runs with the signal handlers still
  installed, so a time limit cannot cut the final save and export short; a second signal aborts at once.

Resume is the task's business (it loads its state and sets ``step`` before :meth:`RunLoop.run`); the loop only
continues from ``task.step``.
"""

from __future__ import annotations

import csv
import logging
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from ..errors import R2CError
from ..runio import open_step_log

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopSettings:
    """How a task wants to be run (everything but the work itself)."""

    end: int
    desc: str
    log_columns: Sequence[str] | None = None
    max_minutes: float | None = None
    checkpoint_every: int = 0
    checkpoint_minutes: float = 0.0
    #: save the state at every epoch end (off for a task whose ``on_epoch_end`` saves it itself)
    checkpoint_at_epoch_end: bool = True
    progress: bool = True
    #: only the main process of a multi-process run writes logs and checkpoints
    is_main: bool = True


@dataclass(frozen=True)
class LoopResult:
    """What the loop reports to ``finish``."""

    seconds: float
    steps_run: int
    stopped_early: bool
    reason: str = ""


class LoopTask(Protocol):
    """What a trainer supplies. ``step`` is the number of optimiser steps taken so far."""

    out: Path
    step: int
    steps_per_epoch: int

    def loop_settings(self) -> LoopSettings: ...

    def batch_at(self, step: int) -> Any: ...

    def train_step(self, batch: Any) -> dict[str, float]: ...

    def postfix(self, terms: dict[str, float]) -> dict[str, str]: ...

    def save_state(self) -> Any: ...

    def finish(self, result: LoopResult) -> Any: ...


class StopSignal:
    """SIGTERM / SIGINT while a run trains: remember it (the loop stops after the current step); a second one raises
    KeyboardInterrupt. Handlers are installed only in the main thread and restored by :meth:`restore`."""

    def __init__(self) -> None:
        self.requested = ""
        self._old: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


def _hook(task: Any, name: str) -> Any:
    return getattr(task, name, None)


class RunLoop:
    """Run a :class:`LoopTask` (see the module doc). Optional task hooks: ``at_epoch_end() -> bool`` (default:
    ``step % steps_per_epoch == 0``), ``epoch_at(step) -> int`` (the step log's epoch column; default:
    ``step // steps_per_epoch``), ``on_epoch_end(last: bool)``, ``on_step_end(terms, end)``,
    ``stop_reason() -> str | None`` (checked before each epoch)."""

    def __init__(self, task: LoopTask) -> None:
        self.task = task
        self.settings = task.loop_settings()
        self._last_save = time.perf_counter()

    def _epoch_end(self) -> bool:
        at = _hook(self.task, "at_epoch_end")
        return bool(at()) if at else self.task.step % self.task.steps_per_epoch == 0

    def _stop_reason(self) -> str | None:
        rule = _hook(self.task, "stop_reason")
        return rule() if rule else None

    def _after_step(self, terms: dict[str, float], log_file: Any) -> None:
        task, st = self.task, self.settings
        hook = _hook(task, "on_step_end")
        if hook:
            hook(terms, st.end)
        if not st.is_main:
            return
        epoch_end = self._epoch_end()
        last = task.step >= st.end
        timed = bool(st.checkpoint_minutes) and time.perf_counter() - self._last_save > 60.0 * st.checkpoint_minutes
        every = bool(st.checkpoint_every) and task.step % st.checkpoint_every == 0
        if log_file is not None and (epoch_end or timed or every):
            log_file.flush()
        if epoch_end and _hook(task, "on_epoch_end"):
            task.on_epoch_end(last)  # type: ignore[attr-defined]
        if ((epoch_end and st.checkpoint_at_epoch_end) or timed or every) and not last:
            task.save_state()
            self._last_save = time.perf_counter()

    def run(self) -> Any:
        task, st = self.task, self.settings
        task.out.mkdir(parents=True, exist_ok=True)
        log_file = open_step_log(task.out / "train_log.csv", st.log_columns, task.step) if st.log_columns and st.is_main else None
        writer = csv.DictWriter(log_file, fieldnames=list(st.log_columns or ())) if log_file is not None else None
        t0, steps_done, stopped_early, reason = time.perf_counter(), 0, False, ""
        bar = tqdm(total=st.end, initial=task.step, desc=st.desc, unit="step", disable=not (st.progress and st.is_main),
                   dynamic_ncols=True)
        stop = StopSignal()
        epoch_at = _hook(task, "epoch_at")
        try:
            while task.step < st.end:
                if self._epoch_end() and (why := self._stop_reason()):
                    reason = why
                    break
                ts = time.perf_counter()
                terms = task.train_step(task.batch_at(task.step))
                if writer is not None:
                    writer.writerow({"step": task.step, "epoch": epoch_at(task.step) if epoch_at else task.step // task.steps_per_epoch,
                                     "seconds": round(time.perf_counter() - ts, 4),
                                     **{k: f"{v:.6g}" for k, v in terms.items()}})
                task.step += 1
                steps_done += 1
                bar.update(1)
                bar.set_postfix(**task.postfix(terms))
                if log_file is not None and task.step % 10 == 0:
                    log_file.flush()
                self._after_step(terms, log_file)
                if st.max_minutes and task.step < st.end and time.perf_counter() - t0 > 60.0 * st.max_minutes:
                    stopped_early, reason = True, f"max_minutes ({st.max_minutes})"
                    log.warning("max_minutes=%s reached at step %d of %d: stopping early", st.max_minutes, task.step, st.end)
                    break
                if stop.requested and task.step < st.end:
                    stopped_early, reason = True, stop.requested
                    log.warning("%s at step %d of %d: saving the state and stopping", stop.requested, task.step, st.end)
                    break
        except BaseException:
            stop.restore()
            raise
        finally:
            bar.close()
            if log_file is not None:
                log_file.close()
        try:  # the handlers stay: a SIGTERM now (a run's time limit) must not cut the final save and export short
            return task.finish(LoopResult(time.perf_counter() - t0, steps_done, stopped_early, reason))
        finally:
            stop.restore()


def resume_and_run(trainer: Any, resume: str | Path | None) -> Any:
    """Load ``resume`` into a trainer (when given), refuse a state already at the end, then run it."""
    if resume is not None:
        trainer.load_state(resume)
        if trainer.step >= trainer.end_step():
            raise R2CError(f"nothing to do: the state is at step {trainer.step}, the run ends at step "
                           f"{trainer.end_step()} (raise --max-steps or epochs)")
    return trainer.run()


__all__ = ["LoopResult", "LoopSettings", "LoopTask", "RunLoop", "StopSignal", "resume_and_run"]
