"""The synthetic ADL world: a small, deterministic activities-of-daily-living dataset in real formats.

Nothing can be downloaded on our machines, so every stage of the toolkit trains and evaluates on this
world first. :func:`generate_world` writes (see the README section "The synthetic ADL world" for the layout):

* NTU ``.skeleton`` text files of 20 everyday actions performed by parametric 3D skeletons
  (:mod:`ski_lvlm.synthetic.motions`) and the cross-subject ``skeletons.npz`` the loaders read;
* H.264 videos of the same motions rendered as person figures (:mod:`ski_lvlm.synthetic.render`), the same
  frame count as the skeleton;
* captions, Video-ChatGPT QA pairs, LLaVA instruction JSON, a Charades-format caption test CSV, and
  base/novel class splits plus ``video_path,skeleton_path,label`` manifests;
* ``class_phrases.json``: the words that identify each class, side and tempo in a caption
  (:func:`class_phrases`), so ``eval captions`` can tell a grounded caption from a generic one.

Class names are compositional ("wave left hand", "raise right hand", ...) so a text encoder can
recognise an unseen combination of seen words: the default novel classes (wave right hand, touch head
with left hand, kick with left leg, raise left hand) each recombine words of base classes.

Appearance (body size, clothes, room, camera) is drawn independently of the action, so only the motion
tells the classes apart; the subtle pairs (left vs right, sit down vs stand up, drink vs brush teeth)
differ only in how the body moves.

Determinism: every clip draws from its own ``numpy`` generator seeded with ``(seed, class, subject,
replication)``, so the same seed gives byte-identical skeleton files and annotation files whatever the
worker count (and a class subset gives the same clips as the full world). Videos are encoded
single-threaded. ``world.json`` records the generation time and is the only file that differs.

Modules: :mod:`~ski_lvlm.synthetic.actions` (the classes and their words: captions, QA, class phrases),
:mod:`~ski_lvlm.synthetic.clips` (one clip: simulate, write, describe), and this one (settings, the plan of
clips, the annotation files and the world on disk).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ski_lvlm.config import ConfigError, to_dict
from ski_lvlm.data.protocols import write_protocol_files

from ski_lvlm.synthetic.actions import (
    ACTIONS,
    CLASS_NAMES,
    DEFAULT_NOVEL,
    DESCRIBE_PROMPTS,
    FAST_ABOVE,
    SLOW_BELOW,
    cap_first,
    captions_for,
    class_phrases,
    qa_for,
)
from ski_lvlm.synthetic.clips import ClipSpec, make_clip

__all__ = [
    "SyntheticConfig",
    "plan_clips",
    "generate_world",
    "held_out_subjects",
    "validation_subjects",
    "write_annotations",
    # defined in ski_lvlm.synthetic.actions; imported from here too
    "CLASS_NAMES",
    "DEFAULT_NOVEL",
    "class_phrases",
]

# ----------------------------------------------------------------------------------------------------------
# Subjects


def held_out_subjects(n_subjects: int) -> list[int]:
    """Cross-subject split: every third subject (3, 6, 9, ...) is held out; the last one when fewer than 3."""
    held = [p for p in range(1, n_subjects + 1) if p % 3 == 0]
    return held or [n_subjects]


def validation_subjects(n_subjects: int) -> list[int]:
    """Every third *training* subject: ``train_val.csv``, for choosing settings without the test subjects."""
    held = set(held_out_subjects(n_subjects))
    train = [p for p in range(1, n_subjects + 1) if p not in held]
    return train[2::3] if len(train) >= 3 else []


# ----------------------------------------------------------------------------------------------------------
# Config


def _close(name: str, choices) -> str:
    m = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _probe_writable(out: Path) -> str | None:
    """Really try to create a folder where ``out`` would go (``os.access`` says yes to root on read-only places)."""
    parent = out.parent if not out.exists() else out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"out: {parent} is not a folder"
    try:
        probe = tempfile.mkdtemp(prefix=".ski-lvlm-probe-", dir=parent)
        os.rmdir(probe)
    except OSError as e:
        return f"out: cannot create folders in {parent} ({e.strerror or e})"
    return None


def _decord_problem(size: int) -> str | None:
    """decord 0.6 fails on some frame sizes (48 and 72 px among them); try a 2-frame video of ``size`` first."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return None
    from ski_lvlm.data.video import VideoDecodeError, read_frames, write_video

    with tempfile.TemporaryDirectory(prefix="ski-lvlm-size-") as tmp:
        path = Path(tmp) / "probe.mp4"
        write_video(path, np.zeros((2, size, size, 3), np.uint8), 30.0)
        try:
            read_frames(path, 2, sampling="uniform", backend="decord", timeout=None)
        except VideoDecodeError:
            return (f"size: decord cannot decode {size}x{size} videos (a decord bug); "
                    "choose another size, e.g. 64 or 112")
    return None


