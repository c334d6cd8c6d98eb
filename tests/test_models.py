"""Registry, parameter counts (spec table 1.10) and the generator/discriminator contract."""

import pytest
import torch

from r2c_core.models import MODELS, R2CGAN, build_discriminator, build_generator, count_params, get_spec, list_models

SPEC_PARAMS = {  # r2cgan-spec.md section 1.10 (also the reference's count_params() in golden.json)
    "op-q1": (302_853, 136_513),
    "op-q3": (906_507, 409_027),
    "op-q5": (1_510_161, 681_541),
    "cnn": (11_383_941, 2_765_633),
    "cnn-compact": (302_853, 136_513),
}


def test_registry_has_the_five_variants():
    assert list_models() == ["op-q1", "op-q3", "op-q5", "cnn", "cnn-compact"]


@pytest.mark.parametrize("name", list(SPEC_PARAMS))
def test_parameter_counts_match_spec(name):
    g, d = SPEC_PARAMS[name]
    assert count_params(build_generator(name)) == g
    assert count_params(build_discriminator(name)) == d


@pytest.mark.parametrize("q", [2, 4, 7])
def test_op_general_formula(q):
    assert count_params(build_generator(f"op-q{q}")) == 301_827 * q + 1_026
    assert count_params(build_discriminator(f"op-q{q}")) == 136_257 * q + 256


def test_unknown_model_lists_registered():
    with pytest.raises(KeyError, match="registered"):
        get_spec("resnet-50")


@pytest.mark.parametrize("name", list(MODELS))
def test_generator_contract_and_backward(name):
    torch.manual_seed(0)
    gan = R2CGAN(name)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    img, logits = gan.gen_ab(x)
    assert img.shape == x.shape and logits.shape == (2, 2)
    assert img.abs().max() <= 1.0
    patch = gan.disc_b(img)
    assert patch.shape == (2, 1, 8, 8)
    (img.mean() + logits.sum() + patch.mean()).backward()
    assert all(p.grad is not None for p in gan.gen_ab.parameters())


def test_discriminator_patch_is_32x32_at_256():
    assert build_discriminator("op-q3")(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 32, 32)
