"""Feature projectors that map encoder features into the LLM's embedding space.

Module layouts match the released checkpoints so their weights load by key: ``linear`` is a bare
``nn.Linear`` (Video-ChatGPT / LLAVIDAL ``mm_projector``: keys ``weight``, ``bias``) and
``mlp2x_gelu`` is ``Sequential(Linear, GELU, Linear)`` (LLaVA-1.5: keys ``0.*``, ``2.*``).
"""

from __future__ import annotations

from torch import nn

__all__ = ["build_projector"]


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """Return the projector ``[..., in_dim] -> [..., out_dim]`` named by ``kind``.

    Raises:
        ValueError: for an unknown ``kind``.
    """
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise ValueError(f"unknown projector type {kind!r}; use 'linear' or 'mlp2x_gelu'")
