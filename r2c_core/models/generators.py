"""R2C-GAN generators: operational (Self-ONN, order q), compact convolutional, and deep ResNet-9.

Every generator maps a 3-channel image in [-1, 1] (gray replicated) to ``(image, class_logits)``: the restored
image (tanh, same size) and two class logits (index 1 = COVID-19; the reference applies softmax inside the
model, we return logits and apply softmax at the edge). The classification head is a global max pool followed
by a dense layer (the reference's ``MaxPool2D(pool_size=feature_map_size)`` at 256x256 input).

``tf_order()`` lists the parameterised modules in the order the reference (Keras) creates its variables; the
weight importer in :mod:`r2c_core.reference` relies on it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import OpConv2d, OpConvTranspose2d, instance_norm


def _global_max(h: torch.Tensor) -> torch.Tensor:
    return torch.amax(h, dim=(2, 3))


def _reflect1(x: torch.Tensor) -> torch.Tensor:
    return F.pad(x, (1, 1, 1, 1), mode="reflect")


class OpGenerator(nn.Module):
    """Reference ``OpGenerator(q)``: 1 strided operational conv, one residual block, transposed operational conv.

    Topology (spec 1.4): Oper(128,3,s2,no bias) -> IN -> [tanh -> pad -> Oper -> IN -> tanh -> pad -> Oper -> IN]
    -> tanh(h + b) -> (global max -> Dense(2)) and OperT(3,3,s2,bias) -> tanh.
    """

    def __init__(self, q: int = 3, channels: int = 128, in_channels: int = 3, num_classes: int = 2) -> None:
        super().__init__()
        self.q = q
        self.down = OpConv2d(in_channels, channels, 3, stride=2, q=q, padding="same", bias=False)
        self.norm0 = instance_norm(channels)
        self.res_conv1 = OpConv2d(channels, channels, 3, q=q, padding="valid", bias=False)
        self.res_norm1 = instance_norm(channels)
        self.res_conv2 = OpConv2d(channels, channels, 3, q=q, padding="valid", bias=False)
        self.res_norm2 = instance_norm(channels)
        self.up = OpConvTranspose2d(channels, in_channels, 3, stride=2, q=q, padding="same", bias=True)
        self.classifier = nn.Linear(channels, num_classes)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def tf_order(self) -> list[nn.Module]:
        return [self.down, self.norm0, self.res_conv1, self.res_norm1, self.res_conv2, self.res_norm2, self.up, self.classifier]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.norm0(self.down(x))
        b = torch.tanh(h)
        b = torch.tanh(self.res_norm1(self.res_conv1(_reflect1(b))))
        b = self.res_norm2(self.res_conv2(_reflect1(b)))
        h = torch.tanh(h + b)
        logits = self.classifier(_global_max(h))
        return torch.tanh(self.up(h)), logits


class ConvCompactGenerator(nn.Module):
    """Reference ``ConvCompGenerator`` ("convolutional-light", CNN-compact).

    Same layout as ``OpGenerator(q=1)`` but ReLU instead of tanh: ReLU after the first IN, ReLU inside the block,
    no activation after the residual add and none before the classification branch (spec 1.6).
    """

    def __init__(self, channels: int = 128, in_channels: int = 3, num_classes: int = 2) -> None:
        super().__init__()
        self.down = OpConv2d(in_channels, channels, 3, stride=2, q=1, padding="same", bias=False)
        self.norm0 = instance_norm(channels)
        self.res_conv1 = OpConv2d(channels, channels, 3, q=1, padding="valid", bias=False)
        self.res_norm1 = instance_norm(channels)
        self.res_conv2 = OpConv2d(channels, channels, 3, q=1, padding="valid", bias=False)
        self.res_norm2 = instance_norm(channels)
        self.up = OpConvTranspose2d(channels, in_channels, 3, stride=2, q=1, padding="same", bias=True)
        self.classifier = nn.Linear(channels, num_classes)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def tf_order(self) -> list[nn.Module]:
        return [self.down, self.norm0, self.res_conv1, self.res_norm1, self.res_conv2, self.res_norm2, self.up, self.classifier]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.norm0(self.down(x)))
        b = F.relu(self.res_norm1(self.res_conv1(_reflect1(h))))
        b = self.res_norm2(self.res_conv2(_reflect1(b)))
        h = h + b
        logits = self.classifier(_global_max(h))
        return torch.tanh(self.up(h)), logits


class _ResBlock(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = OpConv2d(ch, ch, 3, q=1, padding="valid", bias=False)
        self.norm1 = instance_norm(ch)
        self.conv2 = OpConv2d(ch, ch, 3, q=1, padding="valid", bias=False)
        self.norm2 = instance_norm(ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(_reflect1(x))))
        return x + self.norm2(self.conv2(_reflect1(h)))


class ResnetGenerator(nn.Module):
    """Reference ``ConvGenerator`` (deep, CycleGAN ResNet-9), classification head after residual block 5."""

    def __init__(self, dim: int = 64, n_blocks: int = 9, head_after: int = 5, in_channels: int = 3, num_classes: int = 2) -> None:
        super().__init__()
        self.head_after = head_after
        self.stem = OpConv2d(in_channels, dim, 7, q=1, padding="valid", bias=False)
        self.stem_norm = instance_norm(dim)
        self.down1 = OpConv2d(dim, dim * 2, 3, stride=2, q=1, padding="same", bias=False)
        self.down1_norm = instance_norm(dim * 2)
        self.down2 = OpConv2d(dim * 2, dim * 4, 3, stride=2, q=1, padding="same", bias=False)
        self.down2_norm = instance_norm(dim * 4)
        self.blocks = nn.ModuleList(_ResBlock(dim * 4) for _ in range(n_blocks))
        self.up1 = OpConvTranspose2d(dim * 4, dim * 2, 3, stride=2, q=1, padding="same", bias=False)
        self.up1_norm = instance_norm(dim * 2)
        self.up2 = OpConvTranspose2d(dim * 2, dim, 3, stride=2, q=1, padding="same", bias=False)
        self.up2_norm = instance_norm(dim)
        self.out_conv = OpConv2d(dim, in_channels, 7, q=1, padding="valid", bias=True)
        self.classifier = nn.Linear(dim * 4, num_classes)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    def tf_order(self) -> list[nn.Module]:
        mods: list[nn.Module] = [self.stem, self.stem_norm, self.down1, self.down1_norm, self.down2, self.down2_norm]
        for blk in self.blocks:
            mods += [blk.conv1, blk.norm1, blk.conv2, blk.norm2]
        mods += [self.up1, self.up1_norm, self.up2, self.up2_norm, self.out_conv, self.classifier]
        return mods

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.stem_norm(self.stem(F.pad(x, (3, 3, 3, 3), mode="reflect"))))
        h = F.relu(self.down1_norm(self.down1(h)))
        h = F.relu(self.down2_norm(self.down2(h)))
        logits = None
        for i, blk in enumerate(self.blocks, start=1):
            h = blk(h)
            if i == self.head_after:
                logits = self.classifier(_global_max(h))
        h = F.relu(self.up1_norm(self.up1(h)))
        h = F.relu(self.up2_norm(self.up2(h)))
        out = torch.tanh(self.out_conv(F.pad(h, (3, 3, 3, 3), mode="reflect")))
        assert logits is not None
        return out, logits
