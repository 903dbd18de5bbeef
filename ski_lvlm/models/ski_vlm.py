"""SkeletonCLIP, VideoCLIP (ViFi-CLIP) and SKI-VLM: the phase-1 and phase-2 models.

* :class:`SkeletonCLIP` (phase 1): skeleton encoder + text tower. ``logits = scale * cos(skel, text)``
  (``logit_mode="clip"``, learnable scale initialised at ln 100 as in CLIP/ViFi-CLIP) or, to reproduce the
  original code, ``logit_mode="none"``: the raw (unnormalised) pose embedding dotted with the normalised
  text embedding, no temperature.
* :class:`VideoCLIP` (ViFi-CLIP): the CLIP image tower applied frame by frame, the CLS embeddings averaged
  over time, compared with class-prompt text embeddings of its own text tower.
* :class:`SKIVLM` (phase 2): a VideoCLIP student plus a SkeletonCLIP teacher trained together; at
  inference only the video branch is used (:meth:`SKIVLM.video_branch`), so no skeleton is needed.

The text tower is CLIP's own (``text_encoder="clip"``) or a pretrained Hugging Face sentence encoder
with a trained linear projection (``text_encoder="minilm-l6"`` or a local folder; see
:func:`ski_lvlm.models.clip_towers.create_clip`); :func:`text_tokenizer` gives the matching tokenizer.

All three share one small API: ``encode_video / encode_skeleton / encode_text(x, normalize=False)``,
``class_embeddings(tokens, num_templates)`` and lock helpers, so recipes never reach into towers.

Checkpoints: :func:`save_model` writes ``model.safetensors`` + ``model_config.json``; :func:`load_model`
rebuilds the model from that folder (strictly: every missing or unexpected key is an error), and
:func:`load_video_clip` / :func:`load_skeleton_clip` extract one branch from any of the three kinds.

Notation: ``b`` batch, ``t`` frames, ``C`` classes, ``K`` prompt templates, ``L`` context length,
``d`` embedding size, ``T'`` skeleton steps.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from ski_lvlm.models.clip_towers import (
    FRAME_INPUTS, apply_frame_input, create_clip, embed_dim, frame_features, get_tokenizer, lock_text_body,
)
from ski_lvlm.models.skeleton_encoder import SkeletonEncoder, skeleton_encoder_config
from ski_lvlm.utils.run_layout import resolve_model_dir

__all__ = [
    "SkeletonCLIP", "VideoCLIP", "SKIVLM", "encode_clip_text", "build_skeleton_clip", "build_video_clip",
    "build_ski_vlm", "save_model", "load_model", "load_video_clip", "load_skeleton_clip", "tokenize_classes",
    "text_tokenizer",
]

MAX_LOGIT_SCALE = 100.0


def encode_clip_text(clip: nn.Module, tokens: torch.Tensor, pool: str = "eot") -> torch.Tensor:
    """Text embeddings ``[n, d]`` (not normalised) of an open_clip text tower.

    ``pool="eot"`` is CLIP's own (the end-of-text token's feature). ``pool="mean"`` averages the features
    of all non-padding tokens: with a small randomly initialised tower this makes a class name roughly
    the sum of its words, which lets an unseen name built from seen words ("wave left hand" after
    "wave right hand" and "raise left hand") land near the right place. Pretrained CLIP towers keep
    ``eot``. A Hugging Face text tower (``CustomTextCLIP``) always mean-pools, as it was pretrained to.
    """
    if isinstance(clip, open_clip.CustomTextCLIP):
        # right-padded ids: drop the all-padding tail (masked out anyway), so a 64-slot context costs
        # what the longest prompt in the batch costs
        n = int((tokens != clip.text.config.pad_token_id).sum(1).max())
        return clip.encode_text(tokens[:, :max(n, 1)])  # [n, d]
    if pool == "eot":
        return clip.encode_text(tokens)
    if pool != "mean":
        raise ValueError(f"text pool must be 'eot' or 'mean', got {pool!r}")
    cast_dtype = clip.transformer.get_cast_dtype()
    x = clip.token_embedding(tokens).to(cast_dtype) + clip.positional_embedding.to(cast_dtype)  # [n, L, w]
    x = clip.ln_final(clip.transformer(x, attn_mask=clip.attn_mask))
    valid = (tokens != 0).to(x.dtype).unsqueeze(-1)  # [n, L, 1]; 0 is the padding id of CLIP's BPE
    x = (x * valid).sum(1) / valid.sum(1).clamp(min=1)  # [n, w]
    proj = clip.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def text_tokenizer(config: dict[str, Any]):
    """The tokenizer of the text tower a ``model_config`` (one branch's) describes; old folders mean CLIP."""
    return get_tokenizer(config["clip_arch"], config.get("text_encoder", "clip"))


def tokenize_classes(tokenizer, class_names: list[str], templates: tuple[str, ...]) -> torch.Tensor:
    """Tokens ``[C*K, L]`` for every (class, template) pair, class-major; pair with ``num_templates=K``."""
    return tokenizer([t.format(name) for name in class_names for t in templates])


def _class_average(emb: torch.Tensor, num_templates: int) -> torch.Tensor:
    """``[C*K, d]`` -> normalised mean over the K templates ``[C, d]`` (prompt ensembling)."""
    emb = F.normalize(emb, dim=-1)
    if num_templates > 1:
        emb = F.normalize(emb.reshape(-1, num_templates, emb.shape[-1]).mean(1), dim=-1)
    return emb


def _text_parameters(clip: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in clip.named_parameters() if not n.startswith("visual.") and n not in ("logit_scale", "logit_bias")]


class _LogitHead(nn.Module):
    """Cosine similarity times a learnable temperature (``clip``), or the original unscaled dot product (``none``)."""

    def __init__(self, mode: str, scale_init: float, normalize_unscaled: bool = False):
        super().__init__()
        if mode not in ("clip", "none"):
            raise ValueError(f"logit_mode must be 'clip' or 'none', got {mode!r}")
        self.mode, self.normalize_unscaled = mode, normalize_unscaled
        self.logit_scale = nn.Parameter(torch.tensor(math.log(scale_init))) if mode == "clip" else None

    def forward(self, emb: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
        """``emb [b, d]`` raw, ``text [C, d]`` normalised -> ``logits`` and cosine ``sims`` ``[b, C]``."""
        if self.mode == "none":  # original SKI: no temperature; pose raw, video normalised, text normalised
            logits = (F.normalize(emb, dim=-1) if self.normalize_unscaled else emb) @ text.t()
            return {"logits": logits, "sims": logits}
        sims = F.normalize(emb, dim=-1) @ text.t()
        return {"logits": self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE) * sims, "sims": sims}


class SkeletonCLIP(nn.Module):
    """Skeleton encoder + text tower (phase 1). The CLIP image tower is dropped (never used here)."""

    def __init__(self, encoder: SkeletonEncoder, clip: nn.Module, *, logit_mode: str = "clip",
                 logit_scale_init: float = 100.0, text_pool: str = "eot"):
        super().__init__()
        if hasattr(clip, "visual"):
            del clip.visual  # text-only; keeps checkpoints and optimizer state small
        clip.logit_scale.requires_grad_(False)  # our head owns the temperature
        self.encoder, self.text, self.text_pool = encoder, clip, text_pool
        self.head = _LogitHead(logit_mode, logit_scale_init)

    def encode_skeleton(self, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``x [b, 3, T, 25, M]`` -> pose embedding ``[b, d]``."""
        emb, _ = self.encoder(x)
        return F.normalize(emb, dim=-1) if normalize else emb

    def skeleton_features(self, x: torch.Tensor) -> torch.Tensor:
        """Per-step skeleton features ``[b, T', width]`` (the LVLM's skeleton tokens)."""
        return self.encoder(x)[1]

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        emb = encode_clip_text(self.text, tokens, self.text_pool)
        return F.normalize(emb, dim=-1) if normalize else emb

    def class_embeddings(self, tokens: torch.Tensor, num_templates: int = 1) -> torch.Tensor:
        """Normalised class text embeddings ``[C, d]`` from ``tokens [C*K, L]``."""
        return _class_average(self.encode_text(tokens), num_templates)

    def forward(self, skeleton: torch.Tensor, text_tokens: torch.Tensor, num_templates: int = 1,
                steps: bool = False) -> dict[str, torch.Tensor]:
        """-> ``{"logits", "sims": [b, C], "embedding": [b, d]}`` for the classes in ``text_tokens``; with
        ``steps`` also ``"steps"``: the per-step features ``[b, T', width]`` of the same encoder pass."""
        emb, per_step = self.encoder(skeleton)  # [b, d], [b, T', width]
        text = self.class_embeddings(text_tokens, num_templates)
        out = {**self.head(emb, text), "embedding": emb}
        if steps:
            out["steps"] = per_step
        return out

    def lock_text_tower(self) -> None:
        """Freeze the text tower (``freeze_text``; the paper's "frzn_txt" SkeletonCLIP)."""
        for p in _text_parameters(self.text):
            p.requires_grad_(False)

    def lock_skeleton_encoder(self) -> None:
        self.encoder.requires_grad_(False)


class VideoCLIP(nn.Module):
    """ViFi-CLIP: frame-wise CLIP image tower, temporal mean of the frame embeddings, a text tower.

    ``frame_input`` is what the image tower sees of each frame: the frames (``rgb``, for pretrained
    towers) or their residual from the clip's per-pixel median (``median_residual``, for small towers
    trained from scratch; see :func:`ski_lvlm.models.clip_towers.apply_frame_input`). It belongs to the
    model, so every consumer (training, zero-shot evaluation, LVLM features) applies the same one.
    """

    def __init__(self, clip: nn.Module, *, logit_mode: str = "clip", logit_scale_init: float = 100.0,
                 text_pool: str = "eot", frame_input: str = "rgb"):
        super().__init__()
        clip.logit_scale.requires_grad_(False)
        if frame_input not in FRAME_INPUTS:
            raise ValueError(f"frame_input must be one of {FRAME_INPUTS}, got {frame_input!r}")
        self.clip, self.text_pool, self.frame_input = clip, text_pool, frame_input
        # logit_mode="none" reproduces the original: cosine similarity without a temperature
        self.head = _LogitHead(logit_mode, logit_scale_init, normalize_unscaled=True)

    def encode_video(self, video: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``video [b, t, 3, H, W]`` (CLIP-normalised) -> ``[b, d]`` = mean over frames of the frame embeddings."""
        emb = self.encode_frames(video).mean(1)  # [b, d]
        return F.normalize(emb, dim=-1) if normalize else emb

    def encode_frames(self, video: torch.Tensor) -> torch.Tensor:
        """``video [b, t, 3, H, W]`` -> the per-frame embeddings ``[b, t, d]`` (not normalised) that
        :meth:`encode_video` averages."""
        b, t = video.shape[:2]
        video = apply_frame_input(video, self.frame_input)  # [b, t, 3, H, W]
        frames = self.clip.encode_image(video.flatten(0, 1))  # [b*t, d]
        return frames.reshape(b, t, -1)  # [b, t, d]

    def video_tokens(self, video: torch.Tensor, layer: int = -2) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame embeddings ``[b, t, d]`` and patch tokens ``[b, t, n_patch, width]`` of block ``layer``.

        This is what the LVLM consumes (Video-ChatGPT takes the penultimate block's patch tokens and pools
        them with :func:`ski_lvlm.models.pooling.spatio_temporal_pool`).
        """
        b, t = video.shape[:2]
        video = apply_frame_input(video, self.frame_input)  # [b, t, 3, H, W]
        pooled, tokens = frame_features(self.clip.visual, video.flatten(0, 1), layer=layer)
        return pooled.reshape(b, t, -1), tokens.reshape(b, t, *tokens.shape[1:])

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        emb = encode_clip_text(self.clip, tokens, self.text_pool)
        return F.normalize(emb, dim=-1) if normalize else emb

    def class_embeddings(self, tokens: torch.Tensor, num_templates: int = 1) -> torch.Tensor:
        return _class_average(self.encode_text(tokens), num_templates)

    def forward(self, video: torch.Tensor, text_tokens: torch.Tensor, num_templates: int = 1,
                steps: bool = False) -> dict[str, torch.Tensor]:
        """-> ``{"logits", "sims": [b, C], "embedding": [b, d]}``; with ``steps`` also ``"steps"``: the
        per-frame embeddings ``[b, t, d]`` whose temporal mean is ``embedding`` (one image-tower pass)."""
        frames = self.encode_frames(video)  # [b, t, d]
        emb = frames.mean(1)  # [b, d]
        text = self.class_embeddings(text_tokens, num_templates)
        out = {**self.head(emb, text), "embedding": emb}
        if steps:
            out["steps"] = frames
        return out

    def lock_image_tower(self, unlocked_layers: int = 0) -> None:
        """Freeze the image tower except its last ``unlocked_layers`` blocks (and the final norm/proj then)."""
        visual = self.clip.visual
        visual.requires_grad_(False)
        if unlocked_layers > 0:
            for block in visual.transformer.resblocks[-unlocked_layers:]:
                block.requires_grad_(True)
            for name in ("ln_post", "proj"):
                mod = getattr(visual, name, None)
                if isinstance(mod, nn.Module):
                    mod.requires_grad_(True)
                elif isinstance(mod, nn.Parameter):
                    mod.requires_grad_(True)

    def lock_text_tower(self) -> None:
        for p in _text_parameters(self.clip):
            p.requires_grad_(False)


class SKIVLM(nn.Module):
    """ViFi-CLIP student with an optional SkeletonCLIP teacher (collaborative or frozen).

    ``skeleton=None`` is the plain ViFi-CLIP baseline. With ``teacher_trainable=False`` the teacher is
    frozen and kept in eval mode (its BatchNorm statistics do not move either), so its weights stay
    bit-identical through training: the knowledge-distillation variant.

    ``step_head=True`` (``loss.distill_on=steps``) adds ``step_head``, a ``Linear(d, width)`` from the
    video's frame embeddings to the teacher's per-step feature width, and makes :meth:`forward` return
    the per-step outputs. The head lives here, not in the video model: it is a training-time bridge to the
    teacher, so :meth:`video_branch` (the skeleton-free inference model) and its folder stay as they were.
    """

    def __init__(self, video: VideoCLIP, skeleton: SkeletonCLIP | None = None, *, teacher_trainable: bool = True,
                 step_head: bool = False):
        super().__init__()
        self.video, self.skeleton = video, skeleton
        self.teacher_trainable = teacher_trainable
        self.step_head = None
        if step_head:
            if skeleton is None:
                raise ValueError("step_head needs a skeleton teacher (its per-step features are the target)")
            self.step_head = nn.Linear(embed_dim(video.clip), skeleton.encoder.width)
        if skeleton is not None and not teacher_trainable:
            skeleton.requires_grad_(False)
            skeleton.eval()

    def train(self, mode: bool = True) -> "SKIVLM":
        super().train(mode)
        if self.skeleton is not None and not self.teacher_trainable:
            self.skeleton.eval()
        return self

    def encode_video(self, video: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        return self.video.encode_video(video, normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """The video branch's text tower (the one used at inference)."""
        return self.video.encode_text(tokens, normalize)

    def encode_skeleton(self, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        if self.skeleton is None:
            raise ValueError("this SKI-VLM has no skeleton branch (ViFi-CLIP baseline)")
        return self.skeleton.encode_skeleton(x, normalize)

    def video_branch(self) -> VideoCLIP:
        """The inference artifact: a plain ViFi-CLIP model with the SKI-trained weights."""
        return self.video

    def forward(self, video: torch.Tensor, text_tokens: torch.Tensor, num_templates: int = 1,
                skeleton: torch.Tensor | None = None,
                skeleton_text_tokens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """-> ``video_*`` (``logits``, ``sims`` ``[b, C]``, ``embedding``) and, given a skeleton and a teacher,
        the same for ``skeleton_*``. ``skeleton_text_tokens`` are the class prompts tokenized for the
        teacher's text tower when it uses another tokenizer (default: ``text_tokens``).

        With a ``step_head`` and a skeleton, also ``video_steps [b, t, width]`` (each frame's embedding
        mapped by ``step_head``) and ``skeleton_steps [b, T', width]`` (the teacher's per-step features,
        without gradient when the teacher is frozen), for ``loss.distill_on=steps``.
        """
        steps = self.step_head is not None and skeleton is not None
        video_out = self.video(video, text_tokens, num_templates, steps=steps)
        if steps:
            video_out["steps"] = self.step_head(video_out["steps"])  # [b, t, d] -> [b, t, width]
        out = {f"video_{k}": v for k, v in video_out.items()}
        if skeleton is not None and self.skeleton is not None:
            tokens = text_tokens if skeleton_text_tokens is None else skeleton_text_tokens
            with contextlib.nullcontext() if self.teacher_trainable else torch.no_grad():
                skel = self.skeleton(skeleton, tokens, num_templates, steps=steps)
            out.update({f"skeleton_{k}": v for k, v in skel.items()})
        return out


# ---------------------------------------------------------------- builders and checkpoints


def _text_config(text_encoder: str, text_unlocked_layers: int) -> dict[str, Any]:
    """What a model folder records about its text tower (the unlocked-layer count only for HF towers)."""
    if text_encoder == "clip":
        return {"text_encoder": "clip"}
    return {"text_encoder": text_encoder, "text_unlocked_layers": text_unlocked_layers}


def build_skeleton_clip(*, encoder: str | dict = "tiny", clip_arch: str = "ski-tiny-ViT",
                        clip_pretrained: str | None = None, logit_mode: str = "clip", text_pool: str = "eot",
                        freeze_text: bool = False, text_encoder: str = "clip", text_unlocked_layers: int = 1,
                        text_pretrained: bool = True) -> SkeletonCLIP:
    """SkeletonCLIP whose encoder projects to the text tower's embedding size.

    ``encoder`` is a preset name (``tiny``/``small``/``base``), a JSON path, or a full kwargs dict.
    ``text_encoder`` / ``text_unlocked_layers`` / ``text_pretrained``: see
    :func:`~ski_lvlm.models.clip_towers.create_clip` and :func:`~ski_lvlm.models.clip_towers.lock_text_body`.
    """
    clip = create_clip(clip_arch, clip_pretrained, text_encoder=text_encoder, text_pretrained=text_pretrained)
    lock_text_body(clip, text_unlocked_layers)
    cfg = skeleton_encoder_config(encoder) if isinstance(encoder, str) else dict(encoder)
    cfg["embed_dim"] = embed_dim(clip)
    model = SkeletonCLIP(SkeletonEncoder(**cfg), clip, logit_mode=logit_mode, text_pool=text_pool)
    model.config = {"kind": "skeleton_clip", "encoder": _jsonable(cfg), "clip_arch": clip_arch,
                    "logit_mode": logit_mode, "text_pool": text_pool,
                    **_text_config(text_encoder, text_unlocked_layers)}
    if freeze_text:
        model.lock_text_tower()
    return model


def build_video_clip(*, clip_arch: str = "ski-tiny-ViT", clip_pretrained: str | None = None,
                     logit_mode: str = "clip", text_pool: str = "eot", frame_input: str = "rgb",
                     text_encoder: str = "clip", text_unlocked_layers: int = 1,
                     text_pretrained: bool = True) -> VideoCLIP:
    clip = create_clip(clip_arch, clip_pretrained, text_encoder=text_encoder, text_pretrained=text_pretrained)
    lock_text_body(clip, text_unlocked_layers)
    model = VideoCLIP(clip, logit_mode=logit_mode, text_pool=text_pool, frame_input=frame_input)
    model.config = {"kind": "video_clip", "clip_arch": clip_arch, "logit_mode": logit_mode, "text_pool": text_pool,
                    "frame_input": frame_input, **_text_config(text_encoder, text_unlocked_layers)}
    return model


def build_ski_vlm(video: VideoCLIP, skeleton: SkeletonCLIP | None, *, teacher_trainable: bool = True,
                  step_head: bool = False) -> SKIVLM:
    model = SKIVLM(video, skeleton, teacher_trainable=teacher_trainable, step_head=step_head)
    model.config = {"kind": "ski_vlm", "video": video.config, "skeleton": skeleton.config if skeleton else None,
                    "teacher_trainable": teacher_trainable}
    if step_head:  # only then, so folders of the other modes keep the config they always had
        model.config["step_head"] = True
    return model


def _jsonable(cfg: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def _from_config(cfg: dict[str, Any]) -> nn.Module:
    model = _build_from_config(cfg)
    if "inference" in cfg:  # how the model was trained: templates, frames (used by the evaluator)
        model.config["inference"] = cfg["inference"]
    return model


def _build_from_config(cfg: dict[str, Any]) -> nn.Module:
    kind = cfg.get("kind")
    # folders from before text_encoder hold CLIP text towers; the folder's weights replace the pretrained
    # ones, so the HF tower is built from its config alone
    text = {"text_encoder": cfg.get("text_encoder", "clip"),
            "text_unlocked_layers": cfg.get("text_unlocked_layers", 1), "text_pretrained": False}
    if kind == "skeleton_clip":
        return build_skeleton_clip(encoder=cfg["encoder"], clip_arch=cfg["clip_arch"], logit_mode=cfg["logit_mode"],
                                   text_pool=cfg["text_pool"], **text)
    if kind == "video_clip":
        return build_video_clip(clip_arch=cfg["clip_arch"], logit_mode=cfg["logit_mode"], text_pool=cfg["text_pool"],
                                frame_input=cfg.get("frame_input", "rgb"), **text)  # before frame_input: rgb
    if kind == "ski_vlm":
        skel = _from_config(cfg["skeleton"]) if cfg.get("skeleton") else None
        return build_ski_vlm(_from_config(cfg["video"]), skel, teacher_trainable=cfg.get("teacher_trainable", True),
                             step_head=cfg.get("step_head", False))
    raise ValueError(f"unknown model kind {kind!r} in model_config.json")


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of the state dict (safetensors cannot hold views)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_model(model: nn.Module, out_dir: str | Path) -> None:
    """Write ``model.safetensors`` + ``model_config.json`` (each atomically) into ``out_dir``."""
    from safetensors.torch import save as st_save

    from ski_lvlm.utils.io import atomic_write_bytes, atomic_write_json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out_dir / "model.safetensors", st_save(model_state(model)))
    atomic_write_json(out_dir / "model_config.json", model.config)


def _read_model_dir(path: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config, weights) of a model folder; a run folder means its final/ (or an old run's model/)."""
    from safetensors.torch import load_file

    path = resolve_model_dir(path)
    cfg_path, weights = path / "model_config.json", path / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: missing (a model folder holds model_config.json + model.safetensors)")
    return json.loads(cfg_path.read_text()), load_file(str(weights))


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    result = model.load_state_dict(state, strict=False)
    problems = [f"missing {k}" for k in result.missing_keys] + [f"unexpected {k}" for k in result.unexpected_keys]
    if problems:
        head = ", ".join(problems[:8]) + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else "")
        raise ValueError(f"{where}: weights do not match the model: {head}")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a SkeletonCLIP / VideoCLIP / SKIVLM from a folder written by :func:`save_model` (strict)."""
    cfg, state = _read_model_dir(path)
    model = _from_config(cfg)
    _load_strict(model, state, str(path))
    return model.to(device).eval()


def load_video_clip(path: str | Path, device: str | torch.device = "cpu") -> VideoCLIP:
    """The video branch of a SKI-VLM folder, or a VideoCLIP folder (the skeleton-free inference model)."""
    cfg, state = _read_model_dir(path)
    if cfg.get("kind") == "ski_vlm":
        model = _from_config({"inference": cfg.get("inference", {}), **cfg["video"]})
        _load_strict(model, {k[len("video."):]: v for k, v in state.items() if k.startswith("video.")}, str(path))
    elif cfg.get("kind") == "video_clip":
        model = _from_config(cfg)
        _load_strict(model, state, str(path))
    else:
        raise ValueError(f"{path}: holds a {cfg.get('kind')!r} model, which has no video branch")
    return model.to(device).eval()


def load_skeleton_clip(path: str | Path, device: str | torch.device = "cpu") -> SkeletonCLIP:
    """SkeletonCLIP from a phase-1 folder, or the (co-trained) teacher of a SKI-VLM folder."""
    cfg, state = _read_model_dir(path)
    if cfg.get("kind") == "ski_vlm":
        if not cfg.get("skeleton"):
            raise ValueError(f"{path}: this SKI-VLM has no skeleton branch (ViFi-CLIP baseline)")
        model = _from_config(cfg["skeleton"])
        _load_strict(model, {k[len("skeleton."):]: v for k, v in state.items() if k.startswith("skeleton.")}, str(path))
    elif cfg.get("kind") == "skeleton_clip":
        model = _from_config(cfg)
        _load_strict(model, state, str(path))
    else:
        raise ValueError(f"{path}: holds a {cfg.get('kind')!r} model, which has no skeleton branch")
    return model.to(device).eval()
