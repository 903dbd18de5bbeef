"""Phase 2: SKI-VLM -- train a ViFi-CLIP video model together with a SkeletonCLIP teacher.

Run (CPU, synthetic world; see train/configs/ski_vlm/tiny_cpu.yaml)::

    ski-lvlm train ski-vlm --config train/configs/ski_vlm/tiny_cpu.yaml data.root=data/world \\
        model.teacher=runs/skeleton_clip/final train.output_dir=runs/ski_vlm
    # the ViFi-CLIP baseline: no teacher, alpha 0
    ski-lvlm train ski-vlm --config train/configs/ski_vlm/tiny_cpu_vifi.yaml data.root=data/world

GPUs (1..N; accelerate handles devices, DDP and bf16/fp16 autocast; the ``deepspeed`` launcher works
too, it only sets the rank environment variables)::

    accelerate launch --num_processes 8 -m train.ski_vlm --config train/configs/ski_vlm/ntu_48_12.yaml
    NUM_GPUS=8 scripts/train_ski_vlm.sh train/configs/ski_vlm/ntu_48_12.yaml

Loss per batch (``original-system.md`` §4.3)::

    video_text + skel_text + alpha * MSE(video, skeleton)      (+ caption terms when enabled)

``video_text`` is the cross-entropy of the video-vs-class-prompt logits, ``skel_text`` the same for the
teacher (absent when the teacher is frozen), ``distill`` the MSE between the two branches' similarity
matrices (``loss.distill_on``; the variants ``features`` and ``steps`` compare clip embeddings or
per-time-step features instead). ``model.teacher_trainable=false`` freezes the teacher (its weights stay
bit-identical); ``true`` is the collaborative variant the released scripts ran. No teacher and
``alpha=0`` is the ViFi-CLIP baseline. At the end the video branch alone is evaluated zero-shot on the
novel classes (no skeletons are read for that).

Outputs (``train.output_dir``, the names all three recipes use): ``config.yaml``, ``train_log.jsonl``,
``checkpoints/step_*`` (resumable), ``final/`` (final SKI-VLM: ``load_video_clip(final/)`` gives the
skeleton-free inference model), ``results.json``. Runs from before issue 14 have ``metrics.jsonl`` and
``model/``; readers still accept them (:mod:`ski_lvlm.utils.run_layout`). SIGTERM/SIGINT: finish the
step, save, exit 143; rerun with ``--resume``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ski_lvlm.config import load_config, save_config, to_dict
from ski_lvlm.data.action_dataset import ActionDataset, epoch_order
from ski_lvlm.losses import CaptionContrastiveLoss, SKIVLMLoss, total_loss
from ski_lvlm.models.clip_towers import clip_image_stats
from ski_lvlm.models.ski_vlm import (
    build_ski_vlm, build_video_clip, load_skeleton_clip, save_model, text_tokenizer, tokenize_classes,
)
from ski_lvlm.training.checkpoint import (EXIT_INTERRUPTED, GracefulStop, TrainState, latest_checkpoint, load_checkpoint,
                                         save_checkpoint)
from ski_lvlm.training.schedule import set_lr, warmup_cosine
from ski_lvlm.utils.errors import UserError, cli_entry
from ski_lvlm.utils.io import atomic_write_json
from ski_lvlm.utils.run_layout import (CONFIG_FILE, FINAL_DIR, TRAIN_LOG, ModelFolderError, config_header,
                                      resolve_model_dir, start_train_log)
from ski_lvlm.utils.runtime import seed_everything


# ------------------------------------------------------------------------------------------------ config


@dataclass
class DataConfig:
    root: str = "."
    """Folder the paths below are relative to (e.g. a synthetic world)."""
    train_csv: str = "zsl_base_train.csv"
    """``video_path,skeleton_path,label`` manifest of the base-class training clips."""
    classes_csv: str = "zsl_base_classes.csv"
    """``id,name`` list of the base classes."""
    num_classes: int | None = None
    """Expected number of base classes; a class CSV of another size is an error (None: no check)."""
    val_csv: str | None = "zsl_base_val.csv"
    """Held-out base-class clips, evaluated (video only) every ``train.eval_every`` epochs."""
    novel_csv: str | None = "zsl_novel_test.csv"
    """Unseen-class clips for the final zero-shot evaluation (video only)."""
    novel_classes_csv: str | None = "zsl_novel_classes.csv"
    """``id,name`` list of the unseen classes."""
    captions_json: str | None = None
    """``{sample: [caption, ...]}``; needed when ``loss.caption_weight > 0``."""
    num_frames: int = 16
    """Frames per clip (the paper: 16)."""
    train_sampling: Literal["random_segment", "segment_middle", "uniform"] = "random_segment"
    """Frame sampling for training (TSN: one random frame per segment); evaluation uses segment middles."""
    skeleton_frames: int = 300
    """Skeleton frames after padding/resampling (should match what the teacher was trained with)."""
    skeleton_mode: Literal["pad", "resize"] = "pad"
    """``pad`` (original, 300 padded frames) or ``resize`` (resample the frames with a body)."""
    center: bool = True
    """Subtract the first frame's spine-middle joint (what the NTU npz preprocessing does)."""
    num_workers: int = 0
    """DataLoader worker processes (video decoding runs there)."""
    cache_frames: bool = False
    """Keep each training clip's decoded frames in memory after the first epoch (same frames, no decoding
    every epoch: measured here 9 ms per 8-frame synthetic clip, so about 40 s saved over 20 epochs of 240
    clips). For short clips: a clip holds all its frames."""
    mirror: bool = False
    """Training augmentation: flip half the clips left-right and relabel the sided classes ("wave left hand"
    <-> "wave right hand"; clips of a sided class without a counterpart are never flipped). The skeleton
    and the caption are mirrored with the video."""

    def validate(self) -> list[str]:
        out = []
        if self.num_frames < 1:
            out.append("num_frames: must be >= 1")
        if self.skeleton_frames < 1:
            out.append("skeleton_frames: must be >= 1")
        if (self.novel_csv is None) != (self.novel_classes_csv is None):
            out.append("novel_csv: give novel_csv and novel_classes_csv together")
        return out


@dataclass
class ModelConfig:
    clip_arch: str = "ViT-B-16"
    """open_clip architecture of the video branch (``ski-tiny-ViT`` for CPU)."""
    clip_pretrained: str | None = None
    """open_clip tag (``openai``) or local checkpoint file for the video branch; None = random init."""
    video_init: str | None = None
    """A model folder (VideoCLIP or SKI-VLM) to start the video branch from, e.g. a ViFi-CLIP run."""
    text_encoder: str = "clip"
    """Video branch text tower: ``clip`` (``clip_arch``'s own) or a pretrained Hugging Face sentence encoder,
    mean-pooled, then a new linear projection: ``minilm-l6`` or a local BERT-style folder. The teacher
    keeps the text tower (and tokenizer) of its own folder; the distillation compares the two branches'
    class similarities, not their embeddings, so the two towers need not be the same. Ignored with
    ``video_init`` (that model keeps its own)."""
    text_unlocked_layers: int = 1
    """Hugging Face text towers only: how many of the last transformer blocks train with the new projection
    (0: frozen body; see ``clip_towers.lock_text_body``)."""
    text_pool: Literal["eot", "mean"] = "eot"
    """Video branch CLIP text feature: the end-of-text token or the mean over tokens (composes words).
    Hugging Face text towers always mean-pool."""
    frame_input: Literal["rgb", "median_residual", "motion_crop"] = "rgb"
    """What the image tower sees: the frames (``rgb``, pretrained CLIP) or each frame's residual from the
    clip's per-pixel median (``median_residual``: towers trained from scratch; stops them memorising rooms),
    or that residual cropped to a square around the motion (``motion_crop``: the person fills the input).
    Saved with the model, so evaluation and LVLM features apply the same. Ignored with ``video_init``
    (that model keeps its own)."""
    templates: list[str] = field(default_factory=lambda: ["a video of a person {}."])
    """Prompt templates (class text = mean over templates). The original: ["a photo of a {}."]."""
    teacher: str | None = None
    """SkeletonCLIP model folder from phase 1 (``runs/skeleton_clip/final``, or the run folder); None = ViFi-CLIP baseline."""
    teacher_trainable: bool = True
    """True: collaborative training (the teacher learns too); False: frozen teacher (distillation)."""
    lock_image_layers: int | None = None
    """Freeze the image tower except its last N blocks (None: everything trains, as in the paper)."""

    def validate(self) -> list[str]:
        out = [f"templates: {t!r} has no {{}} slot" for t in self.templates if "{}" not in t]
        if not self.templates:
            out.append("templates: give at least one")
        if self.text_unlocked_layers < 0:
            out.append("text_unlocked_layers: must be >= 0")
        return out


