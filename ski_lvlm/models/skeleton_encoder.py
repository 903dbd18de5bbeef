"""Hyperformer-style skeleton encoder (the SkeletonCLIP pose tower), written from its description.

What it computes (``original-system.md`` §3.1), for an NTU skeleton ``x [b, 3, T, 25, M]``:

* ``data_bn``: one BatchNorm over the ``M*V*C`` channels of each time step, then the persons are folded
  into the batch (``[b*M, C, T, V]``) so every body is encoded independently.
* ``num_layers`` units, each ``relu(MS-TCN(joint_attention(x)) + residual(x))``:
  - joint attention runs over the 25 joints *within each frame* (pre-LayerNorm, no MLP sub-block). Its
    logits add four terms: ``q.k`` (content), ``q.rpe[hop(i, j)]`` (a learnable k-hop relative position
    from the NTU bone graph), ``q.e_j`` (the "hyperedge" term: ``e_j`` is the mean feature of joint j's
    body part, projected) and ``w1.e_j`` (a per-head bias). The mix is ``(alpha*softmax + outer) @ v``
    where ``outer`` starts as the identity and ``alpha`` at 0, so a fresh unit passes ``v`` through;
  - the multi-scale temporal conv has 4 branches (kernel-5 convs with dilation 1 and 2, a max-pool and
    a 1x1) of ``width/4`` channels each; units listed in ``stride_layers`` halve T.
* heads: the pooled feature (mean over T', V, then over persons) goes through ``fc`` to the CLIP
  embedding size; the per-step feature ``[b, T', width]`` (mean over joints and persons) is what the
  LVLM uses as skeleton tokens. It is built with ``permute`` -- the original code used ``view`` on a
  ``[b, C, T]`` tensor, which scrambles time and channels.

No dtype is forced (the original cast q/k to fp16 inside attention); the module runs in whatever dtype
its parameters and input have, on CPU or GPU.

Notation: ``b`` batch, ``M`` persons, ``n = b*M``, ``C`` channels, ``T`` frames, ``V`` joints,
``h`` heads, ``d`` head dim, ``P`` body parts.
"""

from __future__ import annotations

import json
import math
from collections import deque
from pathlib import Path

import torch
from torch import nn

from ski_lvlm.data.skeleton import NTU_BONES, NUM_JOINTS

__all__ = [
    "NTU_JOINT_PARTS", "SkeletonEncoder", "create_skeleton_encoder", "list_skeleton_encoders",
    "skeleton_encoder_config", "hop_distances",
]

_CONFIG_DIR = Path(__file__).parent / "model_configs" / "skeleton"

# Body part ("hyperedge") of each NTU joint, as in Hyperformer's ``joint_label`` (5 parts).
NTU_JOINT_PARTS: tuple[int, ...] = (0, 4, 2, 2, 2, 2, 1, 1, 2, 2, 1, 1, 2, 3, 3, 3, 2, 3, 3, 3, 1, 0, 1, 0, 1)


def hop_distances(num_joints: int = NUM_JOINTS, bones=NTU_BONES) -> torch.Tensor:
    """Shortest-path hop count between every pair of joints of the bone graph, ``[V, V]`` int64."""
    adj: list[list[int]] = [[] for _ in range(num_joints)]
    for a, b in bones:
        adj[a].append(b)
        adj[b].append(a)
    dist = torch.full((num_joints, num_joints), -1, dtype=torch.long)
    for src in range(num_joints):
        dist[src, src] = 0
        queue = deque([src])
        while queue:
            u = queue.popleft()
            for w in adj[u]:
                if dist[src, w] < 0:
                    dist[src, w] = dist[src, u] + 1
                    queue.append(w)
    if (dist < 0).any():
        raise ValueError("bone graph is not connected")
    return dist


