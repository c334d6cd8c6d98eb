"""Build (or unpack) the compact training pack: every image of the A/B split file at 256x256 in one ``.npz``.

The pack holds the images as PNG bytes (uint8 gray, resized with the model's test transform), the split file's
ids, labels, splits (train/val/test) and quality domains, and the manifest rows, and must stay below 64 MiB so
that it can travel with a GPU run (``carry: [".pack"]``). On the GPU machine, ``--unpack`` recreates a data folder
that every ``python -m r2c_core`` command reads through ``R2C_DATA``.

Usage:
    python scripts/make_pack.py [--size 256] [--out .pack/cxr256.npz]          # build, print its size
    python scripts/make_pack.py --unpack .pack/cxr256.npz --to /tmp/r2c-cxr     # then: export R2C_DATA=/tmp/r2c-cxr
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from r2c_core.baselines import load_pack, unpack_to_folder, write_pack
from r2c_core.errors import R2CError

MIB = 2**20


def build(args: argparse.Namespace) -> int:
    out = args.out or Path(f".pack/cxr{args.size}.npz")
    meta = write_pack(out, size=args.size, manifest=args.manifest, split_file=args.split_file, limit=args.limit, progress=not args.quiet)
    mib = meta["file_bytes"] / MIB
    print(json.dumps({"out": str(out), "n": meta["n"], "size": meta["size"], "mib": round(mib, 2), "split_sha256": meta["split_sha256"]}))
    if mib >= args.max_mib:
        print(f"error: the pack is {mib:.1f} MiB, not below the {args.max_mib} MiB limit (try a smaller --size)", file=sys.stderr)
        return 1
    return 0


def unpack(args: argparse.Namespace) -> int:
    if args.to is None:
        print("error: --unpack needs --to FOLDER", file=sys.stderr)
        return 2
    pack = load_pack(args.unpack)
    manifest = unpack_to_folder(pack, args.to)
    print(json.dumps({"manifest": str(manifest), "n": len(pack), "size": pack.size, "hint": f"export R2C_DATA={args.to}"}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    ap.add_argument("--out", type=Path, default=None, help="pack file (default .pack/cxr<size>.npz, an ignored folder)")
    ap.add_argument("--manifest", type=Path, default=None, help="manifest CSV (default: the shared data folder, R2C_DATA)")
    ap.add_argument("--split-file", type=Path, default=None, help="A/B split file (default configs/splits/r2c-ab-split.csv)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N ids (tests)")
    ap.add_argument("--max-mib", type=float, default=64.0, help="fail when the pack is not below this size")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--unpack", type=Path, default=None, help="unpack this pack instead of building one")
    ap.add_argument("--to", type=Path, default=None, help="folder to unpack into (MANIFEST.csv + images/)")
    args = ap.parse_args(argv)
    try:
        return unpack(args) if args.unpack else build(args)
    except R2CError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