@dataclass
class SyntheticConfig:
    """Settings of ``ski-lvlm data synthetic``. Default: 20 classes x 9 subjects x 2 replications = 360 clips."""

    out: str = ""
    """Output folder (the WORLD). Generated in a temporary sibling folder and renamed when complete."""
    seed: int = 0
    """Master seed; each clip draws from its own generator seeded with (seed, class, subject, replication)."""
    classes: list[str] = field(default_factory=list)
    """Subset of the 20 class names to generate (empty = all), in canonical order."""
    novel: list[str] | None = None
    """Unseen (zero-shot) classes; None = the default novel classes that are in ``classes``."""
    subjects: int = 9
    """Number of performers (body proportions are per subject); every third one is a test subject."""
    replications: int = 2
    """Clips per (class, subject)."""
    per_class: int = 0
    """Clips per class (0 = subjects x replications); clip k: subject 1 + k % subjects, rep 1 + k // subjects."""
    size: int = 112
    """Video frame size in pixels (square, even)."""
    fps: float = 30.0
    """Frames per second of skeletons and videos."""
    min_frames: int = 32
    """Shortest clip (fast performances)."""
    max_frames: int = 64
    """Longest clip (slow performances)."""
    second_person: float = 0.3
    """Probability that a second person (standing around or walking past) is in the clip."""
    videos: bool = True
    """Render the mp4 videos (False: skeletons and annotations only, much faster)."""
    workers: int = 2
    """Worker processes (the output does not depend on this)."""
    overwrite: bool = False
    """Replace an existing ``out`` (only after the new world is complete)."""

    def class_list(self) -> list[str]:
        chosen = set(self.classes) if self.classes else set(CLASS_NAMES)
        return [c for c in CLASS_NAMES if c in chosen]

    def novel_list(self) -> list[str]:
        classes = self.class_list()
        novel = set(DEFAULT_NOVEL if self.novel is None else self.novel)
        return [c for c in classes if c in novel]

    def clips_per_class(self) -> int:
        return self.per_class or self.subjects * self.replications

    def validate(self) -> list[str]:
        p: list[str] = []
        if not self.out:
            p.append("out: required (the folder to create, e.g. --out runs/world)")
        if self.seed < 0:
            p.append(f"seed: must be >= 0, got {self.seed}")
        if self.subjects < 2:
            p.append(f"subjects: must be >= 2 (at least one train and one test subject), got {self.subjects}")
        if self.replications < 1:
            p.append(f"replications: must be >= 1, got {self.replications}")
        if self.per_class < 0:
            p.append(f"per_class: must be >= 0 (0 = subjects x replications), got {self.per_class}")
        elif 0 < self.per_class < self.subjects and self.subjects >= 2:
            p.append(f"per_class: must be 0 or >= subjects ({self.subjects}) so every subject appears, "
                     f"got {self.per_class}")
        if self.size < 32 or self.size > 1024 or self.size % 2:
            p.append(f"size: must be an even number of pixels in 32..1024, got {self.size}")
        elif self.videos:
            problem = _decord_problem(self.size)
            if problem:
                p.append(problem)
        if not self.fps > 0:
            p.append(f"fps: must be > 0, got {self.fps}")
        if self.min_frames < 8:
            p.append(f"min_frames: must be >= 8, got {self.min_frames}")
        if self.max_frames < self.min_frames:
            p.append(f"max_frames: must be >= min_frames ({self.min_frames}), got {self.max_frames}")
        if not 0.0 <= self.second_person <= 1.0:
            p.append(f"second_person: must be a probability in [0, 1], got {self.second_person}")
        if self.workers < 1:
            p.append(f"workers: must be >= 1, got {self.workers}")
        unknown = [c for c in self.classes if c not in ACTIONS]
        for c in unknown:
            p.append(f"classes: unknown class {c!r}{_close(c, CLASS_NAMES)}; known: {', '.join(CLASS_NAMES)}")
        if len(set(self.classes)) != len(self.classes):
            p.append("classes: contains duplicates")
        for c in self.novel or []:
            if c not in ACTIONS:
                p.append(f"novel: unknown class {c!r}{_close(c, CLASS_NAMES)}")
            elif c not in self.class_list():
                p.append(f"novel: {c!r} is not one of the generated classes")
        if not unknown:
            n_cls, n_novel = len(self.class_list()), len(self.novel_list())
            if n_cls < 2:
                p.append(f"classes: need at least 2 classes, got {n_cls}")
            elif n_novel == 0:
                p.append("novel: no novel class among the generated classes; pass --novel NAME[,NAME]")
            elif n_novel >= n_cls:
                p.append("novel: at least one class must stay a base (seen) class")
        if self.out:
            out = Path(self.out)
            if out.exists() and not out.is_dir():
                p.append(f"out: {out} exists and is a file, not a folder")
            elif out.exists() and not self.overwrite:
                p.append(f"out: {out} already exists (pass --overwrite to replace it)")
            else:
                problem = _probe_writable(out)
                if problem:
                    p.append(problem)
        return p


