"""``SkiLvlmConfig``: a composite Hugging Face config for the SKI-LVLM video LLM.

The config holds the backbone's own config (``text_config``, any ``AutoConfig`` such as Llama or
Qwen2) plus everything the model needs to turn a video (and, during training, a skeleton sequence)
into LLM tokens: feature sizes, projector type, placeholder token ids and counts, and a reference to
the frozen video encoder together with its frame-sampling settings. Keeping the sampling settings
here means inference reproduces the training-time features without a separate file.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ski_lvlm.models.lvlm.projector import PROJECTOR_TYPES

__all__ = ["SkiLvlmConfig", "PROJECTOR_TYPES"]



class SkiLvlmConfig(PreTrainedConfig):
    """Configuration of :class:`~ski_lvlm.models.lvlm.modeling.SkiLvlmForConditionalGeneration`.

    Attributes:
        text_config: the causal LM backbone's config (dict with ``model_type`` or a ``PreTrainedConfig``).
        llm_name_or_path: where the backbone's pretrained weights come from (local folder or hub id);
            ``None`` for a randomly initialised preset (its weights are then saved with the model).
        video_feature_dim: width ``d_v`` of one video token before projection (1024 for CLIP ViT-L/14).
        skeleton_feature_dim: width ``d_s`` of one skeleton token (216 for the Hyperformer encoder).
        projector_type: ``linear`` (Video-ChatGPT/LLAVIDAL) or ``mlp2x_gelu`` (LLaVA-1.5).
        skeleton_projector_type: same choice for the skeleton projector.
        video_token_id / skeleton_token_id: ids of the ``<video>`` / ``<skeleton>`` placeholder tokens.
        num_video_tokens: tokens per video (``max_frames + n_patch``; 100 + 256 = 356 for ViT-L/14), plus
            ``video_summary_tokens``.
        video_summary_tokens: whole-clip summary tokens appended by the video projector (see
            ``projector.SummaryProjector``); 0 = none (Video-ChatGPT / LLAVIDAL).
        num_skeleton_tokens: tokens per skeleton sequence (``T'`` of the skeleton encoder; 75 in SKI).
        video_encoder: frozen tower that turns frames into features, e.g.
            ``{"kind": "clip", "arch": "ViT-L-14", "pretrained": "openai", "layer": -2}``
            (``kind: ski_vlm``: ``pretrained`` = a SKI-VLM / VideoCLIP run folder); ``None`` when the
            model only ever sees precomputed features.
        num_frames: frames sampled per video for the tower.
        frame_sampling: ``segment_middle`` (Video-ChatGPT), ``uniform`` or ``random_segment``.
        max_frames: temporal tokens are zero-padded to this many rows (Video-ChatGPT: 100).
    """

    model_type = "ski_lvlm"
    sub_configs_defaults = {"text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama")}

    text_config: dict | PreTrainedConfig | None = None
    llm_name_or_path: str | None = None
    video_feature_dim: int = 1024
    skeleton_feature_dim: int = 216
    projector_type: str = "linear"
    skeleton_projector_type: str = "linear"
    video_token_id: int | None = None
    skeleton_token_id: int | None = None
    num_video_tokens: int = 356
    video_summary_tokens: int = 0
    num_skeleton_tokens: int = 75
    video_encoder: dict | None = None
    num_frames: int = 100
    frame_sampling: str = "segment_middle"
    max_frames: int = 100
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs: Any):
        super().__post_init__(**kwargs)
        problems = []
        for name in ("projector_type", "skeleton_projector_type"):
            if getattr(self, name) not in PROJECTOR_TYPES:
                problems.append(f"{name}: must be one of {PROJECTOR_TYPES}, got {getattr(self, name)!r}")
        for name in ("video_feature_dim", "skeleton_feature_dim", "num_video_tokens", "num_skeleton_tokens"):
            if int(getattr(self, name)) <= 0:
                problems.append(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.video_encoder is not None and self.video_encoder.get("kind") not in ("clip", "ski_vlm"):
            problems.append(f"video_encoder.kind: must be 'clip' or 'ski_vlm', got {self.video_encoder.get('kind')!r}")
        if problems:
            raise ValueError("SkiLvlmConfig: " + "; ".join(problems))
        # The backbone decides tying (Qwen2-0.5B ties, Llama-7B does not); mirror it on the wrapper so
        # generation utilities that look at the top-level config see the same value.
        if not self.tie_word_embeddings and getattr(self.text_config, "tie_word_embeddings", False):
            self.tie_word_embeddings = True

    @property
    def num_video_feature_tokens(self) -> int:
        """Rows of tower features per video: the placeholders minus the summary rows the projector adds."""
        return self.num_video_tokens - self.video_summary_tokens
