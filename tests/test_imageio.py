"""Image reading: every supported kind of input, and a clear ImageLoadError for every bad one."""

import io

import numpy as np
import pytest
from PIL import Image

from r2c_core import imageio
from r2c_core.errors import ImageLoadError
from r2c_core.imageio import png_bytes, read_xray, to_gray_uint8, window_to_uint8


def _png(arr, mode=None):
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def _encode(img, fmt="PNG"):
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _dicom(pixels, photometric="MONOCHROME2", frames=1, window=None):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_8bit_png_roundtrip(tmp_path):
    arr = (np.arange(64 * 48) % 256).astype(np.uint8).reshape(48, 64)
    p = tmp_path / "x.png"
    p.write_bytes(_png(arr))
    out = read_xray(p)
    assert out.dtype == np.uint8 and out.shape == (48, 64)
    assert np.array_equal(out, arr)


def test_rgb_uses_itu601_luma():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    out = read_xray(_encode(Image.fromarray(rgb, "RGB")))
    assert int(out[0, 0]) == round(200 * 0.299)


def test_rgba_composited_on_black():
    rgba = np.full((4, 4, 4), 255, np.uint8)
    rgba[..., 3] = 0
    out = read_xray(_encode(Image.fromarray(rgba, "RGBA")))
    assert out.max() == 0


def test_cmyk_jpeg_is_read():
    img = Image.new("CMYK", (16, 16), (0, 0, 0, 0))
    out = read_xray(_encode(img, "JPEG"))
    assert out.shape == (16, 16) and out.min() > 200  # no ink = white


def test_16bit_is_percentile_windowed():
    arr = np.linspace(1000, 3000, 100 * 100).reshape(100, 100).astype(np.uint16)
    arr[0, 0] = 65535  # one saturated pixel must not squash the contrast
    out = read_xray(_encode(Image.fromarray(arr)))  # uint16 -> PIL mode I;16, saved as a 16-bit PNG
    assert out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    assert 100 < int(out[50, 50]) < 155


def test_window_flat_image():
    assert window_to_uint8(np.full((3, 3), 7.0)).max() == 0


def test_to_gray_uint8_accepts_arrays():
    assert to_gray_uint8(np.zeros((5, 5, 1), np.uint8)).shape == (5, 5)
    assert to_gray_uint8(np.ones((5, 5), np.float32)).dtype == np.uint8
    with pytest.raises(ImageLoadError):
        to_gray_uint8(np.zeros((2, 3, 4, 5)))


def test_dicom_monochrome2_and_monochrome1():
    px = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))
    a = read_xray(_dicom(px), name="a.dcm")
    b = read_xray(_dicom(px, photometric="MONOCHROME1"), name="b.dcm")
    assert a.shape == (8, 64)
    assert a[0, -1] > a[0, 0]
    assert np.array_equal(b, 255 - a)


def test_dicom_with_window():
    px = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))
    out = read_xray(_dicom(px, window=(2048, 1024)))
    assert out[0, 0] == 0 and out[0, -1] == 255


def test_multiframe_dicom_refused():
    px = np.zeros((3, 8, 8), np.uint16)
    with pytest.raises(ImageLoadError, match="multi-frame"):
        read_xray(_dicom(px, frames=3))


@pytest.mark.parametrize(
    "data,match",
    [
        (b"", "empty"),
        (b"this is not an image at all", "not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt|not an image"),
    ],
)
def test_bad_bytes(data, match):
    with pytest.raises(ImageLoadError, match=match):
        read_xray(data, name="upload.png")


def test_truncated_png():
    data = _png(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    with pytest.raises(ImageLoadError, match="corrupt|truncated"):
        read_xray(data[: len(data) // 2])


def test_decompression_bomb(monkeypatch):
    monkeypatch.setattr(imageio, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageLoadError, match="pixel limit"):
        read_xray(_png(np.zeros((200, 200), np.uint8)))


def test_real_bomb_header_is_refused_without_decoding():
    # a 1-bit 40000x40000 PNG compresses to a few KB but would be 1.6 G pixels
    img = Image.new("1", (40000, 40000))
    with pytest.raises(ImageLoadError, match="pixel limit|decompression bomb"):
        read_xray(_encode(img))


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageLoadError, match="not found"):
        read_xray(tmp_path / "nope.png")
    with pytest.raises(ImageLoadError, match="directory"):
        read_xray(tmp_path)


def test_multipage_tiff_refused():
    buf = io.BytesIO()
    frames = [Image.new("L", (8, 8), v) for v in (0, 128)]
    frames[0].save(buf, format="TIFF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageLoadError, match="multi-page"):
        read_xray(buf.getvalue())


def test_png_bytes_have_no_metadata():
    data = png_bytes(np.zeros((4, 4), np.uint8))
    assert b"tEXt" not in data and b"tIME" not in data and b"iTXt" not in data
    assert np.array_equal(read_xray(data), np.zeros((4, 4), np.uint8))


def test_reads_real_xray(cxr_dir, cxr_manifest):
    row = cxr_manifest.iloc[0]
    img = read_xray(cxr_dir / row["file"])
    assert img.shape == (row["height"], row["width"])


def _dicom_bad_window():
    """A DICOM whose WindowCenter (VR DS) is not a number: the header bytes edited after encoding."""
    px = np.tile(np.arange(0, 4096, 64, dtype=np.uint16), (8, 1))
    good = _dicom(px, window=(2048, 1024))
    assert good.count(b"2048") == 1
    return good.replace(b"2048", b"ab;c")


def test_dicom_with_a_non_numeric_window_center_is_one_clear_line(recwarn):
    with pytest.raises(ImageLoadError) as err:
        read_xray(_dicom_bad_window(), name="bad.dcm")
    msg = str(err.value)
    assert msg.startswith("bad.dcm: malformed DICOM header") and "\n" not in msg and "/" not in msg.split(":", 1)[1]
    assert not [w for w in recwarn if "pydicom" in str(w.filename) or "DS" in str(w.message)]


def test_cli_bad_dicom_prints_one_line_and_no_warnings(tmp_path):
    import subprocess
    import sys

    bad = tmp_path / "bad.dcm"
    bad.write_bytes(_dicom_bad_window())
    res = subprocess.run([sys.executable, "-m", "r2c_core", "restore", "--weights", "weights/r2c-op-q1", "--input", str(bad),
                          "--out", str(tmp_path / "out"), "--device", "cpu"], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "malformed DICOM header" in lines[0], res.stderr
