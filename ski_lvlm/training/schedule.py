"""Learning-rate schedule as a pure function of the optimizer step (nothing to checkpoint but the step).

Linear warmup from ``warmup_init`` to ``base_lr`` over ``warmup_steps``, then cosine decay to ``min_lr``
at ``total_steps`` (timm's ``CosineLRScheduler`` as the original used it, stepped per iteration, with
``lr_min = lr / 100`` and ``warmup_lr_init = 0``).

Two warmup conventions, one rule: phases 1/2 follow timm (step 0 runs at ``warmup_init``); the LVLM
recipe counts the step being taken (``count_current=True``: step 0 already runs at ``base_lr / warmup_steps``,
as HF's Trainer does, so the first optimizer step moves the weights). After warmup both decay the same way.

Per-group learning rates: :func:`set_lr` multiplies the scheduled rate by each group's ``lr_scale``. A
recipe with several peak rates (the LVLM's projectors vs the LLM) schedules in units of 1 (``base_lr=1``)
and puts each group's peak rate in its ``lr_scale``.
"""

from __future__ import annotations

import math

import torch

__all__ = ["warmup_cosine", "set_lr"]


def warmup_cosine(step: int, *, base_lr: float, total_steps: int, warmup_steps: int = 0,
                  min_lr: float = 0.0, warmup_init: float = 0.0, count_current: bool = False) -> float:
    """Learning rate for optimizer step ``step`` (0-based); ``count_current``: warmup counts ``step + 1``."""
    if warmup_steps > 0 and step < warmup_steps:
        if count_current:  # (from 0, not warmup_init)
            return base_lr * (step + 1) / warmup_steps
        return warmup_init + (base_lr - warmup_init) * step / warmup_steps
    decay = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay))
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every param group's lr (groups may carry an ``lr_scale`` multiplier)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
