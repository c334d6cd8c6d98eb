"""Time R2C-GAN training steps (both generators six passes forward and back, both discriminators, two Adam steps).

    python bench/bench_train.py --device cpu --models op-q3 --batches 1 --size 128
    python bench/bench_train.py --device cuda --batches 1,16,64 --modes eager,fast,fast+compile

Used by ``bench/bench_r2c.py --train`` too. Data are synthetic uint8 images already on the device's side of the
loader (the trainer's cache); FLOPs per step are counted with ``torch.utils.flop_counter`` on one real step.
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
    "eager": {"amp": False, "channels_last": False, "cuda_fast_path": False, "fused_adam": False},
    "fast": {"cuda_fast_path": True, "fused_adam": True, "channels_last": True},
    "fast+compile": {"cuda_fast_path": True, "fused_adam": True, "channels_last": True, "compile": True},
}


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

    results = []
    for mode in modes or (list(MODES) if device.type == "cuda" else ["eager", "fast"]):
        for b in batches:
            cfg = config_from_dict({"model": model, "size": size, "batch_size": b, "epochs": 2, "epoch_decay": 1,
                                    "device": str(device), "export_every": 0, **MODES[mode]})
            with tempfile.TemporaryDirectory() as tmp:
                tr = Trainer(cfg, tmp, _data(size, b, max(2 * b, 4)), progress=False)
                batch = tr.data.batches.batch(0)
                with FlopCounterMode(display=False) as fc:
                    tr.train_step(batch)
                flops = float(fc.get_total_flops())
                for _ in range(warmup):
                    tr.train_step(batch)
                times = []
                for _ in range(repeats):
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    tr.train_step(batch)  # returns python floats: synchronises
                    times.append(time.perf_counter() - t0)
                med = statistics.median(times)
                mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
            r = {"kind": "train", "model": model, "mode": mode, "batch": b, "size": size, "median_s": med,
                 "ms_per_image": 1000 * med / b, "images_per_s": b / med, "gflop": flops / 1e9, "tflops": flops / med / 1e12,
                 "peak_mem_mib": round(mem, 1)}
            print(json.dumps(r), flush=True)
            results.append(r)
            if smoke:
                return results
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="op-q3")
    ap.add_argument("--modes", default=None, help=f"comma list of {', '.join(MODES)}")
    ap.add_argument("--batches", default=None)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    batches = [int(b) for b in (args.batches or ("1,16,64" if device.type == "cuda" else "1")).split(",")]
    modes = args.modes.split(",") if args.modes else None
    size, warmup, repeats = (32, 0, 1) if args.smoke else (args.size, args.warmup, args.repeats)
    out = []
    for model in args.models.split(","):
        out += bench_train_steps(model, device, batches[:1] if args.smoke else batches, size, warmup, repeats,
                                 ["eager"] if args.smoke else modes, smoke=args.smoke)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
