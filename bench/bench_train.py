"""Time training steps: R2C-GAN (both generators six passes forward and back, both discriminators, two Adam steps),
the lung U-Net (forward, weighted BCE + Dice, backward, Adam) and HQG-Net (one GAN step: D with R1, then G and the
style encoder; and one step of its style-autoencoder pretraining), fast path against plain float32, in one run.

    python bench/bench_train.py --device cpu --models op-q3,op-q1,cnn-compact,unet --batches 4 --size 128   # the CPU campaign's crops
    python bench/bench_train.py --device cpu --models hqg,hqg-ae --batches 1 --size 256 --modes eager,fast   # HQG-Net's recipe
    python bench/bench_train.py --device cuda --batches 1,16,64 --modes eager,fast,fast+compile

Modes: ``eager`` = plain float32 (no fused Adam, no autocast); ``fast`` = bf16 autocast (on CPU only where it is
native) and fused Adam; ``fast+cl`` adds channels_last; ``fast+compile`` adds ``torch.compile`` (minutes of
compilation on CPU, so not in the CPU default). Each row: crops (images) per second and GFLOP/s, FLOPs counted
with ``torch.utils.flop_counter`` on one real step. Used by ``bench/bench_r2c.py --train`` too. Data are synthetic
uint8 images already on the device's side of the loader (the trainer's cache).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from r2c_core.training.config import config_from_dict  # noqa: E402
from r2c_core.training.loader import DomainCache, UnpairedBatches  # noqa: E402
from r2c_core.training.trainer import TrainData, Trainer  # noqa: E402

MODES = {
    "eager": {"amp": False, "cpu_amp": False, "channels_last": False, "cuda_fast_path": False, "fused_adam": False},
    "fast": {"cuda_fast_path": True, "cpu_amp": True, "fused_adam": True, "channels_last": False},
    "fast+cl": {"cuda_fast_path": True, "cpu_amp": True, "fused_adam": True, "channels_last": True},
    "fast+compile": {"cuda_fast_path": True, "cpu_amp": True, "fused_adam": True, "channels_last": True, "compile": True},
}
CPU_MODES = ["eager", "fast", "fast+cl"]


def _data(size: int, batch: int, n: int) -> TrainData:
    g = torch.Generator().manual_seed(0)
    load = round(size * 286 / 256)

    def cache(tag: str) -> DomainCache:
        return DomainCache([f"{tag}{i}" for i in range(n)], torch.randint(0, 256, (n, load, load), generator=g, dtype=torch.uint8),
                           torch.tensor([i % 2 for i in range(n)]))

    return TrainData(UnpairedBatches(cache("a"), cache("b"), size=size, batch_size=batch, seed=0), None, {})


def bench_train_steps(model: str, device: torch.device, batches: list[int], size: int, warmup: int, repeats: int,
                      modes: list[str] | None = None, smoke: bool = False) -> list[dict]:
    from torch.utils.flop_counter import FlopCounterMode

    if model == "unet":
        return bench_unet_steps(device, batches, size, warmup, repeats, modes, smoke)
    if model in ("hqg", "hqg-ae"):
        return bench_hqg_steps(model, device, batches, size, warmup, repeats, modes, smoke)
    results = []
    for mode in modes or (list(MODES) if device.type == "cuda" else CPU_MODES):
        for b in batches:
            cfg = config_from_dict({"model": model, "size": size, "batch_size": b, "epochs": 2, "epoch_decay": 1,
                                    "device": str(device), "export_every": 0, **MODES[mode]})
            with tempfile.TemporaryDirectory() as tmp:
                tr = Trainer(cfg, tmp, _data(size, b, max(2 * b, 4)), progress=False)
                batch = tr.data.batches.batch(0)
                with FlopCounterMode(display=False) as fc:
                    tr.train_step(batch)
                flops = float(fc.get_total_flops())
                med, mem = _time_steps(lambda: tr.train_step(batch), device, warmup, repeats)
            results.append(_row(model, mode, b, size, med, flops, mem, bf16=tr.amp))
            if smoke:
                return results
    return results


def _time_steps(step, device: torch.device, warmup: int, repeats: int) -> tuple[float, float]:
    """Median seconds of ``step()`` (a training step returning python floats, which synchronises) over ``repeats``
    after ``warmup`` calls, and the peak GPU memory in MiB of these calls (NaN on CPU)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # per row: what is allocated now counts, earlier rows' peaks do not
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
    return statistics.median(times), mem


def _row(model: str, mode: str, b: int, size: int, med: float, flops: float, mem: float, bf16: bool) -> dict:
    r = {"kind": "train", "model": model, "mode": mode, "bf16": bf16, "batch": b, "size": size, "median_s": med,
         "ms_per_image": 1000 * med / b, "images_per_s": b / med, "gflop": flops / 1e9, "gflops_per_s": flops / med / 1e9,
         "tflops": flops / med / 1e12, "peak_mem_mib": round(mem, 1)}
    print(json.dumps(r), flush=True)
    return r


