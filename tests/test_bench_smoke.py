"""The benchmark scripts run (tiny smoke mode), so they cannot rot. No timing is asserted."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_r2c_smoke(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert _load("bench_r2c").main(["--smoke", "--device", "cpu", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {r["mode"] for r in data["results"]} == {"eager", "channels_last"}
    assert all(r["gflop"] > 0 and r["images_per_s"] > 0 for r in data["results"])
    assert "| restore | op-q3 |" in capsys.readouterr().out


def test_bench_train_smoke(tmp_path):
    out = tmp_path / "t.json"
    assert _load("bench_train").main(["--smoke", "--device", "cpu", "--models", "op-q1", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert rows[0]["kind"] == "train" and rows[0]["gflop"] > 0


def test_bench_train_unet_and_table(tmp_path, capsys):
    bt = _load("bench_train")
    rows = bt.bench_unet_steps(__import__("torch").device("cpu"), [2], 32, 0, 1, ["eager", "fast"])
    assert [r["mode"] for r in rows] == ["eager", "fast"] and all(r["model"] == "unet" and r["gflop"] > 0 for r in rows)
    table = bt.markdown(rows)
    assert "| unet | eager | no | 2 | 32 |" in table and "1.00x" in table


def test_bench_train_hqg_step_and_flops_through_double_backward():
    import torch

    bt = _load("bench_train")
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    x = torch.rand(1, 4, 8, 8, requires_grad=True)
    forward = 2 * 4 * 4 * 9 * 8 * 8  # multiply-adds x 2 of one 3x3 convolution
    assert bt._dispatch_flops(lambda: conv(x).sum().backward()) == 3 * forward  # forward + input and weight gradients

    def r1() -> None:  # a gradient penalty: autograd.grad with create_graph, then backward through it
        (g,) = torch.autograd.grad(conv(x).pow(2).sum(), x, create_graph=True)
        g.pow(2).sum().backward()

    assert bt._dispatch_flops(r1) > 3 * forward
    rows = bt.bench_hqg_steps("hqg", torch.device("cpu"), [1], 64, 0, 1, ["eager"])
    assert rows[0]["model"] == "hqg" and rows[0]["gflop"] > 10 and rows[0]["images_per_s"] > 0