# ----------------------------------------------------------------------------------------------------------
# Clips


def plan_clips(cfg: SyntheticConfig) -> list[ClipSpec]:
    """All clips in world order: class by class, then replication, then subject."""
    specs = []
    for label, name in enumerate(cfg.class_list()):
        for k in range(cfg.clips_per_class()):
            subject, rep = 1 + k % cfg.subjects, 1 + k // cfg.subjects
            specs.append(ClipSpec(len(specs), label, CLASS_NAMES.index(name), subject, rep, cfg.seed, cfg.size,
                                  cfg.fps, cfg.min_frames, cfg.max_frames, cfg.second_person, cfg.videos))
    return specs


def _csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


_MANIFEST_HEADER = ["video_path", "skeleton_path", "label"]
_CHARADES_HEADER = ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects",
                    "descriptions", "actions", "length"]
# the per-clip facts of clips.csv, in column order
_FACTS = ["name", "class", "label", "subject", "replication", "frames", "length", "speed", "tempo", "scene",
          "azimuth", "elevation", "distance", "height", "bystander", "action_start", "action_end"]


def _write_class_lists(root: Path, classes: list[str], base: list[str], novel: list[str]) -> None:
    """``classes.csv``, the zero-shot base/novel class lists and Charades' ``cNNN name`` class file."""
    _write(root / "classes.csv", _csv_text(["id", "name"], [[i, c] for i, c in enumerate(classes)]))
    _write(root / "zsl_base_classes.csv", _csv_text(["id", "name"], [[i, c] for i, c in enumerate(base)]))
    _write(root / "zsl_novel_classes.csv", _csv_text(["id", "name"], [[i, c] for i, c in enumerate(novel)]))
    _write(root / "Charades_v1_classes.txt", "".join(f"c{i:03d} {c}\n" for i, c in enumerate(classes)))


def _split_rows(clips: list[dict[str, Any]], base: list[str], novel: list[str], held: set[int],
                val_subjects: set[int]) -> dict[str, list[list[Any]]]:
    """Manifest rows (``video_path, skeleton_path, label``) of every split, by split name (= file stem)."""

    def row(c: dict[str, Any], label: int) -> list[Any]:
        return [f"videos/{c['name']}.mp4", f"skeletons/{c['name']}.skeleton", label]

    train = [c for c in clips if c["subject"] not in held]
    test = [c for c in clips if c["subject"] in held]
    return {
        "train": [row(c, c["label"]) for c in train],
        "test": [row(c, c["label"]) for c in test],
        "train_fit": [row(c, c["label"]) for c in train if c["subject"] not in val_subjects],
        "train_val": [row(c, c["label"]) for c in train if c["subject"] in val_subjects],
        "zsl_base_train": [row(c, base.index(c["class"])) for c in train if c["class"] in base],
        "zsl_base_val": [row(c, base.index(c["class"])) for c in test if c["class"] in base],
        "zsl_novel_test": [row(c, novel.index(c["class"])) for c in clips if c["class"] in novel],
    }


