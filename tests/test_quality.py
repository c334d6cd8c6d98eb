"""Restoration benchmark: the degradation suite, the measures, the classical methods, method names, and the
benchmark itself checked against independent computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage import exposure
from skimage.metrics import structural_similarity

from r2c_core import classical
from r2c_core.errors import R2CError
from r2c_core.inference import Restorer, export_generator, from_working_gray, roundtrip, to_working_gray
from r2c_core.methods import available_methods, load_restorer, parse_method
from r2c_core.models import build_generator
from r2c_core.quality import bench, measures, report
from r2c_core.quality import degrade as D
from r2c_core.training import restval

pytestmark = pytest.mark.usefixtures("one_thread")


def _xray_like(size: int = 256, seed: int = 0) -> np.ndarray:
    """A smooth chest-like image: bright body, two darker lungs, ribs, a little texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = 170 - 60 * ((xx - 0.5) ** 2 + (yy - 0.55) ** 2)
    lungs = ((((xx - 0.32) / 0.14) ** 2 + ((yy - 0.5) / 0.28) ** 2) < 1) | ((((xx - 0.68) / 0.14) ** 2 + ((yy - 0.5) / 0.28) ** 2) < 1)
    img = body - 80 * lungs + 12 * np.sin(yy * 60) * lungs + gaussian_filter(rng.normal(0, 6, (size, size)), 2)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _lung_mask(size: int = 256) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    return ((((xx - 0.32) / 0.14) ** 2 + ((yy - 0.5) / 0.28) ** 2) < 1) | ((((xx - 0.68) / 0.14) ** 2 + ((yy - 0.5) / 0.28) ** 2) < 1)


# -- degradation suite -------------------------------------------------------------------------------------------

def test_degradations_are_seeded_per_image_and_independent_of_call_history():
    g = _xray_like()
    first = D.apply(g, "mix", 3, seed=3, image_id="img-7")
    for d, s in reversed(D.suite()):  # other images and degradations in between, and the global RNG stirred
        D.apply(_xray_like(64, 1), d, s, seed=3, image_id="other")
    np.random.seed(123)
    assert np.array_equal(D.apply(g, "mix", 3, seed=3, image_id="img-7"), first)
    for d, s in D.suite():
        a = D.apply(g, d, s, seed=3, image_id="img-7")
        assert a.dtype == np.uint8 and a.shape == g.shape
        assert not np.array_equal(a, g), (d, s)
        assert np.array_equal(a, D.apply(g, d, s, seed=3, image_id="img-7"))
    noisy = [d for d in D.DEGRADATIONS if d in ("gauss", "poisson", "mix")]
    for d in noisy:  # another seed or another image id draws other noise
        assert not np.array_equal(D.apply(g, d, 2, 3, "img-7"), D.apply(g, d, 2, 4, "img-7"))
        assert not np.array_equal(D.apply(g, d, 2, 3, "img-7"), D.apply(g, d, 2, 3, "img-8"))


def test_severity_orders_the_damage():
    g = _xray_like()
    for d in D.DEGRADATIONS:
        psnr = [measures.full_reference(D.apply(g, d, s, 0, "x"), g)["psnr"] for s in D.SEVERITIES]
        assert psnr[0] > psnr[1] > psnr[2], (d, psnr)


def test_degradations_match_their_definitions():
    g = _xray_like()
    assert np.array_equal(D.apply(g, "blur", 2), np.clip(np.round(gaussian_filter(g.astype(float), 1.5)), 0, 255).astype(np.uint8))
    rng = np.random.default_rng([0, __import__("zlib").crc32(b"a"), D.DEGRADATIONS.index("gauss"), 3])
    want = np.clip(np.round(g + rng.normal(0, 16.0, g.shape)), 0, 255).astype(np.uint8)
    assert np.array_equal(D.apply(g, "gauss", 3, 0, "a"), want)
    under = D.apply(g, "under", 1)
    assert under.mean() < g.mean() and under.max() <= round(0.85 * 255)
    over = D.apply(g, "over", 3)
    assert over.mean() > g.mean() and over.min() >= round(0.45 * 255)


