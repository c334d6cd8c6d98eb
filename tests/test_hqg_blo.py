"""HQG-Net's bi-level variant (HQG+BLO): the downstream COVID classifier, its term in G's loss (upper level), its
own training step on the enhanced images (lower level), the warm-up, exact resume, starting from an HQG-Net state,
and inference with the variant's own classifier."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from r2c_core import hqg_losses as L
from r2c_core.models import hqg as H
from tests.test_hqg import _export_tiny_hqg, _FixedClassifier, _tiny_data

RESNET18_TWO_CLASSES = 11_177_538  # torchvision's resnet18 with a 2-class head


def test_task_classifier_size_and_output() -> None:
    torch.manual_seed(0)
    task = H.TaskClassifier(2)
    assert H.count_parameters(task) == RESNET18_TWO_CLASSES
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in task.modules())  # GroupNorm: batch 1 is safe
    x = torch.rand(3, 3, 64, 64)
    out = task(x)
    assert out.shape == (3, 2)
    assert torch.allclose(out, task(H.to_rgb3(H.to_gray(x))), atol=1e-6)  # it reads the gray image
    task.eval()
    assert torch.allclose(task(x[:1]), out[:1], atol=1e-5)  # the same in use as in training, one image at a time


def test_the_task_term_of_the_upper_level() -> None:
    torch.manual_seed(0)
    cfg = H.HQGConfig(img_size=64)
    nets = L.HQGNets(g=H.HQGGenerator(cfg), s=H.StyleEncoder(cfg), d=H.HQGDiscriminator(cfg))
    task = H.TaskClassifier(2).eval()  # eval: BatchNorm gives the same logits on every call
    x_low, x_high = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    y0, y1, covid = torch.tensor([0, 0]), torch.tensor([1, 1]), torch.tensor([1, 0])
    noise = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    base, t0 = L.generator_loss(nets, x_low, y0, x_high, y1, L.HQGLossWeights(), generator=noise())
    out: dict[str, torch.Tensor] = {}
    total, t = L.generator_loss(nets, x_low, y0, x_high, y1, L.HQGLossWeights(task=0.5), generator=noise(),
                                task=task, task_labels=covid, outputs=out)
    assert "task" not in t0 and out["fake"].shape == (2, 3, 64, 64)
    with torch.no_grad():
        expect_ce = float(F.cross_entropy(task(out["fake"]), covid))
    assert t["task"] == pytest.approx(expect_ce, rel=1e-5)
    assert float(total.detach()) == pytest.approx(float(base.detach()) + 0.5 * expect_ce, rel=1e-5)
    total.backward()
    assert nets.g.to_image.weight.grad is not None  # the task's cross-entropy reaches the generator
    # weight 0 (plain HQG-Net): no task term even when a classifier is given
    _, t_off = L.generator_loss(nets, x_low, y0, x_high, y1, L.HQGLossWeights(), generator=noise(), task=task,
                                task_labels=covid)
    assert "task" not in t_off


def _blo_config(**over):
    from r2c_core.training.hqg import hqg_config_from_dict

    return hqg_config_from_dict({"size": 64, "batch_size": 2, "epochs": 1, "ae_steps": 0, "task_warmup_steps": 1,
                                 "val_restoration": 4, "export_every": 1,
                                 "weights": {"task": 0.1}, "swap_prob": 0.0, "threads": 2, "device": "cpu",
                                 "cpu_amp": False, "reference_limit": 3, "checkpoint_minutes": 0, **over})


def test_bilevel_run_trains_the_classifier_exports_it_and_resumes_exactly(tmp_path) -> None:
    from r2c_core.checkpoints import load_checkpoint
    from r2c_core.training.hqg import train_hqg

    cfg = _blo_config()
    full = train_hqg(cfg, tmp_path / "full", data=_tiny_data(64, val=True), progress=False)
    assert full["step"] == 3  # 1 classifier warm-up step, then 1 epoch of 2 GAN steps (64 px: no autoencoder phase)
    rows = list(csv.DictReader((tmp_path / "full" / "train_log.csv").open()))
    assert [r["phase"] for r in rows] == ["2", "1", "1"]
    assert rows[0]["task"] and not rows[0]["g_adv"]  # the warm-up trains the classifier alone
    assert all(r["task"] and r["g_adv"] for r in rows[1:])  # the task term in every (unswapped) GAN step
    tensors, config = load_checkpoint(tmp_path / "full" / "generator")
    assert config["model"] == "hqg-blo" and config["task"]["classes"] == ["control", "covid"]
    assert any(k.startswith("task.") for k in tensors) and "reference_code" in tensors
    part = train_hqg(_blo_config(max_steps=2), tmp_path / "part", data=_tiny_data(64, val=True), progress=False)
    assert part["step"] == 2
    at2, _ = load_checkpoint(tmp_path / "part" / "state")
    from r2c_core.errors import CheckpointError
    from r2c_core.training.hqg import HQGTrainer

    with pytest.raises(CheckpointError, match="has not finished"):  # HQG+BLO starts from a finished HQG-Net only
        HQGTrainer(_blo_config(), tmp_path / "ft", _tiny_data(64), progress=False).init_networks(tmp_path / "part")
    resumed = train_hqg(cfg, tmp_path / "part", resume=tmp_path / "part", data=_tiny_data(64, val=True), progress=False)
    assert resumed["step"] == 3
    a, _ = load_checkpoint(tmp_path / "full" / "state")
    b, _ = load_checkpoint(tmp_path / "part" / "state")
    assert any(k.startswith("task.") for k in a)
    # the lower level: the GAN step from 2 to 3 trained the classifier too
    assert any(not torch.equal(a[k], at2[k]) for k in a if k.startswith("task.") and a[k].is_floating_point())
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # HQG+BLO started from an HQG-Net state: every network as stored there, the step count at 0
    started = HQGTrainer(_blo_config(), tmp_path / "ft", _tiny_data(64), progress=False)
    started.init_networks(tmp_path / "full")
    assert started.step == 0
    g_state = started.nets.g.state_dict()
    assert all(torch.equal(g_state[k[2:]], v) for k, v in a.items() if k.startswith("g."))
    assert all(torch.equal(started.task.state_dict()[k[5:]], v) for k, v in a.items() if k.startswith("task."))


def test_bilevel_config_and_init_errors(tmp_path) -> None:
    from r2c_core.errors import CheckpointError, R2CError
    from r2c_core.training.hqg import HQGTrainer, hqg_config_from_dict

    with pytest.raises(R2CError, match="needs the bi-level"):
        hqg_config_from_dict({"task_warmup_steps": 5})
    with pytest.raises(R2CError, match="must not be negative"):
        hqg_config_from_dict({"weights": {"task": -1}})
    assert not hqg_config_from_dict({}).bilevel and hqg_config_from_dict({"weights": {"task": 0.1}}).bilevel
    _export_tiny_hqg(tmp_path)  # an export, not a training state
    with pytest.raises(CheckpointError, match="not an HQG-Net training state"):
        HQGTrainer(_blo_config(), tmp_path / "x", _tiny_data(64), progress=False).init_networks(tmp_path / "hqg")


def test_hqg_blo_method_uses_its_own_classifier(tmp_path) -> None:
    from r2c_core.checkpoints import load_checkpoint, save_checkpoint
    from r2c_core.methods import available_methods, load_restorer

    root = _export_tiny_hqg(tmp_path / "weights")
    tensors, cfg = load_checkpoint(root / "hqg")
    torch.manual_seed(1)
    task = H.TaskClassifier(2).eval()
    tensors.update({f"task.{k}": v for k, v in task.state_dict().items()})
    save_checkpoint(root / "hqg-blo", tensors, {**cfg, "model": "hqg-blo"})
    assert available_methods(root) == ["original", "hqg-x1", "hqg-blo-x1"]
    rest = load_restorer("hqg-blo", root, "cpu", classifier=_FixedClassifier())
    assert rest.model_name == "hqg-blo" and rest.task is not None
    img = (np.random.default_rng(0).random((90, 70)) * 255).astype(np.uint8)
    out = rest.restore(img)
    assert out.probs.shape == (2,) and float(out.probs.sum()) == pytest.approx(1.0, abs=1e-5)
    assert out.probs.tolist() != [0.25, 0.75]  # its own classifier, not the one passed in
    # the same as the classifier on the enhanced image at the working size
    from r2c_core.tensors import to_working_gray

    x = H.to_rgb3(torch.from_numpy(to_working_gray(img, 128)).float()[None, None] / 255.0)
    with torch.no_grad():
        enhanced = H.to_rgb3(H.to_gray(rest.generator(x, rest.code[None])))
        expect = torch.softmax(task(enhanced), 1)[0].numpy()
    assert np.allclose(out.probs, expect, atol=1e-5)
    assert np.isnan(rest.restore(img, passes=0).probs).all()
    assert load_restorer("hqg", root, "cpu").task is None


def test_init_from_applies_when_a_run_starts_not_when_it_resumes(monkeypatch, tmp_path) -> None:
    from r2c_core.training import hqg as T

    calls = []
    monkeypatch.setattr(T.HQGTrainer, "init_networks", lambda self, path: calls.append(("init", str(path))))
    monkeypatch.setattr(T, "resume_and_run", lambda trainer, resume: calls.append(("run", resume)) or {})
    cfg = _blo_config(init_from="runs/campaign/hqg")
    T.train_hqg(cfg, tmp_path / "a", data=_tiny_data(64), progress=False)
    T.train_hqg(cfg, tmp_path / "a", resume=tmp_path / "a", data=_tiny_data(64), progress=False)
    assert calls == [("init", "runs/campaign/hqg"), ("run", None), ("run", tmp_path / "a")]


def test_validation_records_exports_and_shipping_an_hqg_run(tmp_path) -> None:
    from r2c_core.checkpoints import load_checkpoint
    from r2c_core.methods import load_restorer
    from r2c_core.training import select
    from r2c_core.training.hqg import train_hqg

    cfg = _blo_config(epochs=2, val_passes=2)
    train_hqg(cfg, tmp_path / "run", data=_tiny_data(64, val=True), progress=False)
    recs = [json.loads(line) for line in (tmp_path / "run" / "val_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs] == [3, 5]  # after 1 warm-up step: GAN epochs of 2 steps (the last one at the end)
    for r in recs:
        assert 0.0 <= r["all"]["auc"] <= 1.0 and r["n"] == 6 and "auc" in r["domain_A"]
        rest = r["restoration"]
        assert rest["n"] == 4 and rest["passes"] == 2 and 0.0 < rest["ssim_to_input"] <= 1.0 and rest["mean_abs_change"] >= 0
    tensors, config = load_checkpoint(tmp_path / "run" / "exports" / "step-0000003")
    assert config["validation"]["step"] == 3 and config["weights_dtype"] == "float16"
    assert all(v.dtype == torch.float16 for k, v in tensors.items() if v.is_floating_point())
    # validation in the middle of a run changes nothing that training uses: a run stopped after it resumes exactly
    train_hqg(_blo_config(epochs=2, val_passes=2, max_steps=4), tmp_path / "part", data=_tiny_data(64, val=True), progress=False)
    train_hqg(cfg, tmp_path / "part", resume=tmp_path / "part", data=_tiny_data(64, val=True), progress=False)
    a, _ = load_checkpoint(tmp_path / "run" / "state")
    b, _ = load_checkpoint(tmp_path / "part" / "state")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    chosen = select.choose(tmp_path / "run")
    assert chosen["step"] in (3, 5) and chosen["n_candidates"] == 2
    dest = tmp_path / "weights" / "hqg-blo"
    record = select.ship(tmp_path / "run", dest, "v0-test")
    assert record["split"].startswith("validation only")
    rest = load_restorer("hqg-blo", tmp_path / "weights", "cpu")
    img = (np.random.default_rng(0).random((70, 60)) * 255).astype(np.uint8)
    out = rest.restore(img)
    assert out.image.shape == img.shape and float(out.probs.sum()) == pytest.approx(1.0, abs=1e-4)


def test_weights_folders_of_either_kind_for_the_cli_and_the_restoration_check(tmp_path) -> None:
    import pandas as pd
    from PIL import Image

    from r2c_core.checkpoints import load_checkpoint, save_checkpoint
    from r2c_core.errors import R2CError
    from r2c_core.hqg_inference import HQGRestorer
    from r2c_core.inference import Restorer
    from r2c_core.methods import restorer_from_dir
    from r2c_core.paths import weights_root
    from r2c_core.restoration_eval import evaluate

    root = _export_tiny_hqg(tmp_path / "weights")
    plain = restorer_from_dir(root / "hqg", "cpu")
    assert isinstance(plain, HQGRestorer) and plain.task is None
    with pytest.raises(R2CError, match="without a classifier"):  # `classify` needs one: only HQG+BLO has it
        restorer_from_dir(root / "hqg", "cpu", need_classifier=True)
    tensors, cfg = load_checkpoint(root / "hqg")
    tensors.update({f"task.{k}": v for k, v in H.TaskClassifier(2).state_dict().items()})
    save_checkpoint(root / "hqg-blo", tensors, {**cfg, "model": "hqg-blo"})
    assert restorer_from_dir(root / "hqg-blo", "cpu", need_classifier=True).task is not None
    assert isinstance(restorer_from_dir(weights_root() / "r2c-op-q3", "cpu"), Restorer)
    # the restoration check (restoration-eval) runs an HQG-Net export as it runs an R2C-GAN generator
    img = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(0).random((90, 80)) * 255).astype(np.uint8)).save(img)
    result = evaluate(plain, pd.DataFrame({"id": ["x"], "source": ["s"], "path": [str(img)]}), passes=1)
    assert result["summary"]["n"] == 1 and result["summary"]["model"] == "hqg"
    assert 0.0 < result["summary"]["mean"]["ssim_to_original"] <= 1.0
