"""Every fast path gives the eager model's outputs (CPU): channels_last, bf16 autocast, torch.compile."""

import pytest
import torch

from r2c_core.fast import FastOptions, FastRestorer
from r2c_core.models import build_generator


@pytest.fixture(scope="module")
def gen_and_input():
    torch.manual_seed(0)
    gen = build_generator("op-q3").eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        ref = x
        ref, logits = gen(ref)
        for _ in range(2):
            ref, _ = gen(ref)
    return gen, x, ref, logits


def test_eager_runner_equals_model(gen_and_input):
    gen, x, ref, logits = gen_and_input
    img, lg = FastRestorer(gen, passes=3)(x)
    torch.testing.assert_close(img, ref)
    torch.testing.assert_close(lg, logits)


def test_channels_last_equals_eager(gen_and_input):
    gen, x, ref, logits = gen_and_input
    img, lg = FastRestorer(gen, passes=3, options=FastOptions(channels_last=True))(x)
    torch.testing.assert_close(img, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lg, logits, atol=1e-4, rtol=1e-4)


def test_bf16_autocast_within_bf16_tolerance(gen_and_input):
    gen, x, ref, logits = gen_and_input
    img, lg = FastRestorer(gen, passes=3, options=FastOptions(amp=True, channels_last=True))(x)
    assert img.dtype == torch.float32
    assert (img - ref).abs().mean() < 2e-2
    assert (img - ref).abs().max() < 0.25
    torch.testing.assert_close(torch.softmax(lg, 1), torch.softmax(logits, 1), atol=3e-2, rtol=0)


def test_torch_compile_equals_eager():
    torch.manual_seed(1)
    gen = build_generator("op-q1").eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ref, logits = gen(x)
    img, lg = FastRestorer(gen, passes=1, options=FastOptions(compile=True))(x)
    torch.testing.assert_close(img, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(lg, logits, atol=1e-4, rtol=1e-4)


def test_cuda_graphs_refused_on_cpu():
    with pytest.raises(ValueError, match="CUDA"):
        FastRestorer(build_generator("op-q1"), options=FastOptions(cuda_graphs=True), device="cpu")


def test_best_options_labels():
    assert FastOptions.best_for(torch.device("cpu")).label() == "eager"
    assert "cuda_graphs" in FastOptions.best_for(torch.device("cuda")).label()
