"""Reading chest X-rays from any common file (PNG, JPEG, TIFF, DICOM) into 8-bit grayscale arrays.

Every reader in the project (CLI, app, training, segmentation) goes through :func:`read_xray`, so bad input
gets the same clear :class:`~r2c_core.errors.ImageLoadError` everywhere and never a traceback.

Conversion rules (documented in README "Input images"):

* RGB / CMYK / palette images: converted to RGB, then to gray with the ITU-R 601 luma transform
  (the transform used to build the data set). Transparent pixels (RGBA, LA, palette with transparency)
  are composited on black first.
* 16-bit, 32-bit integer and float images (and DICOM pixel data without a VOI window) are *windowed* to
  8 bits with a percentile window: values at or below the 0.5th percentile map to 0, at or above the
  99.5th to 255, linearly in between. This keeps the anatomy's contrast when a few saturated pixels
  (burnt-in labels, collimator edges) would otherwise squash it. 8-bit input is returned unchanged.
* DICOM: the modality LUT (rescale slope/intercept) is applied, then the file's own VOI LUT / window if it
  has one, else the percentile window; MONOCHROME1 is inverted so that bone is bright. Multi-frame DICOM
  is refused (pick one frame first).
* Multi-page images (TIFF stacks, animated GIF) are refused, as are images above :data:`MAX_PIXELS`
  pixels (decompression bombs) and files above :data:`MAX_FILE_BYTES` (a deflated DICOM: above it once inflated).
* EXIF / TIFF orientation is applied. Only :data:`PIL_FORMATS` (and DICOM) are parsed: uploads are untrusted, so the
  many rarely used PIL decoders (and Ghostscript, for EPS) never see them.
"""

from __future__ import annotations

import io
import re
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .errors import ImageLoadError

if TYPE_CHECKING:
    import pydicom

#: Largest accepted image, in pixels (about 8000 x 8000): larger files are treated as decompression bombs.
#: the largest image accepted (pixels): a chest X-ray detector gives at most about 4300 x 4300 (18.5 MP); anything
#: larger is refused before it is decoded (a small PNG can decode to gigabytes: issue 16, finding 7)
MAX_PIXELS = 25_000_000
#: Largest accepted file, in bytes.
MAX_FILE_BYTES = 256 * 1024 * 1024
#: Percentile window used for >8-bit input.
WINDOW_PERCENTILES = (0.5, 99.5)
#: The PIL formats read ("JPEG" includes the MPO JPEGs many cameras write).
PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP")

ImageFile.LOAD_TRUNCATED_IMAGES = False

Source = Union[str, Path, bytes, bytearray, BinaryIO]


def _label(text: object) -> str:
    """A file name fit for a one-line message: control characters (an attacker's upload name) become ``?``."""
    return re.sub(r"[\x00-\x1f\x7f]", "?", str(text))


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """An exception's text on one line (whitespace collapsed), at most ``limit`` characters."""
    text = " ".join(str(exc).split())
    return (text[:limit] + "...") if len(text) > limit else text or exc.__class__.__name__


def _too_big(label: str) -> ImageLoadError:
    return ImageLoadError(f"{label}: file is above the {MAX_FILE_BYTES // 2**20} MiB limit")


def _read_bytes(source: Source, name: str | None) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        label = _label(name or "upload")
        if len(source) > MAX_FILE_BYTES:
            raise _too_big(label)
        return bytes(source), label
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = _label(name or path)
        try:
            if not path.exists():
                raise ImageLoadError(f"{label}: file not found")
            if path.is_dir():
                raise ImageLoadError(f"{label}: is a directory, not an image file")
            if not path.is_file():  # a FIFO or a device would block or never end
                raise ImageLoadError(f"{label}: not a regular file")
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ImageLoadError(f"{label}: file is {size / 2**20:.0f} MiB, above the {MAX_FILE_BYTES // 2**20} MiB limit")
            with path.open("rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ImageLoadError(f"{label}: cannot read file ({exc.strerror or exc.__class__.__name__})") from exc
        if len(data) > MAX_FILE_BYTES:  # grew since stat()
            raise _too_big(label)
        return data, label
    if hasattr(source, "read"):
        label = _label(name or getattr(source, "name", "upload"))
        try:
            data = source.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ImageLoadError(f"{label}: cannot read file ({exc.strerror or exc.__class__.__name__})") from exc
        if not isinstance(data, (bytes, bytearray)):
            raise ImageLoadError(f"{label}: file object is open in text mode; open it in binary mode ('rb')")
        if len(data) > MAX_FILE_BYTES:
            raise _too_big(label)
        return bytes(data), label
    raise ImageLoadError(f"unsupported input type {type(source).__name__}")


def window_to_uint8(arr: np.ndarray, percentiles: tuple[float, float] = WINDOW_PERCENTILES) -> np.ndarray:
    """Map any numeric 2-D array to uint8 with a percentile window (see module doc)."""
    a = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        raise ImageLoadError("image has no finite pixel values")
    a = np.where(finite, a, np.nanmin(np.where(finite, a, np.nan)))
    lo, hi = np.percentile(a, percentiles)
    if hi <= lo:  # flat image or tiny range: fall back to min/max
        lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    out = (a - lo) / (hi - lo)
    return np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)


