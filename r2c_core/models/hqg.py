"""HQG-Net (He et al., "Unpaired Medical Image Enhancement with High-Quality Guidance", IEEE TNNLS; arXiv
2307.07829): the enhancement network, the style (reference) encoder with its pretraining autoencoder, and the
discriminator, following the topology of the public code (``ChunmingHe/HQG-Net`` at ``ffbba81``; read, not
copied). Design notes and every paper-vs-code choice: ``docs/HQGNET-PLAN.md`` and ``docs/MODELS.md``.

* :class:`HQGGenerator` (the code's ``ResUetGenerator``): a ResNet-50 encoder without max-pool (every stage at
  stride 2, bottleneck blocks with LeakyReLU 0.01, BatchNorm; input normalised by (x - 0.45) / 0.225) whose five
  feature maps (64, 256, 512, 1024, 2048 channels at 1/2 .. 1/32) feed a U-Net decoder of AdaIN up-blocks: at
  every level a 1x1 reduction of the skip is concatenated with a 3x3 conv of the level below, then an AdaIN
  residual up-block (StarGAN v2's, with ``w_hpf=1``: the shortcut is never added) conditioned on the 64-d style
  code of the high-quality reference. A 3x3 conv to 3 channels and a sigmoid give the output in [0, 1].
* :class:`StyleEncoder` (the code's ``StyleNet``): the encoder half of :class:`AutoEncoder` (a 3x3 conv, six
  pre-activation downsampling residual blocks to 512 channels, a valid (size/64)-px conv to a 512-d vector), then
  one 512 -> 64 linear head per quality domain. The autoencoder is pretrained on both domains (MSE + SSIM); its
  decoder is used only then.
* :class:`HQGDiscriminator`: the same trunk and a 1x1 conv to one logit per domain, read at the given domain.

Parameter counts at 256 px (checked in tests): G 36,518,659 (180,224 of them in the AdaIN blocks' shortcut
convolutions, which ``w_hpf=1`` never uses), style encoder with heads 20,916,928, discriminator 20,852,290,
autoencoder decoder 18,478,403.

Images are 3-channel in [0, 1]; our gray X-rays enter as three equal channels and the gray result is the mean
of the three output channels (:func:`to_rgb3`, :func:`to_gray`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import Bottleneck

LOW_QUALITY, HIGH_QUALITY = 0, 1


@dataclass(frozen=True)
class HQGConfig:
    """Network sizes (the public config's values; ``img_size`` 256 here, 384 there)."""

    img_size: int = 256
    style_dim: int = 64
    dim_in: int = 64
    max_conv_dim: int = 512
    num_domains: int = 2
    #: the decoder's AdaIN blocks add their shortcut (StarGAN v2 ``w_hpf=0``); the public code does not
    adain_shortcut: bool = False

    @property
    def trunk_kernel(self) -> int:
        """The last trunk conv's kernel: what is left of the image after six halvings."""
        return max(1, self.img_size // 64)


def to_rgb3(gray: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) gray -> (N, 3, H, W) with three equal channels."""
    return gray.expand(-1, 3, -1, -1) if gray.shape[1] == 1 else gray


def to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W): the mean of the channels."""
    return rgb.mean(dim=1, keepdim=True)


# -- building blocks -------------------------------------------------------------------------------------------


class AdaIN(nn.Module):
    """Instance norm without affine parameters, then (1 + gamma) * x + beta with gamma, beta from the style code."""

    def __init__(self, style_dim: int, channels: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.fc = nn.Linear(style_dim, 2 * channels)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.fc(s)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * self.norm(x) + beta


class AdaINUpBlock(nn.Module):
    """AdaIN, LReLU 0.2, x2 nearest upsampling, 3x3 conv, AdaIN, LReLU 0.2, 3x3 conv; with ``shortcut``, the
    (upsampled, 1x1-projected) input is added and the sum scaled by 1/sqrt(2)."""

    def __init__(self, c_in: int, c_out: int, style_dim: int, shortcut: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = AdaIN(style_dim, c_in), AdaIN(style_dim, c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.use_shortcut = shortcut
        # built whenever the widths differ, as in the public code (so the parameter count matches it), used only
        # with ``shortcut``
        self.proj = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else None

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.leaky_relu(self.norm1(x, s), 0.2), scale_factor=2, mode="nearest")
        h = self.conv2(F.leaky_relu(self.norm2(self.conv1(h), s), 0.2))
        if not self.use_shortcut:
            return h
        sc = F.interpolate(x, scale_factor=2, mode="nearest")
        sc = self.proj(sc) if self.proj is not None else sc
        return (h + sc) / math.sqrt(2)


class DownBlock(nn.Module):
    """Pre-activation residual block that halves the size (no normalisation): LReLU 0.2, 3x3 conv, 2x2 average
    pool, LReLU 0.2, 3x3 conv; shortcut: 1x1 projection (when widths differ) and the same pool; sum / sqrt(2)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_in, 3, padding=1)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.proj = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.conv1(F.leaky_relu(x, 0.2)), 2)
        h = self.conv2(F.leaky_relu(h, 0.2))
        sc = F.avg_pool2d(self.proj(x) if self.proj is not None else x, 2)
        return (sc + h) / math.sqrt(2)


def _conv3x3_reflect(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1, padding_mode="reflect")


# -- generator -----------------------------------------------------------------------------------------------------


def _bottleneck_stage(inplanes: int, planes: int, blocks: int) -> nn.Sequential:
    """A ResNet-50 stage at stride 2 (bottleneck blocks; their activations LeakyReLU 0.01)."""
    down = nn.Sequential(nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride=2, bias=False),
                         nn.BatchNorm2d(planes * Bottleneck.expansion))
    layers = [Bottleneck(inplanes, planes, stride=2, downsample=down)]
    layers += [Bottleneck(planes * Bottleneck.expansion, planes) for _ in range(blocks - 1)]
    for block in layers:
        block.relu = nn.LeakyReLU(0.01, inplace=True)
    return nn.Sequential(*layers)


class ResNetEncoder(nn.Module):
    """ResNet-50 without max-pool and classifier: stem (7x7/2 conv, BN, ReLU) and four stages, each at stride 2.
    Returns the five feature maps, shallow to deep (64, 256, 512, 1024, 2048 channels)."""

    channels = (64, 256, 512, 1024, 2048)

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU(inplace=True))
        self.stages = nn.ModuleList([_bottleneck_stage(i, p, n) for i, p, n in
                                     ((64, 64, 3), (256, 128, 4), (512, 256, 6), (1024, 512, 3))])
        for m in self.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem((x - 0.45) / 0.225)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


class HQGGenerator(nn.Module):
    """G(x, s): the low-quality image x (N, 3, H, W) in [0, 1] and a style code s (N, style_dim) -> the enhanced
    image in [0, 1]. H and W must be multiples of 32."""

    #: (skip reduction width, width of the conv from the level below, up-block input, up-block output), deep first
    LEVELS = ((512, 512, 512, 512), (256, 256, 512, 256), (128, 128, 256, 128), (64, 64, 128, 64), (64, 64, 128, 64))

    def __init__(self, cfg: HQGConfig = HQGConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = ResNetEncoder()
        enc = ResNetEncoder.channels[::-1]  # deep first
        self.reduce = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.ups = nn.ModuleList()
        below = None
        for i, (red, conv, up_in, up_out) in enumerate(self.LEVELS):
            self.reduce.append(nn.Conv2d(enc[i], red, 1, bias=False))
            # the deepest level convolves its own reduced features; the others the level below's output
            self.convs.append(_conv3x3_reflect(red if i == 0 else below, conv))
            self.ups.append(AdaINUpBlock(up_in, up_out, cfg.style_dim, cfg.adain_shortcut))
            below = up_out
        self.to_image = nn.Conv2d(64, 3, 3, padding=1, padding_mode="reflect")

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)[::-1]  # deep first
        h = self.ups[0](self.convs[0](self.reduce[0](feats[0])), s)
        for i in range(1, len(self.LEVELS)):
            h = self.ups[i](torch.cat([self.convs[i](h), self.reduce[i](feats[i])], dim=1), s)
        return torch.sigmoid(self.to_image(h))


# -- style encoder, its autoencoder, discriminator ------------------------------------------------------------------


def _trunk(cfg: HQGConfig) -> tuple[nn.ModuleList, int]:
    """The shared trunk: 3x3 conv to ``dim_in``, six DownBlocks doubling the width up to ``max_conv_dim``, then
    LReLU, a valid conv over what is left of the image, LReLU. Returns the blocks (each one a list item, so the
    autoencoder can keep every intermediate output) and the output width."""
    blocks: list[nn.Module] = [nn.Conv2d(3, cfg.dim_in, 3, padding=1)]
    c = cfg.dim_in
    for _ in range(6):
        c_out = min(2 * c, cfg.max_conv_dim)
        blocks.append(DownBlock(c, c_out))
        c = c_out
    blocks.append(nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(c, c, cfg.trunk_kernel), nn.LeakyReLU(0.2)))
    return nn.ModuleList(blocks), c


class _SkipUp(nn.Module):
    """The autoencoder decoder's step: 1x1 reduction of the encoder skip to half width, 3x3 conv of the input to
    half width, concatenation, LReLU 0.01, x2 nearest upsampling, 3x3 conv, LReLU 0.01."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(c_in, c_in // 2, 1, bias=False)
        self.conv = _conv3x3_reflect(c_in, c_in // 2)
        self.up = _conv3x3_reflect(c_in, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(torch.cat([self.conv(x), self.reduce(skip)], dim=1), 0.01)
        return F.leaky_relu(self.up(F.interpolate(h, scale_factor=2, mode="nearest")), 0.01)


class AutoEncoder(nn.Module):
    """The style encoder's pretraining network: the trunk, then a decoder that mirrors it with the trunk's outputs
    as skips, back to a 3-channel image (pretrained on both quality domains with MSE + SSIM)."""

    def __init__(self, cfg: HQGConfig = HQGConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder, c = _trunk(cfg)
        k = cfg.trunk_kernel
        self.bottom = nn.Sequential(nn.LeakyReLU(0.2), nn.ConvTranspose2d(c, c, k), nn.LeakyReLU(0.2))
        widths = [cfg.dim_in]
        for _ in range(6):
            widths.append(min(2 * widths[-1], cfg.max_conv_dim))
        # the trunk's widths, deep to shallow: decoder step i goes from widths[6 - i] to widths[5 - i]
        self.ups = nn.ModuleList([_SkipUp(widths[6 - i], widths[5 - i]) for i in range(6)])
        self.to_image = nn.Conv2d(cfg.dim_in, 3, 3, padding=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.encoder:
            x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for block in self.encoder:
            feats.append(block(feats[-1]))
        h = self.bottom(feats[-1])
        for i, up in enumerate(self.ups):
            h = up(h, feats[-2 - i])  # the trunk's DownBlock outputs, deepest first
        return self.to_image(h)


class StyleEncoder(nn.Module):
    """s(x, y): the autoencoder's encoder (fine-tuned with G) and one linear head per quality domain; returns the
    head of domain ``y`` for each image (N, style_dim)."""

    def __init__(self, cfg: HQGConfig = HQGConfig(), autoencoder: AutoEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        ae = autoencoder if autoencoder is not None else AutoEncoder(cfg)
        self.encoder = ae.encoder
        self.heads = nn.ModuleList([nn.Linear(cfg.max_conv_dim, cfg.style_dim) for _ in range(cfg.num_domains)])

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = x
        for block in self.encoder:
            h = block(h)
        h = h.flatten(1)
        out = torch.stack([head(h) for head in self.heads], dim=1)
        return out[torch.arange(x.shape[0], device=x.device), y]


class HQGDiscriminator(nn.Module):
    """D(x, y): the trunk and a 1x1 conv to one logit per domain; returns the logit of domain ``y`` (N,)."""

    def __init__(self, cfg: HQGConfig = HQGConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        trunk, c = _trunk(cfg)
        self.main = nn.Sequential(*trunk, nn.Conv2d(c, cfg.num_domains, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self.main(x).flatten(1)
        return out[torch.arange(x.shape[0], device=x.device), y]


class TaskClassifier(nn.Module):
    """The downstream task of the bi-level variant (HQG+BLO, :mod:`r2c_core.training.hqg`): a COVID-19 classifier
    on enhanced images, torchvision's ResNet-18 built without pretrained weights, with GroupNorm (32 groups) in place
    of BatchNorm and a ``num_classes`` head (11,177,538 parameters for 2 classes, as with BatchNorm). GroupNorm
    because HQG-Net trains at batch 1: it normalises each image the same way in training and in use, so the
    classifier G is optimised against is the one that is exported. Input (N, 3, H, W) in [0, 1]; it reads the gray
    image, the mean of the channels (what the enhanced X-ray is once shown, :func:`to_gray`), normalised as the
    generator's encoder's input; output the class logits (N, num_classes), classes in
    :data:`r2c_core.models.CLASS_NAMES` order."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        from torchvision.models import resnet18

        self.net = resnet18(weights=None, num_classes=num_classes, norm_layer=lambda c: nn.GroupNorm(32, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((to_rgb3(to_gray(x)) - 0.45) / 0.225)


@torch.no_grad()
def style_medoid(style: nn.Module, images: Sequence[tuple[str, torch.Tensor]], *, batch_size: int = 8,
                 domain: int = HIGH_QUALITY) -> tuple[str, torch.Tensor]:
    """The inference reference rule: encode every candidate high-quality image (``(id, (3, H, W) tensor)``, e.g.
    the train split's domain-B images) with the style encoder in eval mode and the given domain's head, and return
    the id and code of the image whose code is nearest (Euclidean) to the mean code; ties go to the smallest id.
    Deterministic for a given checkpoint and candidate set, and never uses validation or test images if the
    caller passes train images only."""
    if not images:
        raise ValueError("no candidate reference images")
    was_training = style.training
    style.eval()
    try:
        codes = []
        for i in range(0, len(images), batch_size):
            device = next(style.parameters(), torch.empty(0)).device
            chunk = torch.stack([img for _, img in images[i:i + batch_size]]).to(device)
            codes.append(style(chunk, torch.full((chunk.shape[0],), domain, dtype=torch.long)).float())
        code = torch.cat(codes)
    finally:
        style.train(was_training)
    dist = (code - code.mean(dim=0, keepdim=True)).pow(2).sum(1)
    best = min(range(len(images)), key=lambda k: (round(float(dist[k]), 9), str(images[k][0])))
    return str(images[best][0]), code[best].clone()


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["HIGH_QUALITY", "LOW_QUALITY", "AdaIN", "AdaINUpBlock", "AutoEncoder", "DownBlock", "HQGConfig",
           "HQGDiscriminator", "HQGGenerator", "ResNetEncoder", "StyleEncoder", "TaskClassifier", "count_parameters", "style_medoid",
           "to_gray", "to_rgb3"]