@dataclass
class LossConfig:
    kind: Literal["clip", "ce"] = "clip"
    """``clip``: scale * cosine with a learnable temperature (init 100, ViFi-CLIP); ``ce``: the original unscaled logits."""
    alpha: float = 10.0
    """Weight of the video-skeleton distillation MSE (the released scripts: 10; 0 = off)."""
    distill_on: Literal["sims", "logits", "features", "steps"] = "sims"
    """Distil the cosine-similarity matrices (``sims``), the logits (``logits``, what the original did) or the
    clip embeddings themselves (``features``: squared distance of the normalised video and skeleton
    embeddings; a variant, usually with ``model.teacher_trainable=false``), or the teacher's per-step
    features (``steps``: each frame embedding, through a learned linear head, onto the skeleton feature at
    the same moment; a temporal mean cannot tell a motion from its reverse, a step sequence can. Needs a
    teacher and ``data.skeleton_mode=resize``; the head trains with the video branch and is saved in the
    SKI-VLM folder, not in its video branch)."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing."""
    caption_weight: float = 0.0
    """Weight of the video-caption (and skeleton-caption) contrastive terms (0 = off; needs captions_json)."""

    def validate(self) -> list[str]:
        out = []
        if self.alpha < 0:
            out.append("alpha: must be >= 0")
        if not 0 <= self.label_smoothing < 1:
            out.append("label_smoothing: must be in [0, 1)")
        if self.caption_weight < 0:
            out.append("caption_weight: must be >= 0")
        if self.caption_weight > 0 and self.kind != "clip":
            out.append("caption_weight: the caption term needs kind=clip (it uses the learnable temperature)")
        return out


@dataclass
class TrainArgs:
    output_dir: str = "runs/ski_vlm"
    """Run folder (checkpoints, metrics, final model)."""
    epochs: int = 2
    """Passes over the training split (the paper: 2)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (smoke runs)."""
    batch_size: int = 4
    """Clips per device per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (effective batch = batch_size * grad_accum * processes)."""
    lr: float = 2.2e-5
    """Peak learning rate (AdamW)."""
    min_lr_ratio: float = 0.01
    """Cosine floor as a fraction of lr."""
    warmup_epochs: float = 0.0
    """Linear warmup in epochs (the paper: 0 for phase 2)."""
    weight_decay: float = 0.001
    """AdamW weight decay (not applied to biases, norms and temperatures)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    clip_grad: float | None = 1.0
    """Max gradient norm, applied (None = no clipping)."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast precision on CUDA; CPU always runs fp32."""
    device: str = "auto"
    """``auto``, ``cpu`` or ``cuda``."""
    seed: int = 1024
    """Seed for initialisation, data order and augmentation."""
    save_every: int = 0
    """Checkpoint every N optimizer steps (0 = at epoch ends only)."""
    keep_checkpoints: int = 2
    """How many checkpoints to keep."""
    eval_every: int = 1
    """Evaluate on val_csv every N epochs (0 = never)."""
    eval_batch_size: int = 8
    """Batch size for evaluation."""
    resume: str | None = None
    """``auto`` (the run folder's latest checkpoint, if any) or a checkpoint folder."""

    def validate(self) -> list[str]:
        out = []
        for name in ("epochs", "batch_size", "grad_accum", "eval_batch_size", "keep_checkpoints"):
            if getattr(self, name) < 1:
                out.append(f"{name}: must be >= 1")
        if self.lr <= 0:
            out.append("lr: must be > 0")
        if self.max_steps is not None and self.max_steps < 1:
            out.append("max_steps: must be >= 1")
        if len(self.betas) != 2:
            out.append("betas: give two numbers")
        if self.clip_grad is not None and self.clip_grad <= 0:
            out.append("clip_grad: must be > 0 (or null for no clipping)")
        return out


