"""HQG-Net: parameter counts of the public code's topology, shapes, each loss term on constructed inputs (against
independent formulas), the composite losses, and the reference-image rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from r2c_core import hqg_losses as L
from r2c_core.models import hqg as H

# counted on the public code's networks at 256 px (docs/HQGNET-PLAN.md)
PARAMS = {"generator": 36_518_659, "encoder": 23_508_032, "unused_shortcuts": 180_224, "style": 20_916_928,
          "discriminator": 20_852_290, "ae_decoder": 18_478_403}


def test_parameter_counts_match_the_public_code() -> None:
    cfg = H.HQGConfig(img_size=256)
    g, ae, d = H.HQGGenerator(cfg), H.AutoEncoder(cfg), H.HQGDiscriminator(cfg)
    s = H.StyleEncoder(cfg, ae)
    assert H.count_parameters(g) == PARAMS["generator"]
    assert H.count_parameters(g.encoder) == PARAMS["encoder"]
    assert sum(H.count_parameters(u.proj) for u in g.ups if u.proj is not None) == PARAMS["unused_shortcuts"]
    assert H.count_parameters(s) == PARAMS["style"]
    assert H.count_parameters(d) == PARAMS["discriminator"]
    assert H.count_parameters(ae) - H.count_parameters(ae.encoder) == PARAMS["ae_decoder"]
    assert s.encoder is ae.encoder  # the style encoder is the pretrained autoencoder's encoder


def test_shapes_range_and_the_unused_shortcut() -> None:
    torch.manual_seed(0)
    cfg = H.HQGConfig(img_size=64)
    g, s, d = H.HQGGenerator(cfg), H.StyleEncoder(cfg), H.HQGDiscriminator(cfg)
    x = torch.rand(2, 3, 64, 64)
    y = torch.tensor([H.LOW_QUALITY, H.HIGH_QUALITY])
    code = s(x, y)
    out = g(x, code)
    assert code.shape == (2, 64) and out.shape == (2, 3, 64, 64) and d(x, y).shape == (2,)
    assert 0 < float(out.detach().min()) and float(out.detach().max()) < 1
    # each domain has its own head
    assert not torch.allclose(s(x[:1], torch.tensor([0])), s(x[:1], torch.tensor([1])))
    out.mean().backward()
    assert all(u.proj.weight.grad is None for u in g.ups if u.proj is not None)  # w_hpf=1: never used
    assert g.encoder.stem[0].weight.grad is not None
    g2 = H.HQGGenerator(H.HQGConfig(img_size=64, adain_shortcut=True))
    g2(x, code.detach()).mean().backward()
    assert all(u.proj.weight.grad is not None for u in g2.ups if u.proj is not None)
    ae = H.AutoEncoder(H.HQGConfig(img_size=128))
    assert ae(torch.rand(1, 3, 128, 128)).shape == (1, 3, 128, 128)
    gray = torch.rand(2, 1, 8, 8)
    assert torch.allclose(H.to_gray(H.to_rgb3(gray)), gray)


def test_r1_penalty_of_a_linear_critic() -> None:
    w = torch.randn(1, 3, 4, 4)
    x = torch.rand(5, 3, 4, 4, requires_grad=True)
    out = (x * w).flatten(1).sum(1)  # dD/dx = w for every image
    assert float(L.r1_penalty(out, x)) == pytest.approx(0.5 * float(w.pow(2).sum()), rel=1e-6)


def _structure_reference(a: np.ndarray, b: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """The structure term with scipy (zero-padded Gaussian filtering), no noise, one gray image."""
    g = np.exp(-((np.arange(window) - window // 2) ** 2) / (2 * sigma**2))
    k = np.outer(g, g) / np.outer(g, g).sum()
    f = lambda t: ndimage.convolve(t, k, mode="constant")  # noqa: E731
    mu_a, mu_b = f(a), f(b)
    va, vb = np.maximum(f(a * a) - mu_a**2, 0), np.maximum(f(b * b) - mu_b**2, 0)
    cov = f(a * b) - mu_a * mu_b
    c3 = 0.03**2 / 2
    return float(np.mean((cov + c3) / (np.sqrt(va) * np.sqrt(vb) + c3)))


def test_structure_term_against_an_independent_formula() -> None:
    rng = np.random.default_rng(0)
    a = ndimage.gaussian_filter(rng.random((40, 40)), 2)
    b = np.clip(a + 0.05 * rng.standard_normal((40, 40)), 0, 1)
    ta, tb = (torch.tensor(v, dtype=torch.float32)[None, None] for v in (a, b))
    got = float(L.structure_term(ta, tb, noise_std=0.0)[0])
    assert got == pytest.approx(_structure_reference(a, b), abs=2e-4)
    assert float(L.structure_loss(ta, ta, noise_std=0.0)) == pytest.approx(0.0, abs=1e-4)
    texture = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(1))
    assert float(L.structure_loss(texture, 1 - texture, noise_std=0.0)) > 1.5  # anti-correlated: term near -1
    # the same seeded noise gives the same value; the noise is added to both images alike
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert float(L.structure_loss(ta, tb, generator=g1)) == float(L.structure_loss(ta, tb, generator=g2))
    # flat images: the noise keeps it defined
    flat = torch.full((1, 1, 16, 16), 0.5)
    assert np.isfinite(float(L.structure_loss(flat, flat)))


def test_structure_term_is_float32_under_bf16_autocast() -> None:
    """In bfloat16 the local variances of a smooth X-ray are rounding noise (S came out negative): the term runs in
    float32 whatever autocast is on, value and gradient alike."""
    rng = np.random.default_rng(0)
    a = np.clip(ndimage.gaussian_filter(rng.random((64, 64)), 3) * 4 - 1.5, 0, 1)  # smooth, mid-grey
    ta = torch.tensor(a, dtype=torch.float32)[None, None]
    near = (ta + 0.01 * torch.randn(ta.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)

    def value_and_grad(autocast: bool) -> tuple[float, torch.Tensor]:
        x = near.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = L.structure_loss(x.to(torch.bfloat16) if autocast else x, ta, noise_std=0.0)
        out.backward()
        return float(out.detach()), x.grad

    v32, g32 = value_and_grad(False)
    v16, g16 = value_and_grad(True)
    assert v32 > 0 and v16 == pytest.approx(v32, abs=2e-3)  # the input itself rounded to bf16 once, nothing more
    assert float(F.cosine_similarity(g32.flatten(), g16.float().flatten(), dim=0)) > 0.95
    assert L.structure_term(ta.to(torch.bfloat16), ta).dtype == torch.float32


def test_autoencoder_pretraining_loss_on_constructed_inputs() -> None:
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert float(L.autoencoder_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    assert torch.allclose(L.ssim_map_box3(x, x), torch.ones_like(x), atol=1e-5)
    # constant images: the variances vanish and SSIM is the luminance term (2cd + C1) / (c^2 + d^2 + C1)
    c, d = 0.3, 0.7
    m = L.ssim_map_box3(torch.full((1, 1, 8, 8), c), torch.full((1, 1, 8, 8), d))
    expect = (2 * c * d + 0.01**2) / (c**2 + d**2 + 0.01**2)
    assert torch.allclose(m, torch.full_like(m, expect), atol=1e-5)
    loss = float(L.autoencoder_loss(torch.full((1, 1, 8, 8), c), torch.full((1, 1, 8, 8), d)))
    assert loss == pytest.approx((c - d) ** 2 + (1 - expect) / 2, rel=1e-4)
    # textures, against an independent SSIM: 3 x 3 box means with mirrored borders (scipy), C1 = 0.01^2, C2 = 0.03^2
    rng = np.random.default_rng(4)
    a = ndimage.gaussian_filter(rng.random((24, 24)), 1.0)
    b = np.clip(a + 0.1 * rng.standard_normal((24, 24)), 0, 1)
    box = lambda t: ndimage.uniform_filter(t, 3, mode="mirror")  # noqa: E731
    mu_a, mu_b = box(a), box(b)
    va, vb, cov = box(a * a) - mu_a**2, box(b * b) - mu_b**2, box(a * b) - mu_a * mu_b
    ref = ((2 * mu_a * mu_b + 1e-4) * (2 * cov + 9e-4)) / ((mu_a**2 + mu_b**2 + 1e-4) * (va + vb + 9e-4))
    ta, tb = (torch.tensor(v, dtype=torch.float32)[None, None] for v in (a, b))
    assert np.allclose(L.ssim_map_box3(ta, tb)[0, 0].numpy(), ref, atol=1e-4)
    expect_loss = ((a - b) ** 2).mean() + np.clip((1 - ref) / 2, 0, 1).mean()
    assert float(L.autoencoder_loss(ta, tb)) == pytest.approx(expect_loss, rel=1e-4)
    # and it is computed in float32 under bf16 autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert L.autoencoder_loss(ta.to(torch.bfloat16), tb).dtype == torch.float32


def test_luminance_term_properties() -> None:
    uniform = torch.full((1, 1, 64, 64), 0.4)
    assert float(L.luminance_loss(uniform, 32)) == pytest.approx(0.0, abs=1e-5)
    step = torch.full((1, 1, 64, 64), 0.2)
    step[..., 32:] = 0.8
    v = float(L.luminance_loss(step, 32))
    assert 0.15 < v <= 0.3 + 1e-6
    assert float(L.luminance_loss(step + 0.1, 32)) == pytest.approx(v, rel=1e-4)  # brightness shift: unchanged
    assert float(L.luminance_loss(0.5 + 2 * (step - 0.5), 32)) == pytest.approx(2 * v, rel=1e-4)  # contrast x2
    checker = ((torch.arange(64)[:, None] // 4 + torch.arange(64)[None, :] // 4) % 2).float()[None, None]
    assert float(L.luminance_loss(checker, 32)) == pytest.approx(0.0, abs=1e-6)  # finer than the patch: uniform
    with pytest.raises(ValueError):
        L.luminance_loss(uniform[..., :16, :16], 32)
    # the public code's range: (x + 1) / 2 halves every difference
    assert float(L.luminance_loss(step, 32, faithful_range=True)) == pytest.approx(v / 2, rel=1e-4)


def test_haar_bands_and_wavelet_term() -> None:
    x = torch.rand(2, 1, 16, 16)
    bands = L.haar_bands(x)
    assert sum(float(b.pow(2).sum()) for b in bands) == pytest.approx(float(x.pow(2).sum()), rel=1e-5)  # orthonormal
    assert all(float(b.abs().max()) < 1e-6 for b in L.haar_bands(torch.full((1, 1, 8, 8), 0.3))[1:])
    assert float(L.wavelet_loss(x, x + 0.2)) == pytest.approx(0.0, abs=1e-6)  # brightness free
    assert float(L.wavelet_loss(x, torch.zeros_like(x))) > 0.05
    assert float(L.bce_logits(torch.zeros(4), True)) == pytest.approx(np.log(2))


def test_composite_losses_weights_and_gradients() -> None:
    torch.manual_seed(0)
    cfg = H.HQGConfig(img_size=64)
    nets = L.HQGNets(g=H.HQGGenerator(cfg), s=H.StyleEncoder(cfg), d=H.HQGDiscriminator(cfg))
    x_low, x_high = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    y0, y1 = torch.tensor([0]), torch.tensor([1])
    w = L.HQGLossWeights()
    d_loss, d_terms = L.discriminator_loss(nets, x_low, y0, x_high, y1, w)
    assert float(d_loss.detach()) == pytest.approx(d_terms["d_real"] + d_terms["d_fake"] + w.reg * d_terms["r1"], rel=1e-5)
    d_loss.backward()
    assert nets.d.main[0].weight.grad is not None and nets.g.to_image.weight.grad is None
    nets.d.zero_grad()
    g_loss, t = L.generator_loss(nets, x_low, y0, x_high, y1, w, generator=torch.Generator().manual_seed(0))
    expect = t["g_adv"] + t["style"] + t["cycle"] + (0.5 * t["structure"] + 0.1 * t["luminance"]) / 2
    assert float(g_loss.detach()) == pytest.approx(expect, rel=1e-5) and t["wavelet"] == 0.0
    g_loss.backward()
    assert nets.g.to_image.weight.grad is not None and nets.s.heads[1].weight.grad is not None
    ww = L.HQGLossWeights(wavelet=0.3)
    g_loss2, t2 = L.generator_loss(nets, x_low, y0, x_high, y1, ww, generator=torch.Generator().manual_seed(0))
    assert t2["wavelet"] > 0 and float(g_loss2.detach()) == pytest.approx(float(g_loss.detach()) + 0.3 * t2["wavelet"], rel=1e-4)


class _Codes(nn.Module):
    """A stand-in style encoder: the code of an image is its first pixel row's first 2 values."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, :2]