def _clip_language(seed: int, c: dict[str, Any]) -> tuple[list[str], list[tuple[str, str]], dict[str, Any]]:
    """Captions, QA pairs and the LLaVA instruction record of one clip.

    Draws from the clip's own text generator (seeded like the clip, plus a stream id), so the text of a clip
    does not depend on the other clips. The instruction asks for a description, then two of the QA pairs.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, CLASS_NAMES.index(c["class"]), c["subject"],
                                                        c["replication"], 1]))
    caps = captions_for(c, rng)
    pairs = qa_for(c)
    turns = [{"from": "human", "value": "<video>\n" + DESCRIBE_PROMPTS[int(rng.integers(len(DESCRIBE_PROMPTS)))]},
             {"from": "gpt", "value": caps[0]}]
    for i in sorted(rng.choice(len(pairs), size=2, replace=False)):
        q, ans = pairs[int(i)]
        turns += [{"from": "human", "value": q}, {"from": "gpt", "value": ans}]
    item = {"id": c["name"], "video": f"videos/{c['name']}.mp4", "skeleton": f"skeletons/{c['name']}.skeleton",
            "conversations": turns}
    return caps, pairs, item


def _charades_row(c: dict[str, Any], caps: list[str]) -> list[Any]:
    """One row of ``Charades_v1_*.csv`` (columns :data:`_CHARADES_HEADER`) for a clip and its captions."""
    return [c["name"], f"P{c['subject']:03d}", cap_first(c["scene"]), 7, 7, "Yes", caps[0], ACTIONS[c["class"]].objects,
            ";".join(caps), f"c{c['label']:03d} {c['action_start']:.2f} {c['action_end']:.2f}", f"{c['length']:.2f}"]


def write_annotations(root: Path, cfg: SyntheticConfig, clips: list[dict[str, Any]]) -> dict[str, Any]:
    """Write every index/annotation file of the world from the clip facts; return the split counts."""
    classes, novel = cfg.class_list(), cfg.novel_list()
    base = [c for c in classes if c not in novel]
    held = set(held_out_subjects(cfg.subjects))
    val_subjects = set(validation_subjects(cfg.subjects))
    _write_class_lists(root, classes, base, novel)
    splits = _split_rows(clips, base, novel, held, val_subjects)
    for split, rows in splits.items():
        _write(root / f"{split}.csv", _csv_text(_MANIFEST_HEADER, rows))
    _write(root / "clips.csv", _csv_text(_FACTS, [[c[k] for k in _FACTS] for c in clips]))
    # cross-view and zero-shot validation manifests (ski_lvlm.data.protocols); new files only, so the
    # default protocol's files and counts stay what they were
    write_protocol_files(root, clips, classes, novel, held)

    captions, qa, instr_train, instr_test, charades = {}, [], [], [], []
    # the validation subjects' share of the training set, as caption/QA eval sets, for choosing settings
    # without looking at the test subjects (train on instructions_train_fit.json, score Charades_v1_val.csv)
    qa_val, instr_fit, charades_val = [], [], []
    for c in clips:
        caps, pairs, item = _clip_language(cfg.seed, c)
        captions[c["name"]] = caps
        if c["subject"] in held:
            instr_test.append(item)
            qa += [{"video_id": c["name"], "q": q, "a": ans} for q, ans in pairs]
            charades.append(_charades_row(c, caps))
        else:
            instr_train.append(item)
            if c["subject"] in val_subjects:
                qa_val += [{"video_id": c["name"], "q": q, "a": ans} for q, ans in pairs]
                charades_val.append(_charades_row(c, caps))
            else:
                instr_fit.append(item)
    _write(root / "captions.json", _json(captions))
    _write(root / "class_phrases.json", _json(class_phrases(classes)))
    _write(root / "qa.json", _json(qa))
    _write(root / "instructions_train.json", _json(instr_train))
    _write(root / "instructions_test.json", _json(instr_test))
    _write(root / "Charades_v1_test.csv", _csv_text(_CHARADES_HEADER, charades))
    _write(root / "Charades_v1_val.csv", _csv_text(_CHARADES_HEADER, charades_val))
    _write(root / "qa_val.json", _json(qa_val))
    _write(root / "instructions_train_fit.json", _json(instr_fit))
    counts = {k: len(v) for k, v in splits.items()}
    counts.update(clips=len(clips), captions=sum(len(v) for v in captions.values()), qa=len(qa),
                  instructions_train=len(instr_train), instructions_test=len(instr_test))
    return counts


def _write_npz(root: Path, cfg: SyntheticConfig, clips: list[dict[str, Any]]) -> None:
    """``skeletons.npz``: x float32 [N, 3, T_max, 25, 2] (zero-padded), y int64, files = sample names."""
    held = set(held_out_subjects(cfg.subjects))
    t_max = max(c["frames"] for c in clips)
    arrays = {}
    for split, keep in (("train", lambda s: s not in held), ("test", lambda s: s in held)):
        sel = [c for c in clips if keep(c["subject"])]
        x = np.zeros((len(sel), 3, t_max, 25, 2), np.float32)
        for i, c in enumerate(sel):
            x[i, :, : c["frames"]] = c["xyz"]
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = np.array([c["label"] for c in sel], np.int64)
        arrays[f"files_{split}"] = np.array([c["name"] for c in sel], dtype="<U20")
    np.savez_compressed(root / "skeletons.npz", **arrays)


def _run_clip(args: tuple[ClipSpec, str]) -> dict[str, Any]:
    spec, out = args
    return make_clip(spec, out)


def generate_world(cfg: SyntheticConfig, progress: bool = True) -> dict[str, Any]:
    """Validate ``cfg``, generate the world into a temporary folder and rename it to ``cfg.out``.

    Returns the ``world.json`` record. Raises :class:`ConfigError` (before writing anything) for bad settings.
    """
    from tqdm import tqdm

    from ski_lvlm.utils.io import atomic_dir

    problems = cfg.validate()
    if problems:
        raise ConfigError(problems)
    t0 = time.perf_counter()
    specs = plan_clips(cfg)
    out = Path(cfg.out)
    with atomic_dir(out, overwrite=cfg.overwrite) as tmp:
        (tmp / "skeletons").mkdir()
        if cfg.videos:
            (tmp / "videos").mkdir()
        jobs = [(s, str(tmp)) for s in specs]
        bar = tqdm(total=len(jobs), desc="synthetic world", unit="clip", disable=not progress, dynamic_ncols=True)
        clips: list[dict[str, Any]] = []
        if cfg.workers == 1:
            results = map(_run_clip, jobs)
            for r in results:
                clips.append(r)
                bar.update()
        else:
            import multiprocessing as mp

            with mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn").Pool(cfg.workers) as pool:
                for r in pool.imap(_run_clip, jobs, chunksize=2):
                    clips.append(r)
                    bar.update()
        bar.close()
        names = [c["name"] for c in clips]
        if len(set(names)) != len(names):  # pragma: no cover - names are unique by construction
            raise RuntimeError("duplicate sample names")
        counts = write_annotations(tmp, cfg, clips)
        _write_npz(tmp, cfg, clips)
        frames = np.array([c["frames"] for c in clips])
        record = {
            "generator": "ski-lvlm data synthetic",
            "format_version": 1,
            "seed": cfg.seed,
            "settings": {k: v for k, v in to_dict(cfg).items() if k not in ("out", "overwrite")},
            "classes": cfg.class_list(),
            "base_classes": [c for c in cfg.class_list() if c not in cfg.novel_list()],
            "novel_classes": cfg.novel_list(),
            "subjects": {"train": [p for p in range(1, cfg.subjects + 1) if p not in held_out_subjects(cfg.subjects)],
                         "test": held_out_subjects(cfg.subjects)},
            "counts": counts,
            "frames": {"min": int(frames.min()), "max": int(frames.max()), "mean": round(float(frames.mean()), 2),
                       "total": int(frames.sum())},
            "video": ({"size": [cfg.size, cfg.size], "fps": cfg.fps, "codec": "H.264 yuv420p mp4"}
                      if cfg.videos else None),
            "coordinates": "camera space as Kinect v2 / NTU: metres, x towards the sensor's left (image right), y up, "
                           "z away from the sensor; skeletons.npz holds the same raw values as the .skeleton files "
                           "(no centring), bodies ordered most-motion first like read_ntu_skeleton",
            "tempo_thresholds": {"slow_below": SLOW_BELOW, "fast_above": FAST_ABOVE},
        }
        record["bytes"] = _du(tmp)
        record["generation_seconds"] = round(time.perf_counter() - t0, 2)
        record["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        _write(tmp / "world.json", _json(record))
    return record
