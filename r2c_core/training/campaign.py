"""A training campaign: a queue of recipes trained one after the other, unattended, resumable anywhere.

``python -m r2c_core campaign run --plan configs/campaign-cpu.json`` (``scripts/campaign.sh start`` runs it in
the background under ``nice``) walks the plan's recipes in order. Each recipe trains in its own subprocess, in
``<out>/<name>/``:

* finished (its ``summary.json`` says the schedule ran to the end, or the segmenter stopped by itself, or, on a
  fresh machine, the committed record of the finished run replaced its compact state): skipped;
* a full state in ``<out>/<name>/state`` (this machine): resumed exactly;
* else a compact state committed in the repository (the recipe config's ``compact_state``, e.g.
  ``campaign/op-q3``; a fresh machine): resumed from it (bf16, close to the run, see :mod:`.compact`);
* else started from its config.

Each trainer writes its state every ``checkpoint_minutes`` and on SIGTERM/SIGINT (``campaign stop`` sends
SIGTERM to the runner, which passes it on and waits), and appends human-readable lines to
``<out>/<name>/progress.log``; the runner copies every line into ``<out>/progress.log`` together with its own
(recipe started, resumed, finished, failed). ``campaign status`` prints one line per recipe.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import R2CError
from ..paths import REPO_ROOT
from ..runio import read_json_object
from . import compact

log = logging.getLogger(__name__)

KINDS = ("r2c", "seg", "hqg")


@dataclass(frozen=True)
class Recipe:
    name: str
    config: str
    kind: str = "r2c"
    #: extra arguments for the training command (e.g. ``["--set", "max_minutes=60"]``)
    args: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Plan:
    out: str
    recipes: tuple[Recipe, ...]
    #: where the records of finished recipes without a compact state are committed (``<records>/<name>/finished.json``)
    records: str = "campaign"

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        data = {k: v for k, v in read_json_object(path).items() if not k.startswith("_")}
        unknown = set(data) - {"out", "recipes", "records"}
        if unknown:
            raise R2CError(f"{path}: unknown key(s) {sorted(unknown)} (known: out, recipes, records)")
        recipes = []
        for i, r in enumerate(data.get("recipes", [])):
            r = {k: v for k, v in r.items() if not k.startswith("_")}
            extra = set(r) - {"name", "config", "kind", "args", "note"}
            if extra or "name" not in r or "config" not in r:
                raise R2CError(f"{path}: recipe {i} needs name and config (optional kind, args, note); unknown: {sorted(extra)}")
            if r.get("kind", "r2c") not in KINDS:
                raise R2CError(f"{path}: recipe {r['name']}: kind must be one of {KINDS}")
            recipes.append(Recipe(r["name"], r["config"], r.get("kind", "r2c"), tuple(r.get("args", ())), r.get("note", "")))
        if not recipes:
            raise R2CError(f"{path}: no recipes")
        names = [r.name for r in recipes]
        if len(set(names)) != len(names):
            raise R2CError(f"{path}: recipe names must be unique")
        return cls(str(data.get("out", "runs/campaign")), tuple(recipes), str(data.get("records", "campaign")))


def _abs(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() else REPO_ROOT / p


def recipe_dir(plan: Plan, r: Recipe) -> Path:
    return _abs(plan.out) / r.name


def _json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def finished_here(plan: Plan, r: Recipe) -> bool:
    """Whether ``r`` ran to the end of its schedule in this machine's run folder."""
    d = recipe_dir(plan, r)
    if r.kind == "seg":
        return (d / "finished.json").is_file()
    s = _json(d / "summary.json")
    return bool(s) and int(s.get("step", 0)) >= int(s.get("total_steps", 1))


