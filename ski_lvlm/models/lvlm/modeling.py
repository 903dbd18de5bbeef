"""SKI-LVLM: a LLaVA / Video-ChatGPT-style video LLM around any Hugging Face causal LM.

Notation (shapes in comments):
    b      batch size                      s    text length (placeholders included)
    t      frames per video                n_v  video tokens per video (max_frames + n_patch)
    d_v    video feature width             T'   skeleton tokens per sequence
    d_s    skeleton feature width          d    LLM hidden size

Data flow::

    frames [b, t, 3, H, W] --frozen CLIP tower (layer -2)--> [b, t, n_patch, d_v]
        --spatio_temporal_pool--> [b, n_v, d_v] --video_projector--> [b, n_v, d]
    (or precomputed features [b, n_v, d_v] from a cache)
    skeleton per-step features [b_s, T', d_s] --skeleton_projector--> [b_s, T', d]   (training only)
    input_ids [b, s] with n_v <video> and T' <skeleton> placeholders --embed--> [b, s, d]
        --one masked_scatter per modality--> inputs_embeds [b, s, d] --causal LM--> logits

The processor decides how many placeholder tokens a sample gets; the model never counts per sample.
It only checks that the number of placeholders equals the number of feature rows (a mismatch is a
``ValueError`` that prints both numbers) and scatters all rows at once.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, GenerationMixin, PreTrainedModel

from ski_lvlm.models.lvlm.configuration import SkiLvlmConfig
from ski_lvlm.models.lvlm.processing import IGNORE_INDEX
from ski_lvlm.models.lvlm.projector import SummaryProjector, build_projector

__all__ = ["SkiLvlmForConditionalGeneration", "SkiLvlmPreTrainedModel", "VideoTower", "fit_vocab"]


@torch.no_grad()
def fit_vocab(language_model: PreTrainedModel, vocab_size: int) -> None:
    """Grow a backbone's embeddings to ``vocab_size`` rows for the processor's added placeholder tokens.

    New rows are the mean of the old rows: a deterministic value, so every path that rebuilds the model
    from the base weights (training, the adapter reload, export) gets the same matrix, and LoRA adapters
    never need to carry the embeddings. The input rows of placeholders are overwritten by the projected
    features; as output rows (tied or not) they give placeholders an average logit.
    """
    old = language_model.get_input_embeddings().weight.shape[0]
    if old >= vocab_size:
        return
    language_model.resize_token_embeddings(vocab_size, mean_resizing=False)
    emb = language_model.get_input_embeddings().weight  # [vocab_size, d]
    emb[old:] = emb[:old].mean(0)
    head = language_model.get_output_embeddings()
    if head is not None and head.weight is not emb:  # untied head: same rule for its rows
        head.weight[old:] = head.weight[:old].mean(0)
        if getattr(head, "bias", None) is not None:
            head.bias[old:] = head.bias[:old].mean()


class VideoTower(nn.Module):
    """Frozen open_clip image tower + Video-ChatGPT spatio-temporal pooling.

    Frames may be ``uint8`` (0-255) or float in ``[0, 1]``; the tower resizes them to its input size
    and applies its own mean/std, so callers never need to know which CLIP normalisation applies.
    Weights are part of the LVLM's state dict (a randomly initialised tiny tower must travel with the
    model to reproduce its features); :meth:`load_pretrained` fills them from the referenced file.
    """

    def __init__(self, spec: dict, max_frames: int | None):
        super().__init__()
        from ski_lvlm.models.clip_towers import clip_image_stats, create_clip

        self.spec = dict(spec)
        self.layer = int(spec.get("layer", -2))
        # what the tower was trained to see (a SKI-VLM folder's model_config says; see apply_frame_input)
        self.frame_input = (spec.get("model_config") or {}).get("frame_input", "rgb")
        self.max_frames = max_frames
        # open_clip moves the new model to a device, which fails under from_pretrained's meta-device
        # init; build it on the CPU (the checkpoint then overwrites the weights; the non-persistent
        # mean/std buffers must hold real values because no checkpoint carries them).
        arch = spec.get("arch") or (spec.get("model_config") or {}).get("clip_arch") or "ViT-L-14"
        with torch.device("cpu"):
            clip = create_clip(arch, pretrained=None)
            mean, std, size = clip_image_stats(clip)
            self.stats = (tuple(mean), tuple(std))
            self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.visual = clip.visual
        self.image_size = size
        self.requires_grad_(False)
        self.eval()

    @property
    def width(self) -> int:
        return int(self.visual.transformer.width)

    @property
    def num_patches(self) -> int:
        grid = self.visual.grid_size
        return int(grid[0] * grid[1])

    def num_tokens(self, num_frames: int) -> int:
        return (self.max_frames if self.max_frames is not None else num_frames) + self.num_patches

    def train(self, mode: bool = True) -> "VideoTower":
        # Never switch to training mode (no dropout, no batch-norm statistics updates), whatever the parent
        # does: a trainable tower (set_trainable) trains its weights but keeps its pretrained statistics.
        return super().train(False)

    def set_trainable(self, mode: str, *, r: int = 8, alpha: int = 16) -> int:
        """Let the LVLM's loss train the tower: ``frozen`` (default), ``full`` or ``lora``; returns the
        number of trainable tower parameters.

        Why: the tower is trained for class text (SKI-VLM) and then frozen; what the LLM needs from it to
        name an action can differ. ``lora`` adds rank-``r`` adapters (peft) to every ``Linear`` and
        ``Conv2d`` of the image tower and trains only those; :meth:`merge_adapters` folds them back into
        plain weights before saving, so a saved model loads like any other.
        """
        self.requires_grad_(False)
        if mode == "frozen":
            return 0
        if mode == "full":
            self.visual.requires_grad_(True)
        elif mode == "lora":
            from peft import LoraConfig, inject_adapter_in_model

            names = [n for n, m in self.visual.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
            inject_adapter_in_model(LoraConfig(r=r, lora_alpha=alpha, target_modules=names), self.visual)
        else:
            raise ValueError(f"tower_trainable must be frozen, lora or full, got {mode!r}")
        return sum(p.numel() for p in self.visual.parameters() if p.requires_grad)

    def merge_adapters(self) -> int:
        """Fold LoRA adapters (:meth:`set_trainable` ``lora``) into the weights they adapt; returns how many."""
        from peft.tuners.lora import LoraLayer

        merged = 0
        for name, module in list(self.visual.named_modules()):
            if isinstance(module, LoraLayer):
                module.merge()
                parent = self.visual.get_submodule(name.rpartition(".")[0]) if "." in name else self.visual
                setattr(parent, name.rpartition(".")[2], module.get_base_layer())
                merged += 1
        return merged

    def load_pretrained(self) -> None:
        """Load the weights named by ``spec["pretrained"]`` (an open_clip tag or a local file)."""
        from ski_lvlm.models.clip_towers import create_clip

        pretrained = self.spec.get("pretrained")
        if not pretrained:
            return
        kind = self.spec.get("kind", "clip")
        if kind == "clip":
            clip = create_clip(self.spec.get("arch") or "ViT-L-14", pretrained=pretrained)
            self.visual.load_state_dict(clip.visual.state_dict(), strict=True)
            return
        # ski_vlm: the image tower of a SKI-VLM / VideoCLIP folder written by ski_lvlm.models.ski_vlm
        from ski_lvlm.models.ski_vlm import load_video_clip

        self.visual.load_state_dict(load_video_clip(pretrained).clip.visual.state_dict(), strict=True)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames [b, t, 3, H, W]`` -> pooled tokens ``[b, n_v, d_v]`` (with gradients only when the
        tower has trainable weights and gradients are enabled)."""
        trainable = any(p.requires_grad for p in self.visual.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and trainable):
            return self._encode(frames)

    def _encode(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"video frames must be [b, t, 3, H, W], got {tuple(frames.shape)}")
        b, t = frames.shape[:2]
        x = frames.flatten(0, 1)  # [b*t, 3, H, W]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=True)
        x = (x - self.mean) / self.std
        dtype = next(self.visual.parameters()).dtype
        from ski_lvlm.models.clip_towers import apply_frame_input, frame_features
        from ski_lvlm.models.pooling import spatio_temporal_pool

        x = apply_frame_input(x.view(b, t, *x.shape[1:]), self.frame_input).flatten(0, 1)  # [b*t, 3, S, S]
        _, tokens = frame_features(self.visual, x.to(dtype), layer=self.layer)  # [b*t, n_patch, d_v]
        tokens = tokens.view(b, t, *tokens.shape[1:])  # [b, t, n_patch, d_v]
        return spatio_temporal_pool(tokens, self.max_frames)  # [b, n_v, d_v]


