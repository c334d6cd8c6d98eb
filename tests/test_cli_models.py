"""CLI: ``params`` and ``restore``, including every bad-input case (non-zero exit, one line, no traceback)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from r2c_core.cli import main
from r2c_core.inference import export_generator
from r2c_core.models import build_generator

from .test_models import SPEC_PARAMS


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("w") / "r2c-op-q1"
    export_generator(build_generator("op-q1"), "op-q1", d)
    return d


def test_params_matches_spec(capsys):
    assert main(["params"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {k: (v["generator"], v["discriminator"]) for k, v in out.items()} == SPEC_PARAMS


def test_restore_file_and_folder(weights, tmp_path, cxr_dir, cxr_manifest, capsys):
    src = tmp_path / "in"
    src.mkdir()
    for f in cxr_manifest["file"].iloc[:2]:
        (src / (cxr_dir / f).name).write_bytes((cxr_dir / f).read_bytes())
    out = tmp_path / "out"
    assert main(["restore", "--weights", str(weights), "--input", str(src), "--out", str(out), "--passes", "3", "--save-passes"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["restored"] == 2 and summary["passes"] == 3
    for f in src.iterdir():
        restored = Image.open(out / f"{f.stem}_restored.png")
        assert restored.size == Image.open(f).size and restored.mode == "L"
        assert (out / f"{f.stem}_pass2.png").exists()
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "file,prob_covid,pred" and len(lines) == 3


def _bad_cases(tmp_path, weights):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    corrupt = tmp_path / "corrupt.png"
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(good)
    corrupt.write_bytes(good.read_bytes()[:30])
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)
    wrong = tmp_path / "wrong"
    export_generator(build_generator("op-q1"), "op-q1", wrong)
    cfg = json.loads((wrong / "config.json").read_text())
    cfg["model"] = "cnn-compact-nope"
    (wrong / "config.json").write_text(json.dumps(cfg))
    misfit = tmp_path / "misfit"
    export_generator(build_generator("op-q1"), "op-q1", misfit)
    cfg["model"] = "op-q3"
    (misfit / "config.json").write_text(json.dumps(cfg))
    return {
        "missing": (["--input", str(tmp_path / "nope.png")], "not found"),
        "empty": (["--input", str(empty)], "empty"),
        "non-image": (["--input", str(text)], "not an image"),
        "corrupt": (["--input", str(corrupt)], "corrupt|truncated|not an image"),
        "bomb": (["--input", str(bomb)], "pixel limit|decompression bomb"),
        "unknown-model": (["--input", str(good), "--weights", str(wrong)], "unknown model"),
        "misfit": (["--input", str(good), "--weights", str(misfit)], "does not fit"),
        "passes": (["--input", str(good), "--passes", "0"], "passes"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "non-image", "corrupt", "bomb", "unknown-model", "misfit", "passes"])
def test_restore_bad_input(case, tmp_path, weights, capsys):
    args, match = _bad_cases(tmp_path, weights)[case]
    base = ["restore", "--weights", str(weights), "--out", str(tmp_path / "o")]
    if "--weights" in args:
        base = ["restore", "--out", str(tmp_path / "o")]
    code = main(base + args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("error: ")
    import re

    assert re.search(match, err[0]), err[0]


def test_folder_with_one_bad_file_restores_the_rest(tmp_path, weights, capsys):
    src = tmp_path / "mixed"
    src.mkdir()
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(src / "ok.png")
    (src / "bad.png").write_bytes(b"junk")
    code = main(["restore", "--weights", str(weights), "--input", str(src), "--out", str(tmp_path / "o")])
    assert code == 2
    assert (tmp_path / "o" / "ok_restored.png").exists()
    assert "1 of 2" in capsys.readouterr().err


def test_real_process_prints_no_traceback(tmp_path, weights):
    proc = subprocess.run(
        [sys.executable, "-m", "r2c_core", "restore", "--weights", str(weights), "--input", str(tmp_path / "x.png"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr
