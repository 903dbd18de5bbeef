"""Action-recognition samples from ``video_path,skeleton_path,label`` manifests and ``id,name`` class CSVs.

One map-style dataset serves SkeletonCLIP (skeleton only), SKI-VLM (video + skeleton) and zero-shot
evaluation (video only: skeleton files are never opened, they may not even exist). Items are loaded
lazily, one file per item, so memory does not grow with the dataset (the original loaded the whole
NTU npz on every rank, twice).

Everything that can be checked without decoding is checked in the constructor, with file and line in the
message: missing/empty manifest, labels outside the class list, a class list whose size disagrees with
``num_classes``. :meth:`ActionDataset.check` then loads a few items (skeleton joint count, video decode)
so a bad dataset fails before training starts, not hours in.

Randomness (``random_segment`` frame sampling, caption choice) comes from a generator seeded with
``(seed, epoch, index)``, so an item is the same whichever worker loads it and a resumed run sees the
same data as an uninterrupted one; :func:`epoch_order` gives the matching deterministic sample order.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ski_lvlm.utils.errors import UserError

__all__ = ["Sample", "ActionDataset", "read_class_csv", "read_manifest", "epoch_order", "load_skeleton_array",
           "fit_skeleton", "mirror_class_map", "mirror_skeleton", "mirror_text"]

NUM_JOINTS = 25
# NTU joint order (0-based): each left joint and its right counterpart (arm 4-7/8-11, leg 12-15/16-19,
# hand tip and thumb 21-22/23-24); the spine, neck and head (0-3, 20) map to themselves.
_MIRROR_JOINTS = list(range(NUM_JOINTS))
for _l, _r in [(4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18), (15, 19), (21, 23), (22, 24)]:
    _MIRROR_JOINTS[_l], _MIRROR_JOINTS[_r] = _r, _l
_SIDES = {"left": "right", "right": "left"}


def mirror_text(text: str) -> str:
    """Swap the words left and right (what a horizontally mirrored clip shows), keeping capitals."""
    def swap(m: re.Match) -> str:
        word = _SIDES[m.group(0).lower()]
        return word.capitalize() if m.group(0)[0].isupper() else word

    return re.sub(r"\b(?:[Ll]eft|[Rr]ight)\b", swap, text)


def mirror_class_map(class_names: list[str]) -> dict[int, int]:
    """Label of each class's mirror image, for the classes a mirrored clip still belongs to.

    A class without a side word maps to itself (clap, jump, drink water); a sided class maps to its
    counterpart when the class list has it ("wave left hand" <-> "wave right hand"). A sided class
    without a counterpart ("point with right hand") is left out: its mirror image belongs to no class,
    so such clips are never mirrored.
    """
    index = {name: i for i, name in enumerate(class_names)}
    out = {}
    for i, name in enumerate(class_names):
        words = name.split()
        if not any(w in _SIDES for w in words):
            out[i] = i
        elif (j := index.get(" ".join(_SIDES.get(w, w) for w in words))) is not None:
            out[i] = j
    return out


def mirror_skeleton(x: np.ndarray) -> np.ndarray:
    """Mirror a ``[3, T, 25, M]`` skeleton left-right: negate x and swap the left and right joints."""
    x = x[:, :, _MIRROR_JOINTS].copy()
    x[0] = -x[0]
    return x


@dataclass(frozen=True)
class Sample:
    video: Path | None
    skeleton: Path | None
    label: int
    name: str


def read_class_csv(path: str | Path, num_classes: int | None = None) -> list[str]:
    """Class names from an ``id,name`` CSV whose ids are exactly ``0..K-1`` (any row order)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: class list not found")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["id", "name"]:
        raise UserError(f"{path}:1: class list must start with the header 'id,name'")
    names: dict[int, str] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            idx = int(row[0])
        except (ValueError, IndexError):
            raise UserError(f"{path}:{line}: expected 'id,name', got {','.join(row)!r}") from None
        if idx in names:
            raise UserError(f"{path}:{line}: duplicate class id {idx}")
        names[idx] = ",".join(row[1:]).strip()
    if not names:
        raise UserError(f"{path}: no classes")
    if sorted(names) != list(range(len(names))):
        raise UserError(f"{path}: class ids must be 0..{len(names) - 1} without gaps")
    if num_classes is not None and len(names) != num_classes:
        raise UserError(f"{path}: has {len(names)} classes but the config says num_classes={num_classes}")
    return [names[i] for i in range(len(names))]