@dataclass
class SKIVLMConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainArgs = field(default_factory=TrainArgs)

    def validate(self) -> list[str]:
        out = []
        if self.model.frame_input != "rgb" and self.data.num_frames < 3:
            out.append(f"data.num_frames: model.frame_input={self.model.frame_input} needs >= 3 frames per clip "
                       f"(got {self.data.num_frames})")
        if self.loss.alpha > 0 and self.model.teacher is None:
            out.append("loss.alpha: > 0 needs model.teacher (a SkeletonCLIP folder); use alpha=0 for the ViFi-CLIP baseline")
        if self.loss.distill_on == "steps":
            if self.model.teacher is None:
                out.append("loss.distill_on: steps needs model.teacher (its per-step skeleton features are the target)")
            if self.loss.alpha == 0:
                out.append("loss.distill_on: steps with loss.alpha=0 would add a step head that never trains")
            if self.data.skeleton_mode != "resize":
                out.append(f"loss.distill_on: steps needs data.skeleton_mode=resize (got {self.data.skeleton_mode}): "
                           "with pad the skeleton steps past the clip's end are padding, not aligned with the frames")
        return out


# ------------------------------------------------------------------------------------------------ helpers


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: biases, norm weights and temperatures (1-D or scalar) get no weight decay."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_accelerator(device: str, precision: str):
    from accelerate import Accelerator

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no CUDA device is available (use auto or cpu)")
    cuda = torch.cuda.is_available() and device != "cpu"
    return Accelerator(cpu=not cuda, mixed_precision=precision.replace("fp32", "no") if cuda else "no")


def _path(root: str, rel: str | None) -> Path | None:
    return None if rel is None else Path(root) / rel


@torch.no_grad()
def video_scores(video_model, dataset: ActionDataset, tokens: torch.Tensor, num_templates: int, device,
                 batch_size: int, desc: str = "eval") -> tuple[torch.Tensor, torch.Tensor]:
    """Video-to-text softmax scores ``[N, C]`` and labels over a whole split (video only, nothing dropped)."""
    was_training = video_model.training
    video_model.eval()
    text = video_model.class_embeddings(tokens.to(device), num_templates)
    scores, labels = [], []
    for batch in tqdm(DataLoader(dataset, batch_size=batch_size), desc=desc, leave=False, disable=None):
        logits = video_model.head(video_model.encode_video(batch["video"].to(device)), text)["logits"]
        scores.append(logits.float().softmax(-1).cpu())
        labels.append(batch["label"])
    video_model.train(was_training)
    return torch.cat(scores), torch.cat(labels)


# ------------------------------------------------------------------------------------------------ recipe


def _model_folder(path: str, key: str, hint: str = "") -> Path:
    """The model folder a config key names (a model folder, or a run folder: final/, or an old run's model/),
    with the key in the error, since the user wrote the path there."""
    try:
        return resolve_model_dir(path)
    except ModelFolderError as e:
        raise UserError(f"{key}: {e}" + (f" ({hint})" if hint else "")) from None


