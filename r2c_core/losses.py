"""The R2C-GAN objective (spec 1.11): LSGAN, cycle and identity L1, and three weighted cross-entropy terms.

Term names follow the reference's ``train_G`` (``A2B_g_loss``, ``A2B2A_cycle_loss``, ``A2A_c_loss``, ...), so the
golden loss terms can be compared one to one and the training CSV log reads like the reference's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from .models import R2CGAN


@dataclass(frozen=True)
class LossConfig:
    """Every weight of the objective, named. Defaults are the reference's (hard-coded there)."""

    lambda_cycle: float = 10.0
    lambda_identity: float = 5.0
    #: class-term factors: translation A2B/B2A, inside the cycle bracket, inside the identity bracket
    cls_translate: float = 0.1
    cls_cycle: float = 0.01
    cls_identity: float = 0.02
    #: one multiplier on all class terms (0 = the paper's "no classification" ablation)
    lambda_class: float = 1.0
    #: "keras": CE on softmax probabilities clipped to [1e-7, 1-1e-7] exactly as the reference;
    #: "logits": CE on log-softmax (no clipping; identical unless a probability falls below 1e-7)
    cross_entropy: Literal["keras", "logits"] = "keras"


KERAS_EPS = 1e-7


def class_loss(logits: torch.Tensor, onehot: torch.Tensor, mode: str = "keras") -> torch.Tensor:
    """Categorical cross-entropy of one-hot (or soft) ``onehot`` targets, mean over the batch."""
    if mode == "keras":
        p = torch.softmax(logits.float(), dim=1).clamp(KERAS_EPS, 1.0 - KERAS_EPS)
        return -(onehot * torch.log(p)).sum(dim=1).mean()
    return -(onehot * torch.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def lsgan(pred: torch.Tensor, target: float) -> torch.Tensor:
    return F.mse_loss(pred.float(), torch.full_like(pred, target, dtype=torch.float32))


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().mean()


def r2c_forward(gan: R2CGAN, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
    """The six generator passes of one step (names as the reference): A2B, B2A, A2B2A, B2A2B, A2A, B2B."""
    a2b, y_a2b = gan.gen_ab(real_a)
    b2a, y_b2a = gan.gen_ba(real_b)
    a2b2a, y_a2b2a = gan.gen_ba(a2b)
    b2a2b, y_b2a2b = gan.gen_ab(b2a)
    a2a, y_a2a = gan.gen_ba(real_a)
    b2b, y_b2b = gan.gen_ab(real_b)
    return {
        "A2B": a2b, "B2A": b2a, "A2B2A": a2b2a, "B2A2B": b2a2b, "A2A": a2a, "B2B": b2b,
        "y_A2B": y_a2b, "y_B2A": y_b2a, "y_A2B2A": y_a2b2a, "y_B2A2B": y_b2a2b, "y_A2A": y_a2a, "y_B2B": y_b2b,
    }


def generator_losses(
    gan: R2CGAN,
    real_a: torch.Tensor,
    real_b: torch.Tensor,
    label_a: torch.Tensor,
    label_b: torch.Tensor,
    fw: dict[str, torch.Tensor],
    cfg: LossConfig = LossConfig(),
) -> dict[str, torch.Tensor]:
    """All generator terms and ``G_loss`` (exactly the reference's bracket structure, spec 1.11)."""
    ce = lambda k, lab: class_loss(fw[k], lab, cfg.cross_entropy)  # noqa: E731
    t = {
        "A2B_g_loss": lsgan(gan.disc_b(fw["A2B"]), 1.0),
        "B2A_g_loss": lsgan(gan.disc_a(fw["B2A"]), 1.0),
        "A2B2A_cycle_loss": l1(real_a, fw["A2B2A"]),
        "B2A2B_cycle_loss": l1(real_b, fw["B2A2B"]),
        "A2A_id_loss": l1(real_a, fw["A2A"]),
        "B2B_id_loss": l1(real_b, fw["B2B"]),
        "A2B_c_loss": ce("y_A2B", label_a),
        "B2A_c_loss": ce("y_B2A", label_b),
        "A2B2A_c_loss": ce("y_A2B2A", label_a),
        "B2A2B_c_loss": ce("y_B2A2B", label_b),
        "A2A_c_loss": ce("y_A2A", label_a),
        "B2B_c_loss": ce("y_B2B", label_b),
    }
    lc = cfg.lambda_class
    t["G_loss"] = (
        (t["A2B_g_loss"] + t["B2A_g_loss"] + lc * cfg.cls_translate * (t["A2B_c_loss"] + t["B2A_c_loss"]))
        + (t["A2B2A_cycle_loss"] + t["B2A2B_cycle_loss"] + lc * cfg.cls_cycle * (t["A2B2A_c_loss"] + t["B2A2B_c_loss"])) * cfg.lambda_cycle
        + (t["A2A_id_loss"] + t["B2B_id_loss"] + lc * cfg.cls_identity * (t["A2A_c_loss"] + t["B2B_c_loss"])) * cfg.lambda_identity
    )
    return t


def discriminator_losses(
    gan: R2CGAN, real_a: torch.Tensor, real_b: torch.Tensor, fake_a: torch.Tensor, fake_b: torch.Tensor
) -> dict[str, torch.Tensor]:
    """D terms on real images and (pooled, detached) fakes; ``D_loss`` is their sum, not halved (spec 1.11)."""
    t = {
        "D_A_real_loss": lsgan(gan.disc_a(real_a), 1.0),
        "D_A_fake_loss": lsgan(gan.disc_a(fake_a.detach()), 0.0),
        "D_B_real_loss": lsgan(gan.disc_b(real_b), 1.0),
        "D_B_fake_loss": lsgan(gan.disc_b(fake_b.detach()), 0.0),
    }
    t["D_loss"] = t["D_A_real_loss"] + t["D_A_fake_loss"] + t["D_B_real_loss"] + t["D_B_fake_loss"]
    return t
