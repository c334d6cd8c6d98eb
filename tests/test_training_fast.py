"""Fast training paths equal the plain one (CPU): fused Adam, channels_last, and data parallelism under torchrun
(2 processes, gloo) equal to one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from r2c_core.training.config import config_from_dict
from r2c_core.training.loader import DomainCache, UnpairedBatches
from r2c_core.training.trainer import TrainData, Trainer, train


def synthetic_data(size=32, batch=2, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    load = round(size * 286 / 256)

    def cache(tag):
        imgs = torch.randint(0, 256, (n, load, load), generator=g, dtype=torch.uint8)
        return DomainCache([f"{tag}{i}" for i in range(n)], imgs, torch.tensor([i % 2 for i in range(n)]))

    return TrainData(UnpairedBatches(cache("a"), cache("b"), size=size, batch_size=batch, seed=seed), None, {})


def run_steps(tmp_path, steps=3, **over):
    cfg = config_from_dict({"model": "op-q1", "size": 32, "batch_size": 2, "epochs": 2, "epoch_decay": 1, "device": "cpu",
                            "threads": 1, "export_every": 0, **over})
    tr = Trainer(cfg, tmp_path, synthetic_data(), progress=False)
    for _ in range(steps):
        tr.train_step(tr.data.batches.batch(tr.step))
        tr.step += 1
    return {k: v.detach().clone() for k, v in tr.gan.state_dict().items()}


def test_fused_adam_equals_plain_adam(tmp_path):
    a = run_steps(tmp_path / "a", fused_adam=True)
    b = run_steps(tmp_path / "b", fused_adam=False)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4, msg=k)


def test_channels_last_training_equals_default(tmp_path):
    a = run_steps(tmp_path / "a", channels_last=True)
    b = run_steps(tmp_path / "b", channels_last=False)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-3, msg=k)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_with_the_same_global_batch(tmp_path, cxr_dir):
    cfg = {"model": "op-q1", "size": 32, "batch_size": 4, "epochs": 2, "epoch_decay": 1, "device": "cpu", "threads": 1,
           "limit_per_domain": 8, "export_every": 0, "max_steps": 3, "seed": 3, "fused_adam": False}
    cfg_path = tmp_path / "tiny.json"
    cfg_path.write_text(json.dumps(cfg))
    one = train(config_from_dict(cfg), tmp_path / "one", progress=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), "-m", "r2c_core", "train", "--config", str(cfg_path), "--out", str(tmp_path / "two"),
         "--no-progress"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["processes"] == {"world_size": 2, "global_batch": 4, "per_process_batch": 2, "lr": cfg["lr"] if "lr" in cfg else 2e-4}
    assert one["processes"]["world_size"] == 1
    wa = load_file(str(tmp_path / "one" / "state" / "model.safetensors"))
    wb = load_file(str(tmp_path / "two" / "state" / "model.safetensors"))
    nets = [k for k in wa if not k.startswith("pool")]
    assert nets
    for k in nets:
        torch.testing.assert_close(wa[k], wb[k], atol=2e-5, rtol=1e-4, msg=k)
    # the loss log written by process 0 holds the all-reduced (global) loss terms
    log_one = (tmp_path / "one" / "train_log.csv").read_text().splitlines()
    log_two = (tmp_path / "two" / "train_log.csv").read_text().splitlines()
    assert len(log_one) == len(log_two) == 4


def test_batch_must_divide_across_processes(tmp_path, monkeypatch):
    from r2c_core.errors import R2CError
    from r2c_core.training import trainer as trainer_mod

    monkeypatch.setattr(trainer_mod, "dist_rank_world", lambda: (0, 3))
    cfg = config_from_dict({"model": "op-q1", "size": 32, "batch_size": 2, "epochs": 2, "epoch_decay": 1, "device": "cpu"})
    with pytest.raises(R2CError, match="divisible"):
        Trainer(cfg, tmp_path, synthetic_data(), progress=False)
