"""Learning-rate schedule as a pure function of the optimizer step (nothing to checkpoint but the step).

Linear warmup from ``warmup_init`` to ``base_lr`` over ``warmup_steps``, then cosine decay to ``min_lr``
at ``total_steps`` (timm's ``CosineLRScheduler`` as the original used it, stepped per iteration, with
``lr_min = lr / 100`` and ``warmup_lr_init = 0``).
"""

from __future__ import annotations

import math

import torch

__all__ = ["warmup_cosine", "set_lr"]


def warmup_cosine(step: int, *, base_lr: float, total_steps: int, warmup_steps: int = 0,
                  min_lr: float = 0.0, warmup_init: float = 0.0) -> float:
    """Learning rate for optimizer step ``step`` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return warmup_init + (base_lr - warmup_init) * step / warmup_steps
    decay = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's lr (groups may carry an ``lr_scale`` multiplier)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
