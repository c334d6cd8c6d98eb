"""Render example X-rays of quality domains A (poor) and B (high) per source into figures/ab-examples/ (ignored).

For every source: the k lowest-scoring A images, the k images nearest the cell median on each side, and the k
highest-scoring B images of the train split, as one contact sheet PNG with the id and score under each image.
Usage: python scripts/render_ab_examples.py [--k 3] [--out figures/ab-examples]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

from r2c_core.data import SPLIT_FILE, load_manifest, load_split
from r2c_core.imageio import read_xray

TILE = 192


def pick(split: pd.DataFrame, source: str, k: int) -> list[pd.Series]:
    g = split[(split["split"] == "train") & (split["source"] == source)].sort_values("quality_score")
    a, b = g[g["domain"] == "A"], g[g["domain"] == "B"]
    rows = pd.concat([a.head(k), a.tail(k), b.head(k), b.tail(k)]).drop_duplicates("id")
    return [r for _, r in rows.iterrows()]


def sheet(rows: list[pd.Series], paths: dict[str, str]) -> Image.Image:
    img = Image.new("L", (TILE * len(rows), TILE + 28), 255)
    draw = ImageDraw.Draw(img)
    for i, r in enumerate(rows):
        im = Image.fromarray(read_xray(paths[r["id"]]))
        im.thumbnail((TILE, TILE))
        img.paste(im, (i * TILE + (TILE - im.width) // 2, (TILE - im.height) // 2))
        draw.text((i * TILE + 4, TILE + 2), f"{r['domain']} {r['id']}", fill=0)
        draw.text((i * TILE + 4, TILE + 14), f"score {r['quality_score']:.2f} {r['label']}", fill=0)
    return img


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("figures/ab-examples"))
    args = ap.parse_args()
    man = load_manifest()
    paths = dict(zip(man["id"], man["path"]))
    split = load_split(SPLIT_FILE)
    args.out.mkdir(parents=True, exist_ok=True)
    for src in sorted(split["source"].unique()):
        out = args.out / f"{src}.png"
        sheet(pick(split, src, args.k), paths).save(out)
        print(out)


if __name__ == "__main__":
    main()
