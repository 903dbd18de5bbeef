"""Phase 3 recipe: SKI-LVLM projector alignment and (LoRA) instruction tuning, optionally under DeepSpeed.

    ski-lvlm train lvlm --config train/configs/lvlm/align_tiny.yaml out=runs/lvlm_align \\
        data.train_json=WORLD/instructions_train.json
    ski-lvlm train lvlm --config train/configs/lvlm/instruct_tiny.yaml out=runs/lvlm_instruct \\
        data.train_json=WORLD/instructions_train.json model.init_from=runs/lvlm_align/final data.p_inject=0.5
    deepspeed --num_gpus 8 --module train.lvlm --config train/configs/lvlm/instruct_7b_vicuna.yaml out=... (scripts/train_lvlm.sh)

Stages:
* ``align``: the LLM is frozen; only the video (and skeleton) projectors train.
* ``instruct``: ``llm_adapter`` = ``lora`` | ``qlora`` (4-bit base through bitsandbytes) | ``full`` | ``none``
  (paper-faithful: frozen LLM); projectors always train.

Skeleton injection: a sample with skeleton features gets ``<skeleton>`` tokens with probability
``data.p_inject`` (``0`` = never); a missing skeleton file means no skeleton tokens, never zeros; the
trained model generates from video alone.

Flow: config -> records -> skeleton encoder -> model (preset, pretrained LLM or ``model.init_from``) ->
features (``data.feature_cache`` or computed once into ``OUT/features`` with the model's own frozen
tower) -> dataset (every sample validated up front) -> loop -> ``OUT/final``. Logs: stdout, a tqdm
bar, ``OUT/train_log.jsonl`` and TensorBoard ``OUT/tb``. Checkpoints ``OUT/checkpoints`` resume the
trainable weights, optimizer, RNG and data position (``resume=true``, the default, continues a run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ski_lvlm.config import load_config, save_config
from ski_lvlm.utils.errors import UserError, cli_entry

REPO = Path(__file__).resolve().parent.parent
# batch keys the model takes (packed batches add position_ids and the sample boundaries)
_MODEL_INPUTS = ("input_ids", "labels", "attention_mask", "video_features", "pixel_values_videos", "skeleton_features",
                 "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")


@dataclass
class ModelConfig:
    llm: str = "tiny-llama"
    """Backbone: smollm2-135m (real weights, see `ski-lvlm models list`), a preset (tiny-llama, tiny-qwen2,
    llama-7b, qwen2-7b: random init), or a local folder / hub id."""
    tokenizer: str | None = None
    """Tokenizer folder/id; default: the LLM's own, or a BPE trained on the instruction text for presets."""
    tokenizer_vocab_size: int = 512
    """Vocabulary of the BPE trained for presets."""
    chat_template: Literal["auto", "vicuna_v1_1", "tokenizer"] = "auto"
    """auto: the tokenizer's chat template when it has one, else Vicuna v1.1 (same template at inference)."""
    system_prompt: str | None = None
    """System message; None = the template's default."""
    projector_type: Literal["linear", "mlp2x_gelu", "std_linear", "std_mlp2x_gelu"] = "linear"
    """Video projector (linear = Video-ChatGPT / LLAVIDAL, mlp2x_gelu = LLaVA-1.5)."""
    skeleton_projector_type: Literal["linear", "mlp2x_gelu", "std_linear", "std_mlp2x_gelu"] = "linear"
    """Skeleton projector."""
    video_encoder: str = "clip:ski-tiny-ViT"
    """Frozen video tower: clip:ARCH[:PRETRAINED] (open_clip) or ski_vlm:FOLDER (a SKI-VLM run's image tower)."""
    skeleton_encoder: str | None = "random:tiny"
    """Skeleton features for injection: skeleton_clip:FOLDER, ski_vlm:FOLDER or random:PRESET; None = no skeletons."""
    video_summary_tokens: int = 0
    """Whole-clip summary tokens the video projector appends to the per-token rows (each sees all tokens at
    once, as a linear probe does; ski_lvlm.models.lvlm.projector.SummaryProjector). 0 = Video-ChatGPT layout."""
    tower_trainable: Literal["frozen", "lora", "full"] = "frozen"
    """Whether the LVLM's loss trains the video tower: frozen (features cached once), lora (rank-8 adapters on
    every Linear/Conv2d of the tower, merged into its weights when saved) or full. Trainable towers decode
    each training clip once and keep its frames in memory; the tower learns at train.lr (README)."""
    video_layer: int = -2
    """Which tower block's patch tokens feed the LLM (Video-ChatGPT: the penultimate, -2). A small tower
    trained from scratch for the LVLM (ski-motion-CNN) holds the action best in its last block (-1)."""
    num_frames: int = 8
    """Frames sampled per video (Video-ChatGPT: 100)."""
    max_frames: int = 8
    """Temporal tokens, zero-padded (Video-ChatGPT: 100; with 256 patches -> 356 video tokens)."""
    frame_sampling: Literal["segment_middle", "uniform"] = "segment_middle"
    """Frame positions (segment_middle = Video-ChatGPT)."""
    skeleton_frames: int | None = None
    """Skeleton frames fed to the encoder (None: the checkpoint's training setting, else 300 as SKI -> 75 tokens)."""
    max_length: int = 2048
    """Longest sample in tokens; longer samples are errors (or skipped), never truncated."""
    init_from: str | None = None
    """A final/ folder of an earlier stage (align -> instruct) to start from."""
    mm_projector: str | None = None
    """LLAVIDAL / Video-ChatGPT mm_projector.bin to load into the projectors."""

    def validate(self) -> list[str]:
        out = []
        if self.num_frames < 1 or self.max_frames < self.num_frames:
            out.append(f"num_frames/max_frames: need 1 <= num_frames ({self.num_frames}) <= max_frames ({self.max_frames})")
        if self.max_length < 16:
            out.append("max_length: must be >= 16")
        if self.init_from and not Path(self.init_from).is_dir():
            out.append(f"init_from: folder not found: {self.init_from}")
        if self.mm_projector and not Path(self.mm_projector).is_file():
            out.append(f"mm_projector: file not found: {self.mm_projector}")
        if self.tower_trainable not in ("frozen", "lora", "full"):
            out.append(f"tower_trainable: frozen, lora or full (got {self.tower_trainable!r})")
        return out


