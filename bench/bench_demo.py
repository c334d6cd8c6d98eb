"""Where the demo page's time goes: restore (k passes) + lung segmentation of the original and the restored image
for one X-ray, step by step, with the app's own code path (:func:`r2c_core.demo.run_demo`).

    python bench/bench_demo.py                       # op-q3, 3 passes, a 512-px Hannover X-ray, 2 threads
    python bench/bench_demo.py --model cnn --passes 1 --repeats 10 --json out/bench_demo.json

Weights: ``weights/r2c-<model>`` and ``weights/lung-unet`` when bundled, else randomly initialised networks of
the same architecture (the timing does not depend on the weight values; the output says which were used).
Steps: ``read`` (decode the file), ``restore`` (whole Restorer.restore call; split into ``restore.to_tensor``,
``restore.generator`` (all passes) and ``restore.to_image``), ``segment`` (U-Net on both images as one batch;
split into ``segment.network`` (resize, normalise, forward, logits back to input size) and ``segment.postprocess``),
``overlay`` (contours drawn on both) and ``encode`` (the two RGB PNGs the page sends to the browser,
:func:`r2c_core.demo.display_png`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the app does (app/streamlit_app.py), before torch loads

import numpy as np  # noqa: E402
import torch  # noqa: E402


def _weights(model: str, root: Path, tmp: Path) -> tuple[Path, Path, str]:
    from tests.e2e.harness import export_test_weights

    gen, lung = root / f"r2c-{model}", root / "lung-unet"
    kind = f"from {root}"
    if not (gen / "config.json").is_file() or not (lung / "config.json").is_file():
        export_test_weights(tmp, models=(model,), lung=True)
        kind = "random (same architecture; timing only)"
        gen = gen if (gen / "config.json").is_file() else tmp / f"r2c-{model}"
        lung = lung if (lung / "config.json").is_file() else tmp / "lung-unet"
    return gen, lung, kind


def _image(path: str | None) -> Path:
    if path:
        return Path(path)
    from r2c_core.paths import data_dir, has_data

    if has_data():
        import pandas as pd

        m = pd.read_csv(data_dir() / "MANIFEST.csv", dtype=str)
        row = m[(m["source"] == "mhh") & (m["width"] == "512")].iloc[0]
        return data_dir() / row["file"]
    out = Path(tempfile.mkdtemp()) / "synthetic-512.png"
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (512, 512), dtype=np.uint8)).save(out)
    return out


def _split_restore(restorer, gray: np.ndarray, passes: int) -> dict[str, float]:
    from r2c_core.inference import from_model_tensor, to_model_tensor

    t: dict[str, float] = {}
    with torch.inference_mode():
        t0 = time.perf_counter()
        x = to_model_tensor(gray, restorer.size).to(restorer.device)
        if restorer.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t["restore.to_tensor"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(passes):
            x, _logits = restorer.generator(x)
        t["restore.generator"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        from_model_tensor(x[0], gray.shape)
        t["restore.to_image"] = time.perf_counter() - t0
    return t


def _split_segment(segmenter, grays: list[np.ndarray]) -> dict[str, float]:
    from r2c_core.segmentation import postprocess

    t0 = time.perf_counter()
    probs = segmenter.predict_probs(grays)
    t1 = time.perf_counter()
    [postprocess(p, segmenter.threshold) for p in probs]
    return {"segment.network": t1 - t0, "segment.postprocess": time.perf_counter() - t1}


def run(args: argparse.Namespace) -> dict:
    from r2c_core.imageio import read_xray
    from r2c_core.inference import Restorer
    from r2c_core.paths import weights_root
    from r2c_core.segmentation import LungSegmenter
    from r2c_core.demo import display_png, run_demo

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    gen_dir, lung_dir, kind = _weights(args.model, Path(args.weights) if args.weights else weights_root(), tmp)
    restorer = Restorer.from_dir(gen_dir, device=args.device, channels_last=args.channels_last)
    segmenter = LungSegmenter.from_dir(lung_dir, device=args.device)
    path = _image(args.image)
    data = path.read_bytes()
    samples: dict[str, list[float]] = {}
    for i in range(args.warmup + args.repeats):
        t0 = time.perf_counter()
        gray = read_xray(data, name=path.name)
        step = {"read": time.perf_counter() - t0}
        res = run_demo(gray, restorer, segmenter, args.passes)
        step.update(res.timings)
        t0 = time.perf_counter()
        for rgb in (res.overlay_original, res.overlay_restored):
            display_png(rgb)
        step["encode"] = time.perf_counter() - t0
        step["total"] = sum(step.values())
        step.update(_split_restore(restorer, gray, args.passes))
        step.update(_split_segment(segmenter, [gray, res.restored]))
        if i >= args.warmup:
            for k, v in step.items():
                samples.setdefault(k, []).append(v)
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "command": " ".join([Path(sys.executable).name] + sys.argv),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, device {restorer.device}",
        "torch": torch.__version__,
        "model": args.model, "passes": args.passes, "channels_last": args.channels_last, "weights": kind,
        "image": f"{path.name} {gray.shape[1]}x{gray.shape[0]}", "repeats": args.repeats,
        "median_s": {k: round(v, 4) for k, v in med.items()},
        "min_total_s": round(min(samples["total"]), 4), "max_total_s": round(max(samples["total"]), 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="op-q3")
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--weights", default=None, help="weights root (default R2C_WEIGHTS or weights/)")
    p.add_argument("--image", default=None, help="X-ray file (default: a 512-px Hannover image from R2C_DATA)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="plain eager NCHW instead of the app's channels_last generator")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args(argv)
    out = run(args)
    width = max(len(k) for k in out["median_s"])
    print(f"{out['model']} x{out['passes']} ({out['weights']} weights, channels_last={out['channels_last']}), "
          f"{out['image']}, {out['machine']}, {out['repeats']} repeats")
    order = ["read", "restore", "restore.to_tensor", "restore.generator", "restore.to_image", "segment",
             "segment.network", "segment.postprocess", "overlay", "encode", "total"]
    for k in order:
        if k in out["median_s"]:
            print(f"  {k:<{width}}  {out['median_s'][k]:.3f} s")
    print(f"  total range {out['min_total_s']:.3f} - {out['max_total_s']:.3f} s")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