def to_gray_uint8(arr: np.ndarray) -> np.ndarray:
    """Convert an array (H,W), (H,W,1), (H,W,3) or (H,W,4) of any dtype into an (H,W) uint8 gray image."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        if a.shape[2] == 1:
            a = a[..., 0]
        else:
            rgb = a[..., :3].astype(np.float64)
            if a.shape[2] == 4:  # composite on black
                alpha = a[..., 3].astype(np.float64) / (255.0 if a.dtype == np.uint8 else max(float(a[..., 3].max()), 1.0))
                rgb = rgb * alpha[..., None]
            a = rgb @ np.array([0.299, 0.587, 0.114])
            if arr.dtype == np.uint8:
                return np.clip(np.rint(a), 0, 255).astype(np.uint8)
    if a.ndim != 2:
        raise ImageLoadError(f"expected a 2-D gray or RGB image, got an array of shape {tuple(np.shape(arr))}")
    if a.size == 0:
        raise ImageLoadError("image is empty (0 pixels)")
    if a.dtype == np.uint8:
        return a
    if a.dtype == bool:
        return a.astype(np.uint8) * 255
    return window_to_uint8(a)


def _is_dicom(data: bytes, label: str) -> bool:
    return (len(data) >= 132 and data[128:132] == b"DICM") or label.lower().endswith((".dcm", ".dicom"))


def _read_dicom(data: bytes, label: str) -> np.ndarray:
    """DICOM to uint8 gray. pydicom's warnings are silenced (the caller gets one line or an image), and any error
    pydicom raises on a malformed header (a non-numeric WindowCenter, a broken LUT, ...) becomes one
    :class:`ImageLoadError` line without paths or tracebacks."""
    import logging

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pd_log = logging.getLogger("pydicom")
        level, pd_log.level = pd_log.level, logging.ERROR + 10
        try:
            return _read_dicom_quiet(data, label)
        except ImageLoadError:
            raise
        except Exception as exc:  # a malformed header anywhere in pydicom: one line, no internals
            raise ImageLoadError(f"{label}: malformed DICOM header ({exc.__class__.__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'no detail'})") from exc
        finally:
            pd_log.level = level


class _InflateCheckedBytes(io.BytesIO):
    """The DICOM bytes for pydicom, which inflates a deflated data set whole (``zlib.decompress`` of everything
    after the file meta, the one place it calls ``read()`` without a size) before any header can be checked: a
    small file can inflate to gigabytes. That read first inflates in bounded chunks, discarding the output, and
    refuses a data set that inflates beyond :data:`MAX_FILE_BYTES`."""

    def __init__(self, data: bytes, label: str) -> None:
        super().__init__(data)
        self.label = label

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            with self.getbuffer() as view:
                _check_inflated_size(view[self.tell():], self.label)
        return super().read(size)


def _check_inflated_size(deflated: memoryview, label: str, chunk: int = 1 << 16, step: int = 1 << 20) -> None:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    try:
        for start in range(0, len(deflated), chunk):
            left: memoryview | bytes = deflated[start:start + chunk]
            while not inflater.eof:
                n = len(inflater.decompress(left, step))
                total += n
                if total > MAX_FILE_BYTES:
                    raise ImageLoadError(f"{label}: deflated DICOM data set would inflate to more than "
                                         f"{MAX_FILE_BYTES // 2**20} MiB (decompression bomb?)")
                left = inflater.unconsumed_tail
                if not left and n < step:  # this chunk is used up and no output is pending
                    break
            if inflater.eof:
                return
    except zlib.error:
        return  # not deflate data: pydicom says so itself, after inflating no more than was inflated here


def _is_encapsulated(ts: pydicom.uid.UID | None) -> bool:
    try:
        return bool(ts is not None and ts.is_encapsulated)
    except ValueError:  # a private or unknown UID: pydicom's decoder says it is not supported
        return False


def _check_codestream_size(ds: pydicom.Dataset, label: str) -> None:
    """The size a compressed frame's own header declares (JPEG, JPEG 2000: what pydicom's Pillow decoder would
    allocate, whatever Rows and Columns say) against :data:`MAX_PIXELS`, from the header alone. Codestreams PIL
    cannot parse are left to their decoders, which work into a Rows x Columns buffer."""
    from pydicom.encaps import get_frame

    frame = get_frame(ds.PixelData, 0, number_of_frames=1)
    try:
        w, h = Image.open(io.BytesIO(frame), formats=("JPEG", "JPEG2000")).size
    except Exception:
        return
    if w * h > MAX_PIXELS:
        raise ImageLoadError(f"{label}: compressed image is {w}x{h} pixels, above the {MAX_PIXELS:,} pixel limit")


def _read_dicom_quiet(data: bytes, label: str) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(_InflateCheckedBytes(data, label), force=True)
    except ImageLoadError:
        raise
    except Exception as exc:  # pydicom raises many types for garbage
        raise ImageLoadError(f"{label}: not a readable DICOM file ({exc.__class__.__name__})") from exc
    if "PixelData" not in ds:
        raise ImageLoadError(f"{label}: DICOM file has no pixel data")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageLoadError(f"{label}: multi-frame DICOM ({frames} frames) is not supported; export a single frame")
    rows, cols = int(getattr(ds, "Rows", 0) or 0), int(getattr(ds, "Columns", 0) or 0)
    if rows * cols > MAX_PIXELS:
        raise ImageLoadError(f"{label}: image is {cols}x{rows} pixels, above the {MAX_PIXELS:,} pixel limit")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)  # a UID: .name is the UID if unknown
    try:
        if _is_encapsulated(ts):
            _check_codestream_size(ds, label)
        # frame 0 only: pydicom would otherwise decode pixel data beyond Rows x Columns as "excess frames";
        # YBR_FULL(_422) comes back as RGB (pydicom >= 3 converts it)
        ds.pixel_array_options(index=0, as_rgb=True, allow_excess_frames=False)
        px = ds.pixel_array
    except ImageLoadError:
        raise
    except Exception as exc:
        name = str(getattr(ts, "name", ts))
        what = "unknown" if ts is None else f"{name}, {ts}" if name != str(ts) else name
        raise ImageLoadError(f"{label}: cannot decode DICOM pixel data (transfer syntax {what}): "
                             f"{_one_line(exc)}") from exc
    photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2")).upper()
    if px.ndim == 3 and photometric in ("RGB", "YBR_FULL", "YBR_FULL_422"):
        return to_gray_uint8(px)
    if px.ndim != 2:
        raise ImageLoadError(f"{label}: unsupported DICOM pixel array shape {px.shape}")
    arr = apply_modality_lut(px, ds)
    has_voi = "WindowCenter" in ds or "VOILUTSequence" in ds
    if has_voi:
        arr = apply_voi_lut(arr, ds)
        lo, hi = float(np.min(arr)), float(np.max(arr))
        out = np.zeros(arr.shape, np.uint8) if hi <= lo else np.clip(np.rint((arr - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    else:
        out = window_to_uint8(arr)
    if photometric == "MONOCHROME1":
        out = 255 - out
    return out


def _read_pil(data: bytes, label: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=PIL_FORMATS)
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageLoadError(f"{label}: image is {w}x{h} pixels, above the {MAX_PIXELS:,} pixel limit (decompression bomb?)")
            if w == 0 or h == 0:
                raise ImageLoadError(f"{label}: image is empty ({w}x{h})")
            if getattr(img, "n_frames", 1) > 1:
                raise ImageLoadError(f"{label}: multi-page/animated image ({img.n_frames} frames) is not supported")
            img.load()
            try:
                ImageOps.exif_transpose(img, in_place=True)
            except Exception:  # a malformed EXIF block says nothing usable about orientation: keep the pixels
                pass
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(f"{label}: image is too large (decompression bomb): {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{label}: not an image file of a supported format "
                             f"({', '.join(PIL_FORMATS)} or DICOM)") from exc
    except Exception as exc:  # decoders of malformed files raise OSError, ValueError, TypeError, struct.error, ...
        raise ImageLoadError(f"{label}: corrupt or truncated image ({_one_line(exc)})") from exc
    mode = img.mode
    if mode in ("L",):
        return np.asarray(img, dtype=np.uint8).copy()
    if mode == "1":
        return np.asarray(img.convert("L"), dtype=np.uint8).copy()
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return window_to_uint8(np.asarray(img))
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba).convert("RGB")
    elif mode != "RGB":  # CMYK, YCbCr, LAB, HSV, ...
        try:
            img = img.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageLoadError(f"{label}: unsupported image mode {mode}") from exc
    return np.asarray(img.convert("L"), dtype=np.uint8).copy()


def read_xray(source: Source, *, name: str | None = None) -> np.ndarray:
    """Read a chest X-ray from a path, bytes or file object as an (H, W) uint8 gray array.

    Raises :class:`ImageLoadError` with one clear line for anything that is not a usable image.
    """
    data, label = _read_bytes(source, name)
    if len(data) == 0:
        raise ImageLoadError(f"{label}: file is empty (0 bytes)")
    try:
        return _read_dicom(data, label) if _is_dicom(data, label) else _read_pil(data, label)
    except ImageLoadError as exc:  # the array helpers (window_to_uint8, ...) do not know the file's name
        if str(exc).startswith(f"{label}: "):
            raise
        raise ImageLoadError(f"{label}: {exc}") from exc


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom")


def list_images(path: str | Path) -> list[Path]:
    """A file, or every image file (by suffix) directly inside a folder, sorted."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ImageLoadError(f"{p}: folder has no image files ({', '.join(IMAGE_SUFFIXES)})")
        return files
    if not p.exists():
        raise ImageLoadError(f"{p}: file not found")
    return [p]


def png_bytes(gray: np.ndarray) -> bytes:
    """Encode an (H, W) uint8 array as a PNG with no metadata (no text chunks, no timestamps)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(gray, dtype=np.uint8), mode="L").save(buf, format="PNG", optimize=False)
    return buf.getvalue()
