"""The CPU training fast path and campaign: patch crops, CPU bf16 autocast, identity warm start, timed and signalled
checkpoints, compact resumable states, validation restoration metrics, and the campaign runner (CPU, tiny)."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from r2c_core import precision
from r2c_core.errors import R2CError
from r2c_core.training import campaign, compact, restval
from r2c_core.training.config import config_from_dict
from r2c_core.training.loader import UnpairedBatches
from r2c_core.training.trainer import TrainData, Trainer, state_config

from .test_training import fake_cache


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def data(crop=16, size=32, seed=0, n=(5, 3)):
    load = round(size * 286 / 256)
    return TrainData(UnpairedBatches(fake_cache(n[0], load, 10), fake_cache(n[1], load, 11), size=crop, batch_size=2, seed=seed), None, {"file": "synthetic"})


def cfg(**kw):
    base = {"model": "op-q1", "size": 32, "crop": 16, "batch_size": 2, "epochs": 3, "epoch_decay": 1, "pool_size": 3, "device": "cpu", "amp": False}
    base.update(kw)
    return config_from_dict(base)


# ------------------------------------------------------------------------------------------ patch crops
def test_crop_config_and_batches():
    c = cfg()
    assert c.load_size == 36 and c.train_crop == 16
    assert cfg(crop=0).train_crop == 32
    for bad in (18, 8, 40):
        with pytest.raises(R2CError, match="crop"):
            cfg(crop=bad)
    xa, xb, _, _ = data().batches.batch(0)
    assert xa.shape == (2, 3, 16, 16) and xb.shape == (2, 3, 16, 16)


def test_patch_trained_generator_runs_at_the_working_size(tmp_path):
    t = Trainer(cfg(max_steps=2), tmp_path, data(), progress=False)
    t.run()
    out, logits = t.gan.gen_ab(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 3, 32, 32) and logits.shape == (1, 2)
    exported = json.loads((tmp_path / "generator" / "config.json").read_text())
    assert exported["working_size"] == 32 and exported["training"]["crop"] == 16


# --------------------------------------------------------------------------------------------- bf16
def test_cpu_bf16_only_with_native_support(monkeypatch, caplog):
    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert precision.use_bf16(cpu, True, True) is False
    assert "no native bf16" in caplog.text
    assert precision.use_bf16(cpu, True, False) is False  # the CUDA switch alone never turns CPU autocast on
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert precision.use_bf16(cpu, False, True) is True


def test_cpu_bf16_training_really_runs_in_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)  # emulated where not native: still correct
    runs = {}
    for amp in (False, True):
        t = Trainer(cfg(cpu_amp=amp, max_steps=2, export_every=0), tmp_path / str(amp), data(), progress=False)
        assert t.amp is amp
        terms = t.train_step(t.data.batches.batch(0))
        assert all(np.isfinite(v) for v in terms.values())
        assert all(p.dtype == torch.float32 for p in t.gan.parameters())  # float32 master weights
        runs[amp] = terms["G_loss"]
    assert runs[True] != runs[False]  # autocast changed the arithmetic (this comparison can fail)
    assert abs(runs[True] - runs[False]) < 0.05 * abs(runs[False])


# --------------------------------------------------------------------------------------- warm start
def _identity_error(t: Trainer) -> float:
    xa, xb, _, _ = t.data.batches.batch(0)
    with torch.no_grad():
        return float(sum((g(x)[0] - x).abs().mean() for g in (t.gan.gen_ab, t.gan.gen_ba) for x in (xa, xb)))


def test_warm_start_learns_identity_and_is_not_repeated_on_resume(tmp_path):
    c = cfg(warm_start_steps=12, warm_start_class=0.5, lr=2e-3, max_steps=1)
    t = Trainer(c, tmp_path / "w", data(), progress=False)
    before = _identity_error(t)
    t.warm_start()
    after = _identity_error(t)
    assert after < 0.7 * before
    rows = list(csv.DictReader(open(tmp_path / "w" / "warm_log.csv")))
    assert [int(r["step"]) for r in rows] == list(range(12)) and float(rows[-1]["id_loss"]) < float(rows[0]["id_loss"])
    state = json.loads((tmp_path / "w" / "state" / "config.json").read_text())
    assert state["warm_done"] is True and state["step"] == 0
    # a run resumed from the warm-started state does not warm up again, and equals a run that did it in one go
    resumed = Trainer(c, tmp_path / "w", data(), progress=False)
    resumed.load_state(tmp_path / "w")
    assert resumed.warm_done
    resumed.run()
    whole = Trainer(c, tmp_path / "whole", data(), progress=False)
    whole.run()
    a, b = load_file(str(tmp_path / "w" / "state" / "model.safetensors")), load_file(str(tmp_path / "whole" / "state" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_warm_start_with_the_discriminators(tmp_path):
    """``warm_start_disc``: both discriminators take LSGAN steps against the warming generators' outputs (logged), with
    an Adam of their own that is discarded: the GAN's D optimiser starts empty; off, D is untouched."""
    off = Trainer(cfg(warm_start_steps=6, lr=2e-3, max_steps=1), tmp_path / "off", data(), progress=False)
    d0 = {k: v.clone() for k, v in off.gan.disc_a.state_dict().items()}
    off.warm_start()
    assert all(torch.equal(d0[k], v) for k, v in off.gan.disc_a.state_dict().items())
    assert all(r["d_loss"] == "nan" for r in csv.DictReader(open(tmp_path / "off" / "warm_log.csv")))
    on = Trainer(cfg(warm_start_steps=12, warm_start_disc=True, lr=2e-3, max_steps=1), tmp_path / "on", data(), progress=False)
    on.warm_start()
    rows = list(csv.DictReader(open(tmp_path / "on" / "warm_log.csv")))
    d_loss = [float(r["d_loss"]) for r in rows]
    assert len(d_loss) == 12 and all(np.isfinite(d_loss))
    assert any(not torch.equal(d0[k], v) for k, v in on.gan.disc_a.state_dict().items())
    assert not on.opt_d.state_dict()["state"]  # the GAN's D optimiser has not stepped yet
    on.run()
    assert float(on.opt_d.state_dict()["state"][0]["step"]) == 1


