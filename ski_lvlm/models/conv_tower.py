"""A small CNN frame encoder that stands in for open_clip's ViT image tower.

Why a CNN: trained from scratch on a few hundred clips of a thin moving figure, the tiny ViTs stay weak
(16-pixel patches embed a limb as a faint line inside one linear patch projection; the 8-pixel-patch
variant learned even less), while a few 3x3 convolutions see edges and limbs at every position. On the
default world's validation subjects (two of the six training subjects, ``train_val.csv``) the tiny ViT
reached 33.8 % top-1 over the 20 classes after 20 epochs on the motion crop, this tower 42.5 %, and a
linear probe reads 68.8 % from its last-block tokens (README, "The video pathway").

The class exposes the slice of ``open_clip.VisionTransformer`` the toolkit uses, so the SKI-VLM /
ViFi-CLIP recipes, zero-shot evaluation, the feature cache and the LVLM's ``VideoTower`` take it
unchanged: ``forward(images) -> [n, embed_dim]``, ``forward_intermediates(..., output_fmt="NLC")``,
``transformer.width`` / ``transformer.resblocks`` (the conv stages, so ``layer=-2`` and
``lock_image_tower`` keep their meaning), ``grid_size``, ``image_size`` and ``output_dim``.
Architectures are JSON files in ``model_configs/conv/`` (``{"embed_dim", "conv_cfg", "text_cfg"}``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvVisual"]


class _Stages(nn.Module):
    """The conv stages under the names open_clip's ViT uses (``resblocks``, ``width``)."""

    def __init__(self, blocks: list[nn.Module], width: int):
        super().__init__()
        self.resblocks = nn.ModuleList(blocks)
        self.width = width


def _stage(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ConvVisual(nn.Module):
    """Four 3x3 conv stages (three halve the resolution), tokens pooled to ``grid x grid``, then a projection
    of the whole grid (so the embedding keeps where in the frame things move).

    Args:
        image_size: input side in pixels (frames are resized to it).
        width: channels of the first stage; later stages use 2x and 4x (the token width is ``4 * width``).
        embed_dim: joint embedding size (the text tower projects to the same).
        grid: tokens per side that every stage's output is average-pooled to (``grid**2`` tokens per frame).
    """

    def __init__(self, image_size: int = 48, width: int = 16, embed_dim: int = 64, grid: int = 3):
        super().__init__()
        self.image_size = image_size
        self.grid_size = (grid, grid)
        self.output_dim = embed_dim
        w = width
        self.transformer = _Stages([_stage(3, w, True), _stage(w, 2 * w, True), _stage(2 * w, 4 * w, True),
                                    _stage(4 * w, 4 * w, False)], 4 * w)
        # the embedding reads the token grid, not its mean: where the motion is (a hand above the head or
        # at the mouth) is what tells many actions apart
        self.proj = nn.Linear(4 * w * grid * grid, embed_dim)
        self.output_tokens = False

    def _tokens(self, fmap: torch.Tensor) -> torch.Tensor:
        g = self.grid_size[0]
        return F.adaptive_avg_pool2d(fmap, g).flatten(2).transpose(1, 2)  # [n, c, h, w] -> [n, g*g, c]

    def forward_intermediates(self, x: torch.Tensor, indices: list[int] | int | None = None,
                              output_fmt: str = "NLC", **_) -> dict:
        """``x [n, 3, S, S]`` -> ``image_features [n, embed_dim]`` and the requested stages' tokens.

        Only stages of the token width (the last two) can be requested, as ``[n, grid**2, 4 * width]``.
        """
        if output_fmt != "NLC":
            raise ValueError(f"ConvVisual returns NLC tokens only, got output_fmt={output_fmt!r}")
        n_blocks = len(self.transformer.resblocks)
        wanted = range(n_blocks) if indices is None else [indices] if isinstance(indices, int) else indices
        wanted = {i % n_blocks for i in wanted}
        inter = []
        for i, block in enumerate(self.transformer.resblocks):
            x = block(x)
            if i in wanted:
                if x.shape[1] != self.transformer.width:
                    raise ValueError(f"ConvVisual: stage {i} has {x.shape[1]} channels, not the token width "
                                     f"{self.transformer.width}; use layer -1 or -2")
                inter.append(self._tokens(x))
        pooled = self.proj(self._tokens(x).flatten(1))  # [n, embed_dim]
        return {"image_features": pooled, "image_intermediates": inter}

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        for block in self.transformer.resblocks:
            x = block(x)
        tokens = self._tokens(x)  # [n, grid**2, 4 * width]
        pooled = self.proj(tokens.flatten(1))  # [n, embed_dim]
        return (pooled, tokens) if self.output_tokens else pooled

    def lock(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        self.requires_grad_(False)
        for block in list(self.transformer.resblocks)[len(self.transformer.resblocks) - unlocked_groups:]:
            block.requires_grad_(True)
