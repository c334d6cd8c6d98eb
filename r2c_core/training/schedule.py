"""The learning-rate schedule: constant, then linear decay to exactly 0 at the last step (never negative).

The reference's ``LinearDecay`` runs one extra epoch past its schedule and goes negative; here the rate is
``lr`` for steps ``< decay_start`` and ``lr * (1 - (step - decay_start) / (last - decay_start))`` after, clamped
to ``[0, lr]``, where ``last = total_steps - 1`` is the index of the final step (its rate is exactly 0).
"""

from __future__ import annotations


def linear_decay_lr(step: int, base_lr: float, total_steps: int, decay_start: int) -> float:
    """Learning rate of optimiser step ``step`` (0-based) of ``total_steps``."""
    if step < decay_start:
        return float(base_lr)
    last = total_steps - 1
    if last <= decay_start:
        return 0.0
    frac = 1.0 - (step - decay_start) / (last - decay_start)
    return float(base_lr) * min(1.0, max(0.0, frac))
