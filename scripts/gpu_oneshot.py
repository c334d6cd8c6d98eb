"""The paper's whole training and benchmark in one prepared GPU run (about 9 minutes of one H200).

On the device machine (after ``bash scripts/gpu_oneshot.sh prepare`` here; docs/TRAINING.md, "One-shot GPU run"):

    bash scripts/gpu_oneshot.sh run            # = python3 scripts/gpu_oneshot.py --out "$OUT" --budget-s 540

Stages, each bounded by what is left of ``--budget-s`` (wall clock from the script's start):

1. **bench** (about 60 s, then up to 60 s more for compiling): ``bench/bench_r2c.py`` on op-q3: restoration eager,
   bf16 + channels_last and + CUDA graphs at batch 1 and 64, 3 passes, and training steps (eager, fast, fast +
   channels_last at batch 8 and 64) -> ``bench.json``; then the torch.compile modes -> ``bench-compile.json``.
   Each file is rewritten after every result, so a stage cut short keeps what it measured.
2. **train**, all recipes at once on the one GPU (one process each, CPU threads shared out): the R2C-GAN recipes
   op-q3, op-q5, op-q1, cnn-compact, cnn and the ``lambda_class = 0`` ablation (configs/r2c-*-gpu.json), each
   starting from the CPU-trained generator under ``weights/r2c-<model>/`` where there is one, and the four
   baselines (configs/baseline-*.json), every one with ``max_minutes`` = the time left minus the evaluation and
   collection reserves and a start-up/export margin: the longest schedule that fits. Each validates on the
   validation split at its exports. The ablation starts from scratch (see :func:`is_ablation`).
3. **evaluate**: every recipe's final export classifies the test split (``classify`` / ``classify-baseline``) and
   is scored (``evaluate``: F1, AUC, within-ieee AUC, the metadata-only baseline), concurrently.
4. **collect**, at most 8 files of at most 16 MiB in ``--out``: ``bench.json``, ``plan.json`` (what ran, for how
   long, exit codes), ``results.tgz`` (every recipe's summary, logs, validation log, test predictions and metrics)
   and ``generators.tgz`` (each R2C generator as fp16 safetensors + config), split into 15 MiB parts if larger.

HQG-Net (``--recipes hqg --skip-bench``, configs/hqg-gpu.json) runs alone: its fp16 generator fills five of the eight
files; instead of a classification it gets the restoration check on test images at one pass.

``--dry-run`` runs the same stages on CPU with a tiny data pack, one training step per recipe and the benchmark's
smoke mode (the CI test), so the script cannot rot while no GPU is lent.

Back here: ``bash scripts/gpu_oneshot.sh unpack DIR`` (DIR = the files that came back) puts the results under
``runs/gpu/`` for ``scripts/report_results.py`` and the generators under ``runs/gpu/generators/``. Which of them
replace a shipped generator is decided by hand on validation (each run's ``val_log.jsonl`` against the shipped
config's record; docs/TRAINING.md), never on test.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import tempfile
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MIB = 2**20
MAX_FILES = 8
MAX_FILE_BYTES = 16 * MIB
PART_BYTES = 15 * MIB

R2C_RECIPES = ("op-q3", "op-q5", "op-q1", "cnn-compact", "cnn", "op-q3-noclass")
BASELINES = ("efficientnet_b4", "efficientnet_b5", "resnet50", "inception_v3")
#: HQG-Net, the compared method (configs/hqg-gpu.json): a run of its own, since its fp16 generator (73 MB) alone takes
#: five of the eight files that come back
HQG_RECIPES = ("hqg",)
#: restoration modes, cheapest first (bench.json is rewritten after every result, so a bench cut short keeps them)
BENCH_MODES = ("eager", "bf16+channels_last", "bf16+channels_last+graphs", "compile", "bf16+channels_last+compile+graphs")
TRAIN_MODES = ("eager", "fast", "fast+cl")


@dataclass
class Budget:
    """Where the wall-clock budget goes (seconds)."""

    total: float = 540.0
    bench: float = 60.0  # restoration (eager, bf16, CUDA graphs) and training steps
    bench_compile: float = 60.0  # the torch.compile modes, separately: compiling may not finish in time
    evaluate: float = 75.0
    collect: float = 25.0
    #: start-up, final save, validation and export: max_minutes counts only the training loop
    margin: float = 60.0
    start: float = field(default_factory=time.monotonic)

    def left(self) -> float:
        return self.total - (time.monotonic() - self.start)

    def train_seconds(self) -> float:
        """Wall time for the training stage: what is left minus the evaluation and collection reserves."""
        return max(60.0, self.left() - self.evaluate - self.collect)

    def train_minutes(self) -> float:
        """Each trainer's ``max_minutes``: the training stage minus the start-up/export margin (>= 0.5 min)."""
        return max(0.5, (self.train_seconds() - self.margin) / 60.0)