def test_degradation_errors():
    g = _xray_like(32)
    with pytest.raises(R2CError, match="unknown degradation"):
        D.apply(g, "fog", 1)
    with pytest.raises(R2CError, match="severity"):
        D.apply(g, "blur", 4)
    with pytest.raises(R2CError, match="8-bit gray"):
        D.apply(g.astype(np.uint16), "blur", 1)
    with pytest.raises(R2CError, match="unknown degradation"):
        D.suite(["blur", "fog"])


def test_restval_degradation_unchanged():
    """Validation during training uses the suite's primitives and still gives the numbers of earlier runs."""
    u8 = np.stack([_xray_like(64, s) for s in range(3)])
    rng = np.random.default_rng(11)
    old = np.stack([np.clip(np.round(gaussian_filter(im.astype(np.float64), 1.5) + rng.normal(0.0, 8.0, im.shape)), 0, 255).astype(np.uint8)
                    for im in u8])
    assert np.array_equal(restval.degrade(u8, 11), old)


# -- measures ---------------------------------------------------------------------------------------------------

def test_full_reference_against_independent_formulas():
    g = _xray_like()
    d = D.apply(g, "gauss", 2, 0, "z")
    fr = measures.full_reference(d, g)
    mse = np.mean((d.astype(np.float64) - g) ** 2)
    assert fr["psnr"] == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=1e-9)
    assert fr["ssim"] == pytest.approx(structural_similarity(g, d, data_range=255), abs=1e-12)
    assert 0 < fr["ms_ssim"] < 1 and fr["gmsd"] > 0
    same = measures.full_reference(g, g)
    assert same["psnr"] == measures.PSNR_CAP and same["ssim"] == pytest.approx(1.0) and same["gmsd"] == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(measures.full_reference(g[:100, :100], g[:100, :100])["ms_ssim"])  # too small for 5 scales
    with pytest.raises(R2CError, match="differ in size"):
        measures.full_reference(g, g[:100])


def test_no_reference_measures_respond_to_blur_and_noise():
    g = _xray_like()
    m = _lung_mask()
    clean = measures.no_reference(g, m)
    blurred = measures.no_reference(D.apply(g, "blur", 3), m)
    noisy = measures.no_reference(D.apply(g, "gauss", 3, 0, "n"), m)
    assert blurred["blur"] > clean["blur"]
    assert noisy["noise"] > clean["noise"] + 5
    assert all(math.isfinite(v) for v in clean.values())
    from skimage import data

    cam = data.camera()[128:384, 128:384]  # PIQE and BRISQUE model natural-image statistics
    cam_clean, cam_noisy = measures.no_reference(cam), measures.no_reference(D.apply(cam, "gauss", 3, 0, "c"))
    assert cam_noisy["piqe"] > cam_clean["piqe"] and cam_noisy["brisque"] > cam_clean["brisque"]
    assert math.isnan(measures.no_reference(g)["cnr"])