@dataclass
class LoraConfig:
    r: int = 8
    """LoRA rank (7B recipe: 64)."""
    alpha: int = 16
    """LoRA alpha (7B recipe: 128)."""
    dropout: float = 0.05
    """LoRA dropout (0 is faster and compiles better)."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names, or ["all-linear"] for every linear layer except the LM head."""
    modules_to_save: list[str] = field(default_factory=list)
    """Modules trained in full next to LoRA (e.g. [lm_head, embed_tokens] for randomly initialised tiny LLMs)."""

    def validate(self) -> list[str]:
        out = []
        if self.r < 1:
            out.append("r: must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            out.append("dropout: must be in [0, 1)")
        if not self.target_modules:
            out.append("target_modules: must not be empty")
        return out


@dataclass
class DataConfig:
    train_json: str = ""
    """Instruction data (LLaVA / LLAVIDAL / SKI / Video-ChatGPT): .json, .jsonl, .parquet or a `datasets` folder,
    read through HF datasets; relative paths resolve against its folder."""
    mix_with: list[str] = field(default_factory=list)
    """More instruction sets mixed into train_json's (interleaved by interleave_probs, seeded by train.seed)."""
    interleave_probs: list[float] | None = None
    """Sampling ratio of each set, train_json first (None = take them in turn)."""
    mix_strategy: Literal["first_exhausted", "all_exhausted"] = "first_exhausted"
    """first_exhausted: stop when a set runs out (no repeats); all_exhausted: oversample until all are seen."""
    num_proc: int = 1
    """Processes that convert and tokenise the instruction data (`datasets` .map; cached by tokenizer + template)."""
    feature_cache: str | None = None
    """A feature cache made by `ski-lvlm data features` with the same encoders; None = compute into OUT/features."""
    p_inject: float = 0.0
    """Probability of <skeleton> tokens for a training sample that has skeleton features."""
    skip_bad_samples: bool = False
    """Skip (and list in OUT/skipped_samples.json) samples whose labels/features cannot be built, instead of failing."""
    max_samples: int | None = None
    """Use only the first N records (smoke runs)."""
    group_by_length: bool = True
    """Length-grouped batches (less padding)."""
    packing: bool = False
    """Padding-free packing: each micro-batch is one row without padding, attention kept per sample, logits only
    at label positions; same samples per step and same loss as unpacked (README: when to use it)."""
    feature_batch_size: int = 8
    """Videos per tower call when computing features."""
    num_workers: int = 0
    """DataLoader worker processes that tokenise and read features ahead of the GPU (0 = in the main process)."""

    def validate(self) -> list[str]:
        out = []
        if not self.train_json:
            out.append("train_json: required (e.g. data.train_json=WORLD/instructions_train.json)")
        for p in [self.train_json] * bool(self.train_json) + self.mix_with:
            if not Path(p).exists():
                out.append(f"train_json / mix_with: not found: {p}")
        if self.interleave_probs is not None and len(self.interleave_probs) != 1 + len(self.mix_with):
            out.append(f"interleave_probs: one ratio per set ({1 + len(self.mix_with)}), got {self.interleave_probs}")
        if not 0.0 <= self.p_inject <= 1.0:
            out.append("p_inject: must be in [0, 1]")
        if self.feature_cache and not Path(self.feature_cache).is_dir():
            out.append(f"feature_cache: folder not found: {self.feature_cache}")
        return out


@dataclass
class TrainConfig:
    stage: Literal["align", "instruct"] = "align"
    """align: projectors only (LLM frozen); instruct: projectors + llm_adapter."""
    llm_adapter: Literal["lora", "qlora", "none", "full"] = "none"
    """How the LLM trains in the instruct stage (align requires none)."""
    epochs: int = 1
    """Passes over the data (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Optimizer steps in total (fixes the LR schedule)."""
    stop_after_steps: int | None = None
    """Stop (with a checkpoint) after this many steps in this invocation; the schedule is unchanged."""
    batch_size: int = 4
    """Micro-batch per device."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    lr: float = 1e-3
    """Peak learning rate of the LLM / adapter parameters."""
    projector_lr: float | None = None
    """Peak learning rate of the projectors (default: lr)."""
    weight_decay: float = 0.0
    """AdamW weight decay (never on biases and norms)."""
    warmup_ratio: float = 0.03
    """Linear warmup share of the steps."""
    min_lr_ratio: float = 0.0
    """Cosine floor as a fraction of lr."""
    grad_clip: float = 1.0
    """Gradient-norm clip (0 = off)."""
    prealign_steps: int = 0
    """Before the loop, fit the video projector so each training video's mean token lands on the mean word
    embedding of its first answer (InfoNCE + MSE, no LLM pass; ski_lvlm.training.prealign). 0 = off.
    A fresh model only (not with model.init_from)."""
    prealign_target: Literal["mean", "words"] = "mean"
    """What pre-alignment fits: ``mean`` = the summary tokens' mean to the answer's mean word embedding;
    ``words`` = summary token i to the answer's i-th most distinctive token (needs summary tokens; README)."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """auto = bf16 on CUDA, fp32 on CPU. bf16 on CPU: frozen weights in bf16, trainable ones fp32, bf16 autocast
    (faster where the CPU has AMX / AVX512-bf16; README)."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (less memory)."""
    deepspeed: str | None = None
    """DeepSpeed JSON (train/configs/deepspeed/zero2.json, zero3.json, zero3_offload.json); None = plain PyTorch."""
    device: str = "auto"
    """auto | cpu | cuda."""
    seed: int = 0
    """Seeds init, data order and skeleton-injection draws."""
    log_every: int = 1
    """Optimizer steps between log lines."""
    save_every: int = 0
    """Optimizer steps between resume checkpoints (0 = only at the end / on stop)."""
    keep_last: int = 2
    """Resume checkpoints to keep."""
    save_full: Literal["auto", "true", "false"] = "auto"
    """Write full merged weights to OUT/final (auto: yes, except QLoRA). 7B LoRA runs may say false."""

    def validate(self) -> list[str]:
        out = []
        if self.stage == "align" and self.llm_adapter != "none":
            out.append(f"llm_adapter: the align stage trains projectors only; use none (got {self.llm_adapter})")
        for name in ("epochs", "batch_size", "grad_accum", "log_every", "keep_last"):
            if getattr(self, name) < 1:
                out.append(f"{name}: must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            out.append("max_steps: must be >= 1")
        if self.lr <= 0 or (self.projector_lr is not None and self.projector_lr <= 0):
            out.append("lr: must be > 0")
        if not 0 <= self.warmup_ratio < 1:
            out.append("warmup_ratio: must be in [0, 1)")
        if self.deepspeed and not _find_file(self.deepspeed):
            out.append(f"deepspeed: file not found: {self.deepspeed}")
        return out


@dataclass
class LvlmRecipeConfig:
    out: str = ""
    """Run folder (config.yaml, train_log.jsonl, tb/, features/, checkpoints/, final/)."""
    resume: bool = True
    """Continue from OUT/checkpoints/latest when it exists."""
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> list[str]:
        out = [] if self.out else ["out: required (the run folder)"]
        if self.data.p_inject > 0 and not self.model.skeleton_encoder:
            out.append("data.p_inject: skeleton injection needs model.skeleton_encoder (or set data.p_inject=0)")
        if self.train.llm_adapter == "qlora" and self.train.deepspeed and "zero3" in Path(self.train.deepspeed).name:
            out.append("train.deepspeed: QLoRA works with ZeRO-2 (4-bit weights cannot be sharded by ZeRO-3)")
        if self.train.prealign_target == "words" and self.model.video_summary_tokens < 1:
            out.append("train.prealign_target: 'words' fits one word per summary token; set "
                       "model.video_summary_tokens >= 1 (or use 'mean')")
        return out


def _find_file(path: str) -> Path | None:
    for cand in (Path(path), REPO / path):
        if cand.is_file():
            return cand
    return None


class LvlmRecipe:
    """setup() -> train() -> cleanup(); one object per run."""

    def __init__(self, cfg: LvlmRecipeConfig, argv: list[str]):
        self.cfg, self.argv = cfg, argv
        self.out = Path(cfg.out)
        self.engine = None
        self.tb = None

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        import torch

        from ski_lvlm.data.instruction_sets import read_training_records
        from ski_lvlm.training.distributed import world_info
        from ski_lvlm.utils.runtime import pick_device, seed_everything

        cfg = self.cfg
        self.rank, self.local_rank, self.world = world_info()
        self.is_main = self.rank == 0
        device = pick_device(cfg.train.device)
        if device.type == "cuda" and self.world > 1:
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.device = device
        self.precision = cfg.train.precision if cfg.train.precision != "auto" else (
            "bf16" if device.type == "cuda" else "fp32")
        if self.world > 1:
            if not cfg.train.deepspeed:
                raise UserError(f"{self.world} processes: multi-GPU runs go through DeepSpeed (set train.deepspeed="
                                "train/configs/deepspeed/zero2.json)")
            from ski_lvlm.training.distributed import init_distributed

            init_distributed(device)
        seed_everything(cfg.train.seed)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "config.yaml",
                        header="ski-lvlm train lvlm --config " + str(self.out / "config.yaml"))
        try:
            records, self.instruction_rows = read_training_records(
                [cfg.data.train_json, *cfg.data.mix_with], cfg.data.interleave_probs, seed=cfg.train.seed,
                stopping_strategy=cfg.data.mix_strategy, num_proc=cfg.data.num_proc)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(str(e)) from None
        if cfg.data.max_samples:
            records = records[: cfg.data.max_samples]
            self.instruction_rows = self.instruction_rows.select(range(len(records)))
        self.records = records
        self.skel_encoder = self._skeleton_encoder()
        self._build_model()
        self._prepare_features()
        self._build_data()
        self._configure_training()

    def _skeleton_encoder(self):
        cfg = self.cfg
        if not cfg.model.skeleton_encoder:
            return None
        from ski_lvlm.models.encoders import load_skeleton_encoder

        try:
            enc = load_skeleton_encoder(cfg.model.skeleton_encoder, num_frames=cfg.model.skeleton_frames,
                                        device=self.device)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(f"model.skeleton_encoder: {e}") from None
        import torch

        m = int(getattr(enc.encoder, "num_persons", 2))
        probe = enc.encode([torch.zeros(3, enc.num_frames, 25, m)])[0]  # [T', d_s]
        self.skel_tokens, self.skel_dim = int(probe.shape[0]), int(probe.shape[1])
        return enc

    def _build_model(self) -> None:
        from ski_lvlm.models.encoders import load_video_encoder
        from ski_lvlm.models.lvlm import load
        from ski_lvlm.models.lvlm.presets import create_lvlm

        cfg, m = self.cfg, self.cfg.model
        if m.init_from:
            model, processor = load(m.init_from)
            if model.video_tower is None:
                raise UserError(f"model.init_from={m.init_from}: the model has no video tower to compute features")
            from ski_lvlm.models.encoders import VideoFeatureEncoder

            vc = model.config
            self.video_encoder = VideoFeatureEncoder(
                model.video_tower.visual, {k: v for k, v in vc.video_encoder.items() if k != "layer"},
                frames=vc.num_frames, max_frames=vc.max_frames, sampling=vc.frame_sampling,
                layer=model.video_tower.layer, device=self.device)
            if self.skel_encoder is not None and (vc.skeleton_feature_dim, vc.num_skeleton_tokens) != (
                    self.skel_dim, self.skel_tokens):
                raise UserError(f"model.skeleton_encoder gives [{self.skel_tokens}, {self.skel_dim}] features but "
                                f"{m.init_from} expects [{vc.num_skeleton_tokens}, {vc.skeleton_feature_dim}]")
            prev = {}
            if (Path(m.init_from) / "run_info.json").is_file():
                prev = json.loads((Path(m.init_from) / "run_info.json").read_text())
            self.llm_changed = prev.get("llm_adapter", "none") != "none" or not model.config.llm_name_or_path
        else:
            try:
                enc = load_video_encoder(m.video_encoder, frames=m.num_frames, max_frames=m.max_frames,
                                         sampling=m.frame_sampling, layer=m.video_layer, device=self.device)
            except (ValueError, FileNotFoundError) as e:
                raise UserError(f"model.video_encoder: {e}") from None
            self.video_encoder = enc
            # The model records the encoder exactly as the feature cache identifies it, so a cache made by
            # `ski-lvlm data features` with the same settings is accepted by this run and by later stages.
            spec = {**enc.config, "layer": enc.layer}
            corpus = [t["value"] if "value" in t else t.get("content", "") for r in self.records
                      for t in r["conversations"]]
            try:
                model, processor = create_lvlm(
                    m.llm, tokenizer=m.tokenizer, corpus=corpus, chat_template=m.chat_template,
                    skeleton_feature_dim=getattr(self, "skel_dim", 216),
                    num_skeleton_tokens=getattr(self, "skel_tokens", 75), projector_type=m.projector_type,
                    skeleton_projector_type=m.skeleton_projector_type, video_summary_tokens=m.video_summary_tokens,
                    video_encoder={k: v for k, v in spec.items() if k not in ("pretrained", "seed")},
                    num_frames=m.num_frames,
                    frame_sampling=m.frame_sampling, max_frames=m.max_frames, max_length=m.max_length,
                    system_prompt=m.system_prompt, tokenizer_vocab_size=m.tokenizer_vocab_size, seed=cfg.train.seed)
            except (OSError, ValueError) as e:
                raise UserError(f"model.llm={m.llm!r}: {e}") from None
            model.video_tower.visual.load_state_dict(enc.visual.state_dict())
            model.config.video_encoder = spec
            self.llm_changed = model.config.llm_name_or_path is None
        if m.mm_projector:
            from ski_lvlm.models.lvlm.compat import load_mm_projector

            try:
                report = load_mm_projector(model, m.mm_projector)
            except ValueError as e:
                raise UserError(str(e)) from None
            self.log(f"loaded {len(report['loaded'])} projector tensors from {m.mm_projector} "
                     f"(ignored {len(report['ignored'])}: {report['ignored'][:4]})")
        self.model, self.processor = model, processor
        # Adapters need the exact base they were trained on: write it when no reference names it.
        needs_base = cfg.train.llm_adapter in ("lora", "qlora") and self.llm_changed
        if needs_base or model.config.llm_name_or_path is None:
            base = (self.out / "base_llm").resolve()
            if self.is_main and not (base / "config.json").is_file():
                model.language_model.save_pretrained(base)
                processor.tokenizer.save_pretrained(base)
            model.config.llm_name_or_path = str(base)

    def _prepare_features(self) -> None:
        from ski_lvlm.data.feature_cache import (BadItemError, FeatureCache, FeatureItem, StaleCacheError,
                                                 cache_identity, extract_features)
        from ski_lvlm.data.keys import sample_key
        from ski_lvlm.training.distributed import barrier

        cfg = self.cfg
        skel = self.skel_encoder if cfg.data.p_inject > 0 else None
        self.missing_skeleton_files = sorted({r["skeleton_path"] for r in self.records
                                              if r.get("skeleton_path") and not Path(r["skeleton_path"]).is_file()})
        if cfg.data.feature_cache:
            cache = FeatureCache(cfg.data.feature_cache)
            try:
                # storage dtype is irrelevant; skeleton features a run does not use may or may not be there
                ignore = ("dtype",) if skel is not None else ("dtype", "skeleton")
                cache.check_compatible(cache_identity(self.video_encoder, skel), ignore=ignore)
            except StaleCacheError as e:
                raise UserError(f"data.feature_cache: {e}") from None
        else:
            path = self.out / "features"
            if self.is_main:
                items, seen = [], set()
                for r in self.records:
                    key = sample_key(r)
                    if key in seen or not r.get("video_path"):
                        continue
                    seen.add(key)
                    sk = r.get("skeleton_path") if skel is not None else None
                    items.append(FeatureItem(key, r["video_path"], sk if sk and Path(sk).is_file() else None))
                try:
                    summary = extract_features(items, path, self.video_encoder, skel,
                                               batch_size=cfg.data.feature_batch_size, workers=1,
                                               skip_bad=cfg.data.skip_bad_samples, progress=self.is_main)
                except StaleCacheError as e:
                    raise UserError(f"{path} was made with other encoders/settings; delete it or use another out "
                                    f"folder ({e})") from None
                except BadItemError as e:  # an unreadable video names itself
                    raise UserError(f"{e} (set data.skip_bad_samples=true to skip unreadable samples)") from None
                self.log(f"features: {summary['encoded']} encoded, {summary['already_done']} cached, "
                         f"{len(summary['bad'])} unreadable -> {path}")
            barrier()
            cache = FeatureCache(path)
        self.features = cache
        self._fit_standardizers(cache)
        self._prealign(cache)

    def _prealign(self, cache) -> None:
        import torch

        from ski_lvlm.data.keys import sample_key
        from ski_lvlm.training.prealign import answer_embeddings, answer_word_targets, prealign_projector

        steps = self.cfg.train.prealign_steps
        if steps <= 0 or self.cfg.model.init_from:
            return
        feats, answers = [], []
        for r in self.records:
            turns = [t for t in r["conversations"] if t.get("from") in ("gpt", "assistant")]
            try:
                video = cache.get(sample_key(r)).get("video")
            except KeyError:
                continue
            if video is not None and turns:
                feats.append(video.float())
                answers.append(turns[0]["value"])
        if not feats:
            return
        tok, emb = self.processor.tokenizer, self.model.get_input_embeddings()
        if self.cfg.train.prealign_target == "words":
            targets = answer_word_targets(answers, tok, emb, self.cfg.model.video_summary_tokens)  # [n, k, d]
        else:
            targets = answer_embeddings(answers, tok, emb)  # [n, d]
        losses = prealign_projector(self.model.video_projector, torch.stack(feats), targets, steps=steps,
                                    seed=self.cfg.train.seed)
        self.log(f"prealign: video projector fitted to {len(feats)} answers in {steps} steps "
                 f"(loss {losses[0]:.3f} -> {losses[-1]:.3f})")

    def _fit_standardizers(self, cache) -> None:
        """Fit the ``std_*`` projectors' feature statistics on this run's training features (a fresh
        model only: a model from ``model.init_from`` keeps the statistics it was trained with)."""
        import torch

        from ski_lvlm.data.keys import sample_key
        from ski_lvlm.models.lvlm.projector import standardizer_of

        if self.cfg.model.init_from:
            return
        for name, proj in (("video", self.model.video_projector), ("skeleton", self.model.skeleton_projector)):
            std = standardizer_of(proj)
            if std is None:
                continue
            rows = []
            for key in sorted({sample_key(r) for r in self.records}):  # fixed order: same float sums on resume
                try:
                    feats = cache.get(key)
                except KeyError:
                    continue
                if name in feats:
                    rows.append(feats[name].reshape(-1, feats[name].shape[-1]).float())
            if rows:
                std.fit(torch.cat(rows))  # [sum rows, d]
                self.log(f"{name} projector: feature statistics fitted on {len(rows)} training samples")

    def _build_data(self) -> None:
        from ski_lvlm.data.instruction_sets import PretokenizedProcessor, tokenize_set
        from ski_lvlm.data.keys import sample_key
        from ski_lvlm.data.lvlm_dataset import FrameSource, LengthGroupedBatches, LvlmDataset
        from ski_lvlm.models.lvlm.processing import LabelError
        from ski_lvlm.utils.io import atomic_write_json

        cfg = self.cfg
        features = self.features
        if cfg.model.tower_trainable != "frozen":  # the tower sees frames at every step (decoded once)
            vc = self.model.config
            features = FrameSource(features, {sample_key(r): r["video_path"] for r in self.records
                                              if r.get("video_path")}, vc.num_frames, vc.frame_sampling)
        try:
            tokenized = tokenize_set(self.instruction_rows, self.processor, num_proc=cfg.data.num_proc)
            self.dataset = LvlmDataset(self.records, PretokenizedProcessor(self.processor, tokenized), features,
                                       p_inject=cfg.data.p_inject,
                                       video_summary_tokens=self.model.config.video_summary_tokens,
                                       seed=cfg.train.seed, skip_bad=cfg.data.skip_bad_samples,
                                       source=cfg.data.train_json)
        except LabelError as e:
            raise UserError(str(e)) from None
        ds = self.dataset
        if self.is_main and ds.skipped:
            atomic_write_json(self.out / "skipped_samples.json", [dataclasses.asdict(s) for s in ds.skipped])
        self.log(f"data: {len(ds)} samples ({len(ds.skipped)} skipped"
                 f"{', listed in ' + str(self.out / 'skipped_samples.json') if ds.skipped else ''}), "
                 f"{ds.num_with_skeleton} with skeleton features (p_inject={cfg.data.p_inject}), "
                 f"{len(self.missing_skeleton_files)} skeleton files missing (-> no skeleton tokens)")
        self.batches = LengthGroupedBatches(ds.lengths, cfg.train.batch_size, seed=cfg.train.seed,
                                            group_by_length=cfg.data.group_by_length, rank=self.rank,
                                            world_size=self.world, drop_last=self.world > 1)
        if len(self.batches) == 0:
            raise UserError(f"{len(ds)} samples < one global batch ({cfg.train.batch_size} x {self.world} ranks)")
        per_epoch = math.ceil(len(self.batches) / cfg.train.grad_accum)
        self.total_steps = cfg.train.max_steps or cfg.train.epochs * per_epoch

    def _configure_training(self) -> None:
        import torch

        cfg, t = self.cfg, self.cfg.train
        model = self.model
        model.requires_grad_(False)
        if t.llm_adapter == "qlora":
            self._quantize_llm()
        if t.stage == "instruct" and t.llm_adapter in ("lora", "qlora"):
            from peft import LoraConfig, get_peft_model

            targets = "all-linear" if list(cfg.lora.target_modules) == ["all-linear"] else list(cfg.lora.target_modules)
            tied = bool(getattr(model.config.text_config, "tie_word_embeddings", False))
            lcfg = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                              target_modules=targets, modules_to_save=list(cfg.lora.modules_to_save) or None,
                              ensure_weight_tying=tied and bool(cfg.lora.modules_to_save), task_type="CAUSAL_LM")
            try:
                model.language_model = get_peft_model(model.language_model, lcfg)
            except ValueError as e:
                raise UserError(f"lora.target_modules={cfg.lora.target_modules}: {e}") from None
        elif t.stage == "instruct" and t.llm_adapter == "full":
            model.language_model.requires_grad_(True)
        if cfg.data.packing:
            self._use_packed_attention()
        model.video_projector.requires_grad_(True)
        if model.video_tower is not None and cfg.model.tower_trainable != "frozen":
            n_tower = model.video_tower.set_trainable(cfg.model.tower_trainable)
            self.log(f"video tower: {n_tower / 1e3:.1f}k trainable parameters ({cfg.model.tower_trainable})")
        # An unused trainable module would get no gradient (DeepSpeed dislikes that): train the skeleton
        # projector only when skeleton tokens can occur.
        model.skeleton_projector.requires_grad_(self.dataset.num_with_skeleton > 0)
        if t.gradient_checkpointing:
            enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x name
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            model.config.use_cache = False
        if self.precision == "bf16" and t.llm_adapter != "qlora" and not t.deepspeed:
            for p in model.parameters():  # frozen weights in bf16, trainable ones stay fp32 (autocast computes)
                if not p.requires_grad:
                    p.data = p.data.to(torch.bfloat16)
        if not t.deepspeed:
            model.to(self.device)
        model.train()
        projector_lr = t.projector_lr or t.lr
        groups: dict[tuple[float, float], list] = {}
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            is_proj = name.startswith(("video_projector.", "skeleton_projector."))
            decay = 0.0 if (p.ndim < 2 or "norm" in name) else t.weight_decay
            groups.setdefault((projector_lr if is_proj else t.lr, decay), []).append(p)
        self.trainable = [p for ps in groups.values() for p in ps]
        n_train = sum(p.numel() for p in self.trainable)
        n_all = sum(p.numel() for p in model.parameters())
        self.log(f"model: {n_all / 1e6:.2f}M params, {n_train / 1e6:.3f}M trainable ({t.stage}, "
                 f"llm_adapter={t.llm_adapter}, precision={self.precision}, device={self.device})")
        self.optimizer = torch.optim.AdamW(
            [{"params": ps, "lr": lr, "base_lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()],
            betas=(0.9, 0.999), eps=1e-8)
        self.lr_target = self.optimizer
        if t.deepspeed:
            from ski_lvlm.training.distributed import init_deepspeed, load_deepspeed_config

            ds_cfg = load_deepspeed_config(_find_file(t.deepspeed), micro_batch_size=t.batch_size,
                                           grad_accum=t.grad_accum, grad_clip=t.grad_clip,
                                           bf16=self.precision == "bf16", world_size=self.world)
            self.engine = init_deepspeed(model, self.optimizer, ds_cfg, self.device)
            if "optimizer" in ds_cfg:
                self.lr_target = self.engine.optimizer
                for g in self.lr_target.param_groups:
                    g["base_lr"] = g["lr"] = t.lr
            self.log(f"deepspeed: ZeRO stage {ds_cfg['zero_optimization']['stage']} ({t.deepspeed})")

    def _use_packed_attention(self) -> None:
        from ski_lvlm.models.lvlm.packing import PackingError, use_packed_attention

        try:
            impl = use_packed_attention(self.model.language_model,
                                        allow_flash=self.device.type == "cuda" and self.precision == "bf16")
        except PackingError as e:
            raise UserError(str(e)) from None
        self.log(f"data.packing: one row per micro-batch, no padding, attention per sample ({impl})")

    def _quantize_llm(self) -> None:
        import torch
        from peft import prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig

        from ski_lvlm.models.lvlm.modeling import fit_vocab
        from ski_lvlm.training.distributed import barrier

        base = self.model.config.llm_name_or_path
        barrier()  # base_llm/ is written by rank 0
        compute = torch.bfloat16 if self.precision == "bf16" else torch.float32
        qcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                                  bnb_4bit_use_double_quant=True)
        device_map = {"": self.device.index or 0} if self.device.type == "cuda" else "cpu"
        llm = AutoModelForCausalLM.from_pretrained(base, quantization_config=qcfg, device_map=device_map)
        fit_vocab(llm, self.model.config.text_config.vocab_size)  # the placeholder rows, as create_lvlm made them
        self.model.language_model = prepare_model_for_kbit_training(
            llm, use_gradient_checkpointing=self.cfg.train.gradient_checkpointing)
        self.model.language_model.requires_grad_(False)

    # ------------------------------------------------------------------ loop
    def log(self, msg: str) -> None:
        if getattr(self, "is_main", True):
            from tqdm import tqdm

            tqdm.write(f"[lvlm] {msg}")

    def _lr(self, step: int) -> float:
        from ski_lvlm.training.schedule import warmup_cosine

        t = self.cfg.train
        warmup = int(t.warmup_ratio * self.total_steps)
        if step < warmup:  # (step + 1): the first optimizer step already moves the weights
            return (step + 1) / warmup
        return warmup_cosine(step, base_lr=1.0, total_steps=self.total_steps, warmup_steps=warmup,
                             min_lr=t.min_lr_ratio)

    def _set_lr(self, step: int) -> float:
        scale = self._lr(step)
        for g in self.lr_target.param_groups:
            g["lr"] = g.get("base_lr", self.cfg.train.lr) * scale
        return scale * self.cfg.train.lr

    def _forward(self, batch: dict):
        from ski_lvlm.utils.runtime import autocast

        dev = self.device
        kw = {k: (v.to(dev) if hasattr(v, "to") else v) for k, v in batch.items() if k in _MODEL_INPUTS}
        module = self.engine if self.engine is not None else self.model
        with autocast(dev, self.precision if self.engine is None else "fp32"):
            loss = module(**kw, use_cache=False).loss
        if self.world > 1:  # every label token weighs the same on every rank, as in one process
            from ski_lvlm.models.lvlm.processing import IGNORE_INDEX
            from ski_lvlm.training.distributed import global_token_mean

            loss = global_token_mean(loss, (kw["labels"][..., 1:] != IGNORE_INDEX).sum())
        return loss

    def train(self) -> int:
        import torch
        from tqdm import tqdm

        from ski_lvlm.training.checkpoint import GracefulStop
        from ski_lvlm.training.lvlm_checkpoint import (TrainState, latest_resume_checkpoint, load_resume_checkpoint,
                                                       save_resume_checkpoint)

        cfg, t = self.cfg, self.cfg.train
        ckpt_root = self.out / "checkpoints"
        state = TrainState()
        latest = latest_resume_checkpoint(ckpt_root) if cfg.resume else None
        if latest is not None:
            self._check_resume_world(latest)
            try:
                state = load_resume_checkpoint(latest, model=self.model, optimizer=self.optimizer, engine=self.engine)
            except (ValueError, FileNotFoundError) as e:
                raise UserError(f"cannot resume: {e} (use another out= or resume=false to start over)") from None
            self.log(f"resumed from {latest} (step {state.step}, epoch {state.epoch}, batch {state.batch_in_epoch})")
        state.extra["world_size"] = self.world
        if state.step >= self.total_steps:
            self.log(f"already finished ({state.step}/{self.total_steps} steps)")
            return self._finish(state)
        if self.is_main:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.out / "tb"))
        log_path = self.out / "train_log.jsonl"
        pad = self.processor.tokenizer.pad_token_id
        pbar = tqdm(total=self.total_steps, initial=state.step, desc="lvlm", disable=not self.is_main,
                    dynamic_ncols=True)
        window = {"loss": 0.0, "n": 0, "tokens": 0, "skel": 0, "samples": 0, "t0": time.perf_counter()}
        steps_this_run, micro, done = 0, 0, False
        stop_reason = None
        with GracefulStop() as stopper:
            while not done:
                self.dataset.set_epoch(state.epoch)
                self.batches.set_epoch(state.epoch)
                batches = list(self.batches)
                loader = self._loader(batches[state.batch_in_epoch:], pad)
                for bi, batch in zip(range(state.batch_in_epoch, len(batches)), loader):
                    last_in_epoch = bi == len(batches) - 1
                    if self.engine is not None:
                        boundary = self.engine.is_gradient_accumulation_boundary()
                        if boundary:
                            lr = self._set_lr(state.step)
                        loss = self._forward(batch)
                        self.engine.backward(loss)
                        self.engine.step()
                    else:
                        loss = self._forward(batch)
                        (loss / t.grad_accum).backward()
                        micro += 1
                        boundary = micro % t.grad_accum == 0 or last_in_epoch
                        if boundary:
                            if t.grad_clip > 0:
                                torch.nn.utils.clip_grad_norm_(self.trainable, t.grad_clip)
                            lr = self._set_lr(state.step)
                            self.optimizer.step()
                            self.optimizer.zero_grad(set_to_none=True)
                            micro = 0
                    window["loss"] += float(loss.detach())  # CPU-GPU sync point, once per micro-batch
                    window["n"] += 1
                    window["tokens"] += batch["num_tokens"]
                    window["samples"] += len(batch["ids"])
                    window["skel"] += 0 if batch["skeleton_features"] is None else len(batch["skeleton_features"])
                    state.batch_in_epoch = bi + 1
                    if not boundary:
                        continue
                    state.step += 1
                    steps_this_run += 1
                    pbar.update(1)
                    if state.step % t.log_every == 0 or state.step == self.total_steps:
                        self._log_step(state, lr, window, log_path, pbar)
                    finished = state.step >= self.total_steps
                    stop_reason = stopper.requested or (
                        "stop_after_steps" if t.stop_after_steps and steps_this_run >= t.stop_after_steps else None)
                    if (t.save_every and state.step % t.save_every == 0) or stop_reason or finished:
                        if last_in_epoch:
                            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                        save_resume_checkpoint(ckpt_root, model=self.model, optimizer=self.optimizer, state=state,
                                               engine=self.engine, keep_last=t.keep_last, is_main=self.is_main)
                        if last_in_epoch:
                            state.epoch, state.batch_in_epoch = state.epoch - 1, len(batches)
                    if finished or stop_reason:
                        done = True
                        break
                if not done:
                    state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        pbar.close()
        if stop_reason:
            self.log(f"stopped after step {state.step}/{self.total_steps} ({stop_reason}); run the same command "
                     f"again to resume from {ckpt_root / 'latest'}")
            return 0
        return self._finish(state)

    def _check_resume_world(self, ckpt: Path) -> None:
        """DeepSpeed writes one ZeRO optimizer shard per process: resume with the process count that wrote them."""
        state_file = ckpt / "trainer_state.json"
        saved = json.loads(state_file.read_text()).get("extra", {}).get("world_size") if state_file.is_file() else None
        if self.engine is not None and saved is not None and saved != self.world:
            raise UserError(f"cannot resume {ckpt}: it was written by {saved} process(es) and this run has "
                            f"{self.world}; DeepSpeed keeps one optimizer shard per process. Resume with {saved} "
                            "process(es) and the same train.batch_size, or start over (resume=false, or another out=)")

    def _loader(self, batches: list[list[int]], pad: int):
        """Collated batches in the given order; worker processes when data.num_workers > 0."""
        from functools import partial

        from ski_lvlm.data.lvlm_dataset import lvlm_collate, lvlm_pack_collate

        collate = lvlm_pack_collate if self.cfg.data.packing else partial(lvlm_collate, pad_token_id=pad)
        if self.cfg.data.num_workers == 0:
            return (collate([self.dataset[i] for i in b]) for b in batches)
        from torch.utils.data import DataLoader

        return iter(DataLoader(self.dataset, batch_sampler=batches, num_workers=self.cfg.data.num_workers,
                               collate_fn=collate))

    def _log_step(self, state, lr: float, window: dict, log_path: Path, pbar) -> None:
        dt = max(time.perf_counter() - window["t0"], 1e-9)
        if self.world > 1:  # every rank logs at the same steps: average over all of them
            import torch

            t = torch.tensor([window[k] for k in ("loss", "n", "tokens", "skel", "samples")], dtype=torch.float64,
                             device=self.device)
            torch.distributed.all_reduce(t)
            window.update(zip(("loss", "n", "tokens", "skel", "samples"), t.tolist()))
        rec = {"step": state.step, "epoch": state.epoch, "loss": window["loss"] / max(window["n"], 1), "lr": lr,
               "tokens_per_s": window["tokens"] / dt, "samples": int(window["samples"]),
               "skeleton_frac": window["skel"] / max(window["samples"], 1), "time": time.time()}
        self.last_loss = rec["loss"]
        if self.is_main:
            with open(log_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            for k in ("loss", "lr", "tokens_per_s", "skeleton_frac"):
                self.tb.add_scalar(f"train/{k}", rec[k], state.step)
            pbar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}", tok_s=f"{rec['tokens_per_s']:.0f}")
            pbar.write(f"[lvlm] step {state.step}/{self.total_steps} loss {rec['loss']:.4f} lr {lr:.3e} "
                       f"tokens/s {rec['tokens_per_s']:.0f} skel {rec['skeleton_frac']:.2f}")
        window.update(loss=0.0, n=0, tokens=0, skel=0, samples=0, t0=time.perf_counter())

    def _finish(self, state) -> int:
        from ski_lvlm.training.distributed import gathered_parameters
        from ski_lvlm.training.lvlm_checkpoint import save_final

        t = self.cfg.train
        save_full = {"auto": t.llm_adapter != "qlora", "true": True, "false": False}[t.save_full]
        with gathered_parameters(self.model, self.engine):
            if self.is_main:
                info = {"stage": t.stage, "llm_adapter": t.llm_adapter, "steps": state.step,
                        "final_loss": getattr(self, "last_loss", None), "p_inject": self.cfg.data.p_inject,
                        "samples": len(self.dataset), "skipped": len(self.dataset.skipped),
                        "command": "ski-lvlm train lvlm " + " ".join(self.argv)}
                if self.model.video_tower is not None and self.cfg.model.tower_trainable == "lora":
                    self.model.video_tower.merge_adapters()  # saved as plain tower weights
                save_final(self.out / "final", self.model, self.processor, run_info=info, save_full=save_full)
                self.log(f"saved {self.out / 'final'} (load with ski_lvlm.models.lvlm.load)")
        return 0

    def cleanup(self) -> None:
        from ski_lvlm.training.distributed import destroy

        if self.tb is not None:
            self.tb.close()
        if self.engine is not None:
            destroy()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ski-lvlm train lvlm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="recipe YAML (train/configs/lvlm/*.yaml)")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # the deepspeed launcher's
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. out=runs/x train.lr=2e-4 data.p_inject=0.5")
    return p


@cli_entry("ski-lvlm train lvlm")
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.local_rank is not None:
        os.environ.setdefault("LOCAL_RANK", str(args.local_rank))
    cfg = load_config(LvlmRecipeConfig, args.config, args.overrides)
    recipe = LvlmRecipe(cfg, argv)
    try:
        recipe.setup()
        return recipe.train()
    finally:
        recipe.cleanup()


if __name__ == "__main__":
    sys.exit(main())