def recipe_kind(name: str) -> str:
    return "baseline" if name in BASELINES else "hqg" if name in HQG_RECIPES else "r2c"


def recipe_config(name: str) -> Path:
    kind = recipe_kind(name)
    return REPO / "configs" / {"baseline": f"baseline-{name}.json", "hqg": f"{name}-gpu.json"}.get(kind, f"r2c-{name}-gpu.json")


def recipe_model(name: str) -> str:
    return json.loads(recipe_config(name).read_text())["model"]


def is_ablation(name: str) -> bool:
    """The ``lambda_class = 0`` recipe: it starts from scratch (a class-trained generator would confound it) and its
    classifier head stays untrained, so only its restoration means something."""
    cfg = json.loads(recipe_config(name).read_text())
    return recipe_kind(name) == "r2c" and cfg.get("loss", {}).get("lambda_class", 1.0) == 0


def train_command(py: str, name: str, run_dir: Path, minutes: float, threads: int, dry: bool,
                  split_file: Path | None = None) -> list[str]:
    """The training call of one recipe (see the module doc)."""
    kind = recipe_kind(name)
    sub = {"baseline": "train-baseline", "hqg": "train-hqg"}.get(kind, "train")
    cmd = [py, "-m", "r2c_core", "--log-level", "INFO", sub,
           "--config", str(recipe_config(name)), "--out", str(run_dir), "--no-progress",
           "--set", f"max_minutes={minutes:.2f}", "--set", f"threads={threads}"]
    if kind == "r2c":
        init = REPO / "weights" / f"r2c-{recipe_model(name)}"
        if (init / "model.safetensors").is_file() and not is_ablation(name):
            cmd += ["--set", f"init_from={init}"]
        cmd += ["--set", "val_restoration=48"]
    if split_file is not None:
        cmd += ["--set", f"split_file={split_file}"]
    if dry and kind == "hqg":  # one pretraining step, two GAN steps at the smallest size the pretraining allows
        cmd += ["--set", "device=cpu", "--set", "size=128", "--set", "ae_steps=1", "--set", "max_steps=3",
                "--set", "limit_per_domain=4", "--set", "val_restoration=2", "--set", "reference_limit=4"]
    elif dry:
        cmd += ["--set", "device=cpu", "--set", "max_steps=1", "--set", "compile=false", "--set", "size=96"]
        cmd += ["--set", "limit_per_domain=4", "--set", "batch_size=2", "--set", "val_restoration=2"] if kind == "r2c" else \
               ["--set", "limit_train=8", "--set", "limit_val=8", "--set", "batch_size=4"]
    return cmd