def has_record(plan: Plan, r: Recipe) -> bool:
    """Whether the committed record says ``r`` is done: where its compact state was (compact.mark_finished), or for
    the recipes without one in ``campaign/<name>/`` (the runner's :func:`write_finished_record`). A runner's record
    names the recipe's config: a record of another config does not hold (the recipe was changed, it trains again)."""
    rd = record_dir(plan, r)
    if not compact.is_finished_record(rd):
        return False
    rec = _json(rd / compact.FINISHED) or {}
    return rec.get("config") in (None, r.config)


def is_finished(plan: Plan, r: Recipe) -> bool:
    return finished_here(plan, r) or has_record(plan, r)


def ensure_record(plan: Plan, r: Recipe) -> Path | None:
    """Write the committed record of a recipe that finished on this machine, if it is missing (the trainer or the
    runner stopped between the end of the schedule and the record): a compact state becomes the record
    (compact.mark_finished), the other recipes get :func:`write_finished_record`. Returns the record written."""
    if not finished_here(plan, r) or has_record(plan, r):
        return None
    c = compact_dir(r)
    summary = _json(recipe_dir(plan, r) / "summary.json") or {}
    if c is not None:
        state = _json(c / "config.json")
        if state is not None and (state.get("step"), state.get("total_steps")) != (summary.get("step"), summary.get("total_steps")):
            log.warning("%s: %s holds a compact state of another run (step %s of %s) than the finished one here; left as "
                        "it is", r.name, c, state.get("step"), state.get("total_steps"))
            return None
        return compact.mark_finished(c, summary, recipe_dir(plan, r))
    rec = _json(record_dir(plan, r) / compact.FINISHED)
    if rec is not None and rec.get("config") not in (None, r.config):
        log.warning("%s: its record names another config (%s); left as it is", r.name, rec.get("config"))
        return None
    return write_finished_record(plan, r)


def missing_init(r: Recipe) -> Path | None:
    """The ``init_from`` of ``r``'s config when it names a folder absent from this machine (a run's full state is
    never committed: on a fresh machine a recipe started from another one's run folder cannot start)."""
    init = read_json_object(_abs(r.config)).get("init_from")
    return None if not init or _abs(init).exists() else _abs(init)


def record_dir(plan: Plan, r: Recipe) -> Path:
    """Where a recipe's committed state or finished-run record lives: its compact state folder, else
    ``<records>/<name>`` (the plan's ``records``, default ``campaign``, in the repository)."""
    return compact_dir(r) or _abs(plan.records) / r.name


def compact_dir(r: Recipe) -> Path | None:
    if r.kind != "r2c":
        return None
    cfg = read_json_object(_abs(r.config))
    c = cfg.get("compact_state")
    return _abs(c) if c else None


def command(plan: Plan, r: Recipe) -> tuple[list[str], str]:
    """The training command for ``r`` and how it starts (``resume``, ``resume-compact`` or ``start``)."""
    d = recipe_dir(plan, r)
    base = [sys.executable, "-m", "r2c_core", "--log-level", "INFO"]
    if r.kind == "seg":
        if (d / "last").is_dir():
            return base + ["train-seg", "--resume", str(d), "--out", str(d), *r.args], "resume"
        return base + ["train-seg", "--config", str(_abs(r.config)), "--out", str(d), *r.args], "start"
    tail = ["--out", str(d), "--no-progress", *r.args]
    if r.kind == "hqg":  # HQG-Net (docs/MODELS.md); its state (~1 GB) stays in the run folder, no compact state
        if (d / "state" / "config.json").is_file():
            return base + ["train-hqg", "--resume", str(d), *tail], "resume"
        return base + ["train-hqg", "--config", str(_abs(r.config)), *tail], "start"
    if (d / "state" / "config.json").is_file():
        return base + ["train", "--resume", str(d), *tail], "resume"
    c = compact_dir(r)
    if c is not None and (c / "config.json").is_file():
        return base + ["train", "--resume", str(c), *tail], "resume-compact"
    return base + ["train", "--config", str(_abs(r.config)), *tail], "start"