def test_reference_rule_is_the_style_medoid_with_ties_to_the_smallest_id() -> None:
    def img(a: float, b: float) -> torch.Tensor:
        t = torch.zeros(3, 4, 4)
        t[0, 0, :2] = torch.tensor([a, b])
        return t

    cands = [("z9", img(0, 0)), ("b2", img(1, 1)), ("c3", img(2, 2)), ("a1", img(1, 1))]
    ref, code = H.style_medoid(_Codes(), cands, batch_size=3)
    assert ref == "a1" and code.tolist() == [1.0, 1.0]  # mean (1, 1): a1 and b2 tie, a1 sorts first
    assert H.style_medoid(_Codes(), list(reversed(cands)))[0] == "a1"  # order of the candidates does not matter
    with pytest.raises(ValueError):
        H.style_medoid(_Codes(), [])


def _tiny_data(size: int = 128, n: int = 4, val: bool = False):
    from r2c_core.training.hqg import HQGData
    from r2c_core.training.loader import DomainCache, UnpairedBatches
    from r2c_core.training.r2c_data import ValData

    g = torch.Generator().manual_seed(0)
    load = round(size * 286 / 256)
    a = DomainCache([f"a{i}" for i in range(n)], torch.randint(0, 256, (n, load, load), generator=g, dtype=torch.uint8),
                    torch.zeros(n, dtype=torch.long))
    b = DomainCache([f"b{i}" for i in range(n)], torch.randint(0, 256, (n, load, load), generator=g, dtype=torch.uint8),
                    torch.ones(n, dtype=torch.long))
    refs = [(f"b{i}", torch.rand(3, size, size, generator=g)) for i in range(3)]
    vd = None
    if val:  # 6 validation images, both domains and both classes
        vd = ValData(torch.randint(0, 256, (6, size, size), generator=g, dtype=torch.uint8), np.array([0, 1, 0, 1, 1, 0]),
                     [f"v{i}" for i in range(6)], ["A", "A", "A", "B", "B", "B"], ["s"] * 6)
    return HQGData(UnpairedBatches(a, b, size=size, batch_size=2, seed=0), refs, {"file": "synthetic"}, vd)


