"""Lung segmentation: model build (no download), preprocessing, post-processing, metrics, renditions, bootstrap."""

from __future__ import annotations

import socket

import numpy as np
import pytest
import torch

from r2c_core.errors import CheckpointError
from r2c_core.segmentation import (
    EXPECTED_PARAMETERS, build_unet, contour_gray, count_parameters, dice, iou, overlay, postprocess, preprocess_batch,
)
from r2c_core.segmentation.evaluate import bootstrap_ci, summarise
from r2c_core.segmentation.model import check_preprocess
from r2c_core.segmentation.train import lr_factor, seg_loss


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt (HF hub, torch hub, raw socket) fails the test."""
    import segmentation_models_pytorch.encoders as enc

    calls: list[str] = []

    def refuse(name):
        def _f(*a, **k):
            calls.append(name)
            raise AssertionError(f"network/download call: {name}")
        return _f

    monkeypatch.setattr(enc, "hf_hub_download", refuse("hf_hub_download"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse("torch.hub.load_state_dict_from_url"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse("torch.hub.download_url_to_file"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    return calls


def test_build_unet_no_download_and_parameter_count(no_network):
    model = build_unet()
    assert no_network == []
    assert count_parameters(model) == EXPECTED_PARAMETERS == 13_601_361
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 1
    assert model.segmentation_head[0].out_channels == 1
    with torch.no_grad():
        y = model.eval()(torch.randn(1, 1, 64, 64))
    assert y.shape == (1, 1, 64, 64)


def test_build_unet_rejects_unknown_arch():
    with pytest.raises(CheckpointError):
        build_unet({"arch": "fpn"})
    with pytest.raises(CheckpointError):
        build_unet({"encoder": "no-such-encoder"})


def test_preprocess_resizes_and_normalises():
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (100, 130), dtype=np.uint8), rng.integers(50, 60, (70, 64), dtype=np.uint8)]
    x = preprocess_batch(imgs, {"size": 64})
    assert x.shape == (2, 1, 64, 64)
    assert torch.allclose(x.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4)
    assert torch.allclose(x.std(dim=(1, 2, 3)), torch.ones(2), atol=1e-3)
    with pytest.raises(CheckpointError):
        check_preprocess({"size": 100})
    with pytest.raises(CheckpointError):
        check_preprocess({"norm": "imagenet"})


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def test_postprocess_keeps_two_blobs_removes_noise_fills_holes():
    shape = (120, 160)
    left, right = _disk(shape, 60, 45, 30), _disk(shape, 60, 115, 25)
    prob = np.zeros(shape, np.float32)
    prob[left | right] = 0.9
    prob[55:60, 40:46] = 0.1          # a hole in the left lung
    prob[5:8, 5:8] = 0.95              # speck of noise
    prob[110:116, 75:82] = 0.8         # a third, small component
    m = postprocess(prob)
    assert m.dtype == bool and m.shape == shape
    np.testing.assert_array_equal(m, left | right)


def test_postprocess_single_component_and_empty():
    shape = (50, 50)
    blob = _disk(shape, 25, 25, 10)
    np.testing.assert_array_equal(postprocess(blob.astype(np.float32)), blob)
    assert not postprocess(np.zeros(shape, np.float32)).any()
    # the threshold is respected
    assert not postprocess(np.full(shape, 0.4, np.float32), threshold=0.5).any()
    assert postprocess(np.full(shape, 0.4, np.float32), threshold=0.3).all()


def test_dice_iou_hand_computed():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :3] = True          # 3 pixels
    b[0, 1:] = True          # 3 pixels, overlap 2, union 4
    assert dice(a, b) == pytest.approx(2 * 2 / 6)
    assert iou(a, b) == pytest.approx(2 / 4)
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0
    assert dice(a, ~a) == 0.0 and iou(a, ~a) == 0.0
    empty = np.zeros((4, 4), bool)
    assert dice(empty, empty) == 1.0 and iou(empty, empty) == 1.0
    assert dice(a, empty) == 0.0
    with pytest.raises(ValueError):
        dice(a, np.zeros((3, 3), bool))


def test_overlay_and_contour_gray():
    gray = np.full((64, 80), 100, np.uint8)
    mask = np.zeros((64, 80), bool)
    mask[10:50, 10:40] = True
    rgb = overlay(gray, mask)
    assert rgb.shape == (64, 80, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[10, 20]) == (0, 220, 90)          # contour pixel coloured
    assert tuple(rgb[0, 0]) == (100, 100, 100)         # outside untouched
    inside = rgb[30, 25]
    assert inside[1] > inside[0]                        # interior lightly tinted
    g = contour_gray(gray, mask)
    assert g.shape == gray.shape and g.dtype == np.uint8
    assert g[10, 20] == 255 and g[9, 20] == 0 and g[11, 20] == 0
    assert g[30, 25] == 100 and g[0, 0] == 100
    with pytest.raises(ValueError):
        overlay(gray, mask[:10])


def test_seg_loss_weights_and_perfect_prediction():
    y = torch.zeros(2, 1, 8, 8)
    y[:, :, 2:6, 2:6] = 1
    good = (y * 2 - 1) * 20
    bad = -good
    logits = torch.cat([good[:1], bad[1:]])
    both = seg_loss(logits, y, torch.tensor([1.0, 1.0]))
    only_good = seg_loss(logits, y, torch.tensor([1.0, 0.0]))
    assert only_good < 0.01 < both


def test_lr_schedule():
    assert lr_factor(0, 100, 10, 0.0) == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, 0.0) == pytest.approx(1.0)
    assert lr_factor(100, 100, 10, 0.05) == pytest.approx(0.05)


def test_bootstrap_and_summary():
    vals = [0.9, 0.92, 0.94, 0.96, 0.98]
    lo, hi = bootstrap_ci(vals)
    assert lo <= np.mean(vals) <= hi and lo >= 0.9 and hi <= 0.98
    # one cluster: no spread possible
    assert bootstrap_ci(vals, ["g"] * 5) == pytest.approx((0.94, 0.94))
    s = summarise(vals)
    assert s["n"] == 5 and s["mean"] == pytest.approx(0.94) and s["p10"] == pytest.approx(0.908)
    assert summarise([]) == {"n": 0}
