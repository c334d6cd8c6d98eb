"""Hostile and odd input found in review: uploads an attacker controls (size, name, format, DICOM bombs) and
checkpoints that do not fit. Each gets one clear line naming the file, without decoding, hanging or unpickling."""

from __future__ import annotations

import io
import os
import shutil
import struct
import tracemalloc

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from r2c_core import imageio
from r2c_core.checkpoints import load_checkpoint, load_model, read_config, save_checkpoint
from r2c_core.errors import CheckpointError, ImageLoadError
from r2c_core.imageio import read_xray
from tests.test_imageio import _dicom, _encode


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "\r" not in msg, msg
    return msg


def _redicom(data: bytes, edit) -> bytes:
    """Re-encode a DICOM after ``edit(ds)``."""
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(data))
    edit(ds)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


_PX = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))


# ---- imageio: the input itself -------------------------------------------------------------------------------


def test_bytes_above_the_file_limit_are_refused(monkeypatch) -> None:
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", 1000)
    with pytest.raises(ImageLoadError, match="limit") as err:
        read_xray(_encode(Image.new("L", (8, 8))) + b"\0" * 2000, name="big.png")
    assert _one_line(err).startswith("big.png: ")


def test_an_upload_name_with_control_characters_stays_one_line() -> None:
    with pytest.raises(ImageLoadError) as err:
        read_xray(b"not an image", name="evil\nname\r\x1b[31m.png")
    assert "not an image" in _one_line(err) and "\x1b" not in str(err.value)


def test_a_text_mode_file_object_is_one_clear_error() -> None:
    with pytest.raises(ImageLoadError, match="binary"):
        read_xray(io.StringIO("hello"), name="x.png")


