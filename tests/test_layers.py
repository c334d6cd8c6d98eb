"""Operational layers: fused form == naive q-convolution sum; q=1 == nn.Conv2d / nn.ConvTranspose2d; TF padding."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from r2c_core.layers import OpConv2d, OpConvTranspose2d, powers, tf_same_pads


@pytest.mark.parametrize("q", [1, 2, 3, 5])
@pytest.mark.parametrize("stride,padding,k", [(1, "same", 3), (2, "same", 3), (1, "valid", 3), (4, "same", 4), (1, "same", 4), (2, 1, 4)])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_conv_equals_naive_sum(q, stride, padding, k, bias):
    torch.manual_seed(q * 10 + stride)
    layer = OpConv2d(5, 7, k, stride=stride, q=q, padding=padding, bias=bias)
    if bias:
        nn.init.normal_(layer.bias)
    x = torch.rand(2, 5, 16, 16) * 2 - 1
    torch.testing.assert_close(layer(x), layer.naive_forward(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("q", [1, 3, 5])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_transposed_equals_naive_sum(q, bias):
    torch.manual_seed(q)
    layer = OpConvTranspose2d(6, 3, 3, stride=2, q=q, padding="same", bias=bias)
    if bias:
        nn.init.normal_(layer.bias)
    x = torch.rand(2, 6, 8, 8) * 2 - 1
    y = layer(x)
    assert y.shape == (2, 3, 16, 16)
    torch.testing.assert_close(y, layer.naive_forward(x), atol=1e-5, rtol=1e-5)


def test_naive_sum_is_really_sum_of_powers():
    """Independent check of the semantics: sum_p conv(x**p, W_p) with explicit nn.Conv2d per power."""
    torch.manual_seed(0)
    q, cin, cout = 3, 4, 6
    layer = OpConv2d(cin, cout, 3, q=q, padding=1, bias=True)
    nn.init.normal_(layer.bias)
    x = torch.rand(1, cin, 9, 9) * 2 - 1
    expected = 0
    for p in range(q):
        conv = nn.Conv2d(cin, cout, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(layer.weight[:, p * cin : (p + 1) * cin])
            conv.bias.copy_(layer.bias[p])
        expected = expected + conv(x ** (p + 1))
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_q1_equals_nn_conv2d_exactly():
    torch.manual_seed(1)
    ref = nn.Conv2d(3, 8, 3, stride=2, padding=1)
    layer = OpConv2d(3, 8, 3, stride=2, q=1, padding=1)
    with torch.no_grad():
        layer.weight.copy_(ref.weight)
        layer.bias[0].copy_(ref.bias)
    x = torch.randn(2, 3, 17, 17)
    assert torch.equal(layer(x), ref(x))


def test_q1_equals_nn_convtranspose2d_exactly():
    torch.manual_seed(2)
    ref = nn.ConvTranspose2d(8, 3, 3, stride=2, padding=1, output_padding=0)
    layer = OpConvTranspose2d(8, 3, 3, stride=2, q=1, padding=1)
    with torch.no_grad():
        layer.weight.copy_(ref.weight)
        layer.bias[0].copy_(ref.bias)
    x = torch.randn(2, 8, 9, 9)
    assert torch.equal(layer(x), ref(x))


def test_tf_same_padding_is_asymmetric_where_tf_is():
    assert tf_same_pads(256, 3, 2) == (0, 1)
    assert tf_same_pads(256, 4, 2) == (1, 1)
    assert tf_same_pads(128, 4, 4) == (0, 0)
    assert tf_same_pads(32, 4, 1) == (1, 2)
    layer = OpConv2d(1, 1, 3, stride=2, q=1, padding="same", bias=False)
    x = torch.randn(1, 1, 8, 8)
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), layer.weight, None, 2)
    assert torch.equal(layer(x), expected)


def test_transposed_same_gives_in_times_stride():
    layer = OpConvTranspose2d(4, 2, 3, stride=2, q=3, padding="same")
    assert layer(torch.rand(1, 4, 7, 5)).shape == (1, 2, 14, 10)


def test_powers_layout_and_gradients():
    x = torch.tensor([[[[0.5]]], [[[-2.0]]]], requires_grad=True)
    p = powers(x, 3)
    assert p.shape == (2, 3, 1, 1)
    assert p[:, :, 0, 0].tolist() == [[0.5, 0.25, 0.125], [-2.0, 4.0, -8.0]]
    p.sum().backward()  # d/dx (x + x^2 + x^3) = 1 + 2x + 3x^2
    assert x.grad.flatten().tolist() == pytest.approx([1 + 1 + 0.75, 1 - 4 + 12])


def test_invalid_q():
    with pytest.raises(ValueError):
        OpConv2d(1, 1, 3, q=0)