def _pid_file(plan: Plan, only: str | None = None) -> Path:
    return _abs(plan.out) / (f"runner-only-{only}.pid" if only else "runner.pid")


class _Runner:
    def __init__(self, plan: Plan, only: str | None = None) -> None:
        self.plan = plan
        self.only = only
        self.out = _abs(plan.out)
        self.pid_file = _pid_file(plan, only)
        self.child: subprocess.Popen | None = None
        self.stopping = False

    def note(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        line = f"{stamp} [campaign] {text}"
        log.warning(text)
        with open(self.out / "progress.log", "a") as fh:
            fh.write(line + "\n")

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signal.SIGTERM)

    def _follow(self, src: Path, pos: int) -> int:
        """Copy new lines of a recipe's progress.log into the campaign's."""
        try:
            with open(src) as fh:
                fh.seek(pos)
                new = fh.read()
                pos = fh.tell()
        except OSError:
            return pos
        if new:
            with open(self.out / "progress.log", "a") as fh:
                fh.write(new)
        return pos

    def run(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(str(os.getpid()))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        recipes = [r for r in self.plan.recipes if self.only in (None, r.name)]
        self.note(f"started (pid {os.getpid()}): {', '.join(r.name for r in recipes)}")
        status = 0
        skipped: list[str] = []
        for r in recipes:
            if self.stopping:
                break
            if self.only is None and _pid_alive(_pid_file(self.plan, r.name)):
                self.note(f"{r.name}: a runner started with --only {r.name} is training it; waiting for it")
                while _pid_alive(_pid_file(self.plan, r.name)) and not self.stopping:
                    time.sleep(10)
                if self.stopping:
                    continue
            if is_finished(self.plan, r):
                if ensure_record(self.plan, r) is not None:
                    self.note(f"{r.name}: finished; its missing record written ({record_dir(self.plan, r) / compact.FINISHED})")
                continue
            d = recipe_dir(self.plan, r)
            d.mkdir(parents=True, exist_ok=True)
            cmd, how = command(self.plan, r)
            if how == "start" and (init := missing_init(r)) is not None:
                self.note(f"{r.name}: cannot start: its init_from {init} is not on this machine (a run's full state "
                          "is never committed; train the recipe that writes it again on this machine); skipped, the "
                          "queue goes on")
                skipped.append(r.name)
                continue
            self.note(f"{r.name}: {how} ({' '.join(cmd[2:])})")
            prog = d / "progress.log"
            pos = prog.stat().st_size if prog.exists() else 0
            with open(d / "stdout.log", "a") as out:
                self.child = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
                while self.child.poll() is None:
                    time.sleep(5)
                    pos = self._follow(prog, pos)
            pos = self._follow(prog, pos)
            rc = self.child.returncode
            self.child = None
            if rc != 0:
                self.note(f"{r.name}: training exited with status {rc} (see {d / 'stdout.log'}); campaign stops")
                status = 1
                break
            if r.kind == "seg" and not self.stopping:
                (d / "finished.json").write_text(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n")
            if is_finished(self.plan, r):
                ensure_record(self.plan, r)  # R2C trainers with a compact state write theirs (compact.mark_finished)
                self.note(f"{r.name}: finished")
            elif self.stopping:
                self.note(f"{r.name}: stopped with its state saved; `campaign run` resumes it")
            else:
                self.note(f"{r.name}: stopped before the end of its schedule (time limit); continuing with the next recipe")
        else:
            self.note(f"every recipe of the plan is done except {', '.join(skipped)} (could not start)" if skipped
                      else "every recipe of the plan is done")
        self.pid_file.unlink(missing_ok=True)
        return status


def write_finished_record(plan: Plan, r: Recipe) -> Path:
    """The committed record that ``r`` is done (``campaign/<name>/finished.json``): the run's summary (HQG-Net) or its
    finish time and last progress line (the lung U-Net), so that a campaign on a fresh machine skips it."""
    d = recipe_dir(plan, r)
    summary = _json(d / "summary.json") or {}
    when = (_json(d / "finished.json") or {}).get("finished") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record: dict[str, Any] = {"kind": f"{r.kind}-finished-run", "recipe": r.name, "config": r.config, "finished_at": when}
    if summary:
        record["summary"] = summary
    prog = d / "progress.log"
    if prog.is_file() and (lines := prog.read_text().splitlines()):
        record["last_progress"] = lines[-1]
    return compact.write_record(record_dir(plan, r), record)


def run(plan: Plan, only: str | None = None) -> int:
    """Run the plan's recipes in order (or only the one named ``only``, beside a running full runner)."""
    if only is not None and only not in [r.name for r in plan.recipes]:
        raise R2CError(f"no recipe {only!r} in the plan (recipes: {', '.join(r.name for r in plan.recipes)})")
    return _Runner(plan, only).run()


def _pid_alive(path: Path) -> int | None:
    try:
        pid = int(path.read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def runner_pid(plan: Plan, only: str | None = None) -> int | None:
    return _pid_alive(_pid_file(plan, only))


def stop(plan: Plan, wait_s: float = 600.0) -> bool:
    """SIGTERM every runner of the plan (each passes it on, the trainers save their state) and wait for them."""
    pids = [p for p in (_pid_alive(f) for f in _abs(plan.out).glob("runner*.pid")) if p is not None]
    had = bool(pids)
    for pid in pids:
        os.kill(pid, signal.SIGTERM)
    t0 = time.time()
    while pids and time.time() - t0 < wait_s:
        pids = [p for p in pids if _alive(p)]
        time.sleep(1)
    return had and not pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def status(plan: Plan) -> list[dict[str, Any]]:
    """One row per recipe: state (finished / running / resumable / compact / not started), step, epoch, last validation."""
    rows = []
    running = runner_pid(plan) is not None
    for r in plan.recipes:
        d = recipe_dir(plan, r)
        row: dict[str, Any] = {"recipe": r.name, "kind": r.kind, "dir": str(d)}
        if is_finished(plan, r):
            row["state"] = "finished"
            rec = _json(record_dir(plan, r) / compact.FINISHED)
            if rec and not (d / "state" / "config.json").is_file():  # a fresh machine: what the committed record says
                s = rec.get("summary", {})
                if "step" in s:
                    row["step"] = f"{s.get('step')}/{s.get('total_steps')}"
                    if "steps_per_epoch" in s:  # HQG-Net's summary has none
                        row["epoch"] = round(int(s["step"]) / max(1, int(s["steps_per_epoch"])), 2)
                if rec.get("last_progress") and not (d / "progress.log").is_file():
                    row["last"] = rec["last_progress"]
        elif (d / "state" / "config.json").is_file() or (d / "last").is_dir():
            row["state"] = "resumable"
        elif (c := compact_dir(r)) is not None and (c / "config.json").is_file():
            row["state"] = "compact state only"
        elif (init := missing_init(r)) is not None:
            row["state"] = "not started, needs init_from"
            row["last"] = f"init_from {init} is not on this machine (the recipe that writes it must run here first)"
        else:
            row["state"] = "not started"
        st = _json(d / "state" / "config.json") or {}
        if st:
            row["step"] = f"{st.get('step')}/{st['total_steps']}" if "total_steps" in st else str(st.get("step"))
            if "steps_per_epoch" in st:  # epochs count from ``gan_start`` (HQG-Net's pretraining steps come first)
                start = int(st.get("gan_start", 0))
                row["epoch"] = round(max(0, int(st["step"]) - start) / max(1, int(st["steps_per_epoch"])), 2)
        prog = d / "progress.log"
        if prog.is_file():
            lines = prog.read_text().splitlines()
            row["last"] = lines[-1] if lines else ""
        rows.append(row)
    if running:
        for row in rows:
            if row["state"] != "finished":
                row["state"] += " (runner active)"
                break
    return rows
