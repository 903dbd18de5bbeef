"""Zero-shot action recognition on unseen classes: SkeletonCLIP, ViFi-CLIP and SKI-VLM side by side.

Run (synthetic world, after the quickstart's training stages)::

    ski-lvlm eval zero-shot --world data/world --out runs/zero_shot \\
        --model skeleton=runs/skeleton_clip/model --model vifi=runs/vifi_clip/model --model ski=runs/ski_vlm/model

Each ``--model LABEL=FOLDER`` is a model folder written by the training recipes (``model_config.json`` +
``model.safetensors``); ``FOLDER#teacher`` selects the co-trained SkeletonCLIP inside a SKI-VLM folder. Video models (ViFi-CLIP, SKI-VLM) are evaluated from video alone: the skeleton
column of the manifest is never read, so no skeleton file needs to exist. SkeletonCLIP is evaluated
skeleton-to-text (it has no video branch). Class prompts are rebuilt from the novel class names with the
templates the model was trained with.

Protocol (``original-system.md`` §4.6): every sample counts (no ``drop_last``); 1 view = the middle
frame of each of ``t`` segments; ``--views N`` adds N-1 seeded random-segment clips and averages the
softmax scores over views. Writes ``OUT/results.json``, ``OUT/results.md`` (the table, with chance
level), ``OUT/confusion_<label>.png`` per model and ``OUT/scores_<label>.jsonl`` (per-clip top-1/top-5
correctness, what ``ski-lvlm eval compare`` reads as ``OUT#<label>``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ski_lvlm.utils.errors import UserError, cli_entry

__all__ = ["classification_metrics", "clip_scores", "evaluate_model", "markdown_table", "plot_confusion", "main"]

KIND_LABEL = {"skeleton_clip": "SkeletonCLIP (skeleton -> text)", "video_clip": "ViFi-CLIP (video)",
              "ski_vlm": "SKI-VLM (video)"}


def kind_label(cfg: dict) -> str:
    """What a model folder holds, for tables: a SKI-VLM folder trained without a teacher is the ViFi-CLIP baseline."""
    kind = cfg.get("kind")
    if kind == "ski_vlm" and not cfg.get("skeleton"):
        kind = "video_clip"
    return KIND_LABEL.get(kind, f"model folder (kind {kind!r})")


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> dict:
    """top-1, top-5, mean per-class accuracy, per-class accuracy and the confusion matrix.

    Args:
        scores: ``[N, C]`` (higher = more likely), labels ``[N]`` in ``0..C-1``.
    """
    scores, labels = scores.float(), labels.long()
    n, c = scores.shape
    if n == 0:
        raise ValueError("no samples to evaluate")
    k = min(5, c)
    topk = scores.topk(k, dim=1).indices  # [N, k]
    pred = topk[:, 0]
    confusion = torch.zeros(c, c, dtype=torch.long)
    confusion.index_put_((labels, pred), torch.ones(n, dtype=torch.long), accumulate=True)
    support = confusion.sum(1)
    per_class = {name: (confusion[i, i].item() / support[i].item()) if support[i] else None
                 for i, name in enumerate(class_names)}
    seen = [v for v in per_class.values() if v is not None]
    return {
        "top1": (pred == labels).float().mean().item(),
        "top5": (topk == labels[:, None]).any(1).float().mean().item(),
        "top5_k": k,
        "mean_class_acc": float(np.mean(seen)),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "num_samples": n,
    }


def clip_scores(names: list[str], scores: torch.Tensor, labels: torch.Tensor, k: int) -> list[dict]:
    """Per-clip 0/1 top-1 / top-k correctness (``ski_lvlm.metrics.scores`` rows), which eval compare pairs."""
    topk = scores.float().topk(k, dim=1).indices  # [N, k]
    hit = topk == labels.long()[:, None]
    return [{"clip": name, "zero_shot_top1": int(h[0]), "zero_shot_top5": int(h.any())} for name, h in zip(names, hit)]


@torch.no_grad()
def evaluate_model(path: str | Path, manifest: Path, classes_csv: Path, *, device: torch.device,
                   num_frames: int | None = None, views: int = 1, batch_size: int = 8,
                   templates: list[str] | None = None, num_workers: int = 0) -> dict:
    """Zero-shot metrics of one model folder on one split; skeleton models read skeletons, others video only."""
    from ski_lvlm.data.action_dataset import ActionDataset
    from ski_lvlm.models.clip_towers import PROMPT_TEMPLATES, clip_image_stats
    from ski_lvlm.models.ski_vlm import load_model, load_skeleton_clip, text_tokenizer, tokenize_classes

    teacher = str(path).endswith("#teacher")  # the co-trained SkeletonCLIP inside a SKI-VLM folder
    path = Path(str(path)[: -len("#teacher")] if teacher else path)
    cfg_file = path / "model_config.json"
    if not cfg_file.is_file():
        raise UserError(f"{path}: not a model folder (no model_config.json)")
    cfg = json.loads(cfg_file.read_text())
    kind = cfg.get("kind")
    if kind not in KIND_LABEL:
        raise UserError(f"{cfg_file}: unknown model kind {kind!r}")
    if teacher:
        if kind != "ski_vlm" or not cfg.get("skeleton"):
            raise UserError(f"{path}#teacher: only a SKI-VLM folder with a skeleton branch has a teacher")
        model, cfg, kind = load_skeleton_clip(path, device), cfg["skeleton"], "skeleton_clip"
    else:
        model = load_model(path, device)
    inference = cfg.get("inference", {})
    templates = tuple(templates or inference.get("templates") or PROMPT_TEMPLATES)
    branch = cfg["video"] if kind == "ski_vlm" else cfg  # the config of the tower whose text is used
    if kind == "skeleton_clip":
        dataset = ActionDataset(manifest, classes_csv, with_video=False, with_skeleton=True,
                                skeleton_frames=inference.get("skeleton_frames", 300),
                                skeleton_mode=inference.get("skeleton_mode", "pad"), center=inference.get("center", True))
        views = 1
    else:
        video_model = model.video_branch() if kind == "ski_vlm" else model
        mean, std, size = clip_image_stats(video_model.clip)
        dataset = ActionDataset(manifest, classes_csv, with_video=True, with_skeleton=False,
                                num_frames=num_frames or inference.get("num_frames", 8), image_size=size,
                                mean=mean, std=std, sampling="segment_middle", num_views=views)
    tokens = tokenize_classes(text_tokenizer(branch), dataset.class_names, templates).to(device)
    scores, labels, names = [], [], []
    tic = time.time()
    if kind == "skeleton_clip":
        text = model.class_embeddings(tokens, len(templates))
        for batch in tqdm(DataLoader(dataset, batch_size=batch_size, num_workers=num_workers), desc=path.name,
                          leave=False, disable=None):
            logits = model.head(model.encode_skeleton(batch["skeleton"].to(device)), text)["logits"]
            scores.append(logits.float().softmax(-1).cpu())
            labels.append(batch["label"])
            names += batch["name"]
    else:
        text = video_model.class_embeddings(tokens, len(templates))
        for batch in tqdm(DataLoader(dataset, batch_size=batch_size, num_workers=num_workers), desc=path.name,
                          leave=False, disable=None):
            video = batch["video"].to(device)  # [b, t, 3, H, W] or [b, views, t, 3, H, W]
            if views > 1:
                b = video.shape[0]
                logits = video_model.head(video_model.encode_video(video.flatten(0, 1)), text)["logits"]
                prob = logits.float().softmax(-1).reshape(b, views, -1).mean(1)
            else:
                prob = video_model.head(video_model.encode_video(video), text)["logits"].float().softmax(-1)
            scores.append(prob.cpu())
            labels.append(batch["label"])
            names += batch["name"]
    metrics = classification_metrics(torch.cat(scores), torch.cat(labels), dataset.class_names)
    metrics["clip_scores"] = clip_scores(names, torch.cat(scores), torch.cat(labels), metrics["top5_k"])
    display = kind_label(cfg)
    if teacher:
        display = "SKI-VLM's co-trained SkeletonCLIP teacher (skeleton -> text)"
    metrics.update(kind=kind, display=display, model=str(path), input="skeleton" if kind == "skeleton_clip" else "video",
                   views=views, templates=list(templates), seconds=round(time.time() - tic, 2))
    return metrics


def plot_confusion(confusion: list[list[int]], class_names: list[str], title: str, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = 2.5 + 0.45 * len(class_names)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            if cm[i, j]:
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(out)


def markdown_table(results: dict) -> str:
    """The side-by-side table (models x top-1/top-5/mean class accuracy) with the chance level."""
    lines = [f"Zero-shot on {results['num_classes']} unseen classes ({results['num_samples']} clips, "
             f"split `{results['manifest']}`)", "",
             "| model | input at test | top-1 % | top-5 % | mean class acc % | views |",
             "|---|---|---:|---:|---:|---:|"]
    for label, m in results["models"].items():
        lines.append(f"| {label}: {m['display']} | {m['input']} | {100 * m['top1']:.1f} | "
                     f"{100 * m['top5']:.1f} | {100 * m['mean_class_acc']:.1f} | {m['views']} |")
    lines.append(f"| chance | - | {100 * results['chance']:.1f} | {100 * results['chance_top5']:.1f} | "
                 f"{100 * results['chance']:.1f} | - |")
    lines += ["", "Per-class top-1 %:", "",
              "| class | " + " | ".join(results["models"]) + " |", "|---|" + "---:|" * len(results["models"])]
    for name in results["classes"]:
        cells = [m["per_class"][name] for m in results["models"].values()]
        lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{100 * v:.0f}" for v in cells) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ski-lvlm eval zero-shot",
        description="Zero-shot action recognition on unseen classes. Video models use video only (no skeleton "
                    "file is read); SkeletonCLIP models use skeletons. Writes results.json, results.md and "
                    "confusion-matrix PNGs.",
        epilog="example: ski-lvlm eval zero-shot --world data/world --model ski=runs/ski_vlm/model --out runs/zs")
    p.add_argument("--model", action="append", required=True, metavar="LABEL=FOLDER",
                   help="a model folder (repeat for a side-by-side table); FOLDER#teacher evaluates the "
                        "skeleton teacher inside a SKI-VLM folder")
    p.add_argument("--world", help="a synthetic world / dataset folder: uses zsl_novel_test.csv + zsl_novel_classes.csv")
    p.add_argument("--manifest", help="video_path,skeleton_path,label CSV (instead of --world)")
    p.add_argument("--classes", help="id,name class CSV of that manifest")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--frames", type=int, default=None, help="frames per clip (default: what the model was trained with)")
    p.add_argument("--views", type=int, default=1, help="temporal views per clip, scores averaged (default 1)")
    p.add_argument("--template", action="append", default=None,
                   help="prompt template with {} (repeatable; default: the model's training templates)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    return p


@cli_entry("ski-lvlm eval zero-shot")
def main(argv: list[str] | None = None) -> int:
    from ski_lvlm.data.action_dataset import read_class_csv
    from ski_lvlm.metrics.scores import write_scores
    from ski_lvlm.utils.io import atomic_write_json, atomic_write_text, check_writable_parent
    from ski_lvlm.utils.runtime import pick_device

    args = build_parser().parse_args(argv)
    if args.world:
        manifest = Path(args.manifest or Path(args.world) / "zsl_novel_test.csv")
        classes = Path(args.classes or Path(args.world) / "zsl_novel_classes.csv")
    elif args.manifest and args.classes:
        manifest, classes = Path(args.manifest), Path(args.classes)
    else:
        raise UserError("give --world, or --manifest together with --classes")
    if args.views < 1 or (args.frames is not None and args.frames < 1):
        raise UserError("--views and --frames must be >= 1")
    models = {}
    for item in args.model:
        if "=" not in item:
            raise UserError(f"--model {item!r}: expected LABEL=FOLDER")
        label, folder = item.split("=", 1)
        if label in models:
            raise UserError(f"--model: label {label!r} given twice")
        models[label] = Path(folder)
    problems = check_writable_parent(args.out)
    if problems:
        raise UserError("; ".join(problems))
    try:
        device = pick_device(args.device)
    except RuntimeError as e:
        raise UserError(str(e)) from None
    class_names = read_class_csv(classes)
    out = Path(args.out)
    results = {"manifest": str(manifest), "classes": class_names, "num_classes": len(class_names),
               "chance": 1.0 / len(class_names), "chance_top5": min(5, len(class_names)) / len(class_names),
               "models": {}}
    for label, folder in models.items():
        metrics = evaluate_model(folder, manifest, classes, device=device, num_frames=args.frames, views=args.views,
                                 batch_size=args.batch_size, templates=args.template, num_workers=args.num_workers)
        write_scores(out / f"scores_{label}.jsonl", metrics.pop("clip_scores"))  # per clip, for eval compare
        results["models"][label] = metrics
        results["num_samples"] = metrics["num_samples"]
        plot_confusion(metrics["confusion"], class_names, f"{label}: top-1 {100 * metrics['top1']:.1f}%",
                       out / f"confusion_{label}.png")
    table = markdown_table(results)
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", table)
    print(table)
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
