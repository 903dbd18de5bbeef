"""NTU RGB+D 60/120: sample names, class names, benchmark splits, normalisation, conversion, zero-shot splits.

Sample names are ``SsssCcccPpppRrrrAaaa`` (setup, camera, performer/subject, replication, action; 1-based).
NTU60 is setups 1-17 and actions 1-60; NTU120 adds setups 18-32 and actions 61-120.

Conversion (:func:`convert_ntu`) reads ``.skeleton`` files in parallel, caches per-chunk results in a
sidecar folder so a killed run resumes, and assembles ``x_train, y_train, x_test, y_test, files_train,
files_test`` (x float32 ``[N, 3, T, 25, 2]``, y int64 = action id - 1, files = sample names).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ski_lvlm.data.skeleton import SPINE_MID, SkeletonFormatError, read_ntu_skeleton
from ski_lvlm.data.video import sample_indices

__all__ = [
    "NTU120_CLASS_NAMES",
    "NTU60_CLASS_NAMES",
    "NTU60_XSUB_TRAIN_SUBJECTS",
    "NTU120_XSUB_TRAIN_SUBJECTS",
    "XVIEW_TRAIN_CAMERAS",
    "BENCHMARKS",
    "ZSL_SPLITS",
    "NtuName",
    "parse_ntu_name",
    "is_ntu60",
    "is_train_sample",
    "class_id",
    "resource_path",
    "load_missing_list",
    "load_zsl_classes",
    "center_on_spine",
    "align_view",
    "valid_length",
    "temporal_resample",
    "ConvertOptions",
    "convert_ntu",
    "ManifestRow",
    "read_manifest",
    "write_manifest",
    "find_samples",
    "build_zsl_manifests",
]

# Official NTU RGB+D 120 action names; index = action id - 1 (A001 = index 0).
NTU120_CLASS_NAMES: tuple[str, ...] = (
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw",
    "sitting down", "standing up (from sitting position)", "clapping", "reading", "writing",
    "tear up paper", "wear jacket", "take off jacket", "wear a shoe", "take off a shoe", "wear on glasses",
    "take off glasses", "put on a hat/cap", "take off a hat/cap", "cheer up", "hand waving",
    "kicking something", "reach into pocket", "hopping (one foot jumping)", "jump up",
    "make a phone call/answer phone", "playing with phone/tablet", "typing on a keyboard",
    "pointing to something with finger", "taking a selfie", "check time (from watch)",
    "rub two hands together", "nod head/bow", "shake head", "wipe face", "salute", "put the palms together",
    "cross hands in front (say stop)", "sneeze/cough", "staggering", "falling", "touch head (headache)",
    "touch chest (stomachache/heart pain)", "touch back (backache)", "touch neck (neckache)",
    "nausea or vomiting condition", "use a fan (with hand or paper)/feeling warm",
    "punching/slapping other person", "kicking other person", "pushing other person",
    "pat on back of other person", "point finger at the other person", "hugging other person",
    "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
    # A061-A120 (NTU120)
    "put on headphone", "take off headphone", "shoot at the basket", "bounce ball", "tennis bat swing",
    "juggling table tennis balls", "hush (quite)", "flick hair", "thumb up", "thumb down", "make ok sign",
    "make victory sign", "staple book", "counting money", "cutting nails", "cutting paper (using scissors)",
    "snapping fingers", "open bottle", "sniff (smell)", "squat down", "toss a coin", "fold paper",
    "ball up paper", "play magic cube", "apply cream on face", "apply cream on hand back", "put on bag",
    "take off bag", "put something into a bag", "take something out of a bag", "open a box",
    "move heavy objects", "shake fist", "throw up cap/hat", "hands up (both hands)", "cross arms",
    "arm circles", "arm swings", "running on the spot", "butt kicks (kick backward)", "cross toe touch",
    "side kick", "yawn", "stretch oneself", "blow nose", "hit other person with something",
    "wield knife towards other person", "knock over other person (hit with body)",
    "grab other person's stuff", "shoot at other person with a gun", "step on foot", "high-five",
    "cheers and drink", "carry something with other person", "take a photo of other person",
    "follow other person", "whisper in other person's ear", "exchange things with other person",
    "support somebody with hand", "finger-guessing game (playing rock-paper-scissors)",
)
NTU60_CLASS_NAMES: tuple[str, ...] = NTU120_CLASS_NAMES[:60]

# Cross-subject training performers (original-system.md §2.2 for NTU60; the NTU120 paper's list extends it).
NTU60_XSUB_TRAIN_SUBJECTS: frozenset[int] = frozenset(
    {1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38}
)
NTU120_XSUB_TRAIN_SUBJECTS: frozenset[int] = NTU60_XSUB_TRAIN_SUBJECTS | frozenset(
    {45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92,
     93, 94, 95, 97, 98, 100, 103}
)
XVIEW_TRAIN_CAMERAS: frozenset[int] = frozenset({2, 3})
BENCHMARKS = ("xsub", "xview", "xset")
# split -> (number of classes of the dataset it belongs to)
ZSL_SPLITS: dict[str, int] = {"55-5": 60, "48-12": 60, "110-10": 120, "96-24": 120}

_NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


@dataclass(frozen=True)
class NtuName:
    setup: int
    camera: int
    performer: int
    replication: int
    action: int  # 1-based, as in the name

    @property
    def label(self) -> int:
        """0-based class index (A001 -> 0)."""
        return self.action - 1


def parse_ntu_name(name: str | Path) -> NtuName:
    """``"S001C002P003R002A013"`` (or a path/file name containing it) -> :class:`NtuName`."""
    m = _NAME_RE.search(Path(str(name)).name)
    if not m:
        raise ValueError(f"{name}: not an NTU sample name (expected SsssCcccPpppRrrrAaaa)")
    return NtuName(*(int(g) for g in m.groups()))


def is_ntu60(n: NtuName) -> bool:
    return n.setup <= 17 and n.action <= 60


def is_train_sample(n: NtuName, benchmark: str) -> bool:
    """Training side of a benchmark: ``xsub`` by performer (NTU60 list for NTU60 samples, NTU120 list
    otherwise; the NTU120 list contains the NTU60 one), ``xview`` cameras 2 and 3, ``xset`` even setups."""
    if benchmark == "xsub":
        subjects = NTU60_XSUB_TRAIN_SUBJECTS if is_ntu60(n) else NTU120_XSUB_TRAIN_SUBJECTS
        return n.performer in subjects
    if benchmark == "xview":
        return n.camera in XVIEW_TRAIN_CAMERAS
    if benchmark == "xset":
        return n.setup % 2 == 0
    raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")


# ----------------------------------------------------------------------------------------------------------
# Class names and packaged resources


def _norm_name(s: str) -> str:
    s = unicodedata.normalize("NFKC", s).replace("\u2019", "'").lower()
    s = s.replace("'s ", "s ").replace("'", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", s).split())


def _name_table() -> dict[str, int]:
    table: dict[str, int] = {}
    short: dict[str, list[int]] = {}
    for i, n in enumerate(NTU120_CLASS_NAMES):
        table[_norm_name(n)] = i
        short.setdefault(_norm_name(re.sub(r"\(.*?\)", "", n)), []).append(i)
    for k, ids in short.items():  # "touch head" for "touch head (headache)" when unambiguous
        if len(ids) == 1:
            table.setdefault(k, ids[0])
    # spellings used by the published zero-shot split files
    aliases = {
        "put something inside pocket / take out something from pocket": 24,
        "touch person's pocket": 56,
        "touch other persons pocket": 56,
    }
    for k, v in aliases.items():
        table[_norm_name(k)] = v
    return table


_NAME_TABLE = _name_table()


def class_id(name: str) -> int:
    """0-based NTU class index of an action name; tolerant to the spellings used in published split files
    (curly apostrophes, missing parentheticals, ``touch person's pocket``)."""
    key = _norm_name(name)
    if key not in _NAME_TABLE:
        raise KeyError(f"unknown NTU action name {name!r}")
    return _NAME_TABLE[key]


def resource_path(name: str):
    """A packaged file under ``ski_lvlm/resources/`` (a ``Traversable`` with ``read_text``).

    Uses ``importlib.resources`` (works from wheels and zips); falls back to the source tree when
    ``ski_lvlm`` is imported as a namespace package (no ``__init__.py``), where Python 3.11's resource
    reader cannot list an editable install's path hook.
    """
    try:
        res = resources.files("ski_lvlm").joinpath("resources")
        for part in name.split("/"):
            res = res.joinpath(part)
        if res.is_file():
            return res
    except (NotADirectoryError, TypeError, ModuleNotFoundError, AttributeError):
        pass
    return Path(__file__).resolve().parent.parent.joinpath("resources", *name.split("/"))


def load_missing_list(path: str | Path | None = None) -> set[str]:
    """Sample names from a missing-skeleton list (one per line); the packaged NTU60 list when ``None``."""
    text = (resource_path("ntu60_samples_with_missing_skeletons.txt").read_text() if path is None
            else Path(path).read_text())
    out = set()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.add(Path(line).name.split(".")[0])
    return out


def load_zsl_classes(split: str) -> tuple[list[str], list[str]]:
    """Base and novel class names (CSV order = label ids) of a packaged zero-shot split."""
    if split not in ZSL_SPLITS:
        raise ValueError(f"split must be one of {list(ZSL_SPLITS)}, got {split!r}")
    out = []
    for part in ("base", "novel"):
        res = resource_path(f"ntu_zsl/zsl_{split}_{part}_class_labels.csv")
        rows = list(csv.DictReader(res.read_text(encoding="utf-8").splitlines()))
        if [int(r["id"]) for r in rows] != list(range(len(rows))):
            raise ValueError(f"{res}: ids must be 0..K-1 in order")
        out.append([r["name"] for r in rows])
    return out[0], out[1]


# ----------------------------------------------------------------------------------------------------------
# Normalisation and temporal sampling (all on one sample, xyz float32 [3, T, 25, M])


def _first_valid_frame(x: np.ndarray, body: int = 0) -> int | None:
    present = np.flatnonzero(np.any(x[..., body] != 0, axis=(0, 2)))  # frames where the body exists
    return int(present[0]) if len(present) else None


def center_on_spine(x: np.ndarray, mode: str = "first_frame", joint: int = SPINE_MID) -> np.ndarray:
    """Translate a sample so the spine joint sits at the origin; absent bodies/frames stay zero.

    * ``first_frame`` (CTR-GCN ``seq_translation``): subtract the spine of body 0 in its first frame
      from every joint of every frame, so the motion through space is kept.
    * ``per_frame`` (Hyperformer feeder style): subtract, in each frame, that frame's body-0 spine.
    """
    x = np.array(x, dtype=np.float32, copy=True)
    mask = np.any(x != 0, axis=(0, 2), keepdims=True)  # [1, T, 1, M] body present
    if mode == "first_frame":
        t0 = _first_valid_frame(x)
        if t0 is None:
            return x
        origin = x[:, t0, joint, 0][:, None, None, None]  # [3, 1, 1, 1]
    elif mode == "per_frame":
        origin = x[:, :, joint : joint + 1, 0:1]  # [3, T, 1, 1]; zero where body 0 is absent
    else:
        raise ValueError(f"mode must be 'first_frame' or 'per_frame', got {mode!r}")
    return (x - origin) * mask


def align_view(x: np.ndarray) -> np.ndarray:
    """Rotate a sample so body 0 faces the camera in its first frame.

    The new axes come from that frame: y = spine base -> spine shoulder (up), x = right shoulder -> left
    shoulder made orthogonal to y, z = x cross y. The rotation is about body 0's spine-mid joint in that
    frame, so it composes with :func:`center_on_spine` in either order. Absent joints stay zero.
    """
    x = np.asarray(x, dtype=np.float32)
    t0 = _first_valid_frame(x)
    if t0 is None:
        return x.copy()
    f = x[:, t0, :, 0].astype(np.float64)  # [3, 25]
    up = f[:, 20] - f[:, 0]  # spine_shoulder - spine_base
    side = f[:, 4] - f[:, 8]  # shoulder_left - shoulder_right
    if np.linalg.norm(up) < 1e-6:
        return x.copy()
    ey = up / np.linalg.norm(up)
    side = side - side.dot(ey) * ey
    if np.linalg.norm(side) < 1e-6:
        return x.copy()
    ex = side / np.linalg.norm(side)
    ez = np.cross(ex, ey)
    rot = np.stack([ex, ey, ez])  # [3, 3] rows = new axes
    origin = f[:, SPINE_MID][:, None, None, None]
    mask = np.any(x != 0, axis=(0, 2), keepdims=True)
    y = np.einsum("ij,jtvm->itvm", rot, x - origin) + origin
    return (y * mask).astype(np.float32)


def valid_length(x: np.ndarray) -> int:
    """Frames up to and including the last frame in which any body is present."""
    present = np.flatnonzero(np.any(x != 0, axis=(0, 2, 3)))
    return int(present[-1]) + 1 if len(present) else 0


SAMPLINGS = ("uniform", "random_crop", "pad300")


def temporal_resample(
    x: np.ndarray,
    frames: int,
    sampling: str = "uniform",
    rng: np.random.Generator | None = None,
    crop_range: tuple[float, float] = (0.5, 1.0),
) -> np.ndarray:
    """Bring a sample ``[3, T, 25, M]`` to exactly ``frames`` frames.

    * ``uniform``: ``frames`` evenly spaced frames over the valid length (first to last frame with a body);
      a shorter sequence repeats frames evenly (same rule as the video sampler).
    * ``random_crop``: a random window covering ``crop_range`` of the valid length (Hyperformer's
      ``p_interval``), then evenly spaced frames inside it (training augmentation; needs ``rng`` for
      reproducibility).
    * ``pad300``: the original CTR-GCN/SKI behaviour: keep frames from the start and zero-pad to
      ``frames`` (300 in the original); longer sequences are cut at ``frames``.
    """
    if frames <= 0:
        raise ValueError(f"frames must be > 0, got {frames}")
    c, t, v, m = x.shape
    if sampling == "pad300":
        out = np.zeros((c, frames, v, m), np.float32)
        out[:, : min(t, frames)] = x[:, :frames]
        return out
    n = valid_length(x)
    if n == 0:
        return np.zeros((c, frames, v, m), np.float32)
    if sampling == "uniform":
        idx = sample_indices(n, frames, "uniform")
    elif sampling == "random_crop":
        rng = np.random.default_rng() if rng is None else rng
        lo, hi = crop_range
        length = int(np.clip(round(n * rng.uniform(lo, hi)), 1, n))
        start = int(rng.integers(0, n - length + 1))
        idx = start + sample_indices(length, frames, "uniform")
    else:
        raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
    return np.ascontiguousarray(x[:, idx], dtype=np.float32)


# ----------------------------------------------------------------------------------------------------------
# Conversion


@dataclass(frozen=True)
class ConvertOptions:
    benchmark: str = "xsub"
    frames: int = 300
    sampling: str = "pad300"
    center_spine: bool = False
    align_view: bool = False
    max_bodies: int = 2
    seed: int = 0  # random_crop: each file gets its own generator from (seed, name)

    def key(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def _process_one(path: str, opts: ConvertOptions) -> tuple[np.ndarray, bool]:
    """One file -> (x [3, frames, 25, M], truncated?)."""
    x = read_ntu_skeleton(path, max_bodies=opts.max_bodies)
    if opts.center_spine:
        x = center_on_spine(x)
    if opts.align_view:
        x = align_view(x)
    name = Path(path).name.split(".")[0]
    rng = None
    if opts.sampling == "random_crop":
        seed = int.from_bytes(hashlib.sha256(f"{opts.seed}:{name}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(seed)
    cut = opts.sampling == "pad300" and x.shape[1] > opts.frames
    return temporal_resample(x, opts.frames, opts.sampling, rng), cut


def _convert_chunk(job: tuple[int, list[str], ConvertOptions, str, bool]) -> dict:
    """Worker: convert one chunk of files and write ``parts/chunk_XXXXX.npz`` atomically."""
    k, paths, opts, parts_dir, skip_bad = job
    xs, names, bad, cut = [], [], [], 0
    for p in paths:
        try:
            x, was_cut = _process_one(p, opts)
        except (SkeletonFormatError, OSError) as e:
            if not skip_bad:
                raise
            bad.append((p, str(e)))
            continue
        xs.append(x)
        names.append(Path(p).name.split(".")[0])
        cut += was_cut
    shape = (0, 3, opts.frames, 25, opts.max_bodies)
    arr = np.stack(xs) if xs else np.zeros(shape, np.float32)
    final = Path(parts_dir) / f"chunk_{k:05d}.npz"
    tmp = final.with_name(f".{final.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, x=arr, names=np.array(names, dtype="U32"),
             bad=np.array([json.dumps(b) for b in bad], dtype=str),
             cut=np.array(cut))
    os.replace(tmp, final)
    return {"chunk": k, "files": len(paths)}


def convert_ntu(
    files: Sequence[str | Path],
    out: str | Path,
    opts: ConvertOptions,
    *,
    workers: int = 1,
    chunk_size: int = 64,
    skip_bad: bool = False,
    keep_parts: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Convert ``.skeleton`` files to one npz at ``out``; resumable through ``<out>.parts/``.

    The (sorted) file list is cut into chunks; each finished chunk is saved in the sidecar folder, and a
    rerun with the same files and options only converts the missing chunks. Options or file lists that
    differ from the cached run make the stale cache be discarded.

    ``progress(n)`` is called with the number of files finished so far (cached chunks count at once).
    Returns a summary dict (counts, files/s, bad files, truncated count).

    Raises:
        SkeletonFormatError: a malformed file when ``skip_bad`` is False.
    """
    import multiprocessing as mp

    out = Path(out)
    files = sorted(str(f) for f in files)
    parts = out.with_name(out.name + ".parts")
    manifest = {"options": opts.key(), "chunk_size": chunk_size,
                "files": hashlib.sha256("\n".join(files).encode()).hexdigest()}
    mf = parts / "cache.json"
    if parts.exists():
        try:
            old = json.loads(mf.read_text())
        except (OSError, ValueError):
            old = None
        if old != manifest:
            import shutil

            shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    mf.write_text(json.dumps(manifest))

    chunks = [files[i : i + chunk_size] for i in range(0, len(files), chunk_size)]
    todo = [k for k in range(len(chunks)) if not (parts / f"chunk_{k:05d}.npz").exists()]
    done_files = sum(len(chunks[k]) for k in range(len(chunks)) if k not in set(todo))
    if progress:
        progress(done_files)
    t0 = time.perf_counter()
    jobs = [(k, chunks[k], opts, str(parts), skip_bad) for k in todo]
    new_files = 0
    if workers <= 1 or len(jobs) <= 1:
        for j in jobs:
            r = _convert_chunk(j)
            new_files += r["files"]
            if progress:
                progress(done_files + new_files)
    else:
        # a process pool that reports a dead worker (OOM kill, segfault) instead of waiting forever
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context()) as ex:
            futures = [ex.submit(_convert_chunk, j) for j in jobs]
            try:
                for fut in as_completed(futures):
                    r = fut.result()
                    new_files += r["files"]
                    if progress:
                        progress(done_files + new_files)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    elapsed = time.perf_counter() - t0

    # assemble: count first, then fill preallocated arrays (peak memory = the output arrays)
    names_all, bad, cut = [], [], 0
    for k in range(len(chunks)):
        with np.load(parts / f"chunk_{k:05d}.npz") as z:
            names_all.extend(z["names"].tolist())
            bad.extend(json.loads(b) for b in z["bad"].tolist())
            cut += int(z["cut"])
    parsed = [parse_ntu_name(n) for n in names_all]
    train_mask = np.array([is_train_sample(p, opts.benchmark) for p in parsed], bool)
    shape = (3, opts.frames, 25, opts.max_bodies)
    x_train = np.zeros((int(train_mask.sum()),) + shape, np.float32)
    x_test = np.zeros((int((~train_mask).sum()),) + shape, np.float32)
    pos_train = np.cumsum(train_mask) - 1
    pos_test = np.cumsum(~train_mask) - 1
    i = 0
    for k in range(len(chunks)):
        with np.load(parts / f"chunk_{k:05d}.npz") as z:
            xs = z["x"]
        for row in xs:
            if train_mask[i]:
                x_train[pos_train[i]] = row
            else:
                x_test[pos_test[i]] = row
            i += 1
    names_arr = np.array(names_all, dtype="U32")
    labels = np.array([p.label for p in parsed], np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        x_train=x_train, y_train=labels[train_mask], files_train=names_arr[train_mask],
        x_test=x_test, y_test=labels[~train_mask], files_test=names_arr[~train_mask],
    )
    os.replace(tmp, out)
    if not keep_parts:
        import shutil

        shutil.rmtree(parts, ignore_errors=True)
    return {
        "files": len(files),
        "converted_now": new_files,
        "from_cache": done_files,
        "train": int(train_mask.sum()),
        "test": int((~train_mask).sum()),
        "bad": bad,
        "truncated_to_frames": cut,
        "seconds": elapsed,
        "files_per_s": new_files / elapsed if elapsed > 0 and new_files else 0.0,
    }


# ----------------------------------------------------------------------------------------------------------
# Manifests (video_path,skeleton_path,label) and zero-shot splits

MANIFEST_HEADER = ("video_path", "skeleton_path", "label")


@dataclass(frozen=True)
class ManifestRow:
    video_path: Path
    skeleton_path: Path | None
    label: int


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """Read a ``video_path,skeleton_path,label`` CSV; relative paths resolve against the CSV's folder.

    An empty ``skeleton_path`` gives ``None``. Errors name the file and the 1-based line.
    """
    path = Path(path)
    base = path.resolve().parent  # absolute, like ski_lvlm.data.manifest.ManifestDataset
    rows: list[ManifestRow] = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header[:3]) != MANIFEST_HEADER:
            raise ValueError(f"{path}:1: expected the header {','.join(MANIFEST_HEADER)}, got {header}")
        for row in reader:
            line = reader.line_num
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) < 3:
                raise ValueError(f"{path}:{line}: expected 3 fields, got {len(row)}")
            try:
                label = int(row[2])
            except ValueError:
                raise ValueError(f"{path}:{line}: label {row[2]!r} is not an integer") from None
            vp = Path(row[0])
            sp = Path(row[1]) if row[1].strip() else None
            rows.append(ManifestRow(
                video_path=vp if vp.is_absolute() else Path(os.path.normpath(base / vp)),
                skeleton_path=None if sp is None else (sp if sp.is_absolute() else Path(os.path.normpath(base / sp))),
                label=label,
            ))
    return rows


def write_manifest(path: str | Path, rows: Iterable[tuple[str | Path, str | Path | None, int]]) -> int:
    """Write a manifest with paths relative to the CSV's folder (portable when the folder moves together).

    Returns the number of rows written. Written atomically.
    """
    from ski_lvlm.utils.io import atomic_write_text
    import io

    path = Path(path)
    base = path.parent.resolve()
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(MANIFEST_HEADER)
    n = 0
    for v, s, label in rows:
        rel_v = os.path.relpath(Path(v).resolve(), base)
        rel_s = "" if s is None else os.path.relpath(Path(s).resolve(), base)
        w.writerow([rel_v, rel_s, int(label)])
        n += 1
    atomic_write_text(path, buf.getvalue())
    return n


VIDEO_EXTS = (".avi", ".mp4", ".mkv", ".webm", ".mov")


def find_samples(folder: str | Path, exts: Sequence[str]) -> dict[str, Path]:
    """Map NTU sample name -> file for every file under ``folder`` (recursive) with one of ``exts``.

    Understands the NTU video naming ``S001C001P001R001A001_rgb.avi`` as well as ``<name>.<ext>``.
    """
    out: dict[str, Path] = {}
    for root, _, names in os.walk(folder):
        for fn in names:
            if not fn.lower().endswith(tuple(exts)):
                continue
            m = _NAME_RE.search(fn)
            if m:
                out.setdefault(m.group(0), Path(root) / fn)
    return out


def build_zsl_manifests(
    split: str,
    videos: str | Path,
    skeletons: str | Path | None,
    out: str | Path,
    benchmark: str = "xsub",
    missing: set[str] | None = None,
) -> dict:
    """Write the zero-shot manifests of ``split`` into ``out`` (file names as in a synthetic world)::

        zsl_base_classes.csv, zsl_novel_classes.csv   id,name (copied from the packaged split)
        zsl_base_train.csv    base classes, training side of ``benchmark``; label = base id
        zsl_base_val.csv      base classes, test side of ``benchmark``
        zsl_novel_test.csv    every sample of a novel class; label = novel id

    NTU60 splits (55-5, 48-12) use setups 1-17 only. Samples without a video, or (when ``skeletons`` is
    given) without a skeleton or listed in ``missing``, are left out and counted.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {BENCHMARKS}, got {benchmark!r}")
    base_names, novel_names = load_zsl_classes(split)
    base_ids = {class_id(n): i for i, n in enumerate(base_names)}
    novel_ids = {class_id(n): i for i, n in enumerate(novel_names)}
    n_classes = ZSL_SPLITS[split]
    if set(base_ids) & set(novel_ids):
        raise ValueError(f"split {split}: base and novel classes overlap")
    vids = find_samples(videos, VIDEO_EXTS)
    skels = find_samples(skeletons, (".skeleton",)) if skeletons is not None else {}
    missing = missing or set()
    rows = {"train": [], "val": [], "novel": []}
    counts = {"videos_found": len(vids), "no_skeleton": 0, "missing_skeleton_list": 0, "other_dataset": 0}
    for name in sorted(vids):
        n = parse_ntu_name(name)
        if n_classes == 60 and not is_ntu60(n):
            counts["other_dataset"] += 1
            continue
        label0 = n.label
        skel = None
        if skeletons is not None:
            if name in missing:
                counts["missing_skeleton_list"] += 1
                continue
            skel = skels.get(name)
            if skel is None:
                counts["no_skeleton"] += 1
                continue
        if label0 in novel_ids:
            rows["novel"].append((vids[name], skel, novel_ids[label0]))
        elif label0 in base_ids:
            side = "train" if is_train_sample(n, benchmark) else "val"
            rows[side].append((vids[name], skel, base_ids[label0]))
        else:
            counts["other_dataset"] += 1
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from ski_lvlm.utils.io import atomic_write_text

    for fname, names in (("zsl_base_classes.csv", base_names), ("zsl_novel_classes.csv", novel_names)):
        buf = ["id,name"] + [f"{i},{_csv_field(nm)}" for i, nm in enumerate(names)]
        atomic_write_text(out / fname, "\n".join(buf) + "\n")
    counts["base_train"] = write_manifest(out / "zsl_base_train.csv", rows["train"])
    counts["base_val"] = write_manifest(out / "zsl_base_val.csv", rows["val"])
    counts["novel_test"] = write_manifest(out / "zsl_novel_test.csv", rows["novel"])
    return counts


def _csv_field(s: str) -> str:
    import io

    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([s])
    return buf.getvalue()
