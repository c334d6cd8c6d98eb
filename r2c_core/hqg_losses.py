"""HQG-Net's losses as its public code computes them (``models/rnwStar.py`` and ``models/utils.py`` at ``ffbba81``;
read, not copied), with the choices of ``docs/HQGNET-PLAN.md`` section 3 (documented in ``docs/MODELS.md``).

Per step, one low-quality image ``x_org`` (domain 0) and one high-quality reference ``x_ref`` (domain 1); the
training loop swaps the two roles with probability 0.2.

* Discriminator: BCE-with-logits; D(x_org, its domain) is real, D(G(x_org, s(x_ref)), the reference's domain) is
  fake; plus ``reg`` x the R1 penalty (:func:`r1_penalty`) on the real images.
* Generator and style encoder: adversarial (fake judged real) + ``style`` x L1(s(fake), s(x_ref)) + ``recon`` x
  L1(G(fake, s(x_org)), x_org) (the cycle back with the input's own style) + (``structure`` x S + ``luminance``
  x L) / 2, where S = 1 - the SSIM *structure* term between output and input (:func:`structure_loss`) and L the
  luminance-uniformity term (:func:`luminance_loss`, mean of two patch sizes); plus the optional Haar high-band
  L1 (:func:`wavelet_loss`, weight 0 by default: the paper's "wavelet" content term, absent from the code).
  With the code's weights (0.5, 0.1) S and L carry 0.25 and 0.05 effectively.
* Bi-level variant (HQG+BLO, absent from the public code): G's loss also carries ``task`` x the cross-entropy of
  a downstream COVID-19 classifier on the enhanced image (:func:`task_loss`, the upper level); the classifier itself
  is trained on the enhanced images by the training loop (the lower level).

Choices: images are in [0, 1] (the code maps (x + 1) / 2 on images already in [0, 1]; ``faithful_range=True``
does the same); the luminance patches are 32 and 64 px (48 and 96 do not divide 256); the SSIM noise comes from a
seeded generator and variances are clamped at 0 before the square root. S, L, the wavelet term and the style
autoencoder's loss are computed in float32 whatever autocast is on: in bfloat16 a local variance E[a^2] - E[a]^2
of an X-ray is mostly rounding noise (spacing ~0.002 near 0.25 against variances of 1e-4 to 1e-2), and S then
came out negative with gradients unrelated to the float32 ones (a review of 2026-12-01, before any HQG-Net run).

Style-autoencoder pretraining (:func:`autoencoder_loss`, the code's ``pre_train.py``): MSE + the mean of
clamp((1 - SSIM map) / 2, 0, 1), its SSIM on 3 x 3 box windows with reflection padding (:func:`ssim_map_box3`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class HQGLossWeights:
    """The public config's weights (``configs/rnw_star.yaml``) and the term settings."""

    reg: float = 1.0
    style: float = 1.0
    recon: float = 1.0
    structure: float = 0.5
    luminance: float = 0.1
    wavelet: float = 0.0
    luminance_patches: tuple[int, int] = (32, 64)
    structure_window: int = 11
    structure_sigma: float = 1.5
    structure_noise: float = 0.01
    #: map images with (x + 1) / 2 before S and L, as the public code does (it is then off by a factor of 2)
    faithful_range: bool = False
    #: the bi-level variant's upper level (HQG+BLO): weight of the downstream task's cross-entropy on the enhanced
    #: image in G's loss; 0 = plain HQG-Net (the public code)
    task: float = 0.0


