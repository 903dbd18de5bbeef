"""One training step over plain PyTorch or a DeepSpeed engine, so a recipe's loop never branches on the engine.

A step is one micro-batch: forward, backward and, at an accumulation boundary, clip + learning rate +
optimizer step. Plain PyTorch decides the boundary itself (every ``grad_accum`` micro-batches and at the
end of an epoch, so no gradient crosses an epoch); DeepSpeed decides it (``gradient_accumulation_steps`` of
its config) and clips inside ``engine.step()``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ski_lvlm.training.schedule import set_lr

__all__ = ["StepResult", "Stepper"]


@dataclass
class StepResult:
    loss: torch.Tensor
    """This micro-batch's loss (detached)."""
    boundary: bool
    """Whether the optimizer stepped after this micro-batch."""
    lr_scale: float | None
    """The scheduled rate used at the boundary (None between boundaries)."""


class Stepper:
    """Runs ``loss_fn(module, batch)`` and the optimizer for plain PyTorch (``engine=None``) or DeepSpeed.

    Args:
        model: the model (plain PyTorch runs call it; DeepSpeed runs call ``engine``).
        optimizer: the torch optimizer the recipe built.
        lr_at: optimizer step -> scheduled rate, written to every group as ``rate * group["lr_scale"]``.
        engine: a DeepSpeed engine wrapping ``model``, or None.
        lr_target: the optimizer whose groups get the rate (DeepSpeed's own optimizer when its JSON names one).
        grad_accum: micro-batches per optimizer step (plain PyTorch; DeepSpeed reads its config).
        clip_grad: gradient-norm clip of ``params`` (plain PyTorch; None = off).
        params: the trainable parameters (clipped).
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, lr_at: Callable[[int], float],
                 loss_fn: Callable[[Any, dict], torch.Tensor], engine: Any = None, lr_target: Any = None,
                 grad_accum: int = 1, clip_grad: float | None = None, params: list | None = None):
        self.model, self.optimizer, self.engine = model, optimizer, engine
        self.lr_at, self.loss_fn = lr_at, loss_fn
        self.lr_target = lr_target if lr_target is not None else optimizer
        self.grad_accum, self.clip_grad = grad_accum, clip_grad
        self.params = params if params is not None else [p for p in model.parameters() if p.requires_grad]
        self.micro = 0

    def step(self, batch: dict, step: int, last_in_epoch: bool) -> StepResult:
        """One micro-batch; ``step`` is the optimizer step this micro-batch belongs to (0-based)."""
        if self.engine is not None:
            return self._deepspeed_step(batch, step)
        loss = self.loss_fn(self.model, batch)
        (loss / self.grad_accum).backward()
        self.micro += 1
        if not (self.micro % self.grad_accum == 0 or last_in_epoch):
            return StepResult(loss.detach(), False, None)
        if self.clip_grad:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad)
        scale = self._set_lr(step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.micro = 0
        return StepResult(loss.detach(), True, scale)

    def _deepspeed_step(self, batch: dict, step: int) -> StepResult:
        boundary = self.engine.is_gradient_accumulation_boundary()
        scale = self._set_lr(step) if boundary else None  # before engine.step(), which steps at the boundary
        loss = self.loss_fn(self.engine, batch)
        self.engine.backward(loss)
        self.engine.step()
        return StepResult(loss.detach(), boundary, scale)

    def _set_lr(self, step: int) -> float:
        scale = self.lr_at(step)
        set_lr(self.lr_target, scale)
        return scale
