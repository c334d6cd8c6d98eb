"""The report scripts: Table II/V from synthetic evaluate JSON, the pack builder, sample rendering and the recipe
runner's argument handling."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from r2c_core.metrics import grouped_tables, nan_to_none
from r2c_core.models import build_generator, count_params
from r2c_core.paths import REPO_ROOT

SCRIPTS = REPO_ROOT / "scripts"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def report():
    return _script("report_results")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# ------------------------------------------------------------------------------------- synthetic evals
def _synthetic_eval(prob: np.ndarray, y: np.ndarray, src: np.ndarray, base_prob: np.ndarray) -> dict:
    return nan_to_none({
        "n": int(len(y)), "threshold": 0.5, "bootstrap": 50, "positive_class": "covid",
        "model": grouped_tables(y, prob, src, n_boot=50, seed=0),
        "metadata_baseline": {"features": "synthetic", **grouped_tables(y, base_prob, src, n_boot=50, seed=0)},
    })


@pytest.fixture
def evals(tmp_path):
    rng = np.random.default_rng(0)
    src = np.array(["ieee"] * 40 + ["nih"] * 30 + ["mhh"] * 30)
    y = np.array([1] * 30 + [0] * 10 + [0] * 30 + [1] * 30)
    base = np.where(src == "nih", 0.1, np.where(src == "mhh", 0.9, 0.75))  # source alone: no signal within ieee
    good = np.clip(y * 0.8 + rng.uniform(0, 0.2, y.size), 0, 1)             # separates every source
    weak = np.clip(0.5 + rng.normal(0, 0.2, y.size), 0, 1)                   # noise
    paths = {}
    for name, prob in (("op-q3", good), ("resnet50", weak)):
        d = tmp_path / name
        d.mkdir()
        (d / "test_metrics.json").write_text(json.dumps(_synthetic_eval(prob, y, src, base)))
        paths[name] = d / "test_metrics.json"
    (tmp_path / "resnet50" / "classifier").mkdir()
    (tmp_path / "resnet50" / "classifier" / "config.json").write_text(json.dumps(
        {"kind": "baseline-classifier", "model": "resnet50", "pretrained": False, "version": "v1-test", "working_size": 256, "training": {"size": 256}}))
    return paths, y, src, good, weak


def test_table2_rows_values_notes_and_bar(report, evals):
    paths, y, src, good, weak = evals
    out: list[str] = []
    assert report.main([str(paths["op-q3"]), str(paths["resnet50"]), "--table", "2"], emit=out.append) == 0
    text = out[0]
    pooled = text.split("### Pooled (all sources)")[1].split("###")[0]
    rows = [r for r in pooled.splitlines() if r.startswith("| ")][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| op-q3", "| resnet50", f"| {report.METADATA_LABEL}"]
    t = grouped_tables(y, good, src, n_boot=50, seed=0)["pooled"]
    lo, hi = t["ci95"]["f1"]
    assert f"{t['f1']:.3f} [{lo:.2f}, {hi:.2f}]" in rows[0] and f"| {len(y)} ({int(y.sum())}) |" in rows[0]
    assert "v1-test" in rows[1] and "trained from scratch" in rows[1]
    # one table per source; nih has no covid so its sensitivity is undefined
    for s in ("ieee", "mhh", "nih"):
        assert f"### Within source {s}" in text
    nih = text.split("### Within source nih")[1].split("###")[0]
    assert nih.splitlines()[4].split(" | ")[3] == "-"
    bar = text.split("### Issue-7 bar")[1]
    assert "| op-q3 |" in bar and bar.split("| op-q3 |")[1].splitlines()[0].rstrip().endswith("| met |")
    assert bar.split("| resnet50 |")[1].splitlines()[0].rstrip().endswith("| not met |")


def test_table2_names_and_notes(report, evals, tmp_path):
    paths, *_ = evals
    out: list[str] = []
    report.main([f"my-op-q3-noclass={paths['op-q3']}", "--table", "2", "--note", "my-op-q3-noclass=hello", "--json", str(tmp_path / "n.json")], emit=out.append)
    line = [r for r in out[0].splitlines() if r.startswith("| my-op-q3-noclass |")][0]
    assert "lambda_class = 0" in line and "hello" in line
    assert json.loads((tmp_path / "n.json").read_text())["table2"]["my-op-q3-noclass"]["n"] == 100
    with pytest.raises(SystemExit, match="not an evaluate JSON"):
        bad = tmp_path / "bad.json"
        bad.write_text("{}")
        report.main([str(bad), "--table", "2"], emit=out.append)


def test_arch_names(report):
    assert report.arch_of("op-q3-noclass") == ("r2c", "op-q3")
    assert report.arch_of("r2c-cnn-compact") == ("r2c", "cnn-compact")
    assert report.arch_of("cnn") == ("r2c", "cnn")
    assert report.arch_of("baseline-efficientnet_b4") == ("baseline", "efficientnet_b4")
    assert report.arch_of("inception_v3-v0") == ("baseline", "inception_v3")
    assert report.arch_of("mystery") == (None, None)


def test_table5_params_flops_and_timing(report, tmp_path):
    out: list[str] = []
    report.main(["--table", "5", "--arch", "cnn-compact", "--no-timing", "--size", "64", "--json", str(tmp_path / "a.json")], emit=out.append)
    report.main(["--table", "5", "--arch", "cnn-compact", "--batches", "1,2", "--repeats", "1", "--size", "32", "--json", str(tmp_path / "b.json")], emit=out.append)
    small = json.loads((tmp_path / "b.json").read_text())["table5"][0]
    big = json.loads((tmp_path / "a.json").read_text())["table5"][0]
    assert big["parameters"] == small["parameters"] == count_params(build_generator("cnn-compact"))
    assert big["gflops"] > 0 and big["gflops"] / small["gflops"] == pytest.approx(4.0, rel=0.05)  # FLOPs scale with pixels
    assert big["ms"] == {} and set(small["ms"]) >= {"cpu_b1", "cpu_b2"} and all(v > 0 for k, v in small["ms"].items() if k.startswith("cpu"))
    row = [r for r in out[1].splitlines() if r.startswith("| cnn-compact |")][0]
    assert f"| {small['parameters'] / 1e6:.3f} |" in row and "CPU ms/img b2" in out[1]


# ----------------------------------------------------------------------------------------------- pack
@pytest.mark.data
def test_make_pack_script_builds_checks_size_and_unpacks(cxr_dir, tmp_path, capsys):
    mp = _script("make_pack")
    pack = tmp_path / "p.npz"
    assert mp.main(["--size", "32", "--limit", "3", "--out", str(pack), "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["n"] == 3 and 0 < info["mib"] < 1
    assert mp.main(["--size", "32", "--limit", "3", "--out", str(pack), "--quiet", "--max-mib", "0.0001"]) == 1
    assert "not below" in capsys.readouterr().err
    assert mp.main(["--unpack", str(pack), "--to", str(tmp_path / "u")]) == 0
    assert len(list((tmp_path / "u" / "images").glob("*.png"))) == 3 and (tmp_path / "u" / "MANIFEST.csv").is_file()
    assert mp.main(["--unpack", str(tmp_path / "missing.npz"), "--to", str(tmp_path / "v")]) == 2


# -------------------------------------------------------------------------------------------- samples
@pytest.mark.data
def test_render_samples_mhh_only_with_attribution(cxr_dir, tmp_path, capsys):
    from r2c_core.inference import export_generator

    rs = _script("render_samples")
    torch.manual_seed(0)
    export_generator(build_generator("cnn-compact"), "cnn-compact", tmp_path / "w" / "r2c-cnn-compact", extra={"version": "test"})
    (tmp_path / "w" / "not-a-generator").mkdir()
    out = tmp_path / "fig"
    assert rs.main(["--weights-root", str(tmp_path / "w"), "--mhh-only", "--n", "1", "--tile", "64", "--out", str(out)]) == 0
    png = out / "samples-r2c-cnn-compact-mhh.png"
    from PIL import Image

    with Image.open(png) as im:
        assert im.width == 3 * 64 and im.height > 64
    md = (out / "samples-mhh.md").read_text()
    assert "doi:10.25835/0090041" in md and "CC BY 3.0" in md and "mhh_" in md and "samples-r2c-cnn-compact-mhh.png" in md
    # non-mhh images never under docs/
    assert rs.main(["--weights-root", str(tmp_path / "w"), "--out", str(REPO_ROOT / "docs" / "should-not-exist")]) == 2
    assert not (REPO_ROOT / "docs" / "should-not-exist").exists()


# ------------------------------------------------------------------------------------------- recipes
def test_run_recipes_script_syntax_and_unknown_recipe(tmp_path):
    sh = SCRIPTS / "run_recipes.sh"
    assert subprocess.run(["bash", "-n", str(sh)], capture_output=True).returncode == 0
    env = {"PATH": "/usr/bin:/bin", "R2C_DATA": str(tmp_path), "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(sh), "--out", str(tmp_path / "runs"), "no-such-model"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "no recipe no-such-model" in r.stderr
    r = subprocess.run(["bash", str(sh), "--bogus"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "unknown option" in r.stderr
    # every default recipe has its config file
    for name in ("op-q1", "op-q3", "op-q5", "cnn", "cnn-compact", "op-q3-noclass"):
        assert (REPO_ROOT / "configs" / f"r2c-{name}-gpu.json").is_file()
    for name in ("efficientnet_b4", "efficientnet_b5", "resnet50", "inception_v3"):
        cfg = json.loads((REPO_ROOT / "configs" / f"baseline-{name}.json").read_text())
        assert cfg["model"] == name
        from r2c_core.baselines import load_baseline_config

        assert load_baseline_config(REPO_ROOT / "configs" / f"baseline-{name}.json").size == 256


# ------------------------------------------------------------------------------------- benchmark merge
def _bench_run(folder, methods, psnr, real_methods=(), version="v1"):
    rows = [{"id": f"i{k}", "degradation": "blur", "severity": 1, "method": m, "psnr": psnr[m] + k, "ssim": 0.9,
             "ms_ssim": 0.9, "gmsd": 0.1, "psnr_degraded": 20.0 + k, "ssim_degraded": 0.8, "ms_ssim_degraded": 0.8,
             "gmsd_degraded": 0.2, "psnr_gain": psnr[m] - 20.0, "ssim_gain": 0.1, "ms_ssim_gain": 0.1, "gmsd_gain": 0.1}
            for m in methods for k in range(2)]
    import pandas as pd

    folder.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(folder / "full_reference.csv", index=False)
    if real_methods:
        real = [{"id": "r0", "domain": d, "method": m, "piqe": 30.0, "brisque": 20.0, "entropy": 7.0, "blur": 0.5,
                 "noise": 1.0, "cnr": 1.5, "eme": 3.0, "keep_ssim": 1.0, "keep_dice": 1.0, "p_covid_original": 0.4,
                 "p_covid": 0.6 if m != "identity" else 0.4} for m in real_methods for d in ("A", "B")]
        pd.DataFrame(real).to_csv(folder / "no_reference.csv", index=False)
    config = {"split": "test", "degradations": ["blur"], "severities": [1], "seed": 0, "n_degraded_images": 2,
              "n_real_images": 1 if real_methods else 0, "seconds": 1.0, "classifier": "op-q3",
              "versions": {"op-q3": version}}
    (folder / "bench.json").write_text(json.dumps({"config": config, "summary": {}}))
    return folder


def test_merge_bench_replaces_a_retrained_method_and_refuses_other_images(tmp_path) -> None:
    merge = _script("merge_bench")
    base = _bench_run(tmp_path / "base", ["identity", "clahe", "op-q3-x1"], {"identity": 20.0, "clahe": 18.0, "op-q3-x1": 19.0},
                      real_methods=["identity", "clahe", "op-q3-x1"])
    take = _bench_run(tmp_path / "take", ["identity", "op-q3-x1"], {"identity": 20.0, "op-q3-x1": 21.0}, version="v2")
    real = _bench_run(tmp_path / "real", ["identity"], {"identity": 20.0}, real_methods=["identity", "clahe", "op-q3-x1"], version="v2")
    assert merge.main(["--base", str(base), "--take", str(take), "--real", str(real), "--out", str(tmp_path / "out")]) == 0
    out = json.loads((tmp_path / "out" / "bench.json").read_text())
    overall = out["summary"]["full_reference_overall"]
    assert list(overall) == ["identity", "clahe", "op-q3-x1"]  # the base's order
    assert overall["op-q3-x1"]["psnr_gain"] == pytest.approx(1.0) and overall["clahe"]["psnr_gain"] == pytest.approx(-2.0)
    assert out["config"]["versions"]["op-q3"] == "v2"
    assert out["config"]["merged_from"]["full_reference"] == {"op-q3-x1": str(take)}
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| op-q3-x1 | +1.00 |" in table and "| clahe | -2.00 |" in table
    other = _bench_run(tmp_path / "other", ["identity", "op-q3-x1"], {"identity": 25.0, "op-q3-x1": 21.0})
    with pytest.raises(SystemExit, match="identity rows"):
        merge.main(["--base", str(base), "--take", str(other), "--real", str(real), "--out", str(tmp_path / "bad")])
    no_ident = _bench_run(tmp_path / "no-ident", ["op-q3-x1"], {"op-q3-x1": 21.0})
    with pytest.raises(SystemExit, match="no identity rows"):
        merge.main(["--base", str(base), "--take", str(no_ident), "--real", str(real), "--out", str(tmp_path / "bad")])
    with pytest.raises(SystemExit, match="give --real"):  # the base's real-image part measured the old weights
        merge.main(["--base", str(base), "--take", str(take), "--out", str(tmp_path / "bad")])


# ------------------------------------------------------------------------------------- training curves
def _fake_run(root, d_loss):
    import pandas as pd

    n = len(d_loss)
    cols = {"step": np.arange(1, n + 1), "lr": np.full(n, 2e-4), "G_loss": np.linspace(5, 1, n), "D_loss": d_loss}
    for term in ("A2B2A_cycle_loss", "B2A2B_cycle_loss", "A2A_id_loss", "B2B_id_loss"):
        cols[term] = np.full(n, 0.1)
    root.mkdir()
    pd.DataFrame(cols).to_csv(root / "train_log.csv", index=False)
    (root / "state").mkdir()
    (root / "state" / "config.json").write_text(json.dumps({"steps_per_epoch": 10, "model": "op-q5"}))
    (root / "val_log.jsonl").write_text(json.dumps({"step": 20, "epoch": 2.0, "all": {"auc": 0.6}, "domain_A": {"auc": 0.5},
                                                    "restoration": {"ssim_to_input": 0.5, "mean_abs_change": 20.0,
                                                                    "psnr_gain": -7.0}}) + "\n")
    return root


def test_training_curves_log_axis_only_for_losses_spanning_decades(tmp_path):
    curves = _script("render_training_curves")
    wide = curves.figure(_fake_run(tmp_path / "wide", np.geomspace(1e6, 10, 200)))
    narrow = curves.figure(_fake_run(tmp_path / "narrow", np.linspace(2, 1, 200)))
    assert wide.layout.yaxis.type == "log"
    assert narrow.layout.yaxis.type in (None, "linear", "-")
    assert [t.name for t in wide.data][:3] == ["G_loss", "D_loss", "lr"]
    assert list(wide.data[-1].y) == [-7.0]  # the PSNR-gain panel reads the validation log
    assert curves.main([str(tmp_path / "missing")]) == 2
