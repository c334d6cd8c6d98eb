"""Benchmark R2C-GAN restoration and training steps: eager vs each optimisation, CPU or CUDA.

    python bench/bench_r2c.py --device cpu --models op-q3 --batches 1 --passes 1,3 --modes eager,channels_last
    python bench/bench_r2c.py --device cuda --train --json out.json --append docs/RESULTS.md
    python bench/bench_r2c.py --smoke            # tiny run so the script cannot rot (used by the tests)

Timing: warm-up runs, then the median of ``--repeats`` timed runs (CUDA events on GPU, perf_counter on CPU),
peak memory, and achieved TFLOP/s against the device's peak (from the GPU's name for bf16/TF32; on CPU the peak
is what one plain large convolution reaches on this machine, measured by the script itself).
FLOPs are counted with ``torch.utils.flop_counter`` on the real model (a multiply-add counts as 2 FLOP).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from r2c_core.fast import FastOptions, FastRestorer  # noqa: E402
from r2c_core.models import build_generator, list_models  # noqa: E402

#: dense bf16 / TF32 tensor-core peaks (TFLOP/s) by GPU name fragment
GPU_PEAKS = {"H200": (989.0, 494.0), "H100 SXM": (989.0, 494.0), "H100 PCIe": (756.0, 378.0), "H100": (989.0, 494.0), "A100": (312.0, 156.0)}

MODES = {
    "eager": FastOptions(),
    "channels_last": FastOptions(channels_last=True),
    "bf16": FastOptions(amp=True),
    "bf16+channels_last": FastOptions(amp=True, channels_last=True),
    "compile": FastOptions(compile=True),
    "compile+channels_last": FastOptions(compile=True, channels_last=True),
    "bf16+channels_last+compile": FastOptions(amp=True, channels_last=True, compile=True, compile_mode="max-autotune-no-cudagraphs"),
    "bf16+channels_last+graphs": FastOptions(amp=True, channels_last=True, cuda_graphs=True),
    "bf16+channels_last+compile+graphs": FastOptions(amp=True, channels_last=True, compile=True, compile_mode="max-autotune-no-cudagraphs", cuda_graphs=True),
}


def count_flops(fn: Callable[[], object]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            out.append(start.elapsed_time(end) / 1000.0)
        else:
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return out


def cpu_conv_peak(repeats: int = 5) -> float:
    """GFLOP/s of one plain 3x3 convolution (128->128 channels, 128x128, batch 1) on this CPU."""
    x = torch.randn(1, 128, 128, 128)
    conv = torch.nn.Conv2d(128, 128, 3, padding=1, bias=False).eval()
    with torch.inference_mode():
        t = timed(lambda: conv(x), torch.device("cpu"), 2, repeats)
    return 2 * 128 * 128 * 9 * 128 * 128 / statistics.median(t) / 1e9


def device_info(device: torch.device) -> dict:
    info = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(), "date": dt.date.today().isoformat()}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        bf16, tf32 = next((v for k, v in GPU_PEAKS.items() if k in name), (None, None))
        info.update(name=name, peak_bf16_tflops=bf16, peak_tf32_tflops=tf32)
    else:
        info.update(name=platform.processor() or platform.machine(), threads=torch.get_num_threads(), plain_conv_gflops=round(cpu_conv_peak(), 1))
    return info


def bench_restore(model: str, mode: str, batch: int, passes: int, size: int, device: torch.device, warmup: int, repeats: int) -> dict:
    torch.manual_seed(0)
    opts = MODES[mode]
    gen = build_generator(model)
    runner = FastRestorer(gen, passes=passes, options=opts, device=device)
    x = (torch.rand(batch, 3, size, size) * 2 - 1).to(device)
    x1 = x[:1].cpu()
    flops = count_flops(lambda: FastRestorer(build_generator(model), passes=passes)(x1)) * batch
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = timed(lambda: runner(x), device, warmup, repeats)
    med = statistics.median(times)
    mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "kind": "restore", "model": model, "mode": opts.label(), "batch": batch, "passes": passes, "size": size,
        "median_s": med, "p90_s": sorted(times)[int(0.9 * (len(times) - 1))], "ms_per_image": 1000 * med / batch,
        "images_per_s": batch / med, "gflop": flops / 1e9, "tflops": flops / med / 1e12, "peak_mem_mib": round(mem, 1),
    }


def check_equal(model: str, mode: str, size: int, device: torch.device) -> float:
    """Max abs difference of a mode's 3-pass output from eager (reported beside the timing)."""
    torch.manual_seed(0)
    gen = build_generator(model)
    x = (torch.rand(2, 3, size, size) * 2 - 1).to(device)
    ref, _ = FastRestorer(gen, passes=3, device=device)(x)
    out, _ = FastRestorer(gen, passes=3, options=MODES[mode], device=device)(x)
    return float((out - ref).abs().max())


