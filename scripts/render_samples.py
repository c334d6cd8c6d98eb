"""Render sample restorations (original, 1 pass, 3 passes) of every available R2C-GAN variant as figures.

For each generator found under the weights folder (``weights/r2c-*``, any folder whose config.json has kind
``r2c-generator``), a few test images (seeded, a few per source) are restored with 1 and 3 passes; each variant
gives one PNG grid (rows: images; columns: original, 1 pass, 3 passes) plus one ``samples.md`` with the captions.

Licences: most sources may not be redistributed in the repository, so the default output is the ignored
``figures/samples/``. With ``--mhh-only`` only Hannover (mhh, CC BY 3.0) images are used, the tiles are small
(``--tile``, 256 px) and the attribution line goes into the figure's footer and its markdown caption; that is the
only mode allowed to write under ``docs/``.

Usage:
    python scripts/render_samples.py [--per-source 1] [--out figures/samples]
    python scripts/render_samples.py --mhh-only --n 3 --out docs/figures/
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from r2c_core.data import load_manifest
from r2c_core.errors import R2CError
from r2c_core.imageio import read_xray
from r2c_core.inference import GENERATOR_KIND, Restorer
from r2c_core.paths import REPO_ROOT, weights_root

MHH_ATTRIBUTION = (
    "Chest X-rays: COVID-19 Image Repository, Hannover Medical School (H. B. Winther et al., doi:10.25835/0090041), "
    "CC BY 3.0; resized and restored by R2C-GAN (changes made)."
)
COLUMNS = ("original", "1 pass", "3 passes")
LABEL_H = 16


def find_variants(root: Path, names: Sequence[str] = ()) -> list[Path]:
    """Generator folders under ``root`` (kind r2c-generator), optionally only the given folder names."""
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        cfg = d / "config.json"
        if names and d.name not in names:
            continue
        try:
            if cfg.is_file() and json.loads(cfg.read_text()).get("kind") == GENERATOR_KIND:
                out.append(d)
        except (OSError, json.JSONDecodeError):
            continue
    return out


def pick_images(manifest: pd.DataFrame, *, split: str, mhh_only: bool, per_source: int, n: int, seed: int) -> pd.DataFrame:
    rows = manifest[manifest["split"] == split]
    if mhh_only:
        rows = rows[rows["source"] == "mhh"]
        picked = rows.sample(n=min(n, len(rows)), random_state=seed) if len(rows) else rows
    else:
        picked = rows.groupby("source", group_keys=False).apply(lambda g: g.sample(n=min(per_source, len(g)), random_state=seed))
    if picked.empty:
        raise R2CError(f"no {'mhh ' if mhh_only else ''}images in split {split!r}")
    return picked.sort_values("id", kind="mergesort")


def tile(gray: np.ndarray, size: int) -> Image.Image:
    """The image fitted into a ``size`` square (aspect kept, centred on black)."""
    im = Image.fromarray(gray)
    im.thumbnail((size, size), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return canvas


def grid(rows: list[tuple[str, list[np.ndarray]]], size: int, title: str, footer: str | None) -> Image.Image:
    """Rows of tiles with column headers, a row label per image and an optional footer line."""
    head = 2 * LABEL_H
    width = size * len(COLUMNS)
    foot_lines = wrap(footer, width - 8) if footer else []
    img = Image.new("L", (width, head + len(rows) * (size + LABEL_H) + LABEL_H * len(foot_lines) + 4), 255)
    draw = ImageDraw.Draw(img)
    draw.text((4, 2), title, fill=0)
    for c, name in enumerate(COLUMNS):
        draw.text((c * size + 4, LABEL_H + 2), name, fill=0)
    for r, (label, images) in enumerate(rows):
        y = head + r * (size + LABEL_H)
        draw.text((4, y + 2), label, fill=0)
        for c, g in enumerate(images):
            img.paste(tile(g, size), (c * size, y + LABEL_H))
    for k, line in enumerate(foot_lines):
        draw.text((4, img.height - LABEL_H * (len(foot_lines) - k) - 2), line, fill=0)
    return img


def wrap(text: str, width_px: int) -> list[str]:
    """Greedy word wrap of ``text`` to lines at most ``width_px`` wide in the default font."""
    measure = ImageDraw.Draw(Image.new("L", (1, 1))).textlength
    lines: list[str] = []
    for word in text.split():
        if lines and measure(lines[-1] + " " + word) <= width_px:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def render_variant(weights: Path, images: pd.DataFrame, *, size: int, device: str, footer: str | None) -> tuple[Image.Image, dict]:
    restorer = Restorer.from_dir(weights, device=device)
    rows = []
    for _, r in images.iterrows():
        gray = read_xray(r["path"])
        res = restorer.restore(gray, passes=3)
        rows.append((f"{r['id']} ({r['label']}), P(covid) {res.prob_covid:.2f}", [gray, res.passes_images[0], res.passes_images[2]]))
    version = restorer.config.get("version", "?")
    title = f"{restorer.model_name} ({weights.name}, version {version}): original, 1 pass, 3 passes"
    info = {"variant": weights.name, "model": restorer.model_name, "version": version, "ids": list(images["id"])}
    return grid(rows, size, title, footer), info


def markdown(infos: list[dict], files: list[Path], out: Path, mhh_only: bool) -> str:
    lines = ["# Sample restorations (original, 1 pass, 3 passes)", "",
             "Rendered by `python scripts/render_samples.py" + (" --mhh-only" if mhh_only else "") + "`; the first pass also gives P(covid).", ""]
    for info, f in zip(infos, files):
        lines += [f"![{info['variant']}]({f.relative_to(out).as_posix()})", "",
                  f"*{info['model']} (`{info['variant']}`, version {info['version']}); images {', '.join(info['ids'])}.*" + (f" {MHH_ATTRIBUTION}" if mhh_only else ""), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-root", type=Path, default=None, help="folder of generator folders (default weights/ or R2C_WEIGHTS)")
    ap.add_argument("--variant", action="append", default=[], help="only these folder names (repeatable), e.g. r2c-op-q3")
    ap.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: the shared data folder, R2C_DATA)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--per-source", type=int, default=1, help="images per source (without --mhh-only)")
    ap.add_argument("--n", type=int, default=3, help="number of images with --mhh-only")
    ap.add_argument("--mhh-only", action="store_true", help="only Hannover (CC BY 3.0) images, small tiles, attribution: may go under docs/")
    ap.add_argument("--tile", type=int, default=256, help="tile size in pixels")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "figures" / "samples")
    args = ap.parse_args(argv)
    try:
        docs = (REPO_ROOT / "docs").resolve()
        if not args.mhh_only and (args.out.resolve() == docs or docs in args.out.resolve().parents):
            raise R2CError("only --mhh-only figures may be written under docs/ (the other sources' licences do not allow it)")
        variants = find_variants(args.weights_root or weights_root(), args.variant)
        if not variants:
            raise R2CError("no R2C-GAN generator folders found (config.json with kind r2c-generator)")
        images = pick_images(load_manifest(args.manifest), split=args.split, mhh_only=args.mhh_only, per_source=args.per_source, n=args.n, seed=args.seed)
        args.out.mkdir(parents=True, exist_ok=True)
        infos, files = [], []
        for v in variants:
            fig, info = render_variant(v, images, size=args.tile, device=args.device, footer=MHH_ATTRIBUTION if args.mhh_only else None)
            f = args.out / f"samples-{v.name}{'-mhh' if args.mhh_only else ''}.png"
            fig.save(f, optimize=True)
            infos.append(info)
            files.append(f)
            print(f)
        md = args.out / ("samples-mhh.md" if args.mhh_only else "samples.md")
        md.write_text(markdown(infos, files, args.out, args.mhh_only) + "\n")
        print(md)
    except R2CError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