def test_an_unusable_path_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(ImageLoadError):
        read_xray(tmp_path / ("x" * 5000 + ".png"))  # ENAMETOOLONG from stat()


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_without_hanging(tmp_path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    with pytest.raises(ImageLoadError, match="not a regular file"):
        read_xray(fifo)


def test_a_corrupt_second_tiff_page_is_one_clear_error() -> None:
    """PIL raises TypeError ('Missing dimensions') while counting the pages: not an OSError."""
    buf = io.BytesIO()
    frames = [Image.new("L", (8, 8), v) for v in (0, 128)]
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    d = bytearray(buf.getvalue())
    ifd0 = struct.unpack_from("<I", d, 4)[0]
    ifd1 = struct.unpack_from("<I", d, ifd0 + 2 + 12 * struct.unpack_from("<H", d, ifd0)[0])[0]
    for i in range(struct.unpack_from("<H", d, ifd1)[0]):
        if struct.unpack_from("<H", d, ifd1 + 2 + 12 * i)[0] == 256:  # ImageWidth -> an unknown tag
            struct.pack_into("<H", d, ifd1 + 2 + 12 * i, 0x7FFF)
    with pytest.raises(ImageLoadError, match="corrupt") as err:
        read_xray(bytes(d), name="two.tif")
    assert _one_line(err).startswith("two.tif: ")


def test_exif_orientation_is_applied() -> None:
    arr = np.zeros((20, 40), np.uint8)
    arr[:, :5] = 255  # the left edge, shown on top once rotated 90 degrees clockwise (orientation 6)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6
    out = read_xray(_encode_kw(img, "PNG", exif=exif))
    assert out.shape == (40, 20) and out[0].min() == 255 and out[-1].max() == 0


def _encode_kw(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_formats_outside_the_documented_ones_are_not_parsed(monkeypatch) -> None:
    """An upload is only parsed as PNG, JPEG, TIFF, BMP, GIF, WEBP or DICOM: never handed to Ghostscript (EPS) or
    to the many rarely used PIL decoders."""
    from PIL import EpsImagePlugin

    called = []

    def ghostscript(*args, **kwargs):
        called.append(args)
        raise OSError("Ghostscript ran")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\nshowpage\n%%EOF\n"
    with pytest.raises(ImageLoadError, match="not an image"):
        read_xray(eps, name="x.eps")
    assert not called
    ppm = b"P5 8 8 255\n" + bytes(64)
    with pytest.raises(ImageLoadError, match="not an image"):
        read_xray(ppm, name="x.ppm")
    for fmt in ("PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP"):
        assert read_xray(_encode(Image.new("L", (8, 8), 90), fmt), name=f"x.{fmt}").shape == (8, 8)


def test_a_float_tiff_without_finite_pixels_names_the_file() -> None:
    data = _encode(Image.fromarray(np.full((8, 8), np.nan, np.float32), "F"), "TIFF")
    with pytest.raises(ImageLoadError, match="no finite pixel values") as err:
        read_xray(data, name="nan.tif")
    assert _one_line(err).startswith("nan.tif: ")


# ---- imageio: DICOM --------------------------------------------------------------------------------------------


def test_dicom_needing_a_missing_decoder_is_one_line() -> None:
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    def jpegls(ds):
        ds.file_meta.TransferSyntaxUID = JPEGLSLossless
        ds.PixelData = encapsulate([b"\xff\xd8" + bytes(60)])

    with pytest.raises(ImageLoadError, match="cannot decode DICOM pixel data") as err:
        read_xray(_redicom(_dicom(_PX), jpegls), name="ls.dcm")
    assert _one_line(err).startswith("ls.dcm: ") and "1.2.840.10008.1.2.4.80" in str(err.value)


def test_dicom_ybr_full_is_converted_to_rgb_once() -> None:
    from pydicom.pixels import convert_color_space

    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 200

    def ybr(ds):
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.Rows, ds.Columns = 8, 8, 7, 8, 8
        ds.PixelData = convert_color_space(rgb, "RGB", "YBR_FULL").tobytes()

    out = read_xray(_redicom(_dicom(_PX), ybr), name="ybr.dcm")
    assert abs(int(out.mean()) - round(200 * 0.299)) <= 2  # luma of the red it encodes, not of a re-conversion


def test_dicom_excess_pixel_data_is_not_decoded() -> None:
    """Pixel data far longer than Rows x Columns: one frame is decoded, not every 'excess frame' in the data."""
    extra = np.tile(_PX, (1000, 1))  # 1000 frames' worth

    def longer(ds):
        ds.PixelData = extra.astype(np.uint16).tobytes()

    out = read_xray(_redicom(_dicom(_PX), longer), name="long.dcm")
    assert np.array_equal(out, read_xray(_dicom(_PX), name="a.dcm"))


def test_a_dicom_jpeg_frame_above_the_pixel_limit_is_refused_before_decoding(monkeypatch) -> None:
    """Rows x Columns say 8 x 8, the embedded JPEG says 400 x 400: its decoder would allocate the latter."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    monkeypatch.setattr(imageio, "MAX_PIXELS", 100 * 100)

    def jpeg(ds):
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.Rows, ds.Columns = 8, 8, 7, 8, 8
        ds.PixelData = encapsulate([_encode(Image.new("L", (400, 400), 128), "JPEG")])

    from PIL import ImageFile

    decoded, load = [], ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(self.size) or load(self))
    with pytest.raises(ImageLoadError, match="pixel limit") as err:
        read_xray(_redicom(_dicom(np.zeros((8, 8), np.uint16)), jpeg), name="j.dcm")
    assert _one_line(err).startswith("j.dcm: ") and "400x400" in str(err.value)
    assert not decoded


def _deflated(data: bytes) -> bytes:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    return _redicom(data, lambda ds: setattr(ds.file_meta, "TransferSyntaxUID", DeflatedExplicitVRLittleEndian))


def test_a_deflated_dicom_still_reads() -> None:
    assert np.array_equal(read_xray(_deflated(_dicom(_PX)), name="d.dcm"), read_xray(_dicom(_PX), name="a.dcm"))


def test_a_deflated_dicom_bomb_is_refused_before_inflating(monkeypatch) -> None:
    """pydicom inflates a deflated data set whole: 64 MiB of zeros is a 64 KiB file (and 256 MiB would be 256 KiB)."""
    monkeypatch.setattr(imageio, "MAX_FILE_BYTES", 4 * 2**20)

    def huge(ds):
        ds.PixelData = bytes(64 * 2**20)

    bomb = _deflated(_redicom(_dicom(_PX), huge))
    assert len(bomb) < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(ImageLoadError, match="inflate") as err:
            read_xray(bomb, name="bomb.dcm")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert _one_line(err).startswith("bomb.dcm: ")
    assert peak < 16 * 2**20, f"{peak / 2**20:.0f} MiB allocated"


# ---- checkpoints ---------------------------------------------------------------------------------------------


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.bn = nn.BatchNorm1d(2)


def _build(name: str) -> nn.Module:
    if name != "net":
        raise KeyError(f"unknown model {name!r}")
    return _Net()


def _ckpt(path, tensors=None):
    return save_checkpoint(path, tensors if tensors is not None else _Net().state_dict(), {"kind": "k", "model": "net"})


@pytest.mark.parametrize("text", [b"\xff\xfe\x00 not utf-8 \x80", b"[" * 100_000])
def test_a_binary_or_absurdly_nested_config_is_one_clear_error(tmp_path, text) -> None:
    d = _ckpt(tmp_path / "c")
    (d / "config.json").write_bytes(text)
    with pytest.raises(CheckpointError, match="config.json: not valid JSON") as err:
        read_config(d)
    _one_line(err)


@pytest.mark.parametrize(
    "key,value",
    [
        ("lin.weight", torch.ones(2, 3, dtype=torch.int32)),
        ("lin.weight", torch.ones(2, 3, dtype=torch.bool)),
        ("lin.weight", torch.ones(2, 3, dtype=torch.complex64)),
        ("bn.num_batches_tracked", torch.tensor(3.7)),
    ],
)
def test_a_tensor_of_the_wrong_kind_of_dtype_does_not_fit(tmp_path, key, value) -> None:
    sd = _Net().state_dict()
    sd[key] = value
    d = _ckpt(tmp_path / "c", sd)
    with pytest.raises(CheckpointError, match=f"does not fit _Net: 1 dtype mismatch.*{key}") as err:
        load_model(d, "k", _build, what="a net")
    _one_line(err)


def test_half_precision_weights_still_fit(tmp_path) -> None:
    d = save_checkpoint(tmp_path / "c", _Net().state_dict(), {"kind": "k", "model": "net"}, dtype=torch.float16)
    model, _ = load_model(d, "k", _build, what="a net")
    assert model.lin.weight.dtype == torch.float32


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + os.environ.get("R2C_EVIL_MARK", "/nonexistent/x"),))


def test_pickle_files_are_never_unpickled(tmp_path, monkeypatch) -> None:
    mark = tmp_path / "unpickled"
    monkeypatch.setenv("R2C_EVIL_MARK", str(mark))
    pt = tmp_path / "model.pt"
    torch.save({"w": _Evil()}, pt)
    with pytest.raises(CheckpointError, match="model.pt: is a file, not a checkpoint folder") as err:
        load_model(pt, "k", _build, what="a net")
    _one_line(err)
    d = _ckpt(tmp_path / "c")
    shutil.copyfile(pt, d / "model.safetensors")  # a pickle under the safetensors name
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        load_checkpoint(d)
    assert not mark.exists()
