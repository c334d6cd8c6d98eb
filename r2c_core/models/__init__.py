"""Model registry: ``op-q1``, ``op-q3``, ``op-q5`` (any ``op-qN``), ``cnn`` (deep) and ``cnn-compact``.

Naming map (reference TF code -> paper -> here): ``G_A2B`` (restorer and classifier used at test, poor A ->
high-quality B; the paper's G: Y->X) = ``R2CGAN.gen_ab``; ``G_B2A`` = ``gen_ba``; ``D_A`` = ``disc_a`` (judges
domain A); ``D_B`` = ``disc_b``. Reference ``--method``: ``operational`` (+ ``--q``) = ``op-qN``,
``convolutional`` = ``cnn``, ``convolutional-light`` = ``cnn-compact``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from torch import nn

from .discriminators import OpDiscriminator, PatchDiscriminator
from .generators import ConvCompactGenerator, OpGenerator, ResnetGenerator

CLASS_NAMES = ("control", "covid")
WORKING_SIZE = 256


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    reference_method: str
    make_generator: Callable[[], nn.Module]
    make_discriminator: Callable[[], nn.Module]
    #: restoration passes the paper's reader study uses for this variant
    study_passes: int = 3


def _op_spec(q: int) -> ModelSpec:
    return ModelSpec(
        name=f"op-q{q}",
        description=f"operational (Self-ONN) generator and discriminator, Q={q}",
        reference_method=f"operational --q {q}",
        make_generator=lambda: OpGenerator(q=q),
        make_discriminator=lambda: OpDiscriminator(q=q),
    )


MODELS: dict[str, ModelSpec] = {
    "op-q1": _op_spec(1),
    "op-q3": _op_spec(3),
    "op-q5": _op_spec(5),
    "cnn": ModelSpec(
        "cnn", "deep convolutional: ResNet-9 generator (head after block 5), 70x70 PatchGAN", "convolutional",
        ResnetGenerator, PatchDiscriminator, study_passes=1,
    ),
    "cnn-compact": ModelSpec(
        "cnn-compact", "compact convolutional generator and discriminator", "convolutional-light",
        ConvCompactGenerator, lambda: OpDiscriminator(q=1, output_activation=False),
    ),
}


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model; ``op-qN`` works for any N >= 1."""
    if name in MODELS:
        return MODELS[name]
    m = re.fullmatch(r"op-q(\d+)", name)
    if m and int(m.group(1)) >= 1:
        return _op_spec(int(m.group(1)))
    raise KeyError(f"unknown model {name!r}; registered: {', '.join(MODELS)} (or op-qN for any N)")


def list_models() -> list[str]:
    return list(MODELS)


def build_generator(name: str) -> nn.Module:
    return get_spec(name).make_generator()


def build_discriminator(name: str) -> nn.Module:
    return get_spec(name).make_discriminator()


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class R2CGAN(nn.Module):
    """The four networks of one R2C-GAN: ``gen_ab`` (G_A2B), ``gen_ba`` (G_B2A), ``disc_a`` (D_A), ``disc_b`` (D_B)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        spec = get_spec(name)
        self.name = spec.name
        self.gen_ab = spec.make_generator()
        self.gen_ba = spec.make_generator()
        self.disc_a = spec.make_discriminator()
        self.disc_b = spec.make_discriminator()

    def generators(self) -> list[nn.Module]:
        return [self.gen_ab, self.gen_ba]

    def discriminators(self) -> list[nn.Module]:
        return [self.disc_a, self.disc_b]


__all__ = [
    "CLASS_NAMES", "MODELS", "ModelSpec", "R2CGAN", "WORKING_SIZE", "build_discriminator", "build_generator",
    "count_params", "get_spec", "list_models", "OpGenerator", "ConvCompactGenerator", "ResnetGenerator",
    "OpDiscriminator", "PatchDiscriminator",
]
