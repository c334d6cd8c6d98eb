"""The shipped lung U-Net (weights/lung-unet) on real X-rays, and a tiny real training run (with resume)."""

from __future__ import annotations

import json

import numpy as np
import torch
import pytest

from r2c_core.checkpoints import read_config
from r2c_core.imageio import read_xray
from r2c_core.segmentation import LungSegmenter, default_weights_dir, dice
from r2c_core.segmentation.evaluate import evaluate
from r2c_core.segmentation.train import train

pytestmark = pytest.mark.data

#: Sane floor for a handful of test-split human masks (the full test-split figures are in docs/SEGMENTATION.md).
DICE_FLOOR = 0.8


@pytest.fixture(scope="module")
def shipped():
    d = default_weights_dir()
    assert (d / "model.safetensors").is_file(), f"shipped lung U-Net weights missing in {d}"
    return LungSegmenter.from_dir(d, device="cpu")


def test_shipped_config_records_split_and_preprocess(shipped):
    cfg = read_config(default_weights_dir())
    assert cfg["kind"] == "lung-unet" and cfg["weights_dtype"] == "float16"
    assert cfg["preprocess"]["size"] in (256, 512)
    ids = cfg["split"]["ids"]
    assert ids["train"] and ids["val"] and ids["test"]
    assert not set(ids["train"]) & set(ids["val"]) and not set(ids["train"]) & set(ids["test"])


def test_shipped_weights_on_real_test_xrays(shipped, cxr_manifest, cxr_dir):
    test_human = cxr_manifest[(cxr_manifest["split"] == "test") & (cxr_manifest["mask_source"] == "human")]
    rows = test_human.sort_values("id").iloc[:: max(1, len(test_human) // 5)].head(5)
    assert len(rows) == 5
    scores = []
    for row in rows.to_dict("records"):
        img = read_xray(cxr_dir / row["file"])
        ref = read_xray(cxr_dir / row["mask_file"]) >= 128
        mask = shipped.mask(img)
        assert mask.shape == img.shape
        scores.append(dice(mask, ref))
    assert np.mean(scores) > DICE_FLOOR, scores


def test_evaluate_summary_on_real_rows(shipped, cxr_dir):
    cfg = read_config(default_weights_dir())
    ids = cfg["split"]["ids"]["test"][:3]
    summary, records = evaluate(shipped, cxr_dir / "MANIFEST.csv", split="test", ids=ids)
    assert len(records) == 3 and summary["n_images"] == 3
    assert all(0.0 <= r["dice"] <= 1.0 and r["iou"] <= r["dice"] for r in records)


def test_tiny_training_run_and_resume(tmp_path, cxr_dir):
    cfg = {"name": "tiny", "preprocess": {"size": 64}, "data": {"manifest": str(cxr_dir / "MANIFEST.csv"), "limit": 4},
           "train": {"epochs": 2, "batch_size": 2, "threads": 2, "device": "cpu"}}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "run"
    first = train(path, out=out, max_steps=1, evaluate_on_test=False)
    assert first["reason"].startswith("max steps")
    saved = read_config(out / "best")
    assert saved["kind"] == "lung-unet" and saved["split"]["counts"] == {"train": 4, "val": 4, "test": 4}
    second = train(None, resume=out, max_steps=3)
    assert second["reason"].startswith("epochs") or second["reason"].startswith("max steps")
    log = (out / "log.csv").read_text().strip().splitlines()
    assert len(log) == 3 and log[0].startswith("epoch,")  # header + one row per epoch, across the resume
    assert read_config(out / "last")["epoch"] == 2
    assert "test_metrics" in read_config(out / "best")
    assert LungSegmenter.from_dir(out / "best", device="cpu").mask(np.zeros((50, 40), np.uint8)).shape == (50, 40)


def test_resume_at_an_epoch_end_equals_the_uninterrupted_run(tmp_path, cxr_dir):
    """The shared run loop (r2c_core.training.loop) keeps the U-Net's resume exact: optimizer, sample order and
    augmentation generator continue where the first part stopped."""
    from r2c_core.checkpoints import load_checkpoint

    cfg = {"name": "tiny", "preprocess": {"size": 64}, "data": {"manifest": str(cxr_dir / "MANIFEST.csv"), "limit": 4},
           "train": {"epochs": 2, "batch_size": 2, "threads": 2, "device": "cpu", "patience": 5}}
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    full = train(path, out=tmp_path / "full", evaluate_on_test=False)
    part = train(path, out=tmp_path / "part", max_steps=2, evaluate_on_test=False)  # exactly one epoch
    assert part["reason"].startswith("max steps")
    resumed = train(None, resume=tmp_path / "part", evaluate_on_test=False)
    assert full["reason"].startswith("epochs") and resumed["reason"].startswith("epochs")
    a, _ = load_checkpoint(tmp_path / "full" / "last")
    b, _ = load_checkpoint(tmp_path / "part" / "last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_unknown_config_keys_are_refused_with_the_known_ones(tmp_path):
    from r2c_core.errors import R2CError
    from r2c_core.segmentation.train import load_config

    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"_comment": "ok", "train": {"epochs": 2, "learning_rate": 0.1}}))
    with pytest.raises(R2CError, match=r"unknown key\(s\) train.learning_rate \(known: .*train.lr"):
        load_config(path)
    path.write_text(json.dumps({"trian": {}}))
    with pytest.raises(R2CError, match="unknown key"):
        load_config(path)
    path.write_text(json.dumps({"_comment": "ok", "train": {"epochs": 2}}))
    assert load_config(path)["train"]["epochs"] == 2


def test_config_values_are_checked_against_the_dataclass_types(tmp_path):
    from r2c_core.errors import R2CError
    from r2c_core.segmentation.config import DEFAULTS, SegConfig, build
    from r2c_core.segmentation.train import load_config

    path = tmp_path / "bad.json"
    for bad, msg in (({"train": {"epochs": "many"}}, "train.epochs must be an integer"),
                     ({"train": {"amp": 1}}, "train.amp must be true or false"),
                     ({"augment": {"scale": [0.9]}}, "augment.scale must have 2 values"),
                     ({"data": {"limit": 2.5}}, "data.limit must be an integer"),
                     ({"train": 3}, "train must be an object")):
        path.write_text(json.dumps(bad))
        with pytest.raises(R2CError, match=msg):
            load_config(path)
    assert build(SegConfig, DEFAULTS) == SegConfig()  # the defaults round-trip
    path.write_text(json.dumps({"data": {"limit": 4}, "train": {"max_minutes": 30}}))
    cfg = load_config(path)
    assert cfg["data"]["limit"] == 4 and cfg["train"]["max_minutes"] == 30.0 and cfg["augment"]["scale"] == [0.9, 1.1]
