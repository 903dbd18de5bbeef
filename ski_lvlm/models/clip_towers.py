"""CLIP image/text towers through open_clip, plus the small pieces every stage shares.

open_clip carries the architectures (``ViT-B-16`` is the paper's) and the pretrained weights when a
user has them (an open_clip tag such as ``openai``, or a local checkpoint file, loaded with
``weights_only=True``). On machines without weights, ``ski-tiny-ViT`` (``model_configs/clip/``) is a
randomly initialised tower small enough for CPU tests and the quickstart.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
from torch import nn

__all__ = [
    "PROMPT_TEMPLATES", "FRAME_INPUTS", "create_clip", "get_tokenizer", "frame_features", "class_prompts",
    "clip_image_stats", "apply_frame_input",
]

_CONFIG_DIR = Path(__file__).parent / "model_configs" / "clip"
_registered = False

# ViFi-CLIP / ActionCLIP-style prompts. The original SKI code used "a photo of a {}." (one prompt).
PROMPT_TEMPLATES: tuple[str, ...] = ("a video of a person {}.",)

# What the image tower sees of each frame (see apply_frame_input).
FRAME_INPUTS: tuple[str, ...] = ("rgb", "median_residual")


def _register() -> None:
    global _registered
    if not _registered:
        open_clip.add_model_config(_CONFIG_DIR)
        _registered = True


def create_clip(arch: str = "ViT-B-16", pretrained: str | None = None, device: str | torch.device = "cpu") -> nn.Module:
    """Build an open_clip ``CLIP`` model; ``pretrained`` is an open_clip tag, a local file, or None (random init)."""
    _register()
    if pretrained and Path(pretrained).suffix and not Path(pretrained).exists():
        raise FileNotFoundError(f"CLIP checkpoint not found: {pretrained}")
    model = open_clip.create_model(arch, pretrained=pretrained or None, device=device)
    return model


def get_tokenizer(arch: str = "ViT-B-16"):
    """open_clip's tokenizer for ``arch`` (the bundled CLIP BPE for the OpenAI-style towers; offline)."""
    _register()
    return open_clip.get_tokenizer(arch)


def clip_image_stats(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    """(mean, std, image_size) the model's image tower expects."""
    visual = model.visual
    mean = getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    size = visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return tuple(mean), tuple(std), size


def frame_features(visual: nn.Module, images: torch.Tensor, layer: int = -2) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled embeddings and patch tokens of one transformer layer, in one pass.

    Video-ChatGPT/LLAVIDAL take the *penultimate* layer's patch tokens (``layer=-2``) for the LLM, while
    the zero-shot path uses the projected CLS embedding; computing both together halves the cost when a
    stage needs both.

    Args:
        visual: an open_clip ``VisionTransformer`` (``model.visual``).
        images: ``[n, 3, H, W]`` normalised frames.
        layer: which block's output to return as tokens (negative counts from the end).

    Returns:
        pooled ``[n, embed_dim]`` (projected, not normalised) and tokens ``[n, n_patch, width]``.
    """
    n_blocks = len(visual.transformer.resblocks)
    index = layer % n_blocks
    out = visual.forward_intermediates(images, indices=[index], output_fmt="NLC")
    return out["image_features"], out["image_intermediates"][0]


def class_prompts(class_names: list[str], templates: tuple[str, ...] = PROMPT_TEMPLATES) -> list[list[str]]:
    """One list of prompt strings per class; text embeddings are averaged over templates."""
    return [[t.format(name) for t in templates] for name in class_names]


def apply_frame_input(video: torch.Tensor, mode: str = "rgb") -> torch.Tensor:
    """The frames a video model's image tower sees: ``video [..., t, 3, H, W]`` (normalised) -> same shape.

    ``rgb`` passes the frames through (pretrained CLIP towers). ``median_residual`` replaces each frame
    by ``|frame - per-pixel median over the clip's t frames|``: the static room and the still parts of
    the body cancel and what moves is left. A randomly initialised tower trained on a few hundred clips
    otherwise memorises each clip's room and clothes (it fits the training clips and stays at chance on
    new people); on the residual it has to look at the motion, which is what tells actions apart. The
    median (not the mean) keeps a limb that passes a pixel in a few frames from bleeding into the
    background estimate. It needs no skeleton and no extra decoding (only the sampled frames), so the
    same transform runs at training, evaluation and LVLM feature extraction.
    """
    if mode == "rgb":
        return video
    if mode != "median_residual":
        raise ValueError(f"frame_input must be one of {FRAME_INPUTS}, got {mode!r}")
    if video.dim() < 4 or video.shape[-4] < 3:
        raise ValueError(f"frame_input='median_residual' needs clips of >= 3 frames [..., t, 3, H, W], "
                         f"got shape {tuple(video.shape)}")
    # contiguous(): torch 2.x's median over an expanded (stride-0) time axis returns wrong values
    background = video.contiguous().median(dim=-4, keepdim=True).values  # [..., 1, 3, H, W]
    return (video - background).abs()
