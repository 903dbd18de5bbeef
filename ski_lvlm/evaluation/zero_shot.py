"""Zero-shot action recognition of model folders on unseen classes (the library half of
``ski-lvlm eval zero-shot`` and ``ski-lvlm eval all``).

Video models (ViFi-CLIP, SKI-VLM) are evaluated from video alone: the skeleton column of the manifest is
never read. SkeletonCLIP is evaluated skeleton-to-text. Class prompts are rebuilt from the class names with
the templates the model was trained with. Protocol (``original-system.md`` §4.6): every sample counts; 1
view = the middle frame of each of ``t`` segments; ``views > 1`` averages the softmax over seeded
random-segment clips.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from ski_lvlm.metrics.classification import classification_metrics, clip_scores
from ski_lvlm.utils.errors import UserError
from ski_lvlm.utils.run_layout import resolve_model_dir

__all__ = ["KIND_LABEL", "kind_label", "evaluate_model", "evaluate_zero_shot", "markdown_table", "plot_confusion"]

KIND_LABEL = {"skeleton_clip": "SkeletonCLIP (skeleton -> text)", "video_clip": "ViFi-CLIP (video)",
              "ski_vlm": "SKI-VLM (video)"}


def kind_label(cfg: dict) -> str:
    """What a model folder holds, for tables: a SKI-VLM folder trained without a teacher is the ViFi-CLIP baseline."""
    kind = cfg.get("kind")
    if kind == "ski_vlm" and not cfg.get("skeleton"):
        kind = "video_clip"
    return KIND_LABEL.get(kind, f"model folder (kind {kind!r})")


@torch.no_grad()
def evaluate_model(path: str | Path, manifest: Path, classes_csv: Path, *, device: torch.device,
                   num_frames: int | None = None, views: int = 1, batch_size: int = 8,
                   templates: list[str] | None = None, num_workers: int = 0) -> dict:
    """Zero-shot metrics of one model folder on one split; skeleton models read skeletons, others video only."""
    from ski_lvlm.data.action_dataset import ActionDataset
    from ski_lvlm.models.clip_towers import PROMPT_TEMPLATES, clip_image_stats
    from ski_lvlm.models.ski_vlm import load_model, load_skeleton_clip, text_tokenizer, tokenize_classes

    teacher = str(path).endswith("#teacher")  # the co-trained SkeletonCLIP inside a SKI-VLM folder
    path = resolve_model_dir(str(path)[: -len("#teacher")] if teacher else path)  # a run folder: its final/
    cfg_file = path / "model_config.json"
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
    metrics["clip_scores"] = clip_scores(names, torch.cat(scores), torch.cat(labels), metrics["top5_k"],
                                         dataset.class_names)
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
    # the classes are unseen in training on a zero-shot split, seen on an all-class one (protocols full, xview_full)
    lines = [f"Recognition by class-name text on {results['num_classes']} classes ({results['num_samples']} clips, "
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


def evaluate_zero_shot(models: dict[str, Path], manifest: Path, classes: Path, out: Path, *, device: torch.device,
                       num_frames: int | None = None, views: int = 1, batch_size: int = 8,
                       templates: list[str] | None = None, num_workers: int = 0) -> dict:
    """Evaluate every ``{label: folder}`` on one split; write ``out/results.json``, ``results.md``,
    ``confusion_<label>.png`` and ``scores_<label>.jsonl`` (per clip, what eval compare pairs).

    Returns:
        the results dict (as written to ``results.json``).
    """
    from ski_lvlm.data.action_dataset import read_class_csv
    from ski_lvlm.metrics.scores import write_scores
    from ski_lvlm.utils.io import atomic_write_json, atomic_write_text

    class_names = read_class_csv(classes)
    results = {"manifest": str(manifest), "classes": class_names, "num_classes": len(class_names),
               "chance": 1.0 / len(class_names), "chance_top5": min(5, len(class_names)) / len(class_names),
               "models": {}}
    for label, folder in models.items():
        metrics = evaluate_model(folder, manifest, classes, device=device, num_frames=num_frames, views=views,
                                 batch_size=batch_size, templates=templates, num_workers=num_workers)
        write_scores(out / f"scores_{label}.jsonl", metrics.pop("clip_scores"))
        results["models"][label] = metrics
        results["num_samples"] = metrics["num_samples"]
        plot_confusion(metrics["confusion"], class_names, f"{label}: top-1 {100 * metrics['top1']:.1f}%",
                       out / f"confusion_{label}.png")
    atomic_write_json(out / "results.json", results)
    atomic_write_text(out / "results.md", markdown_table(results))
    return results
