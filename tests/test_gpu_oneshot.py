"""The one-shot GPU run (scripts/gpu_oneshot.py): its plan for every recipe, the files it brings back, and a real
CPU dry run of every stage (the GPU run itself needs a lent H200)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import torch

from r2c_core.inference import Restorer, export_generator
from r2c_core.models import build_generator

REPO = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_oneshot", REPO / "scripts" / "gpu_oneshot.py")
gpu = importlib.util.module_from_spec(spec)
sys.modules["gpu_oneshot"] = gpu  # dataclasses look their module up
spec.loader.exec_module(gpu)


def test_every_recipe_has_a_config_and_the_paper_set_is_complete():
    assert set(gpu.R2C_RECIPES) == {"op-q3", "op-q5", "op-q1", "cnn-compact", "cnn", "op-q3-noclass"}
    assert set(gpu.BASELINES) == {"efficientnet_b4", "efficientnet_b5", "resnet50", "inception_v3"}
    for r in (*gpu.R2C_RECIPES, *gpu.BASELINES):
        cfg = json.loads(gpu.recipe_config(r).read_text())
        assert cfg["device"] == "cuda" and cfg["amp"] is True, r
    assert json.loads(gpu.recipe_config("op-q3-noclass").read_text())["loss"]["lambda_class"] == 0
    # HQG-Net: its own GPU recipe, the CPU recipe's schedule on CUDA (bf16 autocast there), a valid config
    from r2c_core.training.hqg_setup import load_hqg_config

    assert gpu.recipe_kind("hqg") == "hqg" and gpu.recipe_config("hqg") == REPO / "configs" / "hqg-gpu.json"
    hqg, cpu = load_hqg_config(gpu.recipe_config("hqg")), load_hqg_config(REPO / "configs" / "hqg-cpu.json")
    assert hqg.device == "cuda" and not gpu.is_ablation("hqg")
    assert (hqg.size, hqg.batch_size, hqg.epochs, hqg.ae_steps, hqg.lr, hqg.lr_halve_epoch) == \
        (cpu.size, cpu.batch_size, cpu.epochs, cpu.ae_steps, cpu.lr, cpu.lr_halve_epoch)


def test_train_commands(tmp_path):
    cmd = gpu.train_command("py", "op-q5", tmp_path / "x", 6.5, 1, dry=False)
    assert cmd[cmd.index("--config") - 1] == "train" and "max_minutes=6.50" in cmd and "threads=1" in cmd
    init = [c for c in cmd if c.startswith("init_from=")]
    assert init == [f"init_from={REPO / 'weights' / 'r2c-op-q5'}"]  # from the CPU-trained generator
    assert not any("device=cpu" in c for c in cmd)
    assert gpu.is_ablation("op-q3-noclass") and not gpu.is_ablation("op-q3") and not gpu.is_ablation("resnet50")
    ablation = gpu.train_command("py", "op-q3-noclass", tmp_path / "z", 6.5, 1, dry=False)
    assert not any(c.startswith("init_from=") for c in ablation)  # from scratch: a class-trained start would confound it
    base = gpu.train_command("py", "resnet50", tmp_path / "y", 6.5, 2, dry=True, split_file=tmp_path / "s.csv")
    assert base[base.index("--config") - 1] == "train-baseline" and "device=cpu" in base and "max_steps=1" in base and f"split_file={tmp_path / 's.csv'}" in base
    assert not any(c.startswith("init_from=") for c in base)
    h = gpu.train_command("py", "hqg", tmp_path / "h", 6.5, 16, dry=False)
    assert h[h.index("--config") - 1] == "train-hqg" and "max_minutes=6.50" in h and not any("device=cpu" in c for c in h)
    assert not any(c.startswith(("init_from=", "val_restoration=")) for c in h)  # keys of the R2C trainer only
    hd = gpu.train_command("py", "hqg", tmp_path / "h", 6.5, 1, dry=True)
    assert "device=cpu" in hd and "size=128" in hd and "ae_steps=1" in hd and not any("compile" in c for c in hd)
    ev = gpu.eval_commands("py", "hqg", tmp_path / "h", tmp_path / "m.csv")
    assert ev is None  # nothing exported yet


def test_budget_leaves_the_reserves():
    b = gpu.Budget(total=540.0)
    assert 6.0 < b.train_minutes() <= (540 - 75 - 25 - 60) / 60
    assert b.train_seconds() - 60 * b.train_minutes() >= b.margin - 1
    assert gpu.Budget(total=10.0).train_minutes() == 0.5


def test_collect_brings_back_at_most_eight_small_files(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    out.mkdir()
    torch.manual_seed(0)
    for r in ("op-q1", "cnn-compact"):
        export_generator(build_generator(r), r, runs / r / "generator")
        (runs / r / "summary.json").write_text("{}")
        (runs / r / "test_metrics.json").write_text('{"f1": 0.5}')
    (runs / "resnet50").mkdir(parents=True)
    (runs / "resnet50" / "test_metrics.json").write_text('{"f1": 0.4}')
    files = gpu.collect(out, runs, ["op-q1", "cnn-compact", "resnet50"], {"recipes": []})
    assert len(files) <= gpu.MAX_FILES and all(f.stat().st_size <= gpu.MAX_FILE_BYTES for f in files)
    with tarfile.open(out / "results.tgz") as t:
        assert {"op-q1/test_metrics.json", "resnet50/test_metrics.json", "cnn-compact/summary.json"} <= set(t.getnames())
    with tarfile.open(out / "generators.tgz") as t:
        t.extractall(tmp_path / "g", filter="data")
    r = Restorer.from_dir(tmp_path / "g" / "op-q1", device="cpu")
    assert r.config["export_dtype"] == "float16"
    full = Restorer.from_dir(runs / "op-q1" / "generator", device="cpu")
    img = (torch.rand(200, 180) * 255).to(torch.uint8).numpy()
    a, b = full.restore(img, 3), r.restore(img, 3)
    assert abs(a.image.astype(float) - b.image).mean() < 0.5 and abs(a.prob_covid - b.prob_covid) < 1e-3


def test_split_file_parts(tmp_path):
    f = tmp_path / "big.bin"
    data = bytes(range(256)) * 40
    f.write_bytes(data)
    parts = gpu.split_file(f, part_bytes=4000)
    assert [p.name for p in parts] == ["big.bin.part-00", "big.bin.part-01", "big.bin.part-02"] and not f.exists()
    assert b"".join(p.read_bytes() for p in parts) == data


def test_dry_run_every_stage_on_cpu(cxr_dir, tmp_path):
    """bench (smoke), one training step of an R2C recipe and a baseline started together, test evaluation, collection."""
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_oneshot.py"), "--dry-run", "--recipes", "op-q1,resnet50",
                          "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--budget-s", "420"],
                         cwd=REPO, capture_output=True, text=True, timeout=540)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert plan["stages"]["bench"]["exit"] == 0
    assert plan["stages"]["train"]["exit"] == {"op-q1": 0, "resnet50": 0}
    assert plan["stages"]["evaluate"]["exit"] == {"op-q1": 0, "resnet50": 0}
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"plan.json", "results.tgz", "bench.json", "generators.tgz"} <= names and len(names) <= 8
    bench = json.loads((tmp_path / "out" / "bench.json").read_text())
    assert bench
    with tarfile.open(tmp_path / "out" / "results.tgz") as t:
        metrics = json.load(t.extractfile("op-q1/test_metrics.json"))
        assert "f1" in json.dumps(metrics)
        assert "resnet50/test_preds.csv" in t.getnames()


def test_dry_run_hqg_alone(cxr_dir, tmp_path):
    """HQG-Net's GPU run on CPU: one pretraining and two GAN steps, its export, the restoration check on test images,
    and its fp16 generator brought back in parts that join into a loadable export."""
    from r2c_core.hqg_inference import HQGRestorer

    mixed = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_oneshot.py"), "--dry-run", "--recipes", "hqg,op-q1",
                            "--out", str(tmp_path / "x")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert mixed.returncode != 0 and "runs alone" in mixed.stderr
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_oneshot.py"), "--dry-run", "--recipes", "hqg",
                          "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--budget-s", "420"],
                         cwd=REPO, capture_output=True, text=True, timeout=540)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "the benchmark is skipped" in res.stdout  # its files would not fit beside the generator's parts
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert "bench" not in plan["stages"] and plan["stages"]["train"]["exit"] == {"hqg": 0} and plan["stages"]["evaluate"]["exit"] == {"hqg": 0}
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    parts = [n for n in out if n.startswith("generators.tgz.part-")]
    assert len(out) <= gpu.MAX_FILES and len(parts) >= 4  # 73 MB of fp16 generator in 15 MiB parts
    assert all((tmp_path / "out" / n).stat().st_size <= gpu.MAX_FILE_BYTES for n in out)
    with tarfile.open(tmp_path / "out" / "results.tgz") as t:
        check = json.load(t.extractfile("hqg/restoration_test.json"))
        assert check["summary"]["n"] >= 1 and "psnr_gain" in check["summary"]["mean"]
    joined = tmp_path / "generators.tgz"
    joined.write_bytes(b"".join((tmp_path / "out" / n).read_bytes() for n in parts))
    with tarfile.open(joined) as t:
        t.extractall(tmp_path / "g", filter="data")
    restorer = HQGRestorer.from_dir(tmp_path / "g" / "hqg", device="cpu")
    img = (torch.rand(150, 140) * 255).to(torch.uint8).numpy()
    assert restorer.restore(img).image.shape == img.shape