def bce_logits(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """The vanilla GAN loss: BCE-with-logits against all ones (``real``) or all zeros."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def r1_penalty(d_out: torch.Tensor, x_in: torch.Tensor) -> torch.Tensor:
    """Zero-centred gradient penalty on real images: 0.5 * sum of squared d D / d x per image, batch mean.
    ``x_in`` must require grad and ``d_out`` come from it; the graph is kept (the penalty is trained)."""
    (grad,) = torch.autograd.grad(d_out.sum(), x_in, create_graph=True)
    return 0.5 * grad.pow(2).flatten(1).sum(1).mean()


def gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The normalised 2-D Gaussian window (1, 1, size, size)."""
    x = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()[None, None]


def _unit(x: torch.Tensor, faithful_range: bool) -> torch.Tensor:
    return (x + 1.0) / 2.0 if faithful_range else x


def _float32(fn):
    """Run a loss term in float32 (autocast off, tensor arguments cast): see the module doc."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        dev = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        cast = [a.float() if isinstance(a, torch.Tensor) and a.dtype in (torch.bfloat16, torch.float16) else a for a in args]
        with torch.autocast(dev, enabled=False):
            return fn(*cast, **kw)

    return wrapper


@_float32
def structure_term(a: torch.Tensor, b: torch.Tensor, *, window: int = 11, sigma: float = 1.5, noise_std: float = 0.01,
                   generator: torch.Generator | None = None, faithful_range: bool = False) -> torch.Tensor:
    """SSIM's structure term (sigma_ab + C3) / (sigma_a sigma_b + C3), C3 = (0.03)^2 / 2, with a Gaussian window,
    after adding the *same* small noise to both images (so flat regions do not divide 0 by 0) and clipping to
    [0, 1]; per-channel windows, zero padding. Returns the mean over the map per image (N,)."""
    a, b = _unit(a, faithful_range), _unit(b, faithful_range)
    c = a.shape[1]
    noise = torch.randn(a.shape, generator=generator, dtype=torch.float32).to(a.device, a.dtype) * noise_std
    a, b = (a + noise).clamp(0, 1), (b + noise).clamp(0, 1)
    win = gaussian_window(window, sigma).to(a.device, a.dtype).expand(c, 1, window, window)
    blur = lambda t: F.conv2d(t, win, padding=window // 2, groups=c)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = (blur(a * a) - mu_a**2).clamp_min(0)
    var_b = (blur(b * b) - mu_b**2).clamp_min(0)
    cov = blur(a * b) - mu_a * mu_b
    c3 = (0.03**2) / 2
    return ((cov + c3) / (var_a.sqrt() * var_b.sqrt() + c3)).flatten(1).mean(1)


def structure_loss(a: torch.Tensor, b: torch.Tensor, **kw: Any) -> torch.Tensor:
    """S = 1 - the batch mean of :func:`structure_term`."""
    return 1.0 - structure_term(a, b, **kw).mean()


@_float32
def luminance_loss(x: torch.Tensor, patch: int, *, faithful_range: bool = False) -> torch.Tensor:
    """Luminance uniformity (StillGAN): over the central crop whose side is the largest multiple of ``patch``, the
    patch means minus the crop mean, bicubically upsampled back to the crop, mean absolute value. 0 for an image of
    uniform brightness at that scale."""
    x = _unit(x, faithful_range)
    h, w = x.shape[-2:]
    side = (min(h, w) // patch) * patch
    if side == 0:
        raise ValueError(f"luminance patch {patch} is larger than the image ({h}x{w})")
    top, left = (h - side) // 2, (w - side) // 2
    crop = x[..., top:top + side, left:left + side]
    means = F.avg_pool2d(crop, patch) - crop.mean(dim=(2, 3), keepdim=True)
    return F.interpolate(means, size=(side, side), mode="bicubic", align_corners=False).abs().mean()


def haar_bands(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One level of the orthonormal 2-D Haar transform: (LL, LH, HL, HH), each half the size (H, W even)."""
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (a + b + c + d) / 2, (a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2


@_float32
def wavelet_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L1 between the Haar high bands (LH, HL, HH) of two images: structure kept, brightness free."""
    _, *ha = haar_bands(a)
    _, *hb = haar_bands(b)
    return sum(F.l1_loss(p, q) for p, q in zip(ha, hb)) / 3


@_float32
def ssim_map_box3(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The SSIM map of the style autoencoder's pretraining in the public code: means, variances and covariance
    over 3 x 3 box windows on reflection-padded images, C1 = 0.01^2, C2 = 0.03^2; same shape as ``x``."""
    pad = lambda t: F.pad(t, (1, 1, 1, 1), mode="reflect")  # noqa: E731
    box = lambda t: F.avg_pool2d(pad(t), 3, stride=1)  # noqa: E731
    mu_x, mu_y = box(x), box(y)
    var_x = box(x * x) - mu_x**2
    var_y = box(y * y) - mu_y**2
    cov = box(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


@_float32
def autoencoder_loss(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The style autoencoder's pretraining loss: MSE + mean(clamp((1 - SSIM) / 2, 0, 1)) (:func:`ssim_map_box3`)."""
    return F.mse_loss(rec, x) + ((1.0 - ssim_map_box3(rec, x)) / 2).clamp(0, 1).mean()


def _f(t: torch.Tensor) -> float:
    return float(t.detach())


@dataclass
class HQGNets:
    """The three trained networks: generator G(x, s), style encoder s(x, y), discriminator D(x, y)."""

    g: nn.Module
    s: nn.Module
    d: nn.Module


def discriminator_loss(nets: HQGNets, x_org: torch.Tensor, y_org: torch.Tensor, x_ref: torch.Tensor,
                       y_trg: torch.Tensor, w: HQGLossWeights = HQGLossWeights()) -> tuple[torch.Tensor, dict[str, float]]:
    """D's loss for one step (the fake is made without gradients to G and s)."""
    x = x_org.detach().requires_grad_(True)
    real = nets.d(x, y_org)
    reg = r1_penalty(real, x)
    loss_real = bce_logits(real, True)
    with torch.no_grad():
        fake = nets.g(x_org, nets.s(x_ref, y_trg))
    loss_fake = bce_logits(nets.d(fake, y_trg), False)
    total = loss_real + loss_fake + w.reg * reg
    return total, {"d_real": _f(loss_real), "d_fake": _f(loss_fake), "r1": _f(reg)}


def task_loss(task: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The downstream task's loss: cross-entropy of the classifier's logits (in float32) against class indices."""
    return F.cross_entropy(task(images).float(), labels)


def generator_loss(nets: HQGNets, x_org: torch.Tensor, y_org: torch.Tensor, x_ref: torch.Tensor, y_trg: torch.Tensor,
                   w: HQGLossWeights = HQGLossWeights(), *, generator: torch.Generator | None = None,
                   task: nn.Module | None = None, task_labels: torch.Tensor | None = None,
                   outputs: dict[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """G's and the style encoder's loss for one step (see the module doc); the reference's style is not detached.
    With ``task``, ``task_labels`` (class indices of ``x_org``) and ``w.task`` > 0, adds the bi-level upper level's
    ``w.task`` x :func:`task_loss` on the enhanced image (term ``task``; gradients reach G, not the task network's
    optimiser).
    ``outputs``, if given, receives the enhanced image as ``"fake"`` (for the lower level's step)."""
    s_trg = nets.s(x_ref, y_trg)
    fake = nets.g(x_org, s_trg)
    adv = bce_logits(nets.d(fake, y_trg), True)
    style = (nets.s(fake, y_trg) - s_trg).abs().mean()
    cycle = F.l1_loss(nets.g(fake, nets.s(x_org, y_org)), x_org)
    struc = structure_loss(fake, x_org, window=w.structure_window, sigma=w.structure_sigma,
                           noise_std=w.structure_noise, generator=generator, faithful_range=w.faithful_range)
    lum = sum(luminance_loss(fake, p, faithful_range=w.faithful_range) for p in w.luminance_patches)
    lum = lum / len(w.luminance_patches)
    wav = wavelet_loss(fake, x_org) if w.wavelet else fake.new_zeros(())
    total = adv + w.style * style + w.recon * cycle + (w.structure * struc + w.luminance * lum) / 2 + w.wavelet * wav
    terms = {"g_adv": _f(adv), "style": _f(style), "cycle": _f(cycle), "structure": _f(struc),
             "luminance": _f(lum), "wavelet": _f(wav)}
    if task is not None and task_labels is not None and w.task:
        ce = task_loss(task, fake, task_labels)
        total = total + w.task * ce
        terms["task"] = _f(ce)
    if outputs is not None:
        outputs["fake"] = fake
    if not all(math.isfinite(v) for v in terms.values()):
        raise FloatingPointError(f"non-finite HQG-Net loss terms: {terms}")
    return total, terms


__all__ = ["HQGLossWeights", "HQGNets", "autoencoder_loss", "bce_logits", "discriminator_loss", "gaussian_window", "generator_loss",
           "haar_bands", "luminance_loss", "r1_penalty", "ssim_map_box3", "structure_loss", "structure_term", "task_loss",
           "wavelet_loss"]
