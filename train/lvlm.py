"""Phase 3 recipe: SKI-LVLM projector alignment and (LoRA) instruction tuning, optionally under DeepSpeed.

    ski-lvlm train lvlm --config train/configs/lvlm/align_tiny.yaml train.output_dir=runs/lvlm_align \\
        data.train_json=WORLD/instructions_train.json
    ski-lvlm train lvlm --config train/configs/lvlm/instruct_tiny.yaml train.output_dir=runs/lvlm_instruct \\
        data.train_json=WORLD/instructions_train.json model.init_from=runs/lvlm_align/final data.p_inject=0.5
    deepspeed --num_gpus 8 --module train.lvlm --config train/configs/lvlm/instruct_7b_vicuna.yaml \\
        train.output_dir=...   (scripts/train_lvlm.sh)

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
SIGTERM/SIGINT: the current step finishes, a checkpoint is saved and the run exits with code 143 (as in
phases 1/2); ``train.stop_after_steps`` stops the same way but exits 0. Rerun the same command to resume.

Setting names are those of phases 1/2 (``train.output_dir``, ``train.clip_grad``, ``train.keep_checkpoints``);
the old ones (``out``, ``train.grad_clip``, ``train.keep_last``) still work and warn. So are the file names
(``train_log.jsonl``, ``final/``: :mod:`ski_lvlm.utils.run_layout`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ski_lvlm.config import load_config, save_config
from ski_lvlm.data.feature_cache import FeatureCache
from ski_lvlm.data.instruction_sets import (PretokenizedProcessor, read_training_records, read_training_stream,
                                            tokenize_set)
from ski_lvlm.data.keys import sample_key
from ski_lvlm.data.lvlm_dataset import (FrameSource, LengthGroupedBatches, LvlmDataset, SampleBuilder, SkippedSample,
                                        lvlm_collate, lvlm_pack_collate)
from ski_lvlm.data.lvlm_stream import LvlmStream, first_records
from ski_lvlm.models.encoders import VideoFeatureEncoder, load_skeleton_encoder, load_video_encoder
from ski_lvlm.models.lvlm import load
from ski_lvlm.models.lvlm.compat import load_mm_projector
from ski_lvlm.models.lvlm.presets import create_lvlm
from ski_lvlm.models.lvlm.processing import IGNORE_INDEX, LabelError
from ski_lvlm.training.checkpoint import EXIT_INTERRUPTED, GracefulStop
from ski_lvlm.training.distributed import (barrier, destroy, gathered_parameters, global_token_mean, init_deepspeed,
                                           init_distributed, load_deepspeed_config, world_info)
from ski_lvlm.training.lvlm_checkpoint import (TrainState, latest_resume_checkpoint, load_resume_checkpoint,
                                               save_final, save_resume_checkpoint)
from ski_lvlm.training.lvlm_features import (check_feature_cache, compute_features, fit_standardizers, prealign,
                                             read_training_features)
from ski_lvlm.training.lvlm_setup import (attach_lora, cast_frozen_to_bf16, enable_gradient_checkpointing,
                                          enable_packing, param_groups, quantize_llm)
from ski_lvlm.training.schedule import warmup_cosine
from ski_lvlm.training.step_align import step_alignment
from ski_lvlm.training.stepper import Stepper
from ski_lvlm.utils.errors import UserError, cli_entry
from ski_lvlm.utils.io import atomic_write_json
from ski_lvlm.utils.run_layout import CONFIG_FILE, FINAL_DIR, TRAIN_LOG, config_header
from ski_lvlm.utils.runtime import autocast, pick_device, resolve_precision, seed_everything

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
    streaming: bool = False
    """Read the instruction set row by row (sets larger than memory): needs data.feature_cache and train.max_steps;
    buffer-shuffled, not length-grouped; bad samples are found when reached (README: streaming)."""
    shuffle_buffer: int = 10_000
    """data.streaming: rows in the seeded shuffle buffer (0 = file order)."""
    stats_samples: int = 1_000
    """data.streaming: the first N records fit the projectors' feature statistics, pre-alignment and tokenizer."""

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
    output_dir: str = ""
    """Run folder (config.yaml, train_log.jsonl, tb/, features/, checkpoints/, final/)."""
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
    clip_grad: float | None = 1.0
    """Gradient-norm clip; None = off."""
    prealign_steps: int = 0
    """Before the loop, fit the video projector so each training video's mean token lands on the mean word
    embedding of its first answer (InfoNCE + MSE, no LLM pass; ski_lvlm.training.prealign). 0 = off.
    A fresh model only (not with model.init_from)."""
    prealign_target: Literal["mean", "words"] = "mean"
    """What pre-alignment fits: ``mean`` = the summary tokens' mean to the answer's mean word embedding;
    ``words`` = summary token i to the answer's i-th most distinctive token (needs summary tokens; README)."""
    precision: Literal["auto", "bf16_native", "fp32", "bf16"] = "auto"
    """auto = bf16 on CUDA, fp32 on CPU; bf16_native = bf16 on CUDA and on CPUs with AMX / AVX512-BF16, fp32 on
    other CPUs (where bf16 is emulated and slower). bf16 on CPU: frozen weights in bf16, trainable ones fp32,
    bf16 autocast (1.2x per SmolLM2 LoRA step here; README)."""
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
    keep_checkpoints: int = 2
    """Resume checkpoints to keep."""
    save_full: Literal["auto", "true", "false"] = "auto"
    """Write full merged weights to OUT/final (auto: yes, except QLoRA). 7B LoRA runs may say false."""

    def validate(self) -> list[str]:
        out = []
        if self.stage == "align" and self.llm_adapter != "none":
            out.append(f"llm_adapter: the align stage trains projectors only; use none (got {self.llm_adapter})")
        if not self.output_dir:
            out.append("output_dir: required (the run folder)")
        for name in ("epochs", "batch_size", "grad_accum", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                out.append(f"{name}: must be >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            out.append("max_steps: must be >= 1")
        if self.lr <= 0 or (self.projector_lr is not None and self.projector_lr <= 0):
            out.append("lr: must be > 0")
        if self.clip_grad is not None and self.clip_grad <= 0:
            out.append("clip_grad: must be > 0 (or null for no clipping)")
        if not 0 <= self.warmup_ratio < 1:
            out.append("warmup_ratio: must be in [0, 1)")
        if self.deepspeed and not _find_file(self.deepspeed):
            out.append(f"deepspeed: file not found: {self.deepspeed}")
        return out


@dataclass
class LossConfig:
    distill_on: Literal["none", "steps"] = "none"
    """steps: pull each frame's projected video token towards the projected skeleton token of the same moment
    (the skeleton side is the target, no gradient; ski_lvlm.training.step_align), for every training video with
    a skeleton, injected or not. The same name as phase 2's loss.distill_on."""
    alpha: float = 1.0
    """Weight of that term (a squared distance of unit vectors, in [0, 4]) next to the LM loss."""

    def validate(self) -> list[str]:
        return ["alpha: must be >= 0"] if self.alpha < 0 else []


@dataclass
class LvlmRecipeConfig:
    RENAMED: ClassVar[dict] = {  # the names of phases 1/2 (issue 14); the old ones warn
        "out": "train.output_dir",
        "train.grad_clip": ("train.clip_grad", lambda v: v or None),  # 0 meant off
        "train.keep_last": "train.keep_checkpoints",
    }
    resume: bool = True
    """Continue from OUT/checkpoints/latest when it exists."""
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def validate(self) -> list[str]:
        out = []
        if self.loss.distill_on == "steps" and not self.model.skeleton_encoder:
            out.append("loss.distill_on: steps aligns video tokens to skeleton tokens; set model.skeleton_encoder")
        if self.loss.distill_on == "steps" and self.model.tower_trainable != "frozen":
            out.append("loss.distill_on: steps reads the cached tower features; it needs model.tower_trainable=frozen")
        if self.data.streaming:
            out += [f"data.streaming: {why}" for bad, why in (
                (not self.data.feature_cache, "needs data.feature_cache (`ski-lvlm data features`): a stream has no "
                 "feature pass"),
                (not self.train.max_steps, "needs train.max_steps: a stream's length is not known up front"),
                (self.model.tower_trainable != "frozen", "needs model.tower_trainable=frozen (it reads cached "
                 "features)"),
                (self.data.num_workers > 0, "reads in the main process; set data.num_workers=0"),
                (self.data.stats_samples < 1, "data.stats_samples must be >= 1")) if bad]
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
        self.out = Path(cfg.train.output_dir)
        self.is_main = True  # until setup() knows the rank
        self.engine = None
        self.tb = None
        self.last_loss: float | None = None
        self.distill_sum = 0.0  # loss.distill_on=steps: the alignment distance summed since the last log line

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        self.rank, self.local_rank, self.world = world_info()
        self.is_main = self.rank == 0
        self.device, self.precision = self._init_device()
        seed_everything(cfg.train.seed)
        if self.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / CONFIG_FILE,
                        header=config_header("lvlm", self.out / CONFIG_FILE))
        self.records, instruction_rows = self._read_records()
        self.skel_encoder, skel_shape = self._skeleton_encoder()
        if cfg.model.init_from:
            self.model, self.processor, self.video_encoder, llm_changed = self._load_init_from(skel_shape)
        else:
            self.model, self.processor, self.video_encoder, llm_changed = self._create_model(skel_shape)
        if cfg.model.mm_projector:
            self._load_mm_projector()
        self._reference_base_llm(llm_changed)
        features = self._prepare_features()
        self.resume_from = latest_resume_checkpoint(self.out / "checkpoints") if cfg.resume else None
        if cfg.data.streaming:
            self.stream, self.dataset = self._build_stream(instruction_rows, features), None
            self.total_steps = cfg.train.max_steps
            self._set_trainable()
            self.stepper = self._build_stepper()
            return
        self.stream, self.dataset = None, self._build_dataset(instruction_rows, features)
        self.batches = LengthGroupedBatches(self.dataset.lengths, cfg.train.batch_size, seed=cfg.train.seed,
                                            group_by_length=cfg.data.group_by_length, rank=self.rank,
                                            world_size=self.world, drop_last=self.world > 1)
        if len(self.batches) == 0:
            raise UserError(f"{len(self.dataset)} samples < one global batch ({cfg.train.batch_size} x {self.world} "
                            "ranks)")
        self.total_steps = cfg.train.max_steps or cfg.train.epochs * math.ceil(len(self.batches) / cfg.train.grad_accum)
        self._set_trainable()
        self.stepper = self._build_stepper()

    def _init_device(self) -> tuple[torch.device, str]:
        """The device and precision of this process (joining the process group of a multi-GPU run)."""
        t = self.cfg.train
        device = pick_device(t.device)
        if device.type == "cuda" and self.world > 1:
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        precision = resolve_precision(t.precision, device)
        if self.world > 1:
            if not t.deepspeed:
                raise UserError(f"{self.world} processes: multi-GPU runs go through DeepSpeed (set train.deepspeed="
                                "train/configs/deepspeed/zero2.json)")
            init_distributed(device)
        return device, precision

    def _read_records(self) -> tuple[list[dict], object]:
        """The training records (one dict per sample) and their instruction rows (an HF dataset); when
        streaming, the first data.stats_samples records and the rows as an IterableDataset."""
        d = self.cfg.data
        if d.streaming:
            try:
                rows = read_training_stream([d.train_json, *d.mix_with], d.interleave_probs, seed=self.cfg.train.seed,
                                            stopping_strategy=d.mix_strategy, max_samples=d.max_samples)
                return first_records(rows, d.stats_samples), rows
            except (ValueError, FileNotFoundError) as e:
                raise UserError(str(e)) from None
        try:
            records, rows = read_training_records([d.train_json, *d.mix_with], d.interleave_probs,
                                                  seed=self.cfg.train.seed, stopping_strategy=d.mix_strategy,
                                                  num_proc=d.num_proc)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(str(e)) from None
        if d.max_samples:
            records = records[: d.max_samples]
            rows = rows.select(range(len(records)))
        return records, rows

    def _skeleton_encoder(self) -> tuple[object | None, tuple[int, int] | None]:
        """The frozen skeleton encoder and the shape of its features, [tokens, dim] (None, None: no skeletons)."""
        spec = self.cfg.model.skeleton_encoder
        if not spec:
            return None, None
        try:
            enc = load_skeleton_encoder(spec, num_frames=self.cfg.model.skeleton_frames, device=self.device)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(f"model.skeleton_encoder: {e}") from None
        m = int(getattr(enc.encoder, "num_persons", 2))
        probe = enc.encode([torch.zeros(3, enc.num_frames, 25, m)])[0]  # [T', d_s]
        return enc, (int(probe.shape[0]), int(probe.shape[1]))

    def _load_init_from(self, skel_shape: tuple[int, int] | None):
        """An earlier stage's final/ folder; its own frozen tower computes this run's features.

        Returns (model, processor, video feature encoder, whether its LLM differs from the named base)."""
        path = self.cfg.model.init_from
        model, processor = load(path)
        if model.video_tower is None:
            raise UserError(f"model.init_from={path}: the model has no video tower to compute features")
        vc = model.config
        video_encoder = VideoFeatureEncoder(
            model.video_tower.visual, {k: v for k, v in vc.video_encoder.items() if k != "layer"},
            frames=vc.num_frames, max_frames=vc.max_frames, sampling=vc.frame_sampling,
            layer=model.video_tower.layer, device=self.device)
        if skel_shape is not None and (vc.num_skeleton_tokens, vc.skeleton_feature_dim) != skel_shape:
            raise UserError(f"model.skeleton_encoder gives [{skel_shape[0]}, {skel_shape[1]}] features but "
                            f"{path} expects [{vc.num_skeleton_tokens}, {vc.skeleton_feature_dim}]")
        info = Path(path) / "run_info.json"
        prev = json.loads(info.read_text()) if info.is_file() else {}
        llm_changed = prev.get("llm_adapter", "none") != "none" or not vc.llm_name_or_path
        return model, processor, video_encoder, llm_changed

    def _create_model(self, skel_shape: tuple[int, int] | None):
        """A fresh model: a preset or pretrained LLM, new projectors and the configured frozen tower.

        Returns (model, processor, video feature encoder, whether its LLM differs from the named base)."""
        m = self.cfg.model
        try:
            enc = load_video_encoder(m.video_encoder, frames=m.num_frames, max_frames=m.max_frames,
                                     sampling=m.frame_sampling, layer=m.video_layer, device=self.device)
        except (ValueError, FileNotFoundError) as e:
            raise UserError(f"model.video_encoder: {e}") from None
        # The model records the encoder exactly as the feature cache identifies it, so a cache made by
        # `ski-lvlm data features` with the same settings is accepted by this run and by later stages.
        spec = {**enc.config, "layer": enc.layer}
        corpus = [t["value"] if "value" in t else t.get("content", "") for r in self.records
                  for t in r["conversations"]]
        skel_tokens, skel_dim = skel_shape or (75, 216)  # unused without skeletons; SKI's shape
        try:
            model, processor = create_lvlm(
                m.llm, tokenizer=m.tokenizer, corpus=corpus, chat_template=m.chat_template,
                skeleton_feature_dim=skel_dim, num_skeleton_tokens=skel_tokens, projector_type=m.projector_type,
                skeleton_projector_type=m.skeleton_projector_type, video_summary_tokens=m.video_summary_tokens,
                video_encoder={k: v for k, v in spec.items() if k not in ("pretrained", "seed")},
                num_frames=m.num_frames, frame_sampling=m.frame_sampling, max_frames=m.max_frames,
                max_length=m.max_length, system_prompt=m.system_prompt, tokenizer_vocab_size=m.tokenizer_vocab_size,
                seed=self.cfg.train.seed)
        except (OSError, ValueError) as e:
            raise UserError(f"model.llm={m.llm!r}: {e}") from None
        model.video_tower.visual.load_state_dict(enc.visual.state_dict())
        model.config.video_encoder = spec
        return model, processor, enc, model.config.llm_name_or_path is None

    def _load_mm_projector(self) -> None:
        path = self.cfg.model.mm_projector
        try:
            report = load_mm_projector(self.model, path)
        except ValueError as e:
            raise UserError(str(e)) from None
        self.log(f"loaded {len(report['loaded'])} projector tensors from {path} "
                 f"(ignored {len(report['ignored'])}: {report['ignored'][:4]})")

    def _reference_base_llm(self, llm_changed: bool) -> None:
        """Adapters need the exact base they were trained on: write it to OUT/base_llm when no reference
        names it (a preset, or an LLM changed by an earlier stage), and point the config at it."""
        model = self.model
        needs_base = self.cfg.train.llm_adapter in ("lora", "qlora") and llm_changed
        if needs_base or model.config.llm_name_or_path is None:
            base = (self.out / "base_llm").resolve()
            if self.is_main and not (base / "config.json").is_file():
                model.language_model.save_pretrained(base)
                self.processor.tokenizer.save_pretrained(base)
            model.config.llm_name_or_path = str(base)

    def _prepare_features(self) -> FeatureCache:
        """The feature cache (given, or computed into OUT/features); then, for a fresh model, the projectors'
        feature statistics and the optional pre-alignment, which read it."""
        cfg = self.cfg
        skel = self.skel_encoder if cfg.data.p_inject > 0 or cfg.loss.distill_on == "steps" else None
        if cfg.data.feature_cache:
            cache = check_feature_cache(cfg.data.feature_cache, self.video_encoder, skel)
        else:
            cache = compute_features(self.records, self.out / "features", self.video_encoder, skel,
                                     batch_size=cfg.data.feature_batch_size, skip_bad=cfg.data.skip_bad_samples,
                                     is_main=self.is_main, log=self.log)
        if not cfg.model.init_from:  # a loaded model keeps what it was trained with
            feats = read_training_features(self.records, cache)  # read once for both steps
            fit_standardizers(self.model, feats, self.log)
            if cfg.train.prealign_steps > 0:
                prealign(self.model, self.processor.tokenizer, self.records, feats, steps=cfg.train.prealign_steps,
                         target=cfg.train.prealign_target, summary_tokens=cfg.model.video_summary_tokens,
                         seed=cfg.train.seed, log=self.log)
        return cache

    def _build_dataset(self, instruction_rows, features: FeatureCache) -> LvlmDataset:
        cfg = self.cfg
        if cfg.model.tower_trainable != "frozen":  # the tower sees frames at every step (decoded once)
            vc = self.model.config
            features = FrameSource(features, {sample_key(r): r["video_path"] for r in self.records
                                              if r.get("video_path")}, vc.num_frames, vc.frame_sampling)
        # a LabelError names the record whose labels cannot be found
        tokenized = tokenize_set(instruction_rows, self.processor, num_proc=cfg.data.num_proc)
        ds = LvlmDataset(self.records, PretokenizedProcessor(self.processor, tokenized), features,
                         p_inject=cfg.data.p_inject, video_summary_tokens=self.model.config.video_summary_tokens,
                         align_skeleton=cfg.loss.distill_on == "steps",
                         seed=cfg.train.seed, skip_bad=cfg.data.skip_bad_samples, source=cfg.data.train_json)
        if self.is_main:  # the set lists every bad record each time, so an earlier list is never kept
            self._replace_skipped([dataclasses.asdict(s) for s in ds.skipped])
        missing = {r["skeleton_path"] for r in self.records
                   if r.get("skeleton_path") and not Path(r["skeleton_path"]).is_file()}
        self.log(f"data: {len(ds)} samples ({len(ds.skipped)} skipped"
                 f"{', listed in ' + str(self.out / 'skipped_samples.json') if ds.skipped else ''}), "
                 f"{ds.num_with_skeleton} with skeleton features (p_inject={cfg.data.p_inject}), "
                 f"{len(missing)} skeleton files missing (-> no skeleton tokens)")
        return ds

    def _build_stream(self, rows, features: FeatureCache) -> LvlmStream:
        cfg = self.cfg
        builder = SampleBuilder(self.processor, features, cfg.data.p_inject, cfg.train.seed,
                                self.model.config.video_summary_tokens, cfg.loss.distill_on == "steps")
        collate = (lvlm_pack_collate if cfg.data.packing
                   else partial(lvlm_collate, pad_token_id=self.processor.tokenizer.pad_token_id))
        stream = LvlmStream(rows, builder, batch_size=cfg.train.batch_size, collate=collate,
                            shuffle_buffer=cfg.data.shuffle_buffer, seed=cfg.train.seed, rank=self.rank,
                            world_size=self.world, skip_bad=cfg.data.skip_bad_samples, source=cfg.data.train_json)
        skipped = self.out / "skipped_samples.json"
        if self.resume_from is not None and skipped.is_file():  # a resumed stream keeps the rows it skipped before
            stream.skipped = {s["index"]: SkippedSample(**s) for s in json.loads(skipped.read_text())}
        elif self.is_main:  # a fresh start: a list there belongs to an earlier run
            self._replace_skipped([])
        self.log(f"data: streaming {cfg.data.train_json} (shuffle buffer {cfg.data.shuffle_buffer}, batches in "
                 f"stream order, not length-grouped); statistics from the first {len(self.records)} records")
        return stream

    def _replace_skipped(self, rows: list[dict]) -> None:
        """OUT/skipped_samples.json holds this run's skips only: written when there are any, removed otherwise."""
        path = self.out / "skipped_samples.json"
        if rows:
            atomic_write_json(path, rows)
        else:
            path.unlink(missing_ok=True)

    def _write_skipped(self) -> None:
        """OUT/skipped_samples.json of a stream (rank 0's rows), rewritten at each checkpoint and at the end."""
        if self.is_main and self.stream is not None and self.stream.skipped:
            self._replace_skipped([dataclasses.asdict(s) for _, s in sorted(self.stream.skipped.items())])

    def _set_trainable(self) -> None:
        """Freeze everything, then unfreeze what the stage trains; cast and place the model."""
        cfg, t, model = self.cfg, self.cfg.train, self.model
        model.requires_grad_(False)
        if t.llm_adapter == "qlora":
            barrier()  # base_llm/ is written by rank 0
            quantize_llm(model, compute_dtype=torch.bfloat16 if self.precision == "bf16" else torch.float32,
                         device=self.device, gradient_checkpointing=t.gradient_checkpointing)
        if t.stage == "instruct" and t.llm_adapter in ("lora", "qlora"):
            attach_lora(model, r=cfg.lora.r, alpha=cfg.lora.alpha, dropout=cfg.lora.dropout,
                        target_modules=cfg.lora.target_modules, modules_to_save=cfg.lora.modules_to_save)
        elif t.stage == "instruct" and t.llm_adapter == "full":
            model.language_model.requires_grad_(True)
        if cfg.data.packing:
            impl = enable_packing(model, allow_flash=self.device.type == "cuda" and self.precision == "bf16")
            self.log(f"data.packing: one row per micro-batch, no padding, attention per sample ({impl})")
        model.video_projector.requires_grad_(True)
        if model.video_tower is not None and cfg.model.tower_trainable != "frozen":
            n_tower = model.video_tower.set_trainable(cfg.model.tower_trainable)
            self.log(f"video tower: {n_tower / 1e3:.1f}k trainable parameters ({cfg.model.tower_trainable})")
        # An unused trainable module would get no gradient (DeepSpeed dislikes that): train the skeleton
        # projector only when skeleton tokens can occur (the step alignment gives it none).
        can_inject = (cfg.data.p_inject > 0 and self.skel_encoder is not None if self.stream is not None
                      else self.dataset.num_with_skeleton > 0)
        model.skeleton_projector.requires_grad_(can_inject)
        if t.gradient_checkpointing:
            enable_gradient_checkpointing(model)
        if self.precision == "bf16" and t.llm_adapter != "qlora" and not t.deepspeed:
            cast_frozen_to_bf16(model)
        if not t.deepspeed:
            model.to(self.device)
        model.train()

    def _build_stepper(self) -> Stepper:
        """AdamW over the trainable groups, wrapped by DeepSpeed when train.deepspeed is set."""
        t = self.cfg.train
        groups = param_groups(self.model, lr=t.lr, projector_lr=t.projector_lr or t.lr, weight_decay=t.weight_decay)
        trainable = [p for g in groups for p in g["params"]]
        n_all = sum(p.numel() for p in self.model.parameters())
        self.log(f"model: {n_all / 1e6:.2f}M params, {sum(p.numel() for p in trainable) / 1e6:.3f}M trainable "
                 f"({t.stage}, llm_adapter={t.llm_adapter}, precision={self.precision}, device={self.device})")
        optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8)
        lr_target = optimizer
        if t.deepspeed:
            ds_cfg = load_deepspeed_config(_find_file(t.deepspeed), micro_batch_size=t.batch_size,
                                           grad_accum=t.grad_accum, grad_clip=t.clip_grad or 0.0,
                                           bf16=self.precision == "bf16", world_size=self.world)
            self.engine = init_deepspeed(self.model, optimizer, ds_cfg, self.device)
            if "optimizer" in ds_cfg:  # DeepSpeed built its own optimizer from the JSON: one group at train.lr
                lr_target = self.engine.optimizer
                for g in lr_target.param_groups:
                    g["lr_scale"] = g["lr"] = t.lr
            self.log(f"deepspeed: ZeRO stage {ds_cfg['zero_optimization']['stage']} ({t.deepspeed})")
        warmup = int(t.warmup_ratio * self.total_steps)
        return Stepper(self.model, optimizer, engine=self.engine, lr_target=lr_target, loss_fn=self._loss,
                       lr_at=lambda step: warmup_cosine(step, base_lr=1.0, total_steps=self.total_steps,
                                                        warmup_steps=warmup, min_lr=t.min_lr_ratio,
                                                        count_current=True),
                       grad_accum=t.grad_accum, clip_grad=t.clip_grad, params=trainable)

    # ------------------------------------------------------------------ loop
    def log(self, msg: str) -> None:
        if self.is_main:
            tqdm.write(f"[lvlm] {msg}")

    def _loss(self, module, batch: dict) -> torch.Tensor:
        """Mean loss over the label tokens of this micro-batch (of all ranks' micro-batches when distributed)."""
        dev = self.device
        kw = {k: (v.to(dev) if hasattr(v, "to") else v) for k, v in batch.items() if k in _MODEL_INPUTS}
        with autocast(dev, self.precision if self.engine is None else "fp32"):  # DeepSpeed casts itself
            loss = module(**kw, use_cache=False).loss
        if self.world > 1:  # every label token weighs the same on every rank, as in one process
            loss = global_token_mean(loss, (kw["labels"][..., 1:] != IGNORE_INDEX).sum())
        if self.cfg.loss.distill_on == "steps" and batch.get("align_rows") is not None:
            rows = batch["align_rows"].to(dev)
            dist = step_alignment(getattr(module, "module", module), kw["video_features"][rows],
                                  batch["align_skeleton"].to(dev), self.model.config.num_frames)  # DeepSpeed wraps
            self.distill_sum += float(dist.detach())  # logged with the step (one sync per micro-batch)
            loss = loss + self.cfg.loss.alpha * dist
        return loss

    def train(self) -> int:
        t = self.cfg.train
        state = self._resume()
        if state.step >= self.total_steps:
            self.log(f"already finished ({state.step}/{self.total_steps} steps)")
            return self._finish(state)
        if self.is_main:
            self.tb = SummaryWriter(str(self.out / "tb"))
        pbar = tqdm(total=self.total_steps, initial=state.step, desc="lvlm", disable=not self.is_main,
                    dynamic_ncols=True)
        window = _new_window()
        steps_this_run, stop_reason, lr = 0, None, t.lr
        at_boundary, saved_at = True, state.step
        with GracefulStop() as stopper:
            try:
                while stop_reason is None and state.step < self.total_steps:
                    for bi, batch, last_in_epoch in self._epoch_batches(state):
                        res = self.stepper.step(batch, state.step, last_in_epoch)
                        _add_to_window(window, res.loss, batch)
                        state.batch_in_epoch, at_boundary = bi + 1, res.boundary
                        if res.boundary:
                            lr = res.lr_scale * t.lr
                            state.step += 1
                            steps_this_run += 1
                            pbar.update(1)
                            if state.step % t.log_every == 0 or state.step == self.total_steps:
                                self._log_step(state, lr, window, pbar)
                        if last_in_epoch:  # a checkpoint from here resumes at the next epoch's start
                            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
                        if not res.boundary:
                            continue
                        finished = state.step >= self.total_steps
                        stop_reason = stopper.requested or (
                            "stop_after_steps" if t.stop_after_steps and steps_this_run >= t.stop_after_steps else None)
                        if (t.save_every and state.step % t.save_every == 0) or stop_reason or finished:
                            saved_at = self._save(state)
                        if finished or stop_reason:
                            break
            except LabelError as e:  # a stream meets a bad sample only when it reaches it: keep the work done
                pbar.close()
                if at_boundary and state.step > saved_at:
                    self._save(state)
                raise UserError(f"{e}. Stopped at step {state.step}/{self.total_steps}; the same command resumes from "
                                f"{self.out / 'checkpoints' / 'latest'}") from None
        pbar.close()
        if stop_reason:
            self.log(f"stopped after step {state.step}/{self.total_steps} ({stop_reason}); run the same command "
                     f"again to resume from {self.out / 'checkpoints' / 'latest'}")
            return 0 if stop_reason == "stop_after_steps" else EXIT_INTERRUPTED  # planned vs signalled stop
        return self._finish(state)

    def _save(self, state: TrainState) -> int:
        """A resume checkpoint (and a stream's skipped list) at ``state``; returns its step."""
        save_resume_checkpoint(self.out / "checkpoints", model=self.model, optimizer=self.stepper.optimizer,
                               state=state, engine=self.engine, keep_last=self.cfg.train.keep_checkpoints,
                               is_main=self.is_main)
        self._write_skipped()
        return state.step

    def _resume(self) -> TrainState:
        """The saved state of OUT/checkpoints/latest (weights and optimizer loaded), or a fresh one."""
        state = TrainState()
        latest = self.resume_from
        if latest is not None:
            self._check_resume_world(latest)
            try:
                state = load_resume_checkpoint(latest, model=self.model, optimizer=self.stepper.optimizer,
                                               engine=self.engine)
            except (ValueError, FileNotFoundError) as e:
                raise UserError(f"cannot resume: {e} (use another train.output_dir or resume=false to start "
                                "over)") from None
            for g in self.stepper.lr_target.param_groups:  # checkpoints from before issue 14 name it base_lr
                g.setdefault("lr_scale", g.pop("base_lr", self.cfg.train.lr))
            self.log(f"resumed from {latest} (step {state.step}, epoch {state.epoch}, batch {state.batch_in_epoch})")
        state.extra["world_size"] = self.world
        return state

    def _epoch_batches(self, state: TrainState) -> Iterator[tuple[int, dict, bool]]:
        """(index, collated batch, last of the epoch) from ``state``'s position to the end of its epoch."""
        if self.stream is not None:
            yield from self.stream.batches(state.epoch, state.batch_in_epoch)
            return
        self.dataset.set_epoch(state.epoch)
        self.batches.set_epoch(state.epoch)
        batches = list(self.batches)
        loader = self._loader(batches[state.batch_in_epoch:], self.processor.tokenizer.pad_token_id)
        for bi, batch in zip(range(state.batch_in_epoch, len(batches)), loader):
            yield bi, batch, bi == len(batches) - 1

    def _check_resume_world(self, ckpt: Path) -> None:
        """DeepSpeed writes one ZeRO optimizer shard per process: resume with the process count that wrote them."""
        state_file = ckpt / "trainer_state.json"
        saved = json.loads(state_file.read_text()).get("extra", {}).get("world_size") if state_file.is_file() else None
        if self.engine is not None and saved is not None and saved != self.world:
            raise UserError(f"cannot resume {ckpt}: it was written by {saved} process(es) and this run has "
                            f"{self.world}; DeepSpeed keeps one optimizer shard per process. Resume with {saved} "
                            "process(es) and the same train.batch_size, or start over (resume=false, or another "
                            "train.output_dir)")

    def _loader(self, batches: list[list[int]], pad: int):
        """Collated batches in the given order; worker processes when data.num_workers > 0."""
        collate = lvlm_pack_collate if self.cfg.data.packing else partial(lvlm_collate, pad_token_id=pad)
        if self.cfg.data.num_workers == 0:
            return (collate([self.dataset[i] for i in b]) for b in batches)
        return iter(DataLoader(self.dataset, batch_sampler=batches, num_workers=self.cfg.data.num_workers,
                               collate_fn=collate))

    def _log_step(self, state: TrainState, lr: float, window: dict, pbar: tqdm) -> None:
        """One line of OUT/train_log.jsonl, TensorBoard and stdout: the means since the last line."""
        dt = max(time.perf_counter() - window["t0"], 1e-9)
        window["distill"], self.distill_sum = self.distill_sum, 0.0
        if self.world > 1:  # every rank logs at the same steps: average over all of them
            keys = ("loss", "n", "tokens", "skel", "samples", "distill")
            sums = torch.tensor([window[k] for k in keys], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(sums)
            window.update(zip(keys, sums.tolist()))
        rec = {"step": state.step, "epoch": state.epoch, "loss": window["loss"] / max(window["n"], 1), "lr": lr,
               "tokens_per_s": window["tokens"] / dt, "samples": int(window["samples"]),
               "skeleton_frac": window["skel"] / max(window["samples"], 1), "time": time.time()}
        if self.cfg.loss.distill_on == "steps":  # the mean alignment distance (the loss includes alpha x it)
            rec["distill"] = window["distill"] / max(window["n"], 1)
        self.last_loss = rec["loss"]
        if self.is_main:
            with open(self.out / TRAIN_LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
            for k in ("loss", "lr", "tokens_per_s", "skeleton_frac", "distill"):
                if k in rec:
                    self.tb.add_scalar(f"train/{k}", rec[k], state.step)
            pbar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}", tok_s=f"{rec['tokens_per_s']:.0f}")
            pbar.write(f"[lvlm] step {state.step}/{self.total_steps} loss {rec['loss']:.4f} lr {lr:.3e} "
                       f"tokens/s {rec['tokens_per_s']:.0f} skel {rec['skeleton_frac']:.2f}")
        window.update(loss=0.0, n=0, tokens=0, skel=0, samples=0, t0=time.perf_counter())

    def _finish(self, state: TrainState) -> int:
        """Write OUT/final (all ranks gather ZeRO-3 shards; rank 0 writes)."""
        t = self.cfg.train
        save_full = {"auto": t.llm_adapter != "qlora", "true": True, "false": False}[t.save_full]
        self._write_skipped()
        with gathered_parameters(self.model, self.engine):
            if self.is_main:
                info = {"stage": t.stage, "llm_adapter": t.llm_adapter, "steps": state.step,
                        "final_loss": self.last_loss, "p_inject": self.cfg.data.p_inject,
                        "distill_on": self.cfg.loss.distill_on,
                        **({"samples": len(self.dataset), "skipped": len(self.dataset.skipped)} if self.stream is None
                           else {"samples_seen": self.stream.samples_seen, "skipped": len(self.stream.skipped)}),
                        "command": "ski-lvlm train lvlm " + " ".join(self.argv)}
                if self.model.video_tower is not None and self.cfg.model.tower_trainable == "lora":
                    self.model.video_tower.merge_adapters()  # saved as plain tower weights
                save_final(self.out / FINAL_DIR, self.model, self.processor, run_info=info, save_full=save_full)
                self.log(f"saved {self.out / FINAL_DIR} (load with ski_lvlm.models.lvlm.load)")
        return 0

    def cleanup(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.engine is not None:
            destroy()


def _new_window() -> dict:
    """Sums over the micro-batches since the last log line."""
    return {"loss": 0.0, "n": 0, "tokens": 0, "skel": 0, "samples": 0, "t0": time.perf_counter()}


def _add_to_window(window: dict, loss: torch.Tensor, batch: dict) -> None:
    window["loss"] += float(loss)  # CPU-GPU sync point, once per micro-batch
    window["n"] += 1
    window["tokens"] += batch["num_tokens"]
    window["samples"] += len(batch["ids"])
    window["skel"] += 0 if batch["skeleton_features"] is None else len(batch["skeleton_features"])


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ski-lvlm train lvlm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="recipe YAML (train/configs/lvlm/*.yaml)")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # the deepspeed launcher's
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.output_dir=runs/x train.lr=2e-4 "
                                                      "data.p_inject=0.5")
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
