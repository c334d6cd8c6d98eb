"""R2C-GAN discriminators: operational (order q), compact convolutional, and the deep 70x70 PatchGAN.

Each maps a 3-channel image in [-1, 1] to a patch map of LSGAN scores (32x32 at 256x256 input).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import OpConv2d, instance_norm


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class OpDiscriminator(nn.Module):
    """Reference ``OpDiscriminator(q)`` (spec 1.5); ``output_activation`` is the reference's LeakyReLU on the map.

    The compact convolutional discriminator is the same network with q=1 and a raw output (spec 1.7).
    """

    def __init__(self, q: int = 3, in_channels: int = 3, output_activation: bool = True) -> None:
        super().__init__()
        self.q, self.output_activation = q, output_activation
        self.conv1 = OpConv2d(in_channels, 64, 4, stride=2, q=q, padding="same", bias=True)
        self.conv2 = OpConv2d(64, 128, 4, stride=4, q=q, padding="same", bias=False)
        self.norm2 = instance_norm(128)
        self.conv3 = OpConv2d(128, 1, 4, stride=1, q=q, padding="same", bias=True)

    def tf_order(self) -> list[nn.Module]:
        return [self.conv1, self.conv2, self.norm2, self.conv3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _lrelu(self.conv1(x))
        h = _lrelu(self.norm2(self.conv2(h)))
        h = self.conv3(h)
        return _lrelu(h) if self.output_activation else h


class PatchDiscriminator(nn.Module):
    """Reference ``ConvDiscriminator(n_downsamplings=3)``: the standard 70x70 PatchGAN (spec 1.9)."""

    def __init__(self, dim: int = 64, n_downsamplings: int = 3, in_channels: int = 3) -> None:
        super().__init__()
        self.first = OpConv2d(in_channels, dim, 4, stride=2, q=1, padding="same", bias=True)
        convs, norms = [], []
        d = dim
        for _ in range(n_downsamplings - 1):
            convs.append(OpConv2d(d, d * 2, 4, stride=2, q=1, padding="same", bias=False))
            d *= 2
            norms.append(instance_norm(d))
        convs.append(OpConv2d(d, d * 2, 4, stride=1, q=1, padding="same", bias=False))
        d *= 2
        norms.append(instance_norm(d))
        self.convs, self.norms = nn.ModuleList(convs), nn.ModuleList(norms)
        self.last = OpConv2d(d, 1, 4, stride=1, q=1, padding="same", bias=True)

    def tf_order(self) -> list[nn.Module]:
        mods: list[nn.Module] = [self.first]
        for c, n in zip(self.convs, self.norms):
            mods += [c, n]
        return mods + [self.last]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = _lrelu(self.first(x))
        for c, n in zip(self.convs, self.norms):
            h = _lrelu(n(c(h)))
        return self.last(h)
