"""Self-ONN operational layers (2-D convolution and transposed convolution of order q) and TF-style padding.

An operational layer of order q computes ``sum_{p=1..q} conv(x**p, W_p) + b`` (R2C-GAN's ``Oper2D`` /
``Oper2DTranspose``). We compute it as ONE convolution over the channel-concatenated powers
``cat([x, x**2, ..., x**q], dim=1)`` with a weight whose input-channel axis holds the q kernels one after the
other (power 1 first): one cuDNN/oneDNN call instead of q. ``naive_forward`` keeps the q-convolution sum for
tests. With q=1 the layer is exactly ``nn.Conv2d`` / ``nn.ConvTranspose2d``.

The reference creates a separate biased convolution per power, so a biased layer has q biases (they add up to
one). We keep them as a ``(q, out)`` parameter so that parameter counts and weight import match the reference
one to one; the forward pass adds their sum once.

Padding: ``"same"`` is TensorFlow's 'same' (asymmetric when the padding needed is odd: the extra row/column goes
at the bottom/right), ``"valid"`` is none, an int is PyTorch's symmetric padding.
"""

from __future__ import annotations

import math
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

Padding = Union[str, int]


def tf_same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding TensorFlow's 'same' uses along one axis of length ``size``."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def powers(x: torch.Tensor, q: int) -> torch.Tensor:
    """``cat([x, x**2, ..., x**q], dim=1)`` (x itself when q == 1)."""
    if q == 1:
        return x
    out = [x]
    p = x
    for _ in range(q - 1):
        p = p * x
        out.append(p)
    return torch.cat(out, dim=1)


class OpConv2d(nn.Module):
    """Operational (Self-ONN) 2-D convolution of order ``q`` (see module doc)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        q: int = 1,
        padding: Padding = "same",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if q < 1:
            raise ValueError(f"q must be >= 1, got {q}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.q, self.padding = kernel_size, stride, q, padding
        self.weight = nn.Parameter(torch.empty(out_channels, q * in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(q, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Keras glorot_uniform per power kernel (fan_in = in*k*k, fan_out = out*k*k), zero biases.
        k2 = self.kernel_size * self.kernel_size
        bound = math.sqrt(6.0 / (self.in_channels * k2 + self.out_channels * k2))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        if self.padding == "valid":
            return x, 0
        if isinstance(self.padding, int):
            return x, self.padding
        t, b = tf_same_pads(x.shape[-2], self.kernel_size, self.stride)
        l, r = tf_same_pads(x.shape[-1], self.kernel_size, self.stride)
        if t == b and l == r:
            return x, (t, l)  # symmetric: let the convolution pad (no copy)
        return F.pad(x, (l, r, t, b)), 0

    def fused_bias(self) -> torch.Tensor | None:
        return None if self.bias is None else self.bias.sum(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pad = self._pad(x)
        return F.conv2d(powers(x, self.q), self.weight, self.fused_bias(), self.stride, pad)

    def naive_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reference semantics: q separate convolutions on x**p, each with its own bias, summed."""
        x, pad = self._pad(x)
        c = self.in_channels
        y = None
        for p in range(1, self.q + 1):
            w = self.weight[:, (p - 1) * c : p * c]
            b = None if self.bias is None else self.bias[p - 1]
            term = F.conv2d(x**p, w, b, self.stride, pad)
            y = term if y is None else y + term
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"q={self.q}, padding={self.padding!r}, bias={self.bias is not None}"
        )


class OpConvTranspose2d(nn.Module):
    """Operational transposed 2-D convolution of order ``q``; ``"same"`` gives exactly ``in * stride`` outputs."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        q: int = 1,
        padding: Padding = "same",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if q < 1:
            raise ValueError(f"q must be >= 1, got {q}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.q, self.padding = kernel_size, stride, q, padding
        self.weight = nn.Parameter(torch.empty(q * in_channels, out_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(q, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        k2 = self.kernel_size * self.kernel_size
        bound = math.sqrt(6.0 / (self.in_channels * k2 + self.out_channels * k2))
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def fused_bias(self) -> torch.Tensor | None:
        return None if self.bias is None else self.bias.sum(0)

    def _conv_t(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.padding, int):
            return F.conv_transpose2d(x, w, b, self.stride, self.padding)
        y = F.conv_transpose2d(x, w, b, self.stride, 0)
        if self.padding == "valid":
            return y
        h, wd = x.shape[-2] * self.stride, x.shape[-1] * self.stride
        t = (y.shape[-2] - h) // 2 if y.shape[-2] > h else 0
        l = (y.shape[-1] - wd) // 2 if y.shape[-1] > wd else 0
        return y[..., t : t + h, l : l + wd]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_t(powers(x, self.q), self.weight, self.fused_bias())

    def naive_forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.in_channels
        y = None
        for p in range(1, self.q + 1):
            w = self.weight[(p - 1) * c : p * c]
            b = None if self.bias is None else self.bias[p - 1]
            term = self._conv_t(x**p, w, b)
            y = term if y is None else y + term
        return y

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"q={self.q}, padding={self.padding!r}, bias={self.bias is not None}"
        )


class InstanceNorm2dF32(nn.InstanceNorm2d):
    """Instance norm whose statistics are always computed in float32 (also under bf16/fp16 autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float32, torch.float64):
            return super().forward(x)
        return super().forward(x.float()).to(x.dtype)


def instance_norm(channels: int) -> nn.InstanceNorm2d:
    """TF-Addons InstanceNormalization: per-sample per-channel, biased variance, eps 1e-3, affine."""
    return InstanceNorm2dF32(channels, eps=1e-3, affine=True, track_running_stats=False)