def test_lung_cnr_and_eme_by_construction():
    im = np.full((64, 64), 150, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    im[mask] = 50
    im[16:48:2, 16:48] = 60  # lung: half 50, half 60 -> mean 55, var 25; the ring around it: constant 150
    assert measures.lung_cnr(im, mask) == pytest.approx(95 / math.sqrt(25 / 2))
    # every 8x8 block inside holds 50 and 60: EME = 20 log10(61 / 51)
    assert measures.lung_eme(im, mask) == pytest.approx(20 * math.log10(61 / 51))
    assert math.isnan(measures.lung_eme(im, np.zeros_like(mask)))
    assert measures.dice(mask, mask) == 1.0 and measures.dice(mask, ~mask) == 0.0


# -- classical methods ------------------------------------------------------------------------------------------

def test_classical_methods_are_the_documented_library_calls():
    g = _xray_like()
    want = np.clip(np.round(exposure.equalize_adapthist(g, kernel_size=32, clip_limit=0.01, nbins=256) * 255), 0, 255).astype(np.uint8)
    assert np.array_equal(classical.enhance(g, "clahe"), want)
    assert np.array_equal(classical.enhance(g, "histeq"), np.clip(np.round(exposure.equalize_hist(g, nbins=256) * 255), 0, 255).astype(np.uint8))
    dark = (g // 3).astype(np.uint8)
    assert classical.auto_gamma_exponent(dark) < 1 < classical.auto_gamma_exponent(255 - dark)
    assert abs(classical.enhance(dark, "gamma").mean() - 127.5) < abs(dark.mean() - 127.5)
    noisy = D.apply(g, "gauss", 3, 0, "q")
    assert measures.full_reference(classical.enhance(noisy, "nlm"), g)["psnr"] > measures.full_reference(noisy, g)["psnr"] + 3
    blurred = D.apply(g, "blur", 2)
    assert measures.no_reference(classical.enhance(blurred, "unsharp"))["blur"] < measures.no_reference(blurred)["blur"]
    with pytest.raises(R2CError, match="unknown classical method"):
        classical.enhance(g, "magic")


def test_classical_restorer_uses_the_generators_pipeline():
    square = _xray_like(256)  # at the working size the pipeline is the method itself
    assert np.array_equal(classical.ClassicalRestorer("clahe").restore(square).image, classical.enhance(square, "clahe"))
    g = _xray_like(300)[:, :240]
    for name in classical.NAMES:
        r = classical.ClassicalRestorer(name).restore(g)
        assert r.image.shape == g.shape and r.image.dtype == np.uint8
        assert np.array_equal(r.image, from_working_gray(classical.enhance(to_working_gray(g), name), g.shape))
        assert np.isnan(r.probs).all()
    zero = classical.ClassicalRestorer("clahe").restore(g, passes=0).image
    assert np.abs(zero.astype(int) - roundtrip(g)).max() <= 1  # the round trip alone (rounded at 256)


def test_classical_restorer_borrows_a_classifier(tmp_path):
    torch.manual_seed(0)
    export_generator(build_generator("op-q1"), "op-q1", tmp_path / "r2c-op-q1")
    clf = Restorer.from_dir(tmp_path / "r2c-op-q1", device="cpu")
    g = _xray_like()
    r = classical.ClassicalRestorer("clahe", classifier=clf).restore(g)
    assert np.allclose(r.probs, clf.classify([r.image])[0]) and r.probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_method_names_and_loading(tmp_path):
    assert parse_method("clahe") == ("clahe", 1)
    assert parse_method("op-q3-x3") == ("op-q3", 3)
    with pytest.raises(R2CError, match="classical method"):
        parse_method("sharpen")
    torch.manual_seed(0)
    export_generator(build_generator("op-q1"), "op-q1", tmp_path / "r2c-op-q1")
    assert available_methods(tmp_path) == ["original", "op-q1-x3"]
    assert available_methods(tmp_path, classical_methods=True) == ["original", "op-q1-x3", *classical.NAMES]
    assert isinstance(load_restorer("nlm", tmp_path), classical.ClassicalRestorer)
    with pytest.raises(R2CError, match="r2c-op-q5"):
        load_restorer("op-q5", tmp_path)


# -- the benchmark ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """Six generated X-ray-like PNGs (three per quality domain) as manifest rows, and a weights folder with an
    untrained op-q1 generator working at 64 px."""
    root = tmp_path_factory.mktemp("bench")
    rows = []
    for i in range(6):
        dom = "B" if i % 2 == 0 else "A"
        img = _xray_like(200 + 20 * i, seed=i)
        if dom == "A":
            img = D.apply(img, "blur", 2)
        p = root / f"img{i}.png"
        Image.fromarray(img).save(p)
        rows.append({"id": f"img{i}", "source": "gen", "domain": dom, "path": str(p)})
    torch.manual_seed(0)  # working at 64 px keeps the test fast; the benchmark still scores at 256
    export_generator(build_generator("op-q1"), "op-q1", root / "w" / "r2c-op-q1", extra={"working_size": 64})
    return pd.DataFrame(rows), root / "w"


def test_bench_agrees_with_an_independent_computation(tiny_set, tmp_path):
    rows, weights = tiny_set
    cfg = bench.BenchConfig(split="test", methods=("identity", "clahe", "op-q1-x1", "op-q1-x2"), limit=2, limit_real=1,
                            degradations=("blur", "gauss"), severities=(1, 3), classifier="op-q1", weights_root=str(weights), seed=5)
    result = bench.run_bench(rows, cfg)
    fr, nr = result["full_reference"], result["no_reference"]
    assert len(fr) == 2 * 2 * 2 * 4 and set(fr["method"]) == set(cfg.methods)
    assert (fr.loc[fr["method"] == "identity", ["psnr_gain", "ssim_gain", "gmsd_gain"]] == 0).all().all()
    # identity's PSNR on the degraded set, and CLAHE's SSIM, recomputed from the image files alone
    restorer = Restorer.from_dir(weights / "r2c-op-q1", device="cpu")
    for image_id in fr["id"].unique():
        clean = to_working_gray(np.array(Image.open(rows.set_index("id").loc[image_id, "path"])))
        for d, s in (("blur", 1), ("gauss", 3)):
            deg = D.apply(clean, d, s, 5, image_id)
            row = fr[(fr["id"] == image_id) & (fr["degradation"] == d) & (fr["severity"] == s)].set_index("method")
            mse = np.mean((deg.astype(float) - clean) ** 2)
            assert row.loc["identity", "psnr"] == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=1e-9)
            assert row.loc["clahe", "ssim"] == pytest.approx(structural_similarity(clean, classical.enhance(deg, "clahe"), data_range=255), abs=1e-12)
            two = restorer.restore(deg, passes=2)
            assert row.loc["op-q1-x1", "psnr"] == pytest.approx(measures.full_reference(two.passes_images[0], clean)["psnr"], abs=0.01)  # batched vs one: rounding
            assert row.loc["op-q1-x2", "psnr"] == pytest.approx(measures.full_reference(two.image, clean)["psnr"], abs=0.01)
    assert set(nr["domain"]) == {"A", "B"} and len(nr) == 2 * 4
    ident = nr[nr["method"] == "identity"]
    assert (ident["keep_ssim"] == 1.0).all() and (ident["p_covid"] == ident["p_covid_original"]).all()
    summary = result["summary"]
    assert summary["full_reference_overall"]["identity"]["psnr_gain"] == 0
    assert summary["full_reference_overall"]["clahe"]["psnr"] == pytest.approx(fr.loc[fr["method"] == "clahe", "psnr"].mean())
    paths = report.write(result, tmp_path / "out")
    js = json.loads(paths["json"].read_text())
    assert js["config"]["methods"] == list(cfg.methods) and "no_reference" in js["summary"]
    table = paths["table"].read_text()
    assert "| clahe |" in table and "| op-q1-x2 | B |" in table
    assert paths["figure"].stat().st_size > 10_000


def test_bench_refuses_original_and_unknown_methods(tiny_set):
    rows, weights = tiny_set
    with pytest.raises(R2CError, match="identity"):
        bench.run_bench(rows, bench.BenchConfig(methods=("original",), weights_root=str(weights)))
    with pytest.raises(R2CError, match="r2c-op-q5"):
        bench.run_bench(rows, bench.BenchConfig(methods=("identity", "op-q5-x3"), weights_root=str(weights)))


def test_restoration_bench_cli_quick(cxr_dir, tmp_path, capsys):
    from r2c_core.cli import main

    out = tmp_path / "rb"
    code = main(["restoration-bench", "--quick", "--methods", "identity,nlm,clahe", "--degradations", "gauss,under",
                 "--classifier", "", "--out", str(out)])
    assert code == 0
    js = json.loads((out / "bench.json").read_text())
    assert js["config"]["n_degraded_images"] == 2 and js["config"]["quick"] is True
    overall = js["summary"]["full_reference_overall"]
    assert overall["identity"]["psnr_gain"] == 0 and overall["nlm"]["psnr_gain"] > 0  # denoising helps on noise
    assert "| clahe |" in capsys.readouterr().out
    assert (out / "no_reference.csv").is_file() and (out / "figure.html").is_file()
    assert js["summary"]["no_reference"]["identity"]["A"]["flip"] is None  # no classifier: no flips counted
