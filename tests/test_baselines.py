"""Baselines: timm models built without any download, config checks, deterministic batches, exact resume, a smoke
train on real X-rays whose checkpoint ``classify-baseline`` loads, and the training pack's round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from r2c_core.baselines import (
    BASELINE_KIND, BASELINE_NAMES, BaselineClassifier, BaselineTrainer, SupervisedBatches, SupervisedData, augment,
    baseline_config_from_dict, build_baseline, class_weights, count_parameters, limit_rows, load_pack, unpack_to_folder,
    write_pack,
)
from r2c_core.checkpoints import load_checkpoint
from r2c_core.cli import main
from r2c_core.data import load_split
from r2c_core.errors import CheckpointError, ManifestError, R2CError
from r2c_core.training.loader import DomainCache, decode_resized


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def no_downloads(monkeypatch):
    """Every download path timm or torch could take raises."""
    import huggingface_hub
    import timm.models._builder as builder
    import timm.models._hub as hub

    def boom(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for mod, names in (
        (builder, ("load_pretrained", "load_state_dict_from_url", "load_state_dict_from_hf", "download_cached_file")),
        (hub, ("download_cached_file", "download_url_to_file", "hf_hub_download", "load_state_dict_from_hf")),
        (torch.hub, ("load_state_dict_from_url", "download_url_to_file")),
        (huggingface_hub, ("hf_hub_download",)),
    ):
        for n in names:
            monkeypatch.setattr(mod, n, boom)


# --------------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_each_baseline_builds_without_download_and_gives_two_logits(name, no_downloads):
    torch.manual_seed(0)
    model = build_baseline(name).eval()
    size = 80 if name == "inception_v3" else 64
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2) and torch.isfinite(out).all()
    assert 5e6 < count_parameters(model) < 5e7  # full-size networks, not stubs


def test_unknown_baseline_and_bad_configs():
    with pytest.raises(R2CError, match="unknown baseline"):
        build_baseline("vgg16")
    with pytest.raises(R2CError, match="unknown key"):
        baseline_config_from_dict({"modle": "resnet50"})
    with pytest.raises(R2CError, match="size must be"):
        baseline_config_from_dict({"model": "inception_v3", "size": 64})
    with pytest.raises(R2CError, match="batch_size"):
        baseline_config_from_dict({"batch_size": 1})
    with pytest.raises(R2CError, match="balance"):
        baseline_config_from_dict({"balance": "oversample"})
    cfg = baseline_config_from_dict({"model": "resnet50", "_comment": "x"}, {"size": "64", "lr": "0.01"})
    assert cfg.size == 64 and cfg.load_size == 72 and cfg.lr == 0.01


# ----------------------------------------------------------------------------------------------- data
def _cache(n: int, size: int, covid: int, seed: int = 0) -> DomainCache:
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n, size, size), generator=g, dtype=torch.uint8)
    labels = torch.tensor([1] * covid + [0] * (n - covid))
    return DomainCache([f"img{i:03d}" for i in range(n)], imgs, labels)


def test_class_weights_and_limit_rows():
    w = class_weights(torch.tensor([0, 0, 0, 1]))
    assert torch.allclose(w, torch.tensor([4 / 6, 2.0]))
    rows = pd.DataFrame({"id": [f"r{i}" for i in range(20)], "label": ["covid"] * 4 + ["control"] * 16})
    small = limit_rows(rows, 5, seed=1)
    assert len(small) == 5 and set(small["label"]) == {"covid", "control"} and list(small["id"]) == sorted(small["id"])
    assert len(limit_rows(rows, 0, seed=1)) == 20


def test_augment_flips_and_crops_within_the_image():
    img = torch.arange(10 * 10, dtype=torch.int32).view(1, 10, 10).to(torch.uint8)
    seen = set()
    for s in range(20):
        out = augment(img, 8, torch.Generator().manual_seed(s))[0]
        assert out.shape == (8, 8)
        # every crop is a window of the image or of its mirror
        ok = any(torch.equal(out, src[y : y + 8, x : x + 8]) for src in (img[0], img[0].flip(-1)) for y in range(3) for x in range(3))
        assert ok
        seen.add(out.numpy().tobytes())
    assert len(seen) > 3


def test_batches_are_a_function_of_the_step_and_the_sampler_balances():
    data = _cache(40, 20, covid=4)
    b1 = SupervisedBatches(data, size=16, batch_size=8, seed=3, balance="loss")
    b2 = SupervisedBatches(data, size=16, batch_size=8, seed=3, balance="loss")
    x7, y7 = b1.batch(7)
    b1.batch(0)
    assert torch.equal(b1.batch(7)[0], x7) and torch.equal(b2.batch(7)[0], x7) and torch.equal(b2.batch(7)[1], y7)
    assert x7.shape == (8, 3, 16, 16) and x7.min() >= -1 and x7.max() <= 1
    assert b1.steps_per_epoch == 5
    # one epoch without the sampler visits 40 distinct images; the sampler draws covid about half the time
    assert len(set(b1.epoch_order(0).tolist())) == 40
    sampler = SupervisedBatches(data, size=16, batch_size=8, seed=3, balance="sampler")
    drawn = torch.cat([data.labels[sampler.epoch_order(e)] for e in range(20)]).float().mean()
    assert 0.4 < float(drawn) < 0.6


# -------------------------------------------------------------------------------------------- trainer
def _synthetic(size: int) -> SupervisedData:
    return SupervisedData(_cache(8, int(round(size * 286 / 256)), covid=3), _cache(4, size, covid=2, seed=1), {"file": "synthetic"})


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    cfg = baseline_config_from_dict({"model": "resnet50", "size": 32, "batch_size": 4, "epochs": 2, "epoch_decay": 1, "device": "cpu", "lr": 1e-3})
    full = BaselineTrainer(cfg, tmp_path / "full", _synthetic(32), progress=False)
    summary = full.run()
    assert summary["step"] == 4 and summary["finished"] and summary["images_per_second"] > 0
    part_cfg = baseline_config_from_dict({**cfg.to_dict(), "max_steps": 3})
    BaselineTrainer(part_cfg, tmp_path / "part", _synthetic(32), progress=False).run()
    resumed = BaselineTrainer(cfg, tmp_path / "part", _synthetic(32), progress=False)
    resumed.load_state(tmp_path / "part")
    assert resumed.step == 3
    resumed.run()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = pd.read_csv(tmp_path / "part" / "train_log.csv")
    assert list(log["step"]) == list(range(4))
    # the exported classifier is the best validation epoch, loadable by the classifier
    tensors, exported = load_checkpoint(tmp_path / "full" / "classifier")
    assert exported["kind"] == BASELINE_KIND and exported["pretrained"] is False and exported["trained_from_scratch"] is True
    assert exported["training"]["step"] == summary["best"]["step"]
    clf = BaselineClassifier.from_dir(tmp_path / "full" / "classifier", device="cpu")
    p = clf.predict_proba([np.zeros((50, 40), np.uint8), np.full((30, 30), 200, np.uint8)])
    assert p.shape == (2, 2) and np.allclose(p.sum(1), 1, atol=1e-5)
    with pytest.raises(CheckpointError, match="expected 'baseline-classifier'"):
        BaselineClassifier.from_dir(tmp_path / "full" / "state")


# ------------------------------------------------------------------------------------------ real data
@pytest.mark.data
def test_smoke_train_resnet50_then_classify_and_evaluate(cxr_dir, cxr_manifest, tmp_path, capsys):
    out = tmp_path / "run"
    sets = ["model=resnet50", "size=64", "batch_size=4", "limit_train=8", "limit_val=4", "epochs=2", "epoch_decay=1", "device=cpu", "version=smoke"]
    argv = ["train-baseline", "--out", str(out), "--max-steps", "2", "--no-progress"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 2 and summary["total_steps"] == 4 and not summary["finished"]
    cfg = json.loads((out / "classifier" / "config.json").read_text())
    assert cfg["kind"] == BASELINE_KIND and cfg["model"] == "resnet50" and cfg["working_size"] == 64 and cfg["pretrained"] is False
    assert cfg["data_split"]["used"] == {"train": 8, "val": 4, "train_covid": cfg["data_split"]["used"]["train_covid"]}
    assert 1 <= cfg["data_split"]["used"]["train_covid"] <= 7
    # resume continues the schedule
    assert main(["train-baseline", "--resume", str(out), "--max-steps", "3", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["step"] == 3

    rows = cxr_manifest[cxr_manifest["split"] == "test"].groupby("source").head(1).copy()
    rows["file"] = [str(cxr_dir / f) for f in rows["file"]]
    man = tmp_path / "small.csv"
    rows.to_csv(man, index=False)
    preds = tmp_path / "preds.csv"
    assert main(["classify-baseline", "--weights", str(out / "classifier"), "--manifest", str(man), "--split", "test", "--out", str(preds), "--device", "cpu"]) == 0
    p = pd.read_csv(preds)
    assert list(p.columns) == ["id", "label", "prob_covid", "pred"] and list(p["id"]) == list(rows["id"])
    assert p["prob_covid"].between(0, 1).all()
    assert (p["pred"] == p["prob_covid"].ge(0.5).map({True: "covid", False: "control"})).all()
    capsys.readouterr()
    assert main(["evaluate", "--preds", str(preds), "--manifest", str(cxr_dir / "MANIFEST.csv"), "--bootstrap", "20"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == len(rows)


def test_classify_baseline_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "config.json").write_text(json.dumps({"kind": "r2c-generator", "model": "op-q3"}))
    man = tmp_path / "m.csv"
    man.write_text("id,file,label,split,source\na,a.png,covid,test,x\n")
    assert main(["classify-baseline", "--weights", str(tmp_path / "w"), "--manifest", str(man), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


@pytest.mark.data
def test_pack_round_trip(cxr_dir, tmp_path):
    meta = write_pack(tmp_path / "p.npz", size=64, limit=4, progress=False)
    assert meta["n"] == 4 and meta["size"] == 64 and len(meta["split_sha256"]) == 64
    pack = load_pack(tmp_path / "p.npz")
    split = load_split().set_index("id")
    man = pd.read_csv(cxr_dir / "MANIFEST.csv").set_index("id")
    ids = list(pack.ids)
    assert ids == sorted(split.index)[:4]
    assert list(pack.labels) == list(man.loc[ids, "label"]) and list(pack.splits) == list(split.loc[ids, "split"])
    assert list(pack.domains) == list(split.loc[ids, "domain"])
    expected = decode_resized([str(cxr_dir / f) for f in man.loc[ids, "file"]], 64, progress=False).numpy()
    assert np.array_equal(pack.images(), expected)  # PNG is lossless
    folder = tmp_path / "unpacked"
    new_manifest = unpack_to_folder(tmp_path / "p.npz", folder)
    um = pd.read_csv(new_manifest)
    assert list(um["id"]) == ids and (um["width"] == 64).all() and (um["has_mask"] == 0).all()
    assert list(um["orig_width"]) == list(man.loc[ids, "orig_width"])  # the metadata baseline's inputs survive
    from r2c_core.imageio import read_xray

    assert np.array_equal(read_xray(folder / um["file"][0]), expected[0])
    cache = pack.domain_cache(str(pack.splits[0]), None, 72)
    assert cache.images.shape[1:] == (72, 72) and len(cache) == int((pack.splits == pack.splits[0]).sum())
    (tmp_path / "bad.npz").write_bytes(b"not a pack")
    with pytest.raises(ManifestError, match="not a readable pack"):
        load_pack(tmp_path / "bad.npz")