def markdown(results: list[dict], info: dict) -> str:
    peak = info.get("peak_bf16_tflops") or (info.get("plain_conv_gflops", 0) / 1000)
    lines = [
        f"#### R2C-GAN benchmark, {info['name']} ({info['device']}), torch {info['torch']}, {info['date']}",
        "",
        "| kind | model | mode | batch | passes | ms/image | images/s | TFLOP/s | % of peak | peak MiB | max abs diff vs eager |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        pct = 100 * r["tflops"] / peak if peak else float("nan")
        lines.append(
            f"| {r['kind']} | {r['model']} | {r['mode']} | {r['batch']} | {r.get('passes', '-')} | {r['ms_per_image']:.2f} | "
            f"{r['images_per_s']:.1f} | {r['tflops']:.3f} | {pct:.1f} | {r['peak_mem_mib']} | {r.get('max_abs_diff', '-')} |"
        )
    peak_txt = (f"peak = {info['peak_bf16_tflops']} TFLOP/s dense bf16" if info.get("peak_bf16_tflops")
                else f"peak = one plain 3x3 convolution on this CPU, {info.get('plain_conv_gflops')} GFLOP/s")
    return "\n".join(lines) + f"\n\n({peak_txt}; median of repeats after warm-up.)\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="op-q3")
    ap.add_argument("--modes", default=None, help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--batches", default=None)
    ap.add_argument("--passes", default="1,3")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--train", action="store_true", help="also time training steps (needs r2c_core.training)")
    ap.add_argument("--train-batches", default=None)
    ap.add_argument("--train-modes", default=None, help="comma list of bench/bench_train.py modes (default: all on CUDA)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--append", type=Path, help="append the markdown table to this file (e.g. docs/RESULTS.md)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, 1 repeat: checks the script runs")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    models = list_models() if args.models == "all" else args.models.split(",")
    modes = args.modes.split(",") if args.modes else (list(MODES) if cuda else ["eager", "channels_last", "bf16+channels_last", "compile+channels_last"])
    modes = [m for m in modes if cuda or "graphs" not in m]
    batches = [int(b) for b in (args.batches or ("1,8,64,256" if cuda else "1,8")).split(",")]
    passes = [int(p) for p in args.passes.split(",")]
    size, warmup, repeats = args.size, args.warmup, args.repeats
    if args.smoke:
        models, modes, batches, passes, size, warmup, repeats = models[:1], ["eager", "channels_last"], [1], [1], 32, 1, 2

    info = device_info(device) if not args.smoke else {"device": str(device), "name": "smoke", "torch": torch.__version__, "date": dt.date.today().isoformat(), "plain_conv_gflops": 1.0}
    results: list[dict] = []

    def dump() -> None:  # after every result, so a run stopped at its time limit keeps what it measured
        if args.json:
            args.json.write_text(json.dumps({"info": info, "results": results}, indent=2))
    for model in models:
        for mode in modes:
            diff = check_equal(model, mode, min(size, 64), device)
            for b in batches:
                for p in passes:
                    r = bench_restore(model, mode, b, p, size, device, warmup, repeats)
                    r["max_abs_diff"] = f"{diff:.1e}"
                    results.append(r)
                    print(json.dumps(r), flush=True)
                    dump()
    if args.train:
        from bench.bench_train import bench_train_steps  # noqa: PLC0415

        train_batches = [int(b) for b in (args.train_batches or ("1,16,64" if cuda else "1")).split(",")]
        train_modes = args.train_modes.split(",") if args.train_modes else None
        for model in models:
            for mode in train_modes or [None]:
                results += bench_train_steps(model, device, train_batches, size, warmup, repeats,
                                             modes=[mode] if mode else None, smoke=args.smoke)
                dump()
    dump()
    table = markdown(results, info)
    print(table)
    if args.append:
        with open(args.append, "a") as fh:
            fh.write("\n" + table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