def bench_unet_steps(device: torch.device, batches: list[int], size: int, warmup: int, repeats: int,
                     modes: list[str] | None = None, smoke: bool = False) -> list[dict]:
    """The lung U-Net's training step (as r2c_core.segmentation.train) on synthetic images and masks."""
    from torch.utils.flop_counter import FlopCounterMode

    from r2c_core.precision import autocast, use_bf16
    from r2c_core.segmentation.model import build_unet
    from r2c_core.segmentation.train import seg_loss

    results = []
    for mode in modes or (list(MODES) if device.type == "cuda" else CPU_MODES):
        m = MODES[mode]
        for b in batches:
            torch.manual_seed(0)
            model = build_unet().to(device)
            if m["channels_last"]:
                model = model.to(memory_format=torch.channels_last)
            if m.get("compile"):
                model = torch.compile(model)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=bool(m["fused_adam"]) or None)
            bf16 = use_bf16(device, bool(m.get("cuda_fast_path")), bool(m["cpu_amp"]))
            x = torch.randn(b, 1, size, size, device=device)
            if m["channels_last"]:
                x = x.contiguous(memory_format=torch.channels_last)
            y = (torch.rand(b, 1, size, size, device=device) > 0.5).float()
            w = torch.ones(b, device=device)

            def step() -> None:
                with autocast(device, bf16):
                    logits = model(x)
                loss = seg_loss(logits.float(), y, w)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss.item()

            with FlopCounterMode(display=False) as fc:
                step()
            flops = float(fc.get_total_flops())
            med, mem = _time_steps(step, device, warmup, repeats)
            results.append(_row("unet", mode, b, size, med, flops, mem, bf16))
            if smoke:
                return results
    return results


def _dispatch_flops(fn) -> float:
    """FLOPs of one call of ``fn`` by torch.utils.flop_counter's per-operator formulas (forward, backward and double
    backward alike), counted in a plain dispatch mode: FlopCounterMode's module tracker cannot follow R1's
    ``autograd.grad``, and the profiler's ``with_flops`` counts forward convolutions only."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                self.total += formula(*args, **kwargs, out_val=out)
            return out

    with Count() as c:
        fn()
    return float(c.total)


def bench_hqg_steps(model: str, device: torch.device, batches: list[int], size: int, warmup: int, repeats: int,
                    modes: list[str] | None = None, smoke: bool = False) -> list[dict]:
    """HQG-Net's trainer (r2c_core.training.hqg) on synthetic images: ``hqg`` = one GAN step (D step with R1, then
    G + style encoder), ``hqg-ae`` = one step of the style-autoencoder pretraining. ``size``: a multiple of 64, at
    least 128 for ``hqg-ae`` (its style encoder and discriminator depend on it; the CPU recipe trains at 256, no crops). Modes:
    eager (float32 on CPU; the HQG-Net trainer always uses bf16 on CUDA, the ``bf16`` column says so) and fast (bf16
    autocast where native); channels_last and compile are not wired into this trainer."""
    from r2c_core.training.hqg import HQGData, HQGTrainer, hqg_config_from_dict

    def trainer(b: int, amp: bool, tmp: str) -> HQGTrainer:
        cfg = hqg_config_from_dict({"size": size, "batch_size": b, "epochs": 2, "ae_steps": 1 if model == "hqg-ae" else 0,
                                    "device": str(device), "cpu_amp": amp, "reference_limit": 2,
                                    "checkpoint_minutes": 0, "export_every": 0})
        g = torch.Generator().manual_seed(0)
        refs = [(f"b{i}", torch.rand(3, size, size, generator=g)) for i in range(2)]
        tr = HQGTrainer(cfg, tmp, HQGData(_data(size, b, max(2 * b, 4)).batches, refs, {}), progress=False)
        tr.step = 0  # the AE phase for hqg-ae (ae_steps 1), the GAN phase for hqg (ae_steps 0)
        return tr

    # FLOPs of the float32 step, the same for every mode
    flops_at: dict[int, float] = {}
    for b in batches:
        with tempfile.TemporaryDirectory() as tmp:
            tr = trainer(b, False, tmp)
            flops_at[b] = _dispatch_flops(lambda: tr.train_step(tr.batch_at(0)))
            del tr
    results = []
    for mode in modes or ["eager", "fast"]:
        m = MODES[mode]
        if m["channels_last"] or m.get("compile"):
            print(json.dumps({"skipped": f"{model} {mode}: not wired into the HQG-Net trainer"}), flush=True)
            continue
        for b in batches:
            flops = flops_at[b]
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            with tempfile.TemporaryDirectory() as tmp:
                tr = trainer(b, bool(m["cpu_amp"]), tmp)
                batch = tr.batch_at(0)
                tr.train_step(batch)
                med, mem = _time_steps(lambda: tr.train_step(batch), device, warmup, repeats)
            results.append(_row(model, mode, b, size, med, flops, mem, bf16=tr.amp))
            if smoke:
                return results
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="op-q3", help="comma list of R2C models (op-q3, op-q1, cnn-compact, ...), unet, hqg (GAN step), hqg-ae (autoencoder step)")
    ap.add_argument("--modes", default=None, help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--batches", default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    batches = [int(b) for b in (args.batches or ("1,16,64" if device.type == "cuda" else "4")).split(",")]
    modes = args.modes.split(",") if args.modes else None
    size, warmup, repeats = (32, 0, 1) if args.smoke else (args.size, args.warmup, args.repeats)
    out = []
    for model in args.models.split(","):
        out += bench_train_steps(model, device, batches[:1] if args.smoke else batches, size, warmup, repeats,
                                 ["eager"] if args.smoke else modes, smoke=args.smoke)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    if len(out) > 1:
        print(markdown(out))
    return 0


def markdown(rows: list[dict]) -> str:
    """Rows as a markdown table, with each mode's speed-up over eager for the same model and batch."""
    base = {(r["model"], r["batch"]): r["images_per_s"] for r in rows if r["mode"] == "eager"}
    lines = ["| model | mode | bf16 | batch | crop px | crops/s | GFLOP/step | GFLOP/s | vs eager |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ref = base.get((r["model"], r["batch"]))
        lines.append(f"| {r['model']} | {r['mode']} | {'yes' if r['bf16'] else 'no'} | {r['batch']} | {r['size']} | {r['images_per_s']:.2f} | "
                     f"{r['gflop']:.1f} | {r['gflops_per_s']:.0f} | {(r['images_per_s'] / ref if ref else float('nan')):.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