def test_tiny_training_run_exports_and_resumes_exactly(tmp_path) -> None:
    import csv as _csv

    from r2c_core.checkpoints import load_checkpoint
    from r2c_core.runio import load_optimizers
    from r2c_core.training.hqg import EXPORT_KIND, hqg_config_from_dict, train_hqg

    # few steps: every checkpoint of these ~78M-parameter networks is ~0.3 GB to write
    cfg = hqg_config_from_dict({"size": 128, "batch_size": 2, "epochs": 1, "ae_steps": 1, "threads": 2, "device": "cpu",
                                "cpu_amp": False, "reference_limit": 3, "checkpoint_minutes": 0})
    full = train_hqg(cfg, tmp_path / "full", data=_tiny_data(), progress=False)
    assert full["step"] == 3 and not full["stopped_early"]  # 1 autoencoder step + 1 epoch of 2 GAN steps
    rows = list(_csv.DictReader((tmp_path / "full" / "train_log.csv").open()))
    assert [r["phase"] for r in rows] == ["0", "1", "1"] and all(r["r1"] for r in rows[1:])
    assert [r["epoch"] for r in rows] == ["0", "0", "0"]  # GAN epochs, counted from the end of the pretraining
    tensors, config = load_checkpoint(tmp_path / "full" / "generator")
    assert config["kind"] == EXPORT_KIND and config["reference"]["id"] in {"b0", "b1", "b2"}
    assert tensors["reference_code"].shape == (64,)
    part = train_hqg(hqg_config_from_dict({**cfg.to_dict(), "max_steps": 2}), tmp_path / "part", data=_tiny_data(),
                     progress=False)
    assert part["stopped_early"] is False and part["step"] == 2
    resumed = train_hqg(cfg, tmp_path / "part", resume=tmp_path / "part", data=_tiny_data(), progress=False)
    assert resumed["step"] == 3
    a, _ = load_checkpoint(tmp_path / "full" / "state")
    b, state_cfg = load_checkpoint(tmp_path / "part" / "state")
    assert (state_cfg["gan_start"], state_cfg["total_steps"]) == (1, 3)  # what `campaign status` counts epochs from
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # past the pretraining the autoencoder's Adam is no longer written (the resume at step 2 went on without it)
    assert set(load_optimizers(tmp_path / "part" / "state", "cpu")) == {"opt_g", "opt_d", "opt_s"}