def eval_commands(py: str, name: str, run_dir: Path, manifest: Path, limit: int = 40) -> list[list[str]] | None:
    """classify the test split with the recipe's final export, then evaluate; None when nothing was exported.
    HQG-Net has no classifier: the restoration check on ``limit`` test images at one pass instead (as shipped)."""
    if recipe_kind(name) == "hqg":
        weights = run_dir / "generator"
        if not (weights / "config.json").is_file():
            return None
        return [[py, "-m", "r2c_core", "restoration-eval", "--weights", str(weights), "--manifest", str(manifest), "--split",
                 "test", "--passes", "1", "--limit", str(limit), "--out", str(run_dir / "restoration_test.json")]]
    if recipe_kind(name) == "baseline":
        weights, classify = run_dir / "classifier", "classify-baseline"
    else:
        weights, classify = run_dir / "generator", "classify"
    if not (weights / "config.json").is_file():
        return None
    preds = run_dir / "test_preds.csv"
    return [[py, "-m", "r2c_core", classify, "--weights", str(weights), "--manifest", str(manifest), "--split", "test", "--out", str(preds)],
            [py, "-m", "r2c_core", "evaluate", "--preds", str(preds), "--manifest", str(manifest), "--out", str(run_dir / "test_metrics.json")]]


def run_all(commands: dict[str, list[str]], logs: dict[str, Path], timeout_s: float, env: dict[str, str]) -> dict[str, int]:
    """Start every command at once, wait for all (killing what outlives ``timeout_s``); exit code per name."""
    procs = {}
    for name, cmd in commands.items():
        logs[name].parent.mkdir(parents=True, exist_ok=True)
        fh = open(logs[name], "a")
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        # a process group of its own, so that stopping it stops its children too (bash -c chains, data workers)
        procs[name] = (subprocess.Popen(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True), fh)
    deadline = time.monotonic() + timeout_s
    codes = {}
    for name, (p, fh) in procs.items():
        try:
            codes[name] = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGTERM)  # the trainers finish the step, save, validate and export
            try:
                codes[name] = p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                codes[name] = p.wait()
        fh.close()
    return codes


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass


def data_manifest(py: str, work: Path, dry: bool) -> Path:
    """R2C_DATA, else ../shared/data/cxr, else the carried pack unpacked (a tiny one built here for --dry-run)."""
    if os.environ.get("R2C_DATA") and not dry:
        return Path(os.environ["R2C_DATA"]) / "MANIFEST.csv"
    shared = REPO.parent / "shared" / "data" / "cxr"
    pack = REPO / ".pack" / "cxr256.npz"
    if dry:
        pack = work / "tiny-pack.npz"
        subprocess.run([py, str(REPO / "scripts" / "make_pack.py"), "--limit", "80", "--out", str(pack), "--quiet"], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    elif (shared / "MANIFEST.csv").is_file():
        return shared / "MANIFEST.csv"
    if not pack.is_file():
        raise SystemExit("error: no data: set R2C_DATA, or run `bash scripts/gpu_oneshot.sh prepare` here and carry .pack")
    to = work / "cxr"
    if not (to / "MANIFEST.csv").is_file():
        subprocess.run([py, str(REPO / "scripts" / "make_pack.py"), "--unpack", str(pack), "--to", str(to)], cwd=REPO, check=True,
                       stdout=subprocess.DEVNULL)
    return to / "MANIFEST.csv"


def tiny_split(manifest: Path, work: Path) -> Path:
    """The A/B split file restricted to the ids of a partial pack (--dry-run)."""
    import pandas as pd

    ids = set(pd.read_csv(manifest, dtype=str)["id"])
    split = pd.read_csv(REPO / "configs" / "splits" / "r2c-ab-split.csv", dtype=str)
    out = work / "split-tiny.csv"
    split[split["id"].isin(ids)].to_csv(out, index=False)
    return out


def bench_commands(py: str, out: Path, dry: bool) -> dict[str, list[str]]:
    """``bench``: restoration (eager, bf16 + channels_last, + CUDA graphs) and training steps -> bench.json;
    ``bench-compile``: the torch.compile modes -> bench-compile.json (compiling may outlast its time)."""
    base = [py, str(REPO / "bench" / "bench_r2c.py")]
    if dry:
        return {"bench": base + ["--json", str(out / "bench.json"), "--smoke", "--device", "cpu"]}
    common = ["--device", "cuda", "--models", "op-q3", "--batches", "1,64", "--passes", "3", "--warmup", "3", "--repeats", "10"]
    return {"bench": base + ["--json", str(out / "bench.json"), *common, "--modes", ",".join(m for m in BENCH_MODES if "compile" not in m),
                             "--train", "--train-batches", "8,64", "--train-modes", ",".join(TRAIN_MODES)],
            "bench-compile": base + ["--json", str(out / "bench-compile.json"), *common,
                                     "--modes", ",".join(m for m in BENCH_MODES if "compile" in m)]}


def fp16_generator(src: Path, dst: Path) -> None:
    """An exported generator folder re-saved in fp16 (weights only; the config says so)."""
    sys.path.insert(0, str(REPO))
    import torch

    from r2c_core.checkpoints import load_checkpoint, save_checkpoint

    tensors, cfg = load_checkpoint(src)
    cfg = dict(cfg, export_dtype="float16", source=str(src.name))
    save_checkpoint(dst, tensors, cfg, dtype=torch.float16)


def split_file(path: Path, part_bytes: int = PART_BYTES) -> list[Path]:
    """``path`` as itself when small enough, else as ``path.part-00``, ``-01``... (join with cat)."""
    if path.stat().st_size <= part_bytes:
        return [path]
    parts = []
    with open(path, "rb") as f:
        i = 0
        while chunk := f.read(part_bytes):
            p = path.with_name(f"{path.name}.part-{i:02d}")
            p.write_bytes(chunk)
            parts.append(p)
            i += 1
    path.unlink()
    return parts


TOP_FILES = ("bench.log", "bench-compile.log", "split-tiny.csv")
RESULT_FILES = ("summary.json", "val_log.jsonl", "train_log.csv", "test_metrics.json", "test_preds.csv", "train.log", "eval.log",
                "last_train.json", "warm_log.csv", "restoration_test.json")


def collect(out: Path, runs: Path, recipes: list[str], plan: dict) -> list[Path]:
    """The files that come back (module doc, stage 4); at most 8, each at most 16 MiB."""
    (out / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    with tarfile.open(out / "results.tgz", "w:gz") as tar:
        for name in TOP_FILES:
            if (runs / name).is_file():
                tar.add(runs / name, arcname=name)
        for r in recipes:
            for name in RESULT_FILES:
                f = runs / r / name
                if f.is_file():
                    tar.add(f, arcname=f"{r}/{name}")
    files = [out / "plan.json", out / "results.tgz"] + [out / n for n in ("bench.json", "bench-compile.json") if (out / n).is_file()]
    stage = runs / "_fp16"
    shutil.rmtree(stage, ignore_errors=True)
    for r in recipes:
        g = runs / r / "generator"
        if recipe_kind(r) == "r2c" and (g / "config.json").is_file():
            fp16_generator(g, stage / r)
        elif recipe_kind(r) == "hqg" and (g / "config.json").is_file():
            shutil.copytree(g, stage / r)  # exported in fp16 already (its config's export_dtype)
    if stage.is_dir() and any(stage.iterdir()):
        with tarfile.open(out / "generators.tgz", "w:gz") as tar:
            for d in sorted(stage.iterdir()):
                tar.add(d, arcname=d.name)
        files += split_file(out / "generators.tgz")
    files = [f for f in files if f.is_file()]
    if len(files) > MAX_FILES or any(f.stat().st_size > MAX_FILE_BYTES for f in files):
        raise SystemExit(f"error: {len(files)} files to bring back, largest {max(f.stat().st_size for f in files) / MIB:.1f} MiB "
                         f"(limit {MAX_FILES} files of 16 MiB)")
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "runs/gpu-out")), help="the folder that comes back ($OUT)")
    ap.add_argument("--budget-s", type=float, default=540.0, help="wall-clock budget of the whole run (default 9 minutes)")
    ap.add_argument("--runs", type=Path, default=None, help="work folder (default runs/gpu; a new temporary one with --dry-run)")
    ap.add_argument("--recipes", default="", help="comma-separated subset (default: every R2C recipe and baseline)")
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny pack, one step per recipe, bench smoke mode")
    args = ap.parse_args(argv)
    budget = Budget(total=args.budget_s)
    py = sys.executable
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()] or [*R2C_RECIPES, *BASELINES]
    unknown = [r for r in recipes if not recipe_config(r).is_file()]
    if unknown:
        raise SystemExit(f"error: no recipe {', '.join(unknown)} (configs/r2c-<name>-gpu.json, configs/baseline-<name>.json or configs/<hqg>-gpu.json)")
    if any(recipe_kind(r) == "hqg" for r in recipes) and len(recipes) > 1:
        raise SystemExit("error: HQG-Net runs alone (--recipes hqg --skip-bench): its fp16 generator takes five of the eight files that come back")
    if any(recipe_kind(r) == "hqg" for r in recipes) and not args.skip_bench:
        print("HQG-Net: the benchmark is skipped (its two files would not fit beside the generator's parts)", flush=True)
        args.skip_bench = True
    runs = (args.runs or (Path(tempfile.mkdtemp(prefix="r2c-gpu-dry-")) if args.dry_run else REPO / "runs" / "gpu")).resolve()
    out = args.out.resolve()
    runs.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    plan: dict = {"recipes": recipes, "budget_s": args.budget_s, "dry_run": args.dry_run, "stages": {},
                  "untrained_classifier": [r for r in recipes if is_ablation(r)]}

    def stage(name: str, t0: float, **info) -> None:
        plan["stages"][name] = {"seconds": round(time.monotonic() - t0, 1), **info}
        print(f"== {name}: {plan['stages'][name]}", flush=True)

    t0 = time.monotonic()
    manifest = data_manifest(py, runs, args.dry_run)
    env["R2C_DATA"] = str(manifest.parent)
    split = tiny_split(manifest, runs) if args.dry_run else None
    stage("data", t0, manifest=str(manifest))

    if not args.skip_bench:
        for name, cmd in bench_commands(py, out, args.dry_run).items():
            t0 = time.monotonic()
            limit = budget.bench_compile if name == "bench-compile" else budget.bench * (3 if args.dry_run else 1)
            codes = run_all({name: cmd}, {name: runs / f"{name}.log"}, limit, env)
            stage(name, t0, exit=codes[name])

    t0 = time.monotonic()
    stage_s, minutes = budget.train_seconds(), budget.train_minutes()
    threads = max(1, (os.cpu_count() or 2) // len(recipes))
    cmds = {r: train_command(py, r, runs / r, minutes, threads, args.dry_run, split) for r in recipes}
    codes = run_all(cmds, {r: runs / r / "train.log" for r in recipes}, stage_s, env)
    stage("train", t0, max_minutes=round(minutes, 2), threads=threads, exit=codes)

    t0 = time.monotonic()
    evals = {r: c for r in recipes if (c := eval_commands(py, r, runs / r, manifest, limit=4 if args.dry_run else 40))}
    chained = {r: ["bash", "-c", " && ".join(" ".join(map(_quote, step)) for step in c)] for r, c in evals.items()}
    codes = run_all(chained, {r: runs / r / "eval.log" for r in chained}, max(30.0, budget.left() - budget.collect), env)
    stage("evaluate", t0, exit=codes, missing=[r for r in recipes if r not in evals])

    t0 = time.monotonic()
    files = collect(out, runs, recipes, plan)
    stage("collect", t0, files={f.name: f.stat().st_size for f in files})
    (out / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    print(json.dumps({"files": [f.name for f in files], "left_s": round(budget.left(), 1)}), flush=True)
    return 0


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


if __name__ == "__main__":
    sys.exit(main())