class SkiLvlmPreTrainedModel(PreTrainedModel):
    config: SkiLvlmConfig
    config_class = SkiLvlmConfig
    base_model_prefix = "model"
    input_modalities = ("video", "text")
    supports_gradient_checkpointing = True
    _supports_flash_attn = True
    _supports_sdpa = True
    _supports_flex_attn = True
    _supports_attention_backend = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, VideoTower):
            # Non-persistent buffers are not in checkpoints: from_pretrained re-creates them empty.
            from transformers import initialization as init

            init.copy_(module.mean, torch.tensor(module.stats[0]).view(1, 3, 1, 1))
            init.copy_(module.std, torch.tensor(module.stats[1]).view(1, 3, 1, 1))


class SkiLvlmForConditionalGeneration(SkiLvlmPreTrainedModel, GenerationMixin):
    """Video (+ skeleton) LLM: projectors + optional frozen video tower + a causal LM backbone.

    Args:
        config: the composite config.
        language_model: an already built backbone (e.g. ``AutoModelForCausalLM.from_pretrained(...)``,
            possibly quantised); built from ``config.text_config`` when omitted.
    """

    def __init__(self, config: SkiLvlmConfig, language_model: PreTrainedModel | None = None):
        super().__init__(config)
        if language_model is None:
            language_model = AutoModelForCausalLM.from_config(config.text_config)
        else:
            # A base folder lacks the placeholder rows a saved config counts (see fit_vocab).
            fit_vocab(language_model, config.text_config.vocab_size)
            # A given backbone holds trained weights (possibly in modules PEFT just swapped in, which carry
            # no "initialised" mark): post_init() below must not re-initialise any of them.
            for tensor in (*language_model.parameters(), *language_model.buffers()):
                tensor._is_hf_initialized = True
        self.language_model = language_model
        d = config.text_config.hidden_size
        self.video_projector = build_projector(config.projector_type, config.video_feature_dim, d)
        if config.video_summary_tokens:
            self.video_projector = SummaryProjector(self.video_projector, config.num_video_feature_tokens,
                                                    config.video_summary_tokens, config.video_feature_dim, d)
        self.skeleton_projector = build_projector(config.skeleton_projector_type, config.skeleton_feature_dim, d)
        self.video_tower = VideoTower(config.video_encoder, config.max_frames) if config.video_encoder else None
        if self.video_tower is not None and self.video_tower.width != config.video_feature_dim:
            raise ValueError(f"video_encoder {config.video_encoder.get('arch')!r} gives {self.video_tower.width}-d "
                             f"tokens but video_feature_dim={config.video_feature_dim}")
        self.post_init()

    # ------------------------------------------------------------------ HF plumbing
    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def set_output_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_output_embeddings(value)

    def get_decoder(self) -> nn.Module:
        return self.language_model.get_decoder()

    # ------------------------------------------------------------------ features
    def encode_video(self, pixel_values_videos: torch.Tensor) -> torch.Tensor:
        """Frames ``[b, t, 3, H, W]`` -> frozen-tower features ``[b, n_v, d_v]`` (not projected)."""
        if self.video_tower is None:
            raise ValueError("this model has no video tower (config.video_encoder is None); pass video_features")
        return self.video_tower(pixel_values_videos)

    @staticmethod
    def _scatter(embeds: torch.Tensor, mask: torch.Tensor, projected: torch.Tensor, name: str) -> torch.Tensor:
        n_placeholders = int(mask.sum())  # CPU-GPU sync point, once per modality per step
        n_features = projected.shape[0] * projected.shape[1]
        if n_placeholders != n_features:
            raise ValueError(
                f"{name}: {n_placeholders} placeholder tokens in input_ids but {n_features} feature rows "
                f"({projected.shape[0]} x {projected.shape[1]}); the processor and the features disagree")
        mask = mask.unsqueeze(-1).expand_as(embeds)  # [b, s, d]
        return embeds.masked_scatter(mask, projected.to(embeds.dtype))

    def embed_inputs(
        self,
        input_ids: torch.LongTensor,
        video_features: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        skeleton_features: torch.Tensor | None = None,
        allow_missing: bool = False,
    ) -> torch.Tensor:
        """Token embeddings with projected features at the placeholder positions.

        Args:
            input_ids: ``[b, s]``.
            video_features: ``[b_v, n_v, d_v]``, one row block per ``<video>`` span, in batch order.
            pixel_values_videos: frames ``[b_v, t, 3, H, W]`` (alternative to ``video_features``).
            skeleton_features: ``[b_s, T', d_s]`` for the samples whose text has ``<skeleton>`` tokens.
            allow_missing: decode steps may see a generated placeholder id without features.

        Returns:
            inputs_embeds ``[b, s, d]``.
        """
        if video_features is not None and pixel_values_videos is not None:
            raise ValueError("pass either video_features or pixel_values_videos, not both")
        cfg = self.config
        video_mask = input_ids == cfg.video_token_id if cfg.video_token_id is not None else None  # [b, s]
        skel_mask = input_ids == cfg.skeleton_token_id if cfg.skeleton_token_id is not None else None
        placeholder = None
        for m in (video_mask, skel_mask):
            if m is not None:
                placeholder = m if placeholder is None else placeholder | m
        # Placeholder ids may lie beyond the backbone's vocabulary (added tokens): look up a valid row;
        # the merge below overwrites it anyway.
        ids = input_ids.masked_fill(placeholder, 0) if placeholder is not None else input_ids
        embeds = self.get_input_embeddings()(ids)  # [b, s, d]
        if pixel_values_videos is not None:
            video_features = self.encode_video(pixel_values_videos)  # [b_v, n_v, d_v]
        for name, mask, feats, proj in (("video", video_mask, video_features, self.video_projector),
                                        ("skeleton", skel_mask, skeleton_features, self.skeleton_projector)):
            if feats is None:
                if mask is not None and not allow_missing and bool(mask.any()):
                    raise ValueError(f"input_ids hold {int(mask.sum())} <{name}> placeholder tokens but no {name} "
                                     "features were given")
                if self.training and torch.is_grad_enabled() and any(p.requires_grad for p in proj.parameters()):
                    # A trainable projector that a batch does not use would get no gradient on this rank
                    # while other ranks reduce theirs (skeleton injection is random per sample): DeepSpeed /
                    # DDP then hang or abort. Add an exact zero that still reaches every projector weight.
                    param = next(proj.parameters())
                    embeds = embeds + 0.0 * proj(param.new_zeros(1, param.shape[-1])).sum()
                continue
            if mask is None:
                raise ValueError(f"{name} features given but config.{name}_token_id is not set")
            param = next(proj.parameters())
            projected = proj(feats.to(device=param.device, dtype=param.dtype))  # [b_m, n, d]
            embeds = self._scatter(embeds, mask, projected, name)
        return embeds

    # ------------------------------------------------------------------ forward / generate
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        video_features: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        skeleton_features: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ):
        """Causal-LM forward; returns the backbone's ``CausalLMOutputWithPast`` (loss when ``labels``).

        ``inputs_embeds`` must already contain the features (see :meth:`embed_inputs`): placeholder
        positions cannot be recovered from embeddings.

        Packed rows (``cu_seq_lens_q`` / ``cu_seq_lens_k`` / ``max_length_q`` / ``max_length_k`` in ``kwargs``,
        :mod:`ski_lvlm.models.lvlm.packing`) are checked against the attention implementation; with ``labels``
        their logits are computed at the label positions only (:meth:`_packed_lm_loss`).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids or inputs_embeds")
        if inputs_embeds is None:
            decoding = cache is not None and cache.get_seq_length() > 0
            inputs_embeds = self.embed_inputs(input_ids, video_features, pixel_values_videos, skeleton_features,
                                              allow_missing=decoding)
        elif video_features is not None or pixel_values_videos is not None or skeleton_features is not None:
            raise ValueError("features need input_ids to find placeholder positions; merge them first with "
                             "embed_inputs(input_ids, ...) and pass the result as inputs_embeds")
        if kwargs.get("cu_seq_lens_q") is not None:
            self._check_packed(inputs_embeds, attention_mask, position_ids)
            if labels is not None and isinstance(logits_to_keep, int) and logits_to_keep == 0:
                return self._packed_lm_loss(inputs_embeds, labels, position_ids, **kwargs)
        return self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            labels=labels,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )

    def _check_packed(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor | None,
                      position_ids: torch.Tensor | None) -> None:
        """A packed row (``cu_seq_lens_q`` given) must reach an attention that keeps its samples apart."""
        from ski_lvlm.models.lvlm.packing import PackingError, check_packed_attention

        check_packed_attention(self.language_model.config._attn_implementation)
        if inputs_embeds.shape[0] != 1 or position_ids is None or attention_mask is not None:
            # a 2-D padding mask would switch off HF's packed-sequence masking for sdpa / eager
            raise PackingError(f"a packed batch is one row [1, N] with position_ids and no attention_mask, got "
                               f"{inputs_embeds.shape[0]} rows, position_ids={position_ids is not None}, "
                               f"attention_mask={attention_mask is not None}")

    def _packed_lm_loss(self, inputs_embeds: torch.Tensor, labels: torch.LongTensor, position_ids: torch.Tensor,
                        **kwargs):
        """Causal-LM loss of a packed row with logits only where a label is trained.

        Same value as HF's loss (mean cross-entropy over the label tokens of the batch), but the LM head and
        the softmax see only the ``k`` label positions instead of all ``N`` (video tokens and prompts carry no
        label): on SmolLM2 (vocabulary 49k, about 20 % of the tokens labelled) that is a large share of a step.
        The returned ``logits`` are ``[1, k, V]``, at those positions only.
        """
        targets = labels[0, 1:]  # [N - 1] the token each position predicts
        keep = (targets != IGNORE_INDEX).nonzero().squeeze(-1)  # [k]
        out = self.language_model(inputs_embeds=inputs_embeds, position_ids=position_ids, logits_to_keep=keep,
                                  **kwargs)
        out.loss = F.cross_entropy(out.logits[0].float(), targets[keep])  # [1, k, V] -> mean over k
        return out

    def prepare_inputs_for_generation(
        self,
        input_ids: torch.LongTensor,
        video_features: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        skeleton_features: torch.Tensor | None = None,
        is_first_iteration: bool | None = False,
        **kwargs,
    ) -> dict:
        model_inputs = super().prepare_inputs_for_generation(input_ids, is_first_iteration=is_first_iteration, **kwargs)
        # Features are merged on the prefill step only; later steps read them from the KV cache.
        if is_first_iteration or not kwargs.get("use_cache", True):
            model_inputs["video_features"] = video_features
            model_inputs["pixel_values_videos"] = pixel_values_videos
            model_inputs["skeleton_features"] = skeleton_features
        return model_inputs