def test_hqg_config_refuses_unknown_keys_and_bad_sizes() -> None:
    from r2c_core.errors import R2CError
    from r2c_core.training.hqg import hqg_config_from_dict

    with pytest.raises(R2CError, match="unknown key"):
        hqg_config_from_dict({"learning_rate": 1})
    with pytest.raises(R2CError, match="multiple of 64"):
        hqg_config_from_dict({"size": 100})
    with pytest.raises(R2CError, match="at least 128"):
        hqg_config_from_dict({"size": 64, "ae_steps": 10})
    assert hqg_config_from_dict({"size": 64, "ae_steps": 0}).size == 64  # the GAN alone runs at 64 (fast tests)
    assert hqg_config_from_dict({"weights": {"wavelet": 0.2}}).weights.wavelet == 0.2


def _export_tiny_hqg(root, size: int = 128):
    from r2c_core.checkpoints import save_checkpoint

    torch.manual_seed(0)
    g = H.HQGGenerator(H.HQGConfig(img_size=size))
    tensors = {**{f"g.{k}": v for k, v in g.state_dict().items()}, "reference_code": torch.randn(64)}
    save_checkpoint(root / "hqg", tensors, {"kind": "hqg-generator", "model": "hqg", "working_size": size,
                                            "reference": {"id": "b0"}})
    return root