class HypergraphAttention(nn.Module):
    """Multi-head attention over the joints of one frame with hop and body-part (hyperedge) terms."""

    def __init__(self, dim_in: int, dim_out: int, heads: int, hops: torch.Tensor, parts: tuple[int, ...],
                 proj_groups: int):
        super().__init__()
        if dim_out % heads:
            raise ValueError(f"width {dim_out} must be divisible by heads {heads}")
        self.heads, self.head_dim = heads, dim_out // heads
        num_joints = hops.shape[0]
        num_parts = max(parts) + 1
        self.q = nn.Linear(dim_in, dim_out)
        self.kv = nn.Linear(dim_in, 2 * dim_out)
        self.pe_proj = nn.Linear(dim_in, dim_out)
        self.rpe = nn.Parameter(torch.randn(int(hops.max()) + 1, dim_out) * 0.02)  # one vector per hop distance
        self.w1 = nn.Parameter(torch.randn(heads, self.head_dim) * 0.02)
        self.outer = nn.Parameter(torch.eye(num_joints).repeat(heads, 1, 1))  # [h, V, V]
        self.alpha = nn.Parameter(torch.zeros(1))
        self.proj = nn.Conv2d(dim_out, dim_out, 1, groups=proj_groups)
        self.register_buffer("hops", hops.clone(), persistent=False)
        part_index = torch.tensor(parts, dtype=torch.long)
        member = torch.zeros(num_parts, num_joints)
        member[part_index, torch.arange(num_joints)] = 1.0
        self.register_buffer("part_index", part_index, persistent=False)
        self.register_buffer("part_avg", member / member.sum(1, keepdim=True), persistent=False)  # [P, V]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [n, T, V, C_in]`` (already layer-normed) -> ``[n, C_out, T, V]``."""
        n, t, v, _ = x.shape
        h, d = self.heads, self.head_dim

        def split(y: torch.Tensor) -> torch.Tensor:  # [n, T, V, h*d] -> [n, T, h, V, d]
            return y.reshape(n, t, v, h, d).permute(0, 1, 3, 2, 4)

        q = split(self.q(x))
        k, val = (split(y) for y in self.kv(x).chunk(2, dim=-1))
        part_mean = torch.einsum("ntvc,pv->ntpc", x, self.part_avg.to(x.dtype))  # [n, T, P, C_in]
        e_k = split(self.pe_proj(part_mean[:, :, self.part_index]))  # hyperedge of each joint's part [n,T,h,V,d]
        pos = self.rpe[self.hops].reshape(v, v, h, d)  # [V, V, h, d]

        logits = q @ k.transpose(-1, -2)  # a: content [n, T, h, V, V]
        logits = logits + torch.einsum("nthid,ijhd->nthij", q, pos)  # b: k-hop relative position
        logits = logits + q @ e_k.transpose(-1, -2)  # c: query vs. key joint's hyperedge
        logits = logits + torch.einsum("hd,nthjd->nthj", self.w1, e_k).unsqueeze(-2)  # d: per-head bias
        attn = torch.softmax(logits / math.sqrt(d), dim=-1)
        attn = self.alpha * attn + self.outer  # [n, T, h, V, V]
        out = (attn @ val).permute(0, 2, 4, 1, 3).reshape(n, h * d, t, v)  # [n, C_out, T, V]
        return self.proj(out)


class JointAttentionBlock(nn.Module):
    """Pre-LayerNorm joint attention plus a residual (1x1 projection when the width changes)."""

    def __init__(self, dim_in: int, dim_out: int, heads: int, hops: torch.Tensor, parts: tuple[int, ...],
                 proj_groups: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim_in)
        self.attn = HypergraphAttention(dim_in, dim_out, heads, hops, parts, proj_groups)
        self.skip = nn.Identity() if dim_in == dim_out else nn.Conv2d(dim_in, dim_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, C_in, T, V] -> [n, C_out, T, V]
        return self.attn(self.norm(x.permute(0, 2, 3, 1))) + self.skip(x)


