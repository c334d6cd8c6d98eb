"""Checkpoints (round trip, mismatch errors) and restoration/classification on real X-rays."""

import json

import numpy as np
import pytest
import torch

from r2c_core.checkpoints import load_checkpoint, save_checkpoint
from r2c_core.errors import CheckpointError
from r2c_core.imageio import read_xray
from r2c_core.inference import Restorer, export_generator, roundtrip
from r2c_core.models import build_generator


@pytest.fixture(scope="module")
def q1_dir(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("w") / "r2c-op-q1"
    export_generator(build_generator("op-q1"), "op-q1", d, extra={"version": "test"})
    return d


def test_checkpoint_roundtrip_gives_identical_outputs(tmp_path):
    torch.manual_seed(1)
    gen = build_generator("cnn-compact").eval()
    export_generator(gen, "cnn-compact", tmp_path / "c", extra={"data_split": {"train": 3}})
    r = Restorer.from_dir(tmp_path / "c", device="cpu")
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        a, la = gen(x)
        b, lb = r.generator(x)
    assert torch.equal(a, b) and torch.equal(la, lb)
    cfg = json.loads((tmp_path / "c" / "config.json").read_text())
    for key in ("model", "working_size", "normalisation", "code_version", "class_names", "data_split"):
        assert key in cfg


def test_fp16_checkpoint_loads_as_fp32(tmp_path):
    gen = build_generator("op-q1")
    export_generator(gen, "op-q1", tmp_path / "h", dtype=torch.float16)
    tensors, cfg = load_checkpoint(tmp_path / "h")
    assert all(t.dtype == torch.float16 for t in tensors.values())
    assert cfg["weights_dtype"] == "float16"
    r = Restorer.from_dir(tmp_path / "h", device="cpu")
    assert next(r.generator.parameters()).dtype == torch.float32


def test_wrong_model_fails_with_one_clear_message(tmp_path, q1_dir):
    cfg = json.loads((q1_dir / "config.json").read_text())
    cfg["model"] = "op-q3"
    bad = tmp_path / "bad"
    tensors, _ = load_checkpoint(q1_dir)
    save_checkpoint(bad, tensors, cfg)
    with pytest.raises(CheckpointError, match=r"does not fit OpGenerator: .*shape mismatch.*weight"):
        Restorer.from_dir(bad)


def test_missing_and_corrupt_checkpoints(tmp_path, q1_dir):
    with pytest.raises(CheckpointError, match="not found"):
        Restorer.from_dir(tmp_path / "nothing")
    d = tmp_path / "corrupt"
    d.mkdir()
    (d / "config.json").write_text((q1_dir / "config.json").read_text())
    (d / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        Restorer.from_dir(d)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        Restorer.from_dir(d)
    seg = tmp_path / "seg"
    save_checkpoint(seg, {"x": torch.zeros(1)}, {"kind": "lung-unet"})
    with pytest.raises(CheckpointError, match="expected 'r2c-generator'"):
        Restorer.from_dir(seg)


def test_restore_real_xrays_shape_range_and_probs(q1_dir, cxr_dir, cxr_manifest):
    r = Restorer.from_dir(q1_dir, device="cpu")
    rows = cxr_manifest.groupby("source").head(1)
    imgs = [read_xray(cxr_dir / f) for f in rows["file"]]
    results = r.restore_batch(imgs, passes=3, batch_size=4)
    for img, res in zip(imgs, results):
        assert res.image.dtype == np.uint8 and res.image.shape == img.shape
        assert len(res.passes_images) == 3 and res.passes_images[-1] is res.image
        assert res.probs.shape == (2,) and res.probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert 0.0 <= res.prob_covid <= 1.0
    single = r.restore(imgs[0], passes=3)
    assert np.array_equal(single.image, results[0].image)
    np.testing.assert_allclose(single.probs, results[0].probs, atol=1e-5)


def test_restore_16bit_and_rgb_inputs(q1_dir, cxr_dir, cxr_manifest):
    r = Restorer.from_dir(q1_dir, device="cpu")
    gray = read_xray(cxr_dir / cxr_manifest.iloc[0]["file"])
    as16 = gray.astype(np.uint16) * 257
    as_rgb = np.repeat(gray[..., None], 3, axis=2)
    a, b, c = r.restore(gray), r.restore(as16), r.restore(as_rgb)
    assert b.image.shape == gray.shape and c.image.shape == gray.shape
    assert np.array_equal(a.image, c.image)
    assert np.abs(a.image.astype(int) - b.image.astype(int)).mean() < 20  # windowing only changes contrast a little


def test_probabilities_come_from_the_first_pass(q1_dir):
    r = Restorer.from_dir(q1_dir, device="cpu")
    img = (np.random.default_rng(0).random((100, 80)) * 255).astype(np.uint8)
    np.testing.assert_allclose(r.restore(img, passes=1).probs, r.restore(img, passes=3).probs, atol=1e-6)


def test_roundtrip_equals_zero_passes(q1_dir):
    r = Restorer.from_dir(q1_dir, device="cpu")
    img = (np.random.default_rng(1).random((300, 200)) * 255).astype(np.uint8)
    rt = roundtrip(img)
    assert rt.shape == img.shape
    assert np.array_equal(rt, r.restore(img, passes=0).image)
    assert np.abs(rt.astype(int) - img.astype(int)).mean() > 1  # it really went through 256 and back
