"""The r2c-backed study renderer: method parsing, the rendition contract, and clear errors."""

import numpy as np
import pytest
import torch

from r2c_core.errors import R2CError
from r2c_core.inference import export_generator, roundtrip
from r2c_core.models import build_generator
from r2c_core.study_renderer import PAPER_METHODS, R2CRenderer, available_methods, parse_method


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    torch.manual_seed(0)
    r = tmp_path_factory.mktemp("weights")
    for model in ("op-q1", "cnn-compact"):
        export_generator(build_generator(model), model, r / f"r2c-{model}")
    return r


def test_parse_method():
    assert parse_method("original") == ("original", 0)
    assert parse_method("op-q3-x3") == ("op-q3", 3)
    assert parse_method("cnn-compact-x3") == ("cnn-compact", 3)
    assert parse_method("cnn-x1") == ("cnn", 1)
    assert [parse_method(m)[0] for m in PAPER_METHODS] == ["original", "cnn", "cnn-compact", "op-q3", "op-q5"]
    for bad in ("op-q3", "op-q3-x0", "x3", ""):
        with pytest.raises(R2CError):
            parse_method(bad)


def test_available_methods_from_bundled_folders(root):
    assert available_methods(root) == ["original", "cnn-compact-x3", "op-q1-x3"]


def test_rendition_contract(root):
    r = R2CRenderer("restoration", weights_root=root, device="cpu")
    img = (np.random.default_rng(0).random((300, 240)) * 255).astype(np.uint8)
    out = r.render(img, r.methods)
    assert set(out) == set(r.methods)
    for arr in out.values():
        assert arr.dtype == np.uint8 and arr.shape == img.shape
    assert np.array_equal(out["original"], roundtrip(img))  # the original goes through the same resizing
    assert not np.array_equal(out["op-q1-x3"], out["original"])


def test_missing_weights_named(root):
    with pytest.raises(R2CError, match="r2c-op-q5"):
        R2CRenderer("restoration", weights_root=root, methods=["original", "op-q5-x3"])
    with pytest.raises(R2CError, match="study kind"):
        R2CRenderer("colourise", weights_root=root)