# ------------------------------------------------------------------------------- checkpoints and signals
def test_timed_checkpoint_and_sigterm_save_the_state(tmp_path, monkeypatch):
    t = Trainer(cfg(checkpoint_minutes=1e-9, export_every=0), tmp_path, data(), progress=False)
    real_step = t.train_step
    saved_steps = []
    real_save = t.save_state
    monkeypatch.setattr(t, "save_state", lambda *a, **k: (saved_steps.append(t.step), real_save(*a, **k))[1])

    def step_then_signal(batch):
        out = real_step(batch)
        if t.step == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as `campaign stop` does
        return out

    monkeypatch.setattr(t, "train_step", step_then_signal)
    summary = t.run()
    assert summary["stopped_early"] and summary["step"] == 2 < summary["total_steps"]
    assert saved_steps[0] == 1  # the timed checkpoint (not an epoch end: 2 steps per epoch)
    assert json.loads((tmp_path / "state" / "config.json").read_text())["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


# -------------------------------------------------------------------------------------- compact state
def test_compact_state_resumes_close_to_the_run(tmp_path):
    c = cfg(compact_state=str(tmp_path / "compact"), max_steps=2)
    t = Trainer(c, tmp_path / "run", data(), progress=False)
    t.run()
    meta = json.loads((tmp_path / "compact" / "config.json").read_text())
    assert meta["kind"] == compact.KIND and meta["step"] == 2 and meta["kept"] == ["opt_g", "opt_d"]
    full = sum((tmp_path / "run" / "state" / f).stat().st_size for f in ("model.safetensors", "optim.pt"))
    assert (tmp_path / "compact" / "model.safetensors").stat().st_size < 0.55 * full
    # resume from the compact state alone (a fresh machine): config from it, step, bf16-rounded weights, moments
    rc = state_config(tmp_path / "compact", {"max_steps": "0"})
    assert rc.model == "op-q1" and rc.crop == 16
    r = Trainer(rc, tmp_path / "fresh", data(), progress=False)
    r.load_state(tmp_path / "compact")
    assert r.step == 2 and len(r.pool_a) == 0
    for k, v in t.gan.state_dict().items():
        assert torch.equal(r.gan.state_dict()[k], v.to(torch.bfloat16).float()), k
    m_run = t.opt_g.state_dict()["state"][0]["exp_avg"]
    m_res = r.opt_g.state_dict()["state"][0]["exp_avg"]
    assert torch.allclose(m_res, m_run, rtol=1e-2, atol=1e-8) and float(r.opt_g.state_dict()["state"][0]["step"]) == 2
    assert [ln["step"] for ln in csv.DictReader(open(tmp_path / "fresh" / "train_log.csv"))] == ["0", "1"]  # history came along
    r.run()  # and it trains on to the end
    assert r.step == r.total_steps
    assert [ln["step"] for ln in csv.DictReader(open(tmp_path / "fresh" / "train_log.csv"))] == [str(i) for i in range(r.total_steps)]
    # at the end the compact state (nothing left to resume) is replaced by the finished run's record and its logs
    assert not (tmp_path / "compact" / "model.safetensors").exists() and not (tmp_path / "compact" / "config.json").exists()
    assert compact.is_finished_record(tmp_path / "compact")
    rec = json.loads((tmp_path / "compact" / "finished.json").read_text())
    assert rec["summary"]["step"] == r.total_steps and rec["model"] == "op-q1" and rec["training"]["crop"] == 16
    assert len(list(csv.DictReader(open(tmp_path / "compact" / "train_log.csv")))) == r.total_steps
    with pytest.raises(Exception, match="not finished"):
        compact.mark_finished(tmp_path / "other", {"step": 2, "total_steps": 9})


def test_compact_state_drops_moments_to_fit_and_refuses_when_weights_do_not(tmp_path, caplog):
    net = nn.Linear(100, 100)
    opt_g, opt_d = torch.optim.Adam(net.parameters()), torch.optim.Adam(net.parameters())
    net(torch.ones(1, 100)).sum().backward()
    opt_g.step(), opt_d.step()
    w = 10100 * 2  # bf16 weights
    assert compact.save(tmp_path / "a", {"n": net.state_dict()}, {"opt_g": opt_g, "opt_d": opt_d}, {}, max_bytes=w * 3 + 10)
    assert json.loads((tmp_path / "a" / "config.json").read_text())["kept"] == ["opt_g"]
    assert compact.save(tmp_path / "b", {"n": net.state_dict()}, {"opt_g": opt_g, "opt_d": opt_d}, {}, max_bytes=w + 10)
    assert json.loads((tmp_path / "b" / "config.json").read_text())["kept"] == []
    with caplog.at_level(logging.WARNING):
        assert compact.save(tmp_path / "c", {"n": net.state_dict()}, {"opt_g": opt_g}, {}, max_bytes=w - 1) is None
    assert not (tmp_path / "c").exists() and "budget" in caplog.text


# ----------------------------------------------------------------------------------- validation metrics
class _Identity(nn.Module):
    def forward(self, x):
        return x, torch.zeros(x.shape[0], 2)


class _Invert(nn.Module):
    def forward(self, x):
        return -x, torch.zeros(x.shape[0], 2)


def test_restoration_metrics_on_known_generators():
    g = torch.Generator().manual_seed(0)
    base = torch.linspace(0, 255, 64)[None, :].expand(64, 64) * 0.6 + 40
    imgs = (base[None] + torch.randint(0, 30, (4, 64, 64), generator=g)).clamp(0, 255).to(torch.uint8)
    cpu = torch.device("cpu")
    ident = restval.restoration_metrics(_Identity(), imgs, passes=3, seed=0, device=cpu)
    assert ident["ssim_to_input"] == pytest.approx(1.0) and ident["mean_abs_change"] == 0.0
    assert ident["psnr_gain"] == pytest.approx(0.0) and ident["psnr_degraded"] > 20
    inv = restval.restoration_metrics(_Invert(), imgs, passes=1, seed=0, device=cpu)
    assert inv["mean_abs_change"] > 30 and inv["ssim_to_input"] < 0.5
    # the grey-level fit forgives a global linear change, not structure
    x = imgs[0].numpy()
    assert restval.fitted_psnr(np.clip(0.5 * x.astype(float) + 20, 0, 255).round().astype(np.uint8), x) > 40
    assert np.array_equal(restval.degrade(imgs.numpy(), 3), restval.degrade(imgs.numpy(), 3))
    assert not np.array_equal(restval.degrade(imgs.numpy(), 3), restval.degrade(imgs.numpy(), 4))


def test_pick_images_spreads_over_both_domains():
    imgs = torch.arange(12)[:, None, None].expand(12, 2, 2).to(torch.uint8)
    doms = ["A"] * 4 + ["B"] * 8
    assert restval.pick_images(imgs, doms, 5)[:, 0, 0].tolist() == [0, 3, 4, 8, 11]  # 2 of A, 3 of B, spread
    assert len(restval.pick_images(imgs, doms, 50)) == 12


def test_validation_records_restoration_metrics(tmp_path):
    d = data()
    vimgs = torch.randint(0, 256, (4, 32, 32), dtype=torch.uint8)
    from r2c_core.training.trainer import ValData

    d.val = ValData(vimgs, np.array([0, 1, 0, 1]), ["a", "b", "c", "d"], ["A", "B", "A", "B"], ["s"] * 4)
    t = Trainer(cfg(max_steps=1, val_restoration=2, val_passes=2, keep_exports=True), tmp_path, d, progress=False)
    t.run()
    val = [json.loads(line) for line in open(tmp_path / "val_log.jsonl")][-1]
    assert val["restoration"]["n"] == 2 and val["restoration"]["passes"] == 2
    assert (tmp_path / "exports" / "step-0000001" / "model.safetensors").is_file()
    assert "val @ step 1" in (tmp_path / "progress.log").read_text()


# --------------------------------------------------------------------------------------------- campaign
def test_plan_validation(tmp_path):
    p = tmp_path / "plan.json"
    for bad, msg in (({"recipes": []}, "no recipes"), ({"recipes": [{"name": "a"}]}, "needs name and config"),
                     ({"recipes": [{"name": "a", "config": "x", "kind": "gpu"}]}, "kind"),
                     ({"recipes": [{"name": "a", "config": "x"}, {"name": "a", "config": "y"}]}, "unique"),
                     ({"recipes": [{"name": "a", "config": "x"}], "bogus": 1}, "unknown")):
        p.write_text(json.dumps(bad))
        with pytest.raises(R2CError, match=msg):
            campaign.Plan.load(p)
    shipped = campaign.Plan.load(campaign.REPO_ROOT / "configs" / "campaign-cpu.json")
    assert shipped.records == "campaign"
    # the lung U-Net (finished, shipped) is known as finished from its committed record on any machine
    lung = [r for r in shipped.recipes if r.name == "lung-unet"][0]
    assert campaign.compact.is_finished_record(campaign.record_dir(shipped, lung))
    assert [r.name for r in shipped.recipes][:4] == ["op-q3", "cnn-compact", "op-q1", "op-q5"]
    for r in shipped.recipes:
        if r.kind == "r2c":
            c = config_from_dict({k: v for k, v in json.loads((campaign.REPO_ROOT / r.config).read_text()).items() if not k.startswith("_")})
            assert c.crop == 128 and c.size == 256 and c.cpu_amp
            assert c.compact_state == (None if r.name == "cnn" else f"campaign/{r.name}")  # cnn: 56 MB of bf16 weights


def test_campaign_picks_resume_source(tmp_path):
    rc = tmp_path / "r.json"
    rc.write_text(json.dumps({"model": "op-q1", "compact_state": str(tmp_path / "compact")}))
    plan = campaign.Plan(str(tmp_path / "runs"), (campaign.Recipe("a", str(rc)),))
    r = plan.recipes[0]
    assert campaign.command(plan, r)[1] == "start"
    (tmp_path / "compact").mkdir()
    (tmp_path / "compact" / "config.json").write_text("{}")
    cmd, how = campaign.command(plan, r)
    assert how == "resume-compact" and str(tmp_path / "compact") in cmd
    (tmp_path / "runs" / "a" / "state").mkdir(parents=True)
    (tmp_path / "runs" / "a" / "state" / "config.json").write_text(json.dumps({"step": 3, "total_steps": 9, "steps_per_epoch": 3}))
    assert campaign.command(plan, r)[1] == "resume"
    row = campaign.status(plan)[0]
    assert row["state"] == "resumable" and row["step"] == "3/9" and row["epoch"] == 1.0
    (tmp_path / "runs" / "a" / "summary.json").write_text(json.dumps({"step": 9, "total_steps": 9}))
    assert campaign.is_finished(plan, r) and campaign.status(plan)[0]["state"] == "finished"
    # a fresh machine: no run folder, only the committed record of the finished run where the compact state was
    (tmp_path / "runs" / "a" / "summary.json").unlink()
    (tmp_path / "runs" / "a" / "state" / "config.json").unlink()
    assert not campaign.is_finished(plan, r)
    compact.mark_finished(tmp_path / "compact", {"step": 9, "total_steps": 9})
    row = campaign.status(plan)[0]
    assert campaign.is_finished(plan, r) and row["state"] == "finished" and row["step"] == "9/9"
    assert not (tmp_path / "compact" / "config.json").exists()
    # the recipe trains there again (a new version): the older record no longer holds
    from torch import nn as _nn

    net = _nn.Linear(2, 2)
    compact.save(tmp_path / "compact", {"n": net.state_dict()}, {}, {"step": 1}, max_bytes=2**20)
    assert not compact.is_finished_record(tmp_path / "compact") and not (tmp_path / "compact" / "finished.json").exists()
    assert not campaign.is_finished(plan, r) and campaign.command(plan, r)[1] == "resume-compact"
    # recipes without a compact state (the lung U-Net, HQG-Net): the runner commits a record under <records>/<name>
    seg = campaign.Recipe("seg", str(rc), "seg")
    plan2 = campaign.Plan(str(tmp_path / "runs"), (seg,), str(tmp_path / "records"))
    assert campaign.record_dir(plan2, seg) == tmp_path / "records" / "seg" and not campaign.is_finished(plan2, seg)
    (tmp_path / "runs" / "seg").mkdir(parents=True)
    (tmp_path / "runs" / "seg" / "finished.json").write_text(json.dumps({"finished": "2026-11-30T15:50:52Z"}))
    (tmp_path / "runs" / "seg" / "progress.log").write_text("x stopped: epochs (30); best val Dice 0.95\n")
    rec = json.loads(campaign.write_finished_record(plan2, seg).read_text())
    assert rec["finished"] is True and rec["finished_at"] == "2026-11-30T15:50:52Z" and "Dice 0.95" in rec["last_progress"]
    (tmp_path / "runs" / "seg" / "finished.json").unlink()  # a fresh machine: only the committed record
    (tmp_path / "runs" / "seg" / "progress.log").unlink()
    assert campaign.is_finished(plan2, seg) and "Dice 0.95" in campaign.status(plan2)[0]["last"]
    # relative compact-state paths are the repository's, whatever the working directory
    assert compact.resolve("campaign/x") == campaign.REPO_ROOT / "campaign" / "x" and compact.resolve(tmp_path) == tmp_path


def test_campaign_repairs_missing_records_and_skips_a_missing_init_from(tmp_path):
    runs, records = tmp_path / "runs", tmp_path / "records"
    # an R2C recipe with a compact state whose trainer stopped after its summary but before compact.mark_finished
    rc = tmp_path / "r.json"
    rc.write_text(json.dumps({"model": "op-q1", "compact_state": str(tmp_path / "compact")}))
    # an R2C recipe without a compact state (the deep cnn): only the runner can record it
    rn = tmp_path / "n.json"
    rn.write_text(json.dumps({"model": "cnn", "compact_state": None}))
    # an HQG recipe started from another run's folder that this machine does not have
    rh = tmp_path / "h.json"
    rh.write_text(json.dumps({"init_from": str(runs / "hqg"), "epochs": 1}))
    a, n, h = campaign.Recipe("a", str(rc)), campaign.Recipe("n", str(rn)), campaign.Recipe("h", str(rh), "hqg")
    plan = campaign.Plan(str(runs), (a, n, h), str(records))
    compact.save(tmp_path / "compact", {"g": nn.Linear(2, 2).state_dict()}, {}, {"step": 9, "total_steps": 9}, max_bytes=2**20)
    for r in (a, n):
        (runs / r.name).mkdir(parents=True)
        (runs / r.name / "summary.json").write_text(json.dumps({"step": 9, "total_steps": 9, "steps_per_epoch": 3}))
        (runs / r.name / "train_log.csv").write_text("step\n8\n")
    assert campaign.is_finished(plan, a) and not campaign.has_record(plan, a) and not campaign.has_record(plan, n)
    assert campaign.missing_init(h) == runs / "hqg" and campaign.missing_init(a) is None
    assert campaign.status(plan)[2]["state"] == "not started, needs init_from"
    # the runner skips the finished recipes, writes their missing records, and passes over the blocked one
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        assert campaign.run(plan) == 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    log = (runs / "progress.log").read_text()
    assert "a: finished; its missing record written" in log and "n: finished; its missing record written" in log
    assert "h: cannot start: its init_from" in log and "every recipe of the plan is done except h (could not start)" in log
    assert not (runs / "h" / "stdout.log").exists()
    assert not (tmp_path / "compact" / "config.json").exists() and not (tmp_path / "compact" / "model.safetensors").exists()
    assert (tmp_path / "compact" / "train_log.csv").is_file()  # the run's logs kept beside the record
    # a fresh machine: only the records; a second pass writes nothing
    shutil.rmtree(runs)
    assert campaign.is_finished(plan, a) and campaign.is_finished(plan, n)
    assert campaign.ensure_record(plan, a) is None and campaign.ensure_record(plan, n) is None
    row = campaign.status(plan)[1]
    assert row["state"] == "finished" and row["step"] == "9/9" and row["epoch"] == 3.0
    # a compact state of another run than the finished one is never turned into its record
    (runs / "a").mkdir(parents=True)
    (runs / "a" / "summary.json").write_text(json.dumps({"step": 9, "total_steps": 9}))
    compact.save(tmp_path / "compact", {"g": nn.Linear(2, 2).state_dict()}, {}, {"step": 4, "total_steps": 20}, max_bytes=2**20)
    assert campaign.ensure_record(plan, a) is None and (tmp_path / "compact" / "model.safetensors").is_file()
    shutil.rmtree(runs)
    # a record of another config does not hold: the changed recipe trains again
    rn2 = tmp_path / "n2.json"
    rn2.write_text(rn.read_text())
    plan2 = campaign.Plan(str(runs), (campaign.Recipe("n", str(rn2)),), str(records))
    assert not campaign.is_finished(plan2, plan2.recipes[0])
    # HQG-Net summaries have no steps_per_epoch: the status shows no epoch rather than a step count
    compact.write_record(records / "h", {"config": str(rh), "summary": {"step": 5, "total_steps": 5}})
    row = campaign.status(plan)[2]
    assert row["state"] == "finished" and row["step"] == "5/5" and "epoch" not in row


def test_mark_finished_removes_the_config_first(tmp_path, monkeypatch):
    """A crash inside mark_finished must leave a folder that reads as finished, never a config without weights."""
    compact.save(tmp_path / "c", {"g": nn.Linear(2, 2).state_dict()}, {}, {"step": 9}, max_bytes=2**20)
    removed = []
    real_unlink = Path.unlink

    def crash_after_first(self, missing_ok=False):
        if removed:
            raise OSError("power cut")
        removed.append(self.name)
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", crash_after_first)
    with pytest.raises(OSError, match="power cut"):
        compact.mark_finished(tmp_path / "c", {"step": 9, "total_steps": 9})
    monkeypatch.undo()
    assert removed == ["config.json"] and compact.is_finished_record(tmp_path / "c")


def test_campaign_runs_a_queue_on_real_xrays(cxr_dir, tmp_path):
    recipe = {"model": "op-q1", "size": 32, "crop": 16, "batch_size": 2, "epochs": 2, "epoch_decay": 1, "limit_per_domain": 4,
              "device": "cpu", "threads": 1, "warm_start_steps": 2, "val_restoration": 2, "val_passes": 1,
              "compact_state": str(tmp_path / "compact")}
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    plan = {"out": str(tmp_path / "runs"), "recipes": [{"name": "tiny", "config": str(tmp_path / "r.json")}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "R2C_DATA": str(cxr_dir), "OMP_NUM_THREADS": "1"}
    run = lambda *a: subprocess.run([sys.executable, "-m", "r2c_core", "campaign", *a, "--plan", str(tmp_path / "plan.json")],  # noqa: E731
                                    capture_output=True, text=True, env=env, timeout=600)
    res = run("run")
    assert res.returncode == 0, res.stderr[-2000:]
    log = (tmp_path / "runs" / "progress.log").read_text()
    assert "tiny: start" in log and "tiny: finished" in log and "val @ step" in log
    assert compact.is_finished_record(tmp_path / "compact") and (tmp_path / "compact" / "val_log.jsonl").is_file()
    status = run("status")
    assert "finished" in status.stdout
    again = run("run")
    assert again.returncode == 0 and "tiny: start" not in (tmp_path / "runs" / "progress.log").read_text().split("started", 2)[-1]


# ------------------------------------------------------------------------------------ selection and ship
def _fake_run(tmp_path, records):
    from r2c_core.inference import export_generator
    from r2c_core.models import build_generator

    run = tmp_path / "run"
    run.mkdir()
    with open(run / "val_log.jsonl", "w") as fh:
        for v in records:
            fh.write(json.dumps(v) + "\n")
            export_generator(build_generator("op-q1"), "op-q1", run / "exports" / f"step-{v['step']:07d}", extra={"version": "dev"})
    return run


def _rec(step, auc, ssim, change, gain):
    return {"step": step, "epoch": step / 10, "all": {"auc": auc}, "restoration": {"ssim_to_input": ssim, "mean_abs_change": change, "psnr_gain": gain}}


def test_select_uses_guards_then_auc_and_ships(tmp_path):
    from r2c_core.inference import Restorer
    from r2c_core.training import select

    run = _fake_run(tmp_path, [_rec(10, 0.9, 0.6, 5, 1.0),    # best AUC, but breaks the anatomy guard
                               _rec(20, 0.7, 0.8, 3, 0.5),
                               _rec(30, 0.8, 0.9, 2.5, 0.1),   # the choice: guards pass, best AUC among those
                               _rec(40, 0.85, 0.95, 1.0, 0.2)])  # changes too little
    c = select.choose(run)
    assert c["step"] == 30 and c["passed_guards"] and c["n_passed"] == 2
    rec = select.ship(run, tmp_path / "w", "v1-cpu")
    cfg = json.loads((tmp_path / "w" / "config.json").read_text())
    assert cfg["version"] == "v1-cpu" and cfg["selection"]["step"] == 30 and "never test" in cfg["selection"]["split"]
    assert rec["validation"]["all"]["auc"] == 0.8
    assert Restorer.from_dir(tmp_path / "w", device="cpu").model_name == "op-q1"
    # no export passes: fewest failures, then the best PSNR gain
    run2 = _fake_run(tmp_path / "b", [_rec(10, 0.9, 0.6, 1, -1.0), _rec(20, 0.5, 0.6, 5, -0.5), _rec(30, 0.5, 0.5, 5, -2.0)]) if (tmp_path / "b").mkdir() is None else None
    c2 = select.choose(run2)
    assert not c2["passed_guards"] and c2["step"] == 20
    with pytest.raises(R2CError, match="no val_log"):
        select.choose(tmp_path / "nothing")


# ----------------------------------------------------------------------------------------------- init_from
def test_init_from_a_state_or_a_generator_export(tmp_path):
    src = Trainer(cfg(max_steps=1, export_every=1), tmp_path / "src", data(), progress=False)
    src.run()
    # a training state: all four networks
    t = Trainer(cfg(max_steps=1, seed=5, init_from=str(tmp_path / "src")), tmp_path / "a", data(), progress=False)
    assert t.init_from(tmp_path / "src") == ["gen_ab", "gen_ba", "disc_a", "disc_b"]
    assert all(torch.equal(a, b) for a, b in zip(t.gan.state_dict().values(), src.gan.state_dict().values()))
    # an exported generator: G_A2B only
    g = Trainer(cfg(max_steps=1, seed=5), tmp_path / "g", data(), progress=False)
    before = g.gan.gen_ba.state_dict()["classifier.weight"].clone()
    assert g.init_from(tmp_path / "src" / "generator") == ["gen_ab"]
    assert torch.equal(g.gan.gen_ab.state_dict()["classifier.weight"], src.gan.gen_ab.state_dict()["classifier.weight"])
    assert torch.equal(g.gan.gen_ba.state_dict()["classifier.weight"], before)
    # run() applies it on a fresh run, and a resumed run does not re-initialise
    fresh = Trainer(cfg(max_steps=1, seed=5, init_from=str(tmp_path / "src" / "generator"), export_every=0), tmp_path / "f", data(), progress=False)
    calls = []
    fresh.init_from = lambda p: calls.append(p) or []
    fresh.run()
    assert calls == [str(tmp_path / "src" / "generator")]
    resumed = Trainer(cfg(max_steps=2, init_from=str(tmp_path / "src" / "generator"), export_every=0), tmp_path / "f", data(), progress=False)
    resumed.load_state(tmp_path / "f")
    resumed.init_from = lambda p: calls.append(p) or []
    resumed.run()
    assert len(calls) == 1
    other = Trainer(cfg(model="cnn-compact", max_steps=1), tmp_path / "o", data(), progress=False)
    from r2c_core.errors import CheckpointError

    with pytest.raises(CheckpointError, match="model"):
        other.init_from(tmp_path / "src")


def test_status_counts_hqg_epochs_from_the_end_of_its_pretraining(tmp_path):
    runs = tmp_path / "runs"
    cfg = tmp_path / "h.json"
    cfg.write_text(json.dumps({"epochs": 20, "ae_steps": 2000}))
    h = campaign.Recipe("hqg", str(cfg), "hqg")
    plan = campaign.Plan(str(runs), (h,), str(tmp_path / "records"))
    state = runs / "hqg" / "state"
    state.mkdir(parents=True)
    (state / "config.json").write_text(json.dumps({"kind": "hqg-training-state", "step": 2886, "steps_per_epoch": 443,
                                                   "total_steps": 10860, "gan_start": 2000}))
    row = campaign.status(plan)[0]
    assert row["state"].startswith("resumable") and row["step"] == "2886/10860" and row["epoch"] == 2.0
    (state / "config.json").write_text(json.dumps({"kind": "hqg-training-state", "step": 500, "steps_per_epoch": 443,
                                                   "total_steps": 10860, "gan_start": 2000}))
    assert campaign.status(plan)[0]["epoch"] == 0  # still pretraining the style autoencoder
