"""Feature projectors that map encoder features into the LLM's embedding space.

Module layouts match the released checkpoints so their weights load by key: ``linear`` is a bare
``nn.Linear`` (Video-ChatGPT / LLAVIDAL ``mm_projector``: keys ``weight``, ``bias``) and
``mlp2x_gelu`` is ``Sequential(Linear, GELU, Linear)`` (LLaVA-1.5: keys ``0.*``, ``2.*``).
``std_linear`` / ``std_mlp2x_gelu`` put a :class:`FeatureStandardizer` first (keys ``0.mean``, ``0.std``,
then the layers above shifted by one).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["build_projector", "FeatureStandardizer", "SummaryProjector", "standardizer_of", "PROJECTOR_TYPES"]

PROJECTOR_TYPES = ("linear", "mlp2x_gelu", "std_linear", "std_mlp2x_gelu")


class FeatureStandardizer(nn.Module):
    """``(x - mean) / std`` per feature with statistics fitted once on the training features (not trained).

    Why: the tokens of a small tower trained from scratch share a large common part across videos (per
    dimension, mean 0.33 against a spread of 0.27 on the quickstart's tower); a randomly initialised
    projector passes that on, every video looks alike to the LLM, and instruction tuning settles on one
    answer for all of them. Standardising, as the linear probe does, puts the differences between videos
    first. The statistics are buffers, so they travel with the projector's weights.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        """``features [n, dim]`` (every token row of the training videos)."""
        x = features.reshape(-1, features.shape[-1]).float()
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """Return the projector ``[..., in_dim] -> [..., out_dim]`` named by ``kind``.

    Raises:
        ValueError: for an unknown ``kind``.
    """
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    if kind == "std_linear":
        return nn.Sequential(FeatureStandardizer(in_dim), nn.Linear(in_dim, out_dim))
    if kind == "std_mlp2x_gelu":
        return nn.Sequential(FeatureStandardizer(in_dim), nn.Linear(in_dim, out_dim), nn.GELU(),
                             nn.Linear(out_dim, out_dim))
    raise ValueError(f"unknown projector type {kind!r}; use one of {', '.join(PROJECTOR_TYPES)}")


class SummaryProjector(nn.Module):
    """The per-token projector, plus ``k`` summary tokens that each see the whole clip at once.

    Why: a per-token projector maps every video token on its own, so the LLM must combine 17 tokens through
    attention to tell one action from another, which a few dozen CPU steps of instruction tuning do not
    teach. The linear probe that reads the action 77 % of the time uses all tokens jointly; the summary
    tokens give the LLM the same view: ``[b, n, d_v]`` flattened -> Linear -> GELU -> Linear ->
    ``[b, k, d]``, appended after the per-token rows (``[b, n + k, d]``).
    """

    def __init__(self, tokens: nn.Module, num_in: int, num_summary: int, in_dim: int, out_dim: int):
        super().__init__()
        self.tokens = tokens
        self.num_summary = num_summary
        self.summary = nn.Sequential(nn.Linear(num_in * in_dim, out_dim), nn.GELU(),
                                     nn.Linear(out_dim, num_summary * out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_token = self.tokens(x)  # [b, n, d]
        std = standardizer_of(self.tokens)
        flat = x if std is None else std(x)  # the summary reads the standardised features too
        summary = self.summary(flat.flatten(1)).view(x.shape[0], self.num_summary, -1)  # [b, k, d]
        return torch.cat([per_token, summary], dim=1)  # [b, n + k, d]


def standardizer_of(projector: nn.Module) -> FeatureStandardizer | None:
    """The :class:`FeatureStandardizer` a projector applies first (``std_*`` types, inside a summary
    projector too), or None."""
    if isinstance(projector, SummaryProjector):
        projector = projector.tokens
    first = projector[0] if isinstance(projector, nn.Sequential) else None
    return first if isinstance(first, FeatureStandardizer) else None