def read_manifest(path: str | Path, num_classes: int, need_video: bool, need_skeleton: bool) -> list[Sample]:
    """Rows of a ``video_path,skeleton_path,label`` CSV (header optional; paths relative to the CSV)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: split manifest not found")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    base = path.parent
    samples: list[Sample] = []
    for line, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip():
            continue
        if line == 1 and row[-1].strip().lower() == "label":
            continue
        if len(row) != 3:
            raise UserError(f"{path}:{line}: expected 'video_path,skeleton_path,label', got {len(row)} fields")
        video, skel, label = (c.strip() for c in row)
        try:
            y = int(label)
        except ValueError:
            raise UserError(f"{path}:{line}: label {label!r} is not an integer") from None
        if not 0 <= y < num_classes:
            raise UserError(f"{path}:{line}: label {y} outside the class list (0..{num_classes - 1})")
        if need_video and not video:
            raise UserError(f"{path}:{line}: no video_path")
        if need_skeleton and not skel:
            raise UserError(f"{path}:{line}: no skeleton_path")
        vpath = base / video if video else None
        spath = base / skel if skel else None
        name = (vpath or spath).stem
        samples.append(Sample(vpath, spath, y, name))
    if not samples:
        raise UserError(f"{path}: the split is empty (no samples)")
    return samples


def epoch_order(num_items: int, *, seed: int, epoch: int, shuffle: bool = True, rank: int = 0,
                world_size: int = 1) -> list[int]:
    """The sample order of one epoch (a pure function of seed and epoch), this rank's share of it.

    Ranks take interleaved slices after padding the order to a multiple of ``world_size`` by wrapping
    around, so every rank runs the same number of steps (as ``DistributedSampler`` does).
    """
    if shuffle:
        g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(num_items, generator=g).tolist()
    else:
        order = list(range(num_items))
    if world_size > 1:
        pad = (-len(order)) % world_size
        order = (order + order[:pad])[rank::world_size]
    return order


def load_skeleton_array(path: Path, max_persons: int = 2) -> np.ndarray:
    """float32 ``[3, T, 25, M]`` from a ``.skeleton`` text file or a ``.npy`` array; checks the layout."""
    from ski_lvlm.data.skeleton import SkeletonFormatError, read_ntu_skeleton

    if not path.is_file():
        raise UserError(f"{path}: skeleton file not found")
    try:
        if path.suffix == ".npy":
            x = np.load(path, allow_pickle=False).astype(np.float32)
        else:
            x = read_ntu_skeleton(path, max_bodies=max_persons)
    except SkeletonFormatError:
        raise  # names the file and the line already; the clause below is for other readers' ValueErrors
    except ValueError as e:
        raise UserError(f"{path}: cannot read skeleton: {e}") from None
    if x.ndim != 4 or x.shape[0] != 3 or x.shape[2] != NUM_JOINTS:
        raise UserError(f"{path}: skeleton array has shape {list(x.shape)}; expected [3, T, {NUM_JOINTS} joints, M]"
                        + (f" (it has {x.shape[2]} joints)" if x.ndim == 4 else ""))
    m = x.shape[3]
    if m < max_persons:
        x = np.concatenate([x, np.zeros((*x.shape[:3], max_persons - m), np.float32)], axis=3)
    return x[..., :max_persons]


def fit_skeleton(x: np.ndarray, frames: int, mode: str = "pad", center: bool = True) -> np.ndarray:
    """``[3, T, V, M]`` -> ``[3, frames, V, M]``.

    * ``pad``: zero-pad or crop at the end (the original SKI input: 300 padded frames);
    * ``resize``: linearly resample the frames that contain a body to ``frames`` (Hyperformer's
      valid-crop-resize without the random crop).

    ``center`` subtracts the spine-middle joint of the first person's first non-empty frame from every
    non-empty joint, like the CTR-GCN ``seq_translation`` step that produced the NTU npz files.
    """
    x = x.astype(np.float32, copy=True)
    present = np.abs(x).sum(axis=(0, 2, 3)) > 0  # [T] frames with any body
    if center and present.any():
        first = int(np.argmax(present))
        origin = x[:, first, 1, 0].copy()  # spine_mid of person 0
        body = np.abs(x).sum(axis=0, keepdims=True) > 0  # [1, T, V, M] real joints only
        x = np.where(body, x - origin[:, None, None, None], 0.0).astype(np.float32)
    if mode == "resize":
        valid = x[:, present] if present.any() else x[:, :1]
        t = valid.shape[1]
        pos = np.linspace(0, t - 1, frames)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, t - 1)
        w = (pos - lo)[None, :, None, None].astype(np.float32)
        return (valid[:, lo] * (1 - w) + valid[:, hi] * w).astype(np.float32)
    if mode != "pad":
        raise ValueError(f"skeleton mode must be 'pad' or 'resize', got {mode!r}")
    t = x.shape[1]
    if t >= frames:
        return x[:, :frames]
    return np.concatenate([x, np.zeros((3, frames - t, *x.shape[2:]), np.float32)], axis=1)


class ActionDataset(Dataset):
    """Map-style dataset over a manifest; items are dicts (``label``, ``index``, ``name`` + modalities).

    Args:
        manifest: ``video_path,skeleton_path,label`` CSV.
        classes_csv: its ``id,name`` class list (labels index into it).
        num_classes: expected class count; a class CSV of another size is an error.
        with_video / with_skeleton: which modalities to load. Without skeletons the skeleton column is
            ignored entirely (evaluation needs no skeleton files).
        num_frames, image_size, mean, std: video clip settings; frames are resized (short side) to
            ``image_size``, centre-cropped, scaled to [0, 1] and normalised with CLIP's mean/std.
        sampling: ``segment_middle`` (test) or ``random_segment`` (train), see ``ski_lvlm.data.video``.
        num_views: >1 adds temporal views (view 0 = segment middles, the others = seeded random
            segments) -> ``video [views, t, 3, H, W]``; scores are averaged over views by the evaluator.
        skeleton_frames, skeleton_mode, center: see :func:`fit_skeleton`.
        captions: ``{sample name: [caption, ...]}``; when given, each item carries one ``caption``.
        seed: base seed for per-item randomness (with :meth:`set_epoch`).
        cache_frames: keep every clip's decoded frames (all of them, at ``image_size``) in memory after
            the first epoch and draw each epoch's frames from there: the same frames the decoder would
            return (same indices, same resize), without decoding every clip again each epoch. Short clips
            only (the synthetic world's are 1-2 s); a long video would hold all its frames.
        mirror: training augmentation: with probability 0.5 an item whose label is in
            :func:`mirror_class_map` is flipped left-right (video, skeleton, caption) and relabelled. The
            world's sided classes are exact mirror images, so this doubles what a small training set
            shows about left versus right.
    """

    def __init__(self, manifest: str | Path, classes_csv: str | Path, *, num_classes: int | None = None,
                 with_video: bool = True, with_skeleton: bool = True, num_frames: int = 8, image_size: int = 224,
                 mean: tuple[float, ...] = (0.48145466, 0.4578275, 0.40821073),
                 std: tuple[float, ...] = (0.26862954, 0.26130258, 0.27577711),
                 sampling: str = "segment_middle", num_views: int = 1, skeleton_frames: int = 300,
                 skeleton_mode: str = "pad", center: bool = True, max_persons: int = 2,
                 captions: dict[str, list[str]] | None = None, seed: int = 0, video_backend: str | None = None,
                 mirror: bool = False, cache_frames: bool = False):
        if not (with_video or with_skeleton):
            raise ValueError("ActionDataset needs video, skeleton or both")
        self.manifest = Path(manifest)
        self.class_names = read_class_csv(classes_csv, num_classes)
        self.samples = read_manifest(manifest, len(self.class_names), with_video, with_skeleton)
        self.with_video, self.with_skeleton = with_video, with_skeleton
        self.num_frames, self.image_size, self.sampling, self.num_views = num_frames, image_size, sampling, num_views
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.skeleton_frames, self.skeleton_mode, self.center = skeleton_frames, skeleton_mode, center
        self.max_persons, self.captions, self.seed = max_persons, captions, seed
        self.video_backend = video_backend
        self.mirror = mirror_class_map(self.class_names) if mirror else {}
        self.cache_frames = cache_frames
        self._frames: dict[Path, np.ndarray] = {}  # path -> uint8 [T, H, W, 3], every frame (cache_frames)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def set_epoch(self, epoch: int) -> None:
        """Per-item randomness depends on (seed, epoch, index); call before each epoch."""
        self.epoch = epoch

    def check(self, num_items: int = 2) -> None:
        """Load the first and last ``num_items`` items so bad files fail before training (raises a SkiLvlmError)."""
        picks = sorted({*range(min(num_items, len(self))), *range(max(0, len(self) - num_items), len(self))})
        for i in picks:
            self[i]

    def _read(self, path: Path, sampling: str, rng: np.random.Generator) -> np.ndarray:
        """``num_frames`` frames ``[t, H, W, 3]`` uint8 (short side = image_size), decoded or from the cache."""
        from ski_lvlm.data.video import probe_video, read_frames, sample_indices

        # a VideoDecodeError names the file and the reason
        if not self.cache_frames:
            return read_frames(path, self.num_frames, sampling, size=self.image_size, rng=rng,
                               backend=self.video_backend)
        if path not in self._frames:
            total = probe_video(path).num_frames
            self._frames[path] = read_frames(path, total, "uniform", size=self.image_size,
                                             backend=self.video_backend)  # every frame, in order
        clip = self._frames[path]
        return clip[sample_indices(len(clip), self.num_frames, sampling, rng)]

    def _video(self, path: Path, rng: np.random.Generator) -> torch.Tensor:
        views = []
        for v in range(self.num_views):
            sampling = self.sampling if v == 0 else "random_segment"
            frames = self._read(path, sampling, rng)  # [t, H, W, 3] uint8, short side = image_size
            h, w = frames.shape[1:3]
            top, left = (h - self.image_size) // 2, (w - self.image_size) // 2
            frames = frames[:, top:top + self.image_size, left:left + self.image_size]
            x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0  # [t, 3, H, W]
            views.append((x - self.mean) / self.std)
        return views[0] if self.num_views == 1 else torch.stack(views)  # [t,3,H,W] or [views,t,3,H,W]

    def __getitem__(self, index: int) -> dict[str, Any]:
        s = self.samples[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        item: dict[str, Any] = {"label": s.label, "index": index, "name": s.name}
        if self.with_video:
            item["video"] = self._video(s.video, rng)
        if self.with_skeleton:
            x = load_skeleton_array(s.skeleton, self.max_persons)
            item["skeleton"] = torch.from_numpy(fit_skeleton(x, self.skeleton_frames, self.skeleton_mode, self.center))
        if self.captions is not None:
            options = self.captions.get(s.name) or [self.class_names[s.label]]
            item["caption"] = options[int(rng.integers(len(options)))]
        # drawn last so turning mirroring on leaves every other random choice of the item unchanged
        if self.mirror and s.label in self.mirror and rng.random() < 0.5:
            item["label"] = self.mirror[s.label]
            if "video" in item:
                item["video"] = item["video"].flip(-1)  # [..., t, 3, H, W]: mirror the width axis
            if "skeleton" in item:
                item["skeleton"] = torch.from_numpy(mirror_skeleton(item["skeleton"].numpy()))
            if "caption" in item:
                item["caption"] = mirror_text(item["caption"])
        return item
