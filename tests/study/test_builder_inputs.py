"""The study builder against bad case images: every chosen case checked before anything is stored, images read
with the renderer's own reader (the r2c renderer: r2c_core.imageio.read_xray), a fallback reader that never
saturates 16-bit images, and rendering outside the database's write lock."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sqlalchemy import func, select

from study.assets import read_gray
from study.builder import StudySpec, build_study
from study.errors import StudyError
from study.models import Case, Study
from study.render import SyntheticRenderer


def _manifest(folder: Path, n: int = 4, *, rows: list[tuple[str, str]] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if rows is None:
        rows = []
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (40, 36), dtype=np.uint8)).save(folder / f"c{i}.png")
            rows.append((f"c{i}", f"c{i}.png"))
    labels = ["covid", "control"] * (len(rows) // 2 + 1)
    df = pd.DataFrame({"id": [r[0] for r in rows], "file": [r[1] for r in rows], "label": labels[:len(rows)],
                       "split": "test", "source": "x"})
    df.to_csv(folder / "MANIFEST.csv", index=False)
    return folder / "MANIFEST.csv"


def _n_studies(factory: Any) -> int:
    with factory.begin() as s:
        return int(s.scalar(select(func.count()).select_from(Study)) or 0)


# -- the fallback reader -------------------------------------------------------------------------------------


def test_read_gray_windows_16_bit_instead_of_saturating(tmp_path: Path) -> None:
    ramp = np.linspace(500, 3500, 64 * 32).reshape(32, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "a.png")
    out = read_gray(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert np.all(np.diff(out.astype(int), axis=1) >= 0)  # still a ramp, not a white field


def test_read_gray_composites_transparency_on_black(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, :4, 3] = 255  # left half opaque, right half fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    out = read_gray(tmp_path / "t.png")
    assert (out[:, :4] == 200).all() and (out[:, 4:] == 0).all()


def test_read_gray_refuses_bombs_multipage_and_garbage(tmp_path: Path) -> None:
    Image.new("L", (6000, 5000)).save(tmp_path / "big.png")  # 30 MP, a few KB on disk
    with pytest.raises(StudyError, match="pixel limit"):
        read_gray(tmp_path / "big.png")
    frames = [Image.new("L", (8, 8), v) for v in (0, 128)]
    frames[0].save(tmp_path / "two.tif", save_all=True, append_images=frames[1:])
    with pytest.raises(StudyError, match="2 frames"):
        read_gray(tmp_path / "two.tif")
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(StudyError, match="cannot read case image"):
        read_gray(tmp_path / "x.png")
    with pytest.raises(StudyError, match="not found"):
        read_gray(tmp_path / "missing.png")


# -- checks before the first commit --------------------------------------------------------------------------


def test_missing_or_unreadable_case_refused_before_the_study_exists(factory: Any, tmp_path: Path) -> None:
    m = _manifest(tmp_path / "d")
    (tmp_path / "d" / "c2.png").unlink()
    spec = StudySpec(name="s", manifest=m, n_cases=4)
    with pytest.raises(StudyError, match="case c2: image file not found"):
        build_study(factory, spec, SyntheticRenderer(working_size=16), assets=tmp_path / "a", show_bar=False)
    assert _n_studies(factory) == 0
    (tmp_path / "d" / "c2.png").write_bytes(b"not an image at all")
    with pytest.raises(StudyError, match="case c2: cannot read its image"):
        build_study(factory, spec, SyntheticRenderer(working_size=16), assets=tmp_path / "a", show_bar=False)
    assert _n_studies(factory) == 0
    Image.new("L", (40, 36), 7).save(tmp_path / "d" / "c2.png")  # fixed: the same spec now builds
    build_study(factory, spec, SyntheticRenderer(working_size=16), assets=tmp_path / "a", show_bar=False)
    assert _n_studies(factory) == 1


def test_two_ids_for_one_file_refused(factory: Any, tmp_path: Path) -> None:
    m = _manifest(tmp_path / "d")
    df = pd.read_csv(m)
    df.loc[3, "file"] = "./c0.png"
    df.to_csv(m, index=False)
    with pytest.raises(StudyError, match="same image file"):
        build_study(factory, StudySpec(name="s", manifest=m, n_cases=4), SyntheticRenderer(working_size=16),
                    assets=tmp_path / "a", show_bar=False)
    assert _n_studies(factory) == 0


class _ReadingRenderer(SyntheticRenderer):
    """A renderer with its own reader (as the r2c renderer reads with read_xray)."""

    def __init__(self) -> None:
        super().__init__(working_size=16)
        self.read: list[str] = []

    def read_image(self, path: Path) -> np.ndarray:
        self.read.append(path.name)
        return np.full((20, 10), 99, np.uint8)


def test_the_renderers_own_reader_is_used(factory: Any, tmp_path: Path) -> None:
    m = _manifest(tmp_path / "d")
    r = _ReadingRenderer()
    build_study(factory, StudySpec(name="s", manifest=m, n_cases=4), r, assets=tmp_path / "a", show_bar=False)
    # each case read once to check it before the study is stored, once to render it
    assert sorted(r.read) == sorted([f"c{i}.png" for i in range(4)] * 2)


def test_r2c_renderer_reads_with_read_xray(tmp_path: Path) -> None:
    from r2c_core.study_renderer import R2CRenderer

    ramp = np.linspace(500, 3500, 64 * 32).reshape(32, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "a.png")
    out = R2CRenderer.read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (32, 64) and out.max() > 200 and out.min() < 50


# -- rendering outside the write lock ------------------------------------------------------------------------


class _SlowRenderer(SyntheticRenderer):
    """Renders while another connection writes: that write must not wait for the build."""

    def __init__(self, factory: Any) -> None:
        super().__init__(working_size=16)
        self.factory = factory
        self.other_writes: list[bool] = []

    def render(self, image: np.ndarray, methods: list[str]) -> dict[str, np.ndarray]:
        done = threading.Event()

        def write() -> None:
            with self.factory.begin() as s:
                s.execute(select(func.count()).select_from(Case))  # BEGIN IMMEDIATE on SQLite: the write lock
            done.set()

        t = threading.Thread(target=write)
        t.start()
        t.join(timeout=5)
        self.other_writes.append(done.is_set())
        return super().render(image, methods)


def test_rendering_does_not_hold_the_write_lock(factory: Any, tmp_path: Path) -> None:
    m = _manifest(tmp_path / "d")
    r = _SlowRenderer(factory)
    build_study(factory, StudySpec(name="s", manifest=m, n_cases=4), r, assets=tmp_path / "a", show_bar=False)
    assert r.other_writes == [True] * 4