class SKIVLMRecipe:
    """config -> setup (teacher, video model, data, optimizer, resume) -> train -> final zero-shot eval."""

    def __init__(self, cfg: SKIVLMConfig):
        self.cfg = cfg
        self.out = Path(cfg.train.output_dir)

    def _build_model(self):
        m, lc = self.cfg.model, self.cfg.loss
        logit_mode = "clip" if lc.kind == "clip" else "none"
        if m.video_init:
            folder = _model_folder(m.video_init, "model.video_init")
            cfg = json.loads((folder / "model_config.json").read_text())
            if cfg.get("kind") not in ("video_clip", "ski_vlm"):
                raise UserError(f"model.video_init={folder}: not a VideoCLIP/SKI-VLM model folder")
            from ski_lvlm.models.ski_vlm import load_video_clip

            video = load_video_clip(folder)
        else:
            video = build_video_clip(clip_arch=m.clip_arch, clip_pretrained=m.clip_pretrained,
                                     logit_mode=logit_mode, text_pool=m.text_pool, frame_input=m.frame_input,
                                     text_encoder=m.text_encoder, text_unlocked_layers=m.text_unlocked_layers)
        if m.lock_image_layers is not None:
            video.lock_image_tower(m.lock_image_layers)
        teacher = None
        if m.teacher:
            folder = _model_folder(m.teacher, "model.teacher", "run ski-lvlm train skeleton-clip first")
            try:
                teacher = load_skeleton_clip(folder)
            except ValueError as e:
                raise UserError(str(e)) from None
        model = build_ski_vlm(video, teacher, teacher_trainable=m.teacher_trainable, step_head=lc.distill_on == "steps")
        return model, teacher

    def setup(self) -> None:
        cfg, d, t = self.cfg, self.cfg.data, self.cfg.train
        self.acc = make_accelerator(t.device, t.precision)
        seed_everything(t.seed)
        model, teacher = self._build_model()
        mean, std, size = clip_image_stats(model.video.clip)
        captions = None
        if cfg.loss.caption_weight > 0:
            path = _path(d.root, d.captions_json)
            if path is None or not path.is_file():
                raise UserError(f"loss.caption_weight > 0 needs data.captions_json (got {path})")
            captions = json.loads(path.read_text(encoding="utf-8"))
        video_kw = dict(num_frames=d.num_frames, image_size=size, mean=mean, std=std)
        self.train_set = ActionDataset(_path(d.root, d.train_csv), _path(d.root, d.classes_csv), num_classes=d.num_classes,
                                       with_video=True, with_skeleton=teacher is not None, sampling=d.train_sampling,
                                       skeleton_frames=d.skeleton_frames, skeleton_mode=d.skeleton_mode, center=d.center,
                                       captions=captions, seed=t.seed, mirror=d.mirror,
                                       cache_frames=d.cache_frames, **video_kw)
        # evaluation is video only: the skeleton column is never read
        self.val_set = ActionDataset(_path(d.root, d.val_csv), _path(d.root, d.classes_csv), with_skeleton=False,
                                     **video_kw) if d.val_csv else None
        self.novel_set = ActionDataset(_path(d.root, d.novel_csv), _path(d.root, d.novel_classes_csv),
                                       with_skeleton=False, **video_kw) if d.novel_csv else None
        for ds in (self.train_set, self.val_set, self.novel_set):
            if ds is not None:
                ds.check()  # bad joint counts, undecodable videos: fail now, not mid-epoch

        self.templates = tuple(cfg.model.templates)
        # each branch tokenizes with its own text tower's tokenizer (CLIP BPE or the HF model's)
        self.tokenizer = text_tokenizer(model.video.config)
        self.base_tokens = tokenize_classes(self.tokenizer, self.train_set.class_names, self.templates)
        self.teacher_tokenizer = text_tokenizer(teacher.config) if teacher is not None else None
        self.teacher_tokens = tokenize_classes(self.teacher_tokenizer, self.train_set.class_names, self.templates) \
            if teacher is not None else None
        self.loss_fn = SKIVLMLoss(cfg.loss.alpha, cfg.loss.distill_on, cfg.loss.label_smoothing)
        self.caption_loss = CaptionContrastiveLoss(cfg.loss.caption_weight) if cfg.loss.caption_weight > 0 else None
        optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr, betas=tuple(t.betas), eps=t.eps)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.raw = self.acc.unwrap_model(self.model)

        order = epoch_order(len(self.train_set), seed=0, epoch=0, rank=self.acc.process_index,
                            world_size=self.acc.num_processes)
        self.batches_per_epoch = math.ceil(len(order) / t.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / t.grad_accum)
        self.total_steps = t.epochs * self.steps_per_epoch
        if t.max_steps is not None:
            self.total_steps = min(self.total_steps, t.max_steps)
        self.warmup_steps = int(round(t.warmup_epochs * self.steps_per_epoch))

        self.state = TrainState()
        if t.resume:
            path = latest_checkpoint(self.out / "checkpoints") if t.resume == "auto" else Path(t.resume)
            if path is None and t.resume != "auto":
                raise UserError(f"{t.resume}: no checkpoint there")
            if path is not None:
                self.state = load_checkpoint(path, model=self.raw, optimizer=self.optimizer.optimizer,
                                             scaler=self.acc.scaler)
                self.acc.print(f"resumed from {path} (epoch {self.state.epoch}, step {self.state.step}, "
                               f"batch {self.state.batch_in_epoch})")
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            # a fresh run starts a fresh log; a resumed one appends (an old run's metrics.jsonl is renamed)
            start_train_log(self.out, fresh=self.state.step == 0 and self.state.batch_in_epoch == 0)
            save_config(cfg, self.out / CONFIG_FILE, header=config_header("ski-vlm"))

    def _log(self, record: dict) -> None:
        if self.acc.is_main_process:
            with open(self.out / TRAIN_LOG, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def _save(self) -> None:
        if self.acc.is_main_process:
            save_checkpoint(self.out / "checkpoints", model=self.raw, optimizer=self.optimizer.optimizer,
                            scaler=self.acc.scaler, state=self.state, keep=self.cfg.train.keep_checkpoints)
        self.acc.wait_for_everyone()

    def _micro_step(self, batch: dict, window: int) -> dict[str, float]:
        dev = self.acc.device
        video, labels = batch["video"].to(dev), batch["label"].to(dev)
        skeleton = batch["skeleton"].to(dev) if "skeleton" in batch else None
        out = self.model(video, self.base_tokens.to(dev), len(self.templates), skeleton=skeleton,
                         skeleton_text_tokens=None if self.teacher_tokens is None else self.teacher_tokens.to(dev))
        terms = self.loss_fn(out, labels)
        if self.caption_loss is not None:
            captions = list(batch["caption"])
            same = torch.tensor([[a == b for b in captions] for a in captions], device=dev)
            video_branch = self.raw.video
            text = video_branch.encode_text(self.tokenizer(captions).to(dev))
            scale = video_branch.head.logit_scale.exp().clamp(max=100)
            terms.update(self.caption_loss(out["video_embedding"], text, scale, same, name="video_caption"))
            teacher = self.raw.skeleton
            if teacher is not None and self.raw.teacher_trainable and "skeleton_embedding" in out:
                ttext = teacher.encode_text(self.teacher_tokenizer(captions).to(dev))
                tscale = teacher.head.logit_scale.exp().clamp(max=100)
                terms.update(self.caption_loss(out["skeleton_embedding"], ttext, tscale, same, name="skel_caption"))
        self.acc.backward(total_loss(terms) / window)
        return {k: v.item() for k, v in terms.items()}

    def evaluate(self, dataset: ActionDataset, tokens: torch.Tensor, desc: str) -> dict:
        from ski_lvlm.metrics.classification import classification_metrics

        scores, labels = video_scores(self.raw.video, dataset, tokens, len(self.templates), self.acc.device,
                                      self.cfg.train.eval_batch_size, desc)
        return classification_metrics(scores, labels, dataset.class_names)

    def train(self) -> int:
        t, st = self.cfg.train, self.state
        self.model.train()
        with GracefulStop() as stop:
            while st.epoch < t.epochs and st.step < self.total_steps:
                self.train_set.set_epoch(st.epoch)
                order = epoch_order(len(self.train_set), seed=t.seed, epoch=st.epoch,
                                    rank=self.acc.process_index, world_size=self.acc.num_processes)
                loader = DataLoader(self.train_set, batch_size=t.batch_size,
                                    sampler=order[st.batch_in_epoch * t.batch_size:], num_workers=self.cfg.data.num_workers)
                acc_terms: dict[str, float] = {}
                bar = tqdm(loader, desc=f"epoch {st.epoch}", leave=False, disable=None, initial=st.batch_in_epoch,
                           total=self.batches_per_epoch)
                tic = time.time()
                for batch in bar:
                    start = (st.batch_in_epoch // t.grad_accum) * t.grad_accum
                    window = min(t.grad_accum, self.batches_per_epoch - start)
                    boundary = st.batch_in_epoch + 1 == start + window
                    with self.acc.no_sync(self.model) if not boundary else contextlib.nullcontext():
                        terms = self._micro_step(batch, window)
                    for k, v in terms.items():
                        acc_terms[k] = acc_terms.get(k, 0.0) + v / window
                    st.batch_in_epoch += 1
                    if not boundary:
                        continue
                    lr = warmup_cosine(st.step, base_lr=t.lr, total_steps=self.total_steps,
                                       warmup_steps=self.warmup_steps, min_lr=t.lr * t.min_lr_ratio)
                    set_lr(self.optimizer, lr)
                    grad_norm = self.acc.clip_grad_norm_(self.model.parameters(), t.clip_grad) if t.clip_grad else None
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
                    st.step += 1
                    record = {"step": st.step, "epoch": st.epoch, "lr": lr, "loss": sum(acc_terms.values()), **acc_terms}
                    if grad_norm is not None:
                        record["grad_norm"] = float(grad_norm)
                    record["sec"] = round(time.time() - tic, 3)
                    self._log(record)
                    bar.set_postfix(loss=f"{record['loss']:.3f}")
                    acc_terms, tic = {}, time.time()
                    if stop.requested or (t.save_every and st.step % t.save_every == 0):
                        self._save()
                    if stop.requested:
                        self.acc.print(f"{stop.requested}: saved step {st.step}; resume with --resume")
                        return EXIT_INTERRUPTED
                    if st.step >= self.total_steps:
                        break
                if st.batch_in_epoch >= self.batches_per_epoch:
                    st.epoch, st.batch_in_epoch = st.epoch + 1, 0
                    if self.val_set is not None and t.eval_every and st.epoch % t.eval_every == 0 \
                            and self.acc.is_main_process:
                        metrics = self.evaluate(self.val_set, self.base_tokens, "val")
                        self._log({"step": st.step, "epoch": st.epoch, "val_top1": metrics["top1"],
                                   "val_top5": metrics["top5"]})
                    self._save()
        return 0

    def finish(self) -> dict:
        """Save the final model (with its inference settings) and evaluate the video branch zero-shot."""
        results: dict = {"steps": self.state.step, "epochs": self.state.epoch}
        if self.acc.is_main_process:
            self.raw.config["inference"] = {"templates": list(self.templates), "num_frames": self.cfg.data.num_frames}
            self.raw.video.config["inference"] = self.raw.config["inference"]
            save_model(self.raw, self.out / FINAL_DIR)
            if self.val_set is not None:
                results["base_val"] = _brief(self.evaluate(self.val_set, self.base_tokens, "val"))
            if self.novel_set is not None:
                tokens = tokenize_classes(self.tokenizer, self.novel_set.class_names, self.templates)
                results["novel"] = _brief(self.evaluate(self.novel_set, tokens, "novel"))
                results["novel"]["chance"] = 1.0 / len(self.novel_set.class_names)
            results["config"] = to_dict(self.cfg)
            atomic_write_json(self.out / "results.json", results)
        self.acc.wait_for_everyone()
        return results


def _brief(metrics: dict) -> dict:
    return {k: metrics[k] for k in ("top1", "top5", "mean_class_acc", "num_samples")}


# ------------------------------------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ski-lvlm train ski-vlm",
        description="Phase 2: train SKI-VLM (ViFi-CLIP video model + SkeletonCLIP teacher) on the base classes, "
                    "then evaluate the video branch zero-shot on the novel classes. Without a teacher and with "
                    "loss.alpha=0 it trains the ViFi-CLIP baseline.",
        epilog="example: ski-lvlm train ski-vlm --config train/configs/ski_vlm/tiny_cpu.yaml data.root=data/world "
               "model.teacher=runs/skeleton_clip/final train.output_dir=runs/ski_vlm")
    p.add_argument("--config", required=True, help="YAML config (train/configs/ski_vlm/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. loss.alpha=0 model.teacher_trainable=false")
    return p


@cli_entry("ski-lvlm train ski-vlm")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(SKIVLMConfig, args.config, args.overrides + (["train.resume=auto"] if args.resume else []))
    recipe = SKIVLMRecipe(cfg)
    recipe.setup()
    code = recipe.train()
    if code:
        return code
    results = recipe.finish()
    if "novel" in results:
        n = results["novel"]
        name = "SKI-VLM" if cfg.model.teacher else "ViFi-CLIP"
        recipe.acc.print(f"{name} zero-shot (video only) on {len(recipe.novel_set.class_names)} novel classes: "
                         f"top-1 {100 * n['top1']:.1f}% top-5 {100 * n['top5']:.1f}% (chance {100 * n['chance']:.1f}%)")
    recipe.acc.print(f"model: {recipe.out / FINAL_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
