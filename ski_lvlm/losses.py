"""Loss modules for SkeletonCLIP (phase 1) and SKI-VLM (phase 2); each returns a dict of named terms.

The recipe only sums the terms (:func:`total_loss`) and logs them by name, so a new term never needs a
recipe change. Terms are already weighted: ``sum(terms.values())`` is the training loss.

SKI-VLM (``original-system.md`` §4.3)::

    L = CE(video logits, y) + CE(skeleton logits, y) + alpha * MSE(video, skeleton)

The distillation MSE compares either the cosine-similarity matrices (``distill_on="sims"``, default:
both lie in [-1, 1] whatever the learnable temperatures are, so ``alpha`` means the same thing all
through training) or the logits themselves (``"logits"``: what the original computed, where the
logits were unscaled). Gradients flow into both branches (the collaborative variant) unless the
teacher is frozen, in which case its outputs carry no gradient.

``distill_on="features"`` is a variant, not the paper's: the squared distance between the L2-normalised
clip embeddings of the two branches, ``|v/|v| - s/|s||^2`` (in [0, 4]), averaged over the batch. The
similarity and logit matrices only say how a clip relates to the *seen* class prompts, which the video
branch already fits from its own cross-entropy; the embedding itself also carries what the skeleton
encoder learned about the motion (side, body part, order), so regressing onto it is the direct way to
hand that to the video tower. Both embeddings must have the same width (both towers project to the CLIP
embedding size).

``distill_on="steps"`` is a variant too, per time step rather than per clip: a temporal mean cannot tell
"sit down" from "stand up" (the same motion reversed), while the skeleton encoder's per-step features
can. Each frame embedding, mapped to the teacher's width by the SKI-VLM's ``step_head``
(``video_steps [b, t, w]``), is regressed onto the teacher's per-step feature at the same moment of the
clip (``skeleton_steps [b, T', w]`` resampled to t steps, :func:`resample_steps`): the same squared
distance of unit vectors as ``features`` (in [0, 4]), averaged over steps and clips.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SkeletonTextLoss", "SKIVLMLoss", "CaptionContrastiveLoss", "total_loss", "resample_steps",
           "unit_distance"]


def total_loss(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training loss: the sum of the (already weighted) named terms."""
    return sum(terms.values())


def unit_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``|a/|a| - b/|b||^2`` along the last axis (in [0, 4]: 0 same direction, 4 opposite), averaged over the rest."""
    return (F.normalize(a.float(), dim=-1) - F.normalize(b.float(), dim=-1)).pow(2).sum(-1).mean()


def resample_steps(x: torch.Tensor, steps: int) -> torch.Tensor:
    """``x [b, T', w]`` -> ``[b, steps, w]``, linearly interpolated along time.

    Video frames and skeleton steps both tile the whole clip uniformly, each standing for the middle of its
    own segment: frame i of t is drawn from segment i (``segment_middle``, or a random frame in it when
    training), and step j of T' pools the encoder's stride-wide window j of the skeleton frames, which
    ``data.skeleton_mode=resize`` stretches over the whole clip (``pad`` would not: its tail is padding).
    Cell centres on both sides is ``align_corners=False``; the ends are held (no extrapolation), so a
    ramp stays a ramp with its endpoints.
    """
    if x.shape[1] == steps:
        return x
    y = F.interpolate(x.transpose(1, 2), size=steps, mode="linear", align_corners=False)  # [b, w, steps]
    return y.transpose(1, 2)  # [b, steps, w]


class SkeletonTextLoss(nn.Module):
    """Phase 1: cross-entropy of the skeleton-vs-class-text logits (``{"skel_text": ...}``)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"skel_text": F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)}


class SKIVLMLoss(nn.Module):
    """Phase 2: ``video_text`` + ``skel_text`` + ``distill`` (= alpha * MSE).

    Terms that cannot be computed are left out: without skeleton outputs (ViFi-CLIP baseline, or a batch
    without skeletons) only ``video_text`` is returned; with ``alpha == 0`` no ``distill`` term.
    """

    DISTILL_ON = ("sims", "logits", "features", "steps")

    def __init__(self, alpha: float = 10.0, distill_on: str = "sims", label_smoothing: float = 0.0):
        super().__init__()
        if distill_on not in self.DISTILL_ON:
            raise ValueError(f"distill_on must be one of {self.DISTILL_ON}, got {distill_on!r}")
        self.alpha, self.distill_on, self.label_smoothing = alpha, distill_on, label_smoothing

    def forward(self, out: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {"video_text": F.cross_entropy(out["video_logits"].float(), labels, label_smoothing=self.label_smoothing)}
        if "skeleton_logits" not in out:
            return terms
        if out["skeleton_logits"].requires_grad:  # a frozen teacher gets no CE (it could not learn from it)
            terms["skel_text"] = F.cross_entropy(out["skeleton_logits"].float(), labels,
                                                 label_smoothing=self.label_smoothing)
        if self.alpha:
            terms["distill"] = self.alpha * self.distill(out)
        return terms

    def distill(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The unweighted distillation distance between the video and skeleton branches (a scalar)."""
        if self.distill_on == "features":
            v, s = out["video_embedding"], out["skeleton_embedding"]  # [b, d] each
            if v.shape != s.shape:
                raise ValueError(f"distill_on=features needs embeddings of one width: video {tuple(v.shape)}, "
                                 f"skeleton {tuple(s.shape)}")
            return unit_distance(v, s)
        if self.distill_on == "steps":
            if "video_steps" not in out or "skeleton_steps" not in out:
                raise ValueError("distill_on=steps needs video_steps and skeleton_steps: build the SKI-VLM with "
                                 "step_head=True and pass a skeleton")
            v = out["video_steps"]  # [b, t, w]: frame embeddings through the SKI-VLM's step_head
            s = resample_steps(out["skeleton_steps"].float(), v.shape[1])  # [b, T', w] -> [b, t, w]
            if v.shape != s.shape:
                raise ValueError(f"distill_on=steps needs step features of one width: video {tuple(v.shape)}, "
                                 f"skeleton {tuple(s.shape)} (the SKI-VLM's step_head maps one to the other)")
            return unit_distance(v, s)
        key = self.distill_on  # "sims" or "logits": [b, C] each
        return F.mse_loss(out[f"video_{key}"].float(), out[f"skeleton_{key}"].float())


class CaptionContrastiveLoss(nn.Module):
    """Symmetric InfoNCE between clip embeddings and their own captions (``{"caption": ...}``).

    Captions describe body side, body part and tempo, which class names alone do not; matching them
    teaches the text tower what the words mean, so unseen class names built from seen words can be
    placed. Pairs whose captions are identical strings are not treated as negatives of each other.
    """

    def __init__(self, weight: float = 1.0):
        super().__init__()
        self.weight = weight

    def forward(self, emb: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                same: torch.Tensor | None = None, name: str = "caption") -> dict[str, torch.Tensor]:
        """``emb [b, d]``, ``text [b, d]`` (both normalised here), ``same [b, b]`` bool: pairs with equal text."""
        logits = logit_scale * F.normalize(emb.float(), dim=-1) @ F.normalize(text.float(), dim=-1).t()  # [b, b]
        if same is not None:
            eye = torch.eye(len(emb), dtype=torch.bool, device=emb.device)
            logits = logits.masked_fill(same & ~eye, float("-inf"))
        target = torch.arange(len(emb), device=emb.device)
        loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        return {name: self.weight * loss}
