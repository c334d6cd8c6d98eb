"""The compact training pack: every image of the split file as PNG bytes plus the manifest rows in one ``.npz``."""

from __future__ import annotations

import datetime as _dt
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..data import (
    SPLIT_FILE,
    file_sha256,
    label_index,
    load_manifest,
    load_split,
)
from ..errors import ManifestError
from ..imageio import png_bytes
from ..tensors import to_model_tensor
from ..training.loader import DomainCache, decode_resized

PACK_FORMAT = "r2c-pack/1"


@dataclass
class Pack:
    """A loaded training pack: per-image PNG bytes and table columns, manifest rows and metadata."""

    ids: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    domains: np.ndarray
    sources: np.ndarray
    png: np.ndarray
    offsets: np.ndarray
    manifest_csv: str
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    def png_of(self, i: int) -> bytes:
        return self.png[self.offsets[i] : self.offsets[i + 1]].tobytes()

    def image(self, i: int) -> np.ndarray:
        """(size, size) uint8 of image ``i``."""
        from PIL import Image

        with Image.open(io.BytesIO(self.png_of(i))) as im:
            return np.asarray(im.convert("L"))

    def images(self, index: Sequence[int] | None = None) -> np.ndarray:
        """(N, size, size) uint8 of the given (default all) images."""
        idx = range(len(self)) if index is None else index
        return np.stack([self.image(int(i)) for i in idx]) if len(idx) else np.zeros((0, self.size, self.size), np.uint8)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"id": self.ids, "label": self.labels, "split": self.splits, "domain": self.domains, "source": self.sources})

    def domain_cache(self, split: str, domain: str | None, load_size: int) -> DomainCache:
        """One split (and optionally one domain) as a :class:`DomainCache`, resized to ``load_size``."""
        t = self.table()
        sel = np.flatnonzero((t["split"] == split).to_numpy() & ((t["domain"] == domain).to_numpy() if domain else True))
        if not len(sel):
            raise ManifestError(f"the pack has no {split}{'/' + domain if domain else ''} images")
        imgs = torch.from_numpy(self.images(sel))
        if load_size != self.size:
            imgs = torch.stack([((to_model_tensor(im.numpy(), load_size)[0, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8) for im in imgs])
        return DomainCache([str(x) for x in self.ids[sel]], imgs, torch.from_numpy(label_index(self.labels[sel])))


def write_pack(out: str | Path, *, size: int = 256, manifest: str | Path | None = None, split_file: str | Path | None = None,
               limit: int = 0, progress: bool = True) -> dict[str, Any]:
    """Write every image of the split file (or the first ``limit`` ids) at ``size`` x ``size`` into one ``.npz``.

    Images go through the model's test transform (bilinear, no antialiasing, rounded to uint8), so classifying a
    pack image at ``size`` sees the same pixels as classifying the original. Returns the pack's metadata.
    """
    man = load_manifest(manifest)
    split_path = Path(split_file) if split_file else SPLIT_FILE
    split = load_split(split_path)
    rows = man.merge(split[["id", "split", "domain"]].rename(columns={"split": "ab_split"}), on="id", how="inner")
    if len(rows) != len(split):
        raise ManifestError(f"the split file names {len(split) - len(rows)} id(s) that are not in the manifest")
    rows = rows.sort_values("id", kind="mergesort").reset_index(drop=True)
    if limit > 0:
        rows = rows.head(limit)
    imgs = decode_resized(list(rows["path"]), size, desc="pack", progress=progress)
    blobs = [png_bytes(im.numpy()) for im in imgs]
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs])
    man_rows = man[man["id"].isin(set(rows["id"]))].drop(columns=["path"]).sort_values("id", kind="mergesort")
    meta = {"format": PACK_FORMAT, "size": size, "n": len(rows), "encoding": "png", "resize": "bilinear, no antialias (test transform), rounded to uint8",
            "split_file": split_path.name, "split_sha256": file_sha256(split_path), "manifest": man.attrs.get("manifest"),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "png_bytes": int(offsets[-1])}
    p = Path(out)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp.npz")
    np.savez(tmp, png=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets,
             ids=rows["id"].to_numpy(str), labels=rows["label"].to_numpy(str), splits=rows["ab_split"].to_numpy(str),
             domains=rows["domain"].to_numpy(str), sources=rows["source"].to_numpy(str),
             manifest_csv=np.frombuffer(man_rows.to_csv(index=False, lineterminator="\n").encode(), dtype=np.uint8),
             meta_json=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    tmp.replace(p)
    meta["file_bytes"] = p.stat().st_size
    return meta


def load_pack(path: str | Path) -> Pack:
    """Read a pack written by :func:`write_pack` (one-line :class:`ManifestError` when it is not one)."""
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"pack not found: {p} (build it with: python scripts/make_pack.py)")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ManifestError(f"{p}: not a readable pack ({exc})") from None
    need = ("png", "offsets", "ids", "labels", "splits", "domains", "sources", "manifest_csv", "meta_json")
    missing = [k for k in need if k not in arrays]
    if missing:
        raise ManifestError(f"{p}: not an r2c pack (missing {', '.join(missing)})")
    meta = json.loads(arrays["meta_json"].tobytes().decode())
    if meta.get("format") != PACK_FORMAT:
        raise ManifestError(f"{p}: pack format {meta.get('format')!r}, expected {PACK_FORMAT!r}")
    return Pack(arrays["ids"], arrays["labels"], arrays["splits"], arrays["domains"], arrays["sources"], arrays["png"],
                arrays["offsets"], arrays["manifest_csv"].tobytes().decode(), meta)


def unpack_to_folder(pack: Pack | str | Path, folder: str | Path) -> Path:
    """Recreate a data folder (``MANIFEST.csv`` + ``images/<id>.png``) from a pack; returns the manifest path.

    The manifest keeps every column of the original rows; ``file`` points at the packed image, ``width``/``height``
    are the pack's size, and lung masks are not packed (``has_mask`` 0, ``mask_file`` empty).
    """
    pk = pack if isinstance(pack, Pack) else load_pack(pack)
    d = Path(folder)
    (d / "images").mkdir(parents=True, exist_ok=True)
    for i, pid in enumerate(pk.ids):
        (d / "images" / f"{pid}.png").write_bytes(pk.png_of(i))
    man = pd.read_csv(io.StringIO(pk.manifest_csv), dtype={"id": str, "file": str, "label": str, "split": str, "source": str})
    man["file"] = [f"images/{i}.png" for i in man["id"]]
    for col in ("width", "height"):
        if col in man:
            man[col] = pk.size
    if "has_mask" in man:
        man["has_mask"] = 0
    for col in ("mask_file", "mask_source", "mask_origin", "mask_orig_size"):
        if col in man:
            man[col] = ""
    out = d / "MANIFEST.csv"
    man.to_csv(out, index=False, lineterminator="\n")
    return out