class _FixedClassifier:
    def classify(self, images, batch_size=8):
        return np.tile(np.array([0.25, 0.75], np.float32), (len(images), 1))


def test_hqg_restorer_and_method_integration(tmp_path) -> None:
    from r2c_core.errors import CheckpointError
    from r2c_core.hqg_inference import HQGRestorer
    from r2c_core.inference import roundtrip
    from r2c_core.methods import available_methods, load_restorer
    from r2c_core.study_renderer import R2CRenderer

    root = _export_tiny_hqg(tmp_path / "weights")
    rest = load_restorer("hqg", root, "cpu")
    assert isinstance(rest, HQGRestorer) and rest.size == 128
    img = (np.random.default_rng(0).random((90, 70)) * 255).astype(np.uint8)
    zero = rest.restore(img, passes=0)
    assert zero.image.shape == (90, 70) and int(np.abs(zero.image.astype(int) - roundtrip(img, 128).astype(int)).max()) <= 1
    two = rest.restore(img, passes=2)
    assert two.image.shape == (90, 70) and len(two.passes_images) == 2 and np.isnan(two.probs).all()
    assert not np.array_equal(two.passes_images[0], two.passes_images[1])  # the second pass enhances the first
    with_clf = load_restorer("hqg", root, "cpu", classifier=_FixedClassifier()).restore(img)
    assert with_clf.probs.tolist() == [0.25, 0.75]
    assert available_methods(root) == ["original", "hqg-x1"]
    out = R2CRenderer("restoration", weights_root=root, device="cpu", methods=["original", "hqg-x1"]).render(img, ["original", "hqg-x1"])
    assert set(out) == {"original", "hqg-x1"} and out["hqg-x1"].shape == img.shape and out["hqg-x1"].dtype == np.uint8
    (root / "hqg" / "config.json").write_text('{"kind": "r2c-generator"}')
    with pytest.raises(CheckpointError, match="not an HQG-Net export"):
        HQGRestorer.from_dir(root / "hqg")


def test_hqg_is_queued_after_the_r2c_recipes_of_the_cpu_campaign() -> None:
    from r2c_core.training import campaign
    from r2c_core.training.hqg import load_hqg_config

    plan = campaign.Plan.load(campaign.REPO_ROOT / "configs" / "campaign-cpu.json")
    names = [r.name for r in plan.recipes]
    i = names.index("hqg")
    hqg, blo = plan.recipes[i:i + 2]  # HQG-Net, then its bi-level variant started from it, after the R2C-GAN recipes the
    assert (hqg.name, hqg.kind, blo.name, blo.kind) == ("hqg", "hqg", "hqg-blo", "hqg")  # CPU issue asks for; only the
    assert all(r.kind != "hqg" for r in plan.recipes[:i]) and names[i + 2:] == ["cnn"]  # optional deep cnn after them
    assert {"op-q3", "cnn-compact", "op-q1", "op-q5", "lung-unet"} <= set(names[:i])
    cmd, how = campaign.command(plan, hqg)
    assert "train-hqg" in cmd and how in ("start", "resume")
    cfg = load_hqg_config(campaign.REPO_ROOT / hqg.config)
    assert cfg.size == 256 and cfg.ae_steps > 0 and cfg.cpu_amp and not cfg.bilevel
    cfg_blo = load_hqg_config(campaign.REPO_ROOT / blo.config)
    assert cfg_blo.bilevel and cfg_blo.size == cfg.size and cfg_blo.ae_steps == 0
    assert (campaign.REPO_ROOT / cfg_blo.init_from).resolve() == campaign.recipe_dir(plan, hqg).resolve()