class MultiScaleTemporalConv(nn.Module):
    """Four parallel temporal branches (dilated convs, max-pool, 1x1), concatenated; no inner residual."""

    def __init__(self, dim_in: int, dim_out: int, kernel_size: int, dilations: tuple[int, ...], stride: int):
        super().__init__()
        n_branches = len(dilations) + 2
        if dim_out % n_branches:
            raise ValueError(f"width {dim_out} must be divisible by the {n_branches} temporal branches")
        bc = dim_out // n_branches
        branches: list[nn.Module] = []
        for dil in dilations:
            pad = (kernel_size - 1) * dil // 2
            branches.append(nn.Sequential(
                nn.Conv2d(dim_in, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(inplace=True),
                nn.Conv2d(bc, bc, (kernel_size, 1), stride=(stride, 1), padding=(pad, 0), dilation=(dil, 1)),
                nn.BatchNorm2d(bc)))
        branches.append(nn.Sequential(
            nn.Conv2d(dim_in, bc, 1), nn.BatchNorm2d(bc), nn.ReLU(inplace=True),
            nn.MaxPool2d((3, 1), stride=(stride, 1), padding=(1, 0)), nn.BatchNorm2d(bc)))
        branches.append(nn.Sequential(nn.Conv2d(dim_in, bc, 1, stride=(stride, 1)), nn.BatchNorm2d(bc)))
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [n, C, T, V] -> [n, C_out, ceil(T/stride), V]
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class EncoderUnit(nn.Module):
    """``relu(MS-TCN(joint_attention(x)) + residual(x))``."""

    def __init__(self, dim_in: int, dim_out: int, *, heads: int, stride: int, hops: torch.Tensor,
                 parts: tuple[int, ...], kernel_size: int, dilations: tuple[int, ...], proj_groups: int,
                 residual: bool):
        super().__init__()
        self.spatial = JointAttentionBlock(dim_in, dim_out, heads, hops, parts, proj_groups)
        self.temporal = MultiScaleTemporalConv(dim_out, dim_out, kernel_size, dilations, stride)
        if not residual:
            self.residual = None
        elif dim_in == dim_out and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(nn.Conv2d(dim_in, dim_out, 1, stride=(stride, 1)), nn.BatchNorm2d(dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.temporal(self.spatial(x))
        if self.residual is not None:
            y = y + self.residual(x)
        return torch.relu(y)


class SkeletonEncoder(nn.Module):
    """Hyperformer-style encoder: ``x [b, C, T, V, M]`` -> (embedding ``[b, embed_dim]``, per-step ``[b, T', width]``).

    ``T' = ceil(T / 2**len(stride_layers))`` (300 -> 75 for the base preset).
    """

    def __init__(self, *, in_channels: int = 3, num_joints: int = NUM_JOINTS, num_persons: int = 2,
                 width: int = 216, num_layers: int = 10, heads: int = 9, stride_layers: tuple[int, ...] = (5, 8),
                 kernel_size: int = 5, dilations: tuple[int, ...] = (1, 2), proj_groups: int = 6,
                 embed_dim: int = 512, parts: tuple[int, ...] = NTU_JOINT_PARTS):
        super().__init__()
        if len(parts) != num_joints:
            raise ValueError(f"parts has {len(parts)} entries for {num_joints} joints")
        if any(not 1 <= s <= num_layers for s in stride_layers):
            raise ValueError(f"stride_layers {list(stride_layers)} must lie in 1..{num_layers}")
        self.in_channels, self.num_joints, self.num_persons = in_channels, num_joints, num_persons
        self.width, self.embed_dim = width, embed_dim
        self.temporal_stride = 2 ** len(stride_layers)
        hops = hop_distances(num_joints)
        self.data_bn = nn.BatchNorm1d(num_persons * num_joints * in_channels)
        self.layers = nn.ModuleList(
            EncoderUnit(in_channels if i == 0 else width, width, heads=heads,
                        stride=2 if (i + 1) in stride_layers else 1, hops=hops, parts=tuple(parts),
                        kernel_size=kernel_size, dilations=tuple(dilations), proj_groups=proj_groups,
                        residual=i > 0)
            for i in range(num_layers))
        self.fc = nn.Linear(width, embed_dim)

    def num_steps(self, num_frames: int) -> int:
        """How many per-step features a clip of ``num_frames`` frames yields."""
        return -(-num_frames // self.temporal_stride)

    def _check_input(self, x: torch.Tensor) -> None:
        want = (self.in_channels, self.num_joints, self.num_persons)
        if x.dim() != 5 or (x.shape[1], x.shape[3], x.shape[4]) != want:
            raise ValueError(
                f"skeleton input must be [b, {want[0]}, T, {want[1]} joints, {want[2]} persons]; got {list(x.shape)}")

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [b, C, T, V, M]`` -> (pooled ``[b, width]``, per-step ``[b, T', width]``), before ``fc``."""
        self._check_input(x)
        b, c, t, v, m = x.shape
        x = x.to(self.fc.weight.dtype)
        # data_bn normalises each (person, joint, coord) channel over time.
        x = x.permute(0, 4, 3, 1, 2).reshape(b, m * v * c, t)  # [b, M*V*C, T]
        x = self.data_bn(x)
        x = x.reshape(b, m, v, c, t).permute(0, 1, 3, 4, 2).reshape(b * m, c, t, v)  # [n, C, T, V]
        for layer in self.layers:
            x = layer(x)  # [n, width, T', V]
        _, width, t_out, _ = x.shape
        x = x.reshape(b, m, width, t_out, v)
        pooled = x.mean(dim=(3, 4)).mean(dim=1)  # [b, width]
        per_step = x.mean(dim=4).mean(dim=1).permute(0, 2, 1)  # [b, T', width] (permute, not view)
        return pooled, per_step

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [b, C, T, V, M]`` -> (embedding ``[b, embed_dim]``, not normalised; per-step ``[b, T', width]``)."""
        pooled, per_step = self.forward_features(x)
        return self.fc(pooled), per_step


def list_skeleton_encoders() -> list[str]:
    """Preset names found in ``model_configs/skeleton/*.json``."""
    return sorted(p.stem for p in _CONFIG_DIR.glob("*.json"))


def skeleton_encoder_config(name: str) -> dict:
    """The keyword arguments of preset ``name`` (a preset name or a path to a JSON file)."""
    path = Path(name) if name.endswith(".json") else _CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown skeleton encoder {name!r}; presets: {', '.join(list_skeleton_encoders())}")
    cfg = json.loads(path.read_text())
    return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items() if not k.startswith("_")}


def create_skeleton_encoder(name: str = "tiny", **overrides) -> SkeletonEncoder:
    """Build preset ``name`` (``tiny``, ``small``, ``base`` or a JSON path) with keyword overrides.

    Example: ``create_skeleton_encoder("base", embed_dim=768)`` for a ViT-L text tower.
    """
    cfg = skeleton_encoder_config(name)
    cfg.update(overrides)
    return SkeletonEncoder(**cfg)
