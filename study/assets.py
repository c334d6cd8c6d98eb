"""The rendition store: 8-bit gray PNGs without metadata, kept by content hash.

A rendition lives at ``<assets>/<sha256[:2]>/<sha256>.png``; the file name says nothing about the method.
The folder is the argument, else ``$R2C_ASSETS``, else ``<repo>/var/assets``. ``study`` does not import
``r2c_core``, so PNG encoding and decoding are done here with Pillow.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import NotFoundError, RenditionError, StudyError

REPO_ROOT = Path(__file__).resolve().parent.parent


def assets_dir(path: str | Path | None = None) -> Path:
    """The asset folder: ``path``, else ``$R2C_ASSETS``, else ``<repo>/var/assets``."""
    if path:
        return Path(path).expanduser().resolve()
    env = os.environ.get("R2C_ASSETS")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "var" / "assets"


def encode_png(gray: np.ndarray) -> bytes:
    """Metadata-free 8-bit grayscale PNG of a 2-D uint8 array (deterministic bytes)."""
    arr = np.asarray(gray)
    if arr.ndim != 2 or arr.dtype != np.uint8:
        raise RenditionError(f"expected a 2-D uint8 image, got {arr.dtype} with shape {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


#: the private ancillary PNG chunk that carries padding (decoders skip it; the pixels are untouched)
PAD_CHUNK = b"rdPd"


def pad_png(data: bytes, total: int, filler: bytes) -> bytes:
    """``data`` (a PNG) grown to exactly ``total`` bytes by one :data:`PAD_CHUNK` chunk before IEND, its payload
    taken from ``filler`` (repeated as needed). ``total`` must leave room for the chunk's 12 bytes of framing.

    This evens out the *total* size only (what a browser's network panel shows). The chunk layout stays readable:
    the IDAT and padding chunks' length fields give the unpadded, compressed size. That size is a deterministic
    function of the pixels (:func:`encode_png`), which the reader sees anyway, so it tells nothing the pixels do
    not; do not read this padding as hiding more than the totals."""
    import struct
    import zlib

    n = total - len(data) - 12
    if n < 0:
        raise RenditionError(f"cannot pad a {len(data)}-byte PNG to {total} bytes")
    if not data.endswith(b"IEND\xaeB`\x82") or len(data) < 20:
        raise RenditionError("not a PNG ending in IEND")
    payload = (filler * (n // max(1, len(filler)) + 1))[:n] if filler else b"\0" * n
    chunk = struct.pack(">I", n) + PAD_CHUNK + payload + struct.pack(">I", zlib.crc32(PAD_CHUNK + payload) & 0xFFFFFFFF)
    iend = len(data) - 12
    return data[:iend] + chunk + data[iend:]


def fit_png(data: bytes, max_side: int) -> bytes:
    """The PNG itself when both sides are at most ``max_side``, else the image shrunk to fit (Lanczos, aspect kept),
    re-encoded without metadata. Every rendition of a query has the same size, so all shrink alike."""
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        if max(w, h) <= max_side:
            return data
        scale = max_side / max(w, h)
        small = im.convert("L").resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    return encode_png(np.asarray(small, dtype=np.uint8))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def asset_path(root: Path, sha: str) -> Path:
    return root / sha[:2] / f"{sha}.png"


def store_png(root: Path, data: bytes) -> str:
    """Write PNG bytes under their hash (atomically; a file already there is kept); returns the hash."""
    sha = sha256_hex(data)
    path = asset_path(root, sha)
    if path.is_file() and path.stat().st_size == len(data):
        return sha
    for folder in (root, path.parent):  # 0700: renditions are study material (they would unblind a reader)
        if not folder.exists():
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return sha


def has_asset(root: Path, sha: str) -> bool:
    return asset_path(root, sha).is_file()


def load_png(root: Path, sha: str) -> bytes:
    """The stored bytes of a rendition, checked against their hash."""
    path = asset_path(root, sha)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NotFoundError(f"rendition image missing from the asset folder {root} (rebuild the study)") from exc
    if sha256_hex(data) != sha:
        raise StudyError(f"rendition image {path.name} in {root} is corrupt (hash mismatch; rebuild the study)")
    return data


#: the largest case image :func:`read_gray` decodes (as ``r2c_core.imageio.MAX_PIXELS``)
MAX_CASE_PIXELS = 25_000_000


def read_gray(path: Path) -> np.ndarray:
    """A case image as a 2-D uint8 array, for renderers without a reader of their own (the r2c renderer reads with
    ``r2c_core.imageio.read_xray``, which also reads DICOM). Colour is converted to gray, transparency composited
    on black, 16-bit and float images are stretched from their own minimum and maximum to 0-255 (never clipped
    to white); multi-page files and images over 25 megapixels are refused with one line."""
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_CASE_PIXELS:
                raise StudyError(f"{path}: {img.width} x {img.height} pixels is over the {MAX_CASE_PIXELS:,}-pixel limit")
            if getattr(img, "n_frames", 1) > 1:
                raise StudyError(f"{path}: has {img.n_frames} frames or pages; a case image must be a single image")
            img.load()
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
                arr = np.asarray(img, dtype=np.float64)
                if not np.isfinite(arr).all():
                    raise StudyError(f"{path}: has NaN or infinite pixels")
                lo, hi = float(arr.min()), float(arr.max())
                scaled = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
                return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                img = Image.alpha_composite(black, rgba)
            gray = img if img.mode == "L" else img.convert("L")
            return np.asarray(gray, dtype=np.uint8).copy()
    except FileNotFoundError as exc:
        raise StudyError(f"{path}: case image not found") from exc
    except Image.DecompressionBombError as exc:
        raise StudyError(f"{path}: too many pixels to decode safely ({exc})") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise StudyError(f"{path}: cannot read case image ({exc})") from exc


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes to a uint8 array (for checks and tests)."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("L"), dtype=np.uint8).copy()
