"""Lung segmentation CLI and loader: bad input gives exit code != 0 and one clear stderr line; good input works.

Uses a small randomly initialised checkpoint (64 px preprocessing) so it runs in seconds on CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from r2c_core.checkpoints import save_checkpoint
from r2c_core.cli import main
from r2c_core.errors import CheckpointError
from r2c_core.paths import REPO_ROOT
from r2c_core.segmentation import LungSegmenter, build_unet, lung_mask


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("seg") / "w"
    cfg = {"kind": "lung-unet", "model": {"arch": "unet", "encoder": "densenet121", "in_channels": 1, "classes": 1},
           "preprocess": {"size": 64, "resize": "stretch", "norm": "zscore"}, "threshold": 0.5}
    save_checkpoint(d, build_unet().state_dict(), cfg, dtype=torch.float16)
    return d


@pytest.fixture
def xray(tmp_path) -> Path:
    rng = np.random.default_rng(1)
    p = tmp_path / "in" / "cxr.png"
    p.parent.mkdir()
    Image.fromarray(rng.integers(0, 256, (90, 70), dtype=np.uint8)).save(p)
    return p


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code != 0
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for n in needles:
        assert n in lines[0], lines[0]


def test_segmenter_outputs_at_input_size(tiny_weights):
    seg = LungSegmenter.from_dir(tiny_weights, device="cpu")
    assert next(seg.model.parameters()).dtype == torch.float32
    rng = np.random.default_rng(2)
    a, b = rng.integers(0, 256, (90, 70), dtype=np.uint8), rng.integers(0, 256, (40, 120), dtype=np.uint8)
    p = seg.predict_prob(a)
    assert p.shape == (90, 70) and p.dtype == np.float32 and 0 <= p.min() <= p.max() <= 1
    ms = seg.masks([a, b])
    assert [m.shape for m in ms] == [(90, 70), (40, 120)] and all(m.dtype == bool for m in ms)
    np.testing.assert_array_equal(seg.mask(a), ms[0])
    np.testing.assert_array_equal(lung_mask(a, seg), ms[0])


def test_segment_writes_masks_and_overlays(capsys, tiny_weights, xray, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "segment", "--weights", str(tiny_weights), "--input", str(xray.parent), "--out", str(out), "--device", "cpu")
    assert code == 0, err
    res = json.loads(stdout)
    assert len(res["images"]) == 1
    mask = np.asarray(Image.open(out / "cxr_mask.png"))
    ov = np.asarray(Image.open(out / "cxr_overlay.png"))
    assert mask.shape == (90, 70) and set(np.unique(mask)) <= {0, 255}
    assert ov.shape == (90, 70, 3)


def test_segment_missing_file(capsys, tiny_weights, tmp_path):
    code, _, err = run_cli(capsys, "segment", "--weights", str(tiny_weights), "--input", str(tmp_path / "nope.png"), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "not found")


def test_segment_corrupt_image(capsys, tiny_weights, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    code, _, err = run_cli(capsys, "segment", "--weights", str(tiny_weights), "--input", str(bad), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "bad.png")


def test_segment_folder_with_one_corrupt_file(capsys, tiny_weights, xray, tmp_path):
    (xray.parent / "broken.jpg").write_bytes(b"not a jpeg")
    code, stdout, err = run_cli(capsys, "segment", "--weights", str(tiny_weights), "--input", str(xray.parent), "--out", str(tmp_path / "o"), "--device", "cpu")
    assert_one_line_error(code, err, "1 of 2", "broken.jpg")
    assert (tmp_path / "o" / "cxr_mask.png").is_file()


def test_missing_weights_dir(capsys, xray, tmp_path):
    code, _, err = run_cli(capsys, "segment", "--weights", str(tmp_path / "nowhere"), "--input", str(xray), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "not found")


def test_checkpoint_that_does_not_fit(capsys, xray, tmp_path):
    d = tmp_path / "wrong"
    save_checkpoint(d, {"conv.weight": torch.zeros(3, 3)}, {"kind": "lung-unet", "preprocess": {"size": 64}})
    code, _, err = run_cli(capsys, "segment", "--weights", str(d), "--input", str(xray), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, "does not fit")
    with pytest.raises(CheckpointError):
        LungSegmenter.from_dir(d)


def test_checkpoint_of_another_kind(tmp_path):
    d = tmp_path / "gen"
    save_checkpoint(d, {"x": torch.zeros(1)}, {"kind": "r2c-generator"})
    with pytest.raises(CheckpointError, match="not a lung U-Net"):
        LungSegmenter.from_dir(d)


def test_segment_eval_bad_manifest(capsys, tiny_weights, tmp_path):
    code, _, err = run_cli(capsys, "segment-eval", "--weights", str(tiny_weights), "--manifest", str(tmp_path / "none.csv"))
    assert_one_line_error(code, err, "manifest not found")
    csv = tmp_path / "m.csv"
    csv.write_text("id,file\na,b.png\n")
    code, _, err = run_cli(capsys, "segment-eval", "--weights", str(tiny_weights), "--manifest", str(csv))
    assert_one_line_error(code, err, "missing column")


def test_train_seg_bad_config(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train-seg", "--config", str(tmp_path / "none.json"))
    assert_one_line_error(code, err, "config file not found")
    code, _, err = run_cli(capsys, "train-seg", "--resume", str(tmp_path))
    assert_one_line_error(code, err, "not a training run")


def test_subprocess_one_line_no_traceback(tmp_path):
    """The real entry point (``python -m r2c_core``) on a missing weights folder."""
    img = tmp_path / "x.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(img)
    proc = subprocess.run([sys.executable, "-m", "r2c_core", "segment", "--weights", str(tmp_path / "missing"), "--input", str(img),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 2
    assert_one_line_error(proc.returncode, proc.stderr, "checkpoint folder not found")


@pytest.fixture
def tiny_manifest(tmp_path) -> Path:
    """A 3-image manifest in the real layout: 2 human masks (2 sources), 1 model mask, all in 'test'."""
    root = tmp_path / "cxr"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(3)
    rows = ["id,file,split,source,group_id,has_mask,mask_file,mask_source"]
    for i, (src, ms) in enumerate([("ieee", "human"), ("mhh", "human"), ("ieee", "model")]):
        Image.fromarray(rng.integers(0, 256, (48, 40), dtype=np.uint8)).save(root / "images" / f"x{i}.png")
        m = np.zeros((48, 40), np.uint8)
        m[10:40, 5:35] = 255
        Image.fromarray(m).save(root / "masks" / f"x{i}.png")
        rows.append(f"x{i},images/x{i}.png,test,{src},g{i},1,masks/x{i}.png,{ms}")
    rows.append("x9,images/x0.png,test,ieee,g9,0,,")  # unmasked rows are ignored
    (root / "MANIFEST.csv").write_text("\n".join(rows) + "\n")
    return root / "MANIFEST.csv"


def test_segment_eval_json(capsys, tiny_weights, tiny_manifest, tmp_path):
    per_image = tmp_path / "per_image.csv"
    code, stdout, err = run_cli(capsys, "segment-eval", "--weights", str(tiny_weights), "--manifest", str(tiny_manifest),
                                "--split", "test", "--per-image", str(per_image), "--device", "cpu",
                                "--restore-weights", str(tmp_path / "no-r2c-weights"))
    assert code == 0, err
    res = json.loads(stdout)
    assert res["n_images"] == 3 and res["human"]["dice"]["n"] == 2 and res["model_masks"]["dice"]["n"] == 1
    assert set(res["per_source"]) == {"ieee", "mhh"}
    d = res["human"]["dice"]
    assert d["ci95"][0] <= d["mean"] <= d["ci95"][1] and 0 <= d["p10"] <= 1
    assert "skipped" in res["restore_agreement"] and "skipped" in err
    assert len(per_image.read_text().strip().splitlines()) == 4
    code, _, err = run_cli(capsys, "segment-eval", "--weights", str(tiny_weights), "--manifest", str(tiny_manifest), "--split", "train")
    assert_one_line_error(code, err, "split 'train' has no masked rows")


def test_segment_eval_restore_agreement(capsys, monkeypatch, tiny_weights, tiny_manifest):
    """With a restorer, agreement = Dice(mask on original, mask on restored); an identity restorer gives 1.0."""
    from types import SimpleNamespace

    import r2c_core.commands.segmentation as cmd

    class Identity:
        def restore(self, gray, passes=1):
            return SimpleNamespace(image=gray.copy(), probs=None)

    class Invert:
        def restore(self, gray, passes=1):
            return SimpleNamespace(image=255 - gray, probs=None)

    for restorer, check in ((Identity(), lambda v: v == 1.0), (Invert(), lambda v: v < 1.0)):
        monkeypatch.setattr(cmd, "_restorer", lambda w, r=restorer: (r, None))
        code, stdout, err = run_cli(capsys, "segment-eval", "--weights", str(tiny_weights), "--manifest", str(tiny_manifest),
                                    "--restore-weights", "anything", "--passes", "2", "--device", "cpu")
        assert code == 0, err
        ra = json.loads(stdout)["restore_agreement"]
        assert ra["dice"]["n"] == 3 and check(ra["dice"]["mean"]), ra
        assert ra["restored_vs_human_dice"]["n"] == 2
