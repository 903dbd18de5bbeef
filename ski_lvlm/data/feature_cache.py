"""Precomputed video/skeleton features: safetensors shards + a manifest that says what made them.

Layout of a cache folder::

    cache.json                 format, identity (encoders + weight hashes + sampling + dtype), shards, items
    shard-00000.safetensors    tensors "<sample_id>/video" [max_frames + n_patch, width] and, when the item
    shard-00001.safetensors    has a skeleton, "<sample_id>/skeleton" [T', width_s]; <= shard_size items each

* **Identity.** ``cache.json["identity"]`` records each encoder's config and the sha256 of its weights
  (:func:`ski_lvlm.models.encoders.state_dict_sha256`), the sampling settings and the storage dtype. A cache made by other weights
  or other settings is *stale*: :meth:`FeatureCache.check_compatible` and :class:`FeatureCacheWriter`
  refuse it with :class:`StaleCacheError` listing every differing key, instead of silently feeding a
  model features it was not trained with.
* **Resumable.** A shard is written atomically and only then listed in ``cache.json`` (also atomic), so
  after a kill every listed shard is complete; a restarted run skips their items and recomputes at most
  one shard's worth of work.
* **Lazy.** :class:`FeatureCache` keeps only a sorted array of 64-bit id hashes and shard numbers in
  memory and reads single tensors with ``safetensors.safe_open`` (memory-mapped), so a DataLoader worker
  holding a 100k-clip cache costs about 12 bytes per clip; pickling it sends only the folder path.

Features come from the encoders in :mod:`ski_lvlm.models.encoders`. Video features follow Video-ChatGPT
(original-system.md §5.3): ``min(total, frames)`` frames at the middle of equal segments, resized to the tower's square input (aspect ratio not kept), CLIP-normalised,
patch tokens of the penultimate block, then :func:`ski_lvlm.models.pooling.spatio_temporal_pool`
(``max_frames`` temporal rows, zero-padded, + ``n_patch`` spatial rows). Skeleton features are the
SkeletonCLIP encoder's per-step features ``[T', width]`` of the skeleton prepared as in training
(padded or resized to ``skeleton_frames`` frames, optionally centred).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ski_lvlm.models.encoders import SkeletonFeatureEncoder, VideoFeatureEncoder
from ski_lvlm.utils.io import atomic_write_bytes, atomic_write_json
from ski_lvlm.utils.errors import SkiLvlmError

__all__ = ["CACHE_FORMAT", "MANIFEST_NAME", "DESCRIPTIVE_KEYS", "essential_identity", "StaleCacheError", "FeatureCache",
           "FeatureCacheWriter", "identity_diff", "FeatureItem", "BadItemError", "cache_identity", "extract_features"]

CACHE_FORMAT = "ski-lvlm-feature-cache/1"
MANIFEST_NAME = "cache.json"


class StaleCacheError(SkiLvlmError, ValueError):
    """The cache was made by a different encoder or different settings than the ones asked for."""


def identity_diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two identity dicts differ, with both values (``a`` = cache, ``b`` = requested)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in a:
                out.append(f"{key}: not in cache, requested {b[k]!r}")
            elif k not in b:
                out.append(f"{key}: cache has {a[k]!r}, not requested")
            else:
                out += identity_diff(a[k], b[k], key)
        return out
    return [] if a == b else [f"{prefix}: cache has {a!r}, requested {b!r}"]


# Informational identity fields: how the weights were obtained. Compatibility is decided by the weights
# hash (which covers the architecture: parameter names and shapes) and the sampling/storage settings, so the
# same weights loaded as `clip:ViT-L-14:openai` or from a trained folder are the same encoder.
DESCRIPTIVE_KEYS = ("kind", "arch", "pretrained", "seed", "model_config", "preset")


def essential_identity(identity: dict) -> dict:
    """``identity`` without the informational fields (:data:`DESCRIPTIVE_KEYS`) of each encoder."""
    return {k: ({kk: vv for kk, vv in v.items() if kk not in DESCRIPTIVE_KEYS} if isinstance(v, dict) else v)
            for k, v in identity.items()}


def _id_hash(sample_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(sample_id.encode("utf-8"), digest_size=8).digest(), "little")


def _read_manifest(path: Path) -> dict:
    mpath = path / MANIFEST_NAME
    if not mpath.is_file():
        raise FileNotFoundError(f"{path}: not a feature cache (no {MANIFEST_NAME}); make one with `ski-lvlm data features`")
    try:
        data = json.loads(mpath.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{mpath}: broken JSON: {e}") from None
    if data.get("format") != CACHE_FORMAT:
        raise ValueError(f"{mpath}: unknown cache format {data.get('format')!r} (expected {CACHE_FORMAT})")
    return data


def _stale_message(path: Path, diffs: list[str]) -> str:
    head = f"{path}: feature cache is stale, it was made with different settings ({len(diffs)} difference(s)):"
    return "\n  ".join([head] + diffs[:20]) + ("\n  ..." if len(diffs) > 20 else "") + \
        "\n  Recompute it into a new folder (or delete this one) with `ski-lvlm data features`."


# ---------------------------------------------------------------------------------------------------
# Reading

class FeatureCache:
    """Read-only, lazily indexed view of a cache folder.

    ``get(sample_id)`` returns ``{"video": Tensor, "skeleton": Tensor}`` (only the features the item has).
    """

    def __init__(self, path: str | Path, max_open_shards: int = 8):
        self.path = Path(path)
        manifest = _read_manifest(self.path)
        self.identity: dict = manifest["identity"]
        self.complete: bool = bool(manifest.get("complete", False))
        self.max_open_shards = max_open_shards
        self._hashes: np.ndarray | None = None  # sorted uint64
        self._shard_of: np.ndarray | None = None  # int32, aligned with _hashes
        self._files: list[str] | None = None
        self._handles: dict[int, tuple[Any, frozenset[str]]] = {}

    # -- index (built on first use, also in each DataLoader worker) --
    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        if self._hashes is None:
            shards = _read_manifest(self.path)["shards"]
            hashes, owner = [], []
            for k, s in enumerate(shards):
                hashes += [_id_hash(i) for i in s["ids"]]
                owner += [k] * len(s["ids"])
            h = np.asarray(hashes, dtype=np.uint64)
            order = np.argsort(h, kind="stable")
            h, o = h[order], np.asarray(owner, dtype=np.int32)[order]
            if len(h) > 1 and bool((h[1:] == h[:-1]).any()):
                raise ValueError(f"{self.path}: duplicate sample ids (or a 64-bit hash collision) in {MANIFEST_NAME}")
            self._files = [s["file"] for s in shards]
            self._hashes, self._shard_of = h, o
        return self._hashes, self._shard_of

    def _find(self, sample_id: str) -> int | None:
        h, o = self._index()
        key = np.uint64(_id_hash(sample_id))
        pos = int(np.searchsorted(h, key))
        return int(o[pos]) if pos < len(h) and h[pos] == key else None

    def _handle(self, shard: int) -> tuple[Any, frozenset[str]]:
        from safetensors import safe_open

        if shard not in self._handles:
            if len(self._handles) >= self.max_open_shards:
                self._handles.pop(next(iter(self._handles)))
            f = safe_open(str(self.path / self._files[shard]), framework="pt", device="cpu")
            self._handles[shard] = (f, frozenset(f.keys()))
        return self._handles[shard]

    def __contains__(self, sample_id: object) -> bool:
        return isinstance(sample_id, str) and self._find(sample_id) is not None

    def __len__(self) -> int:
        return len(self._index()[0])

    def ids(self) -> Iterator[str]:
        """Sample ids in shard order (read from the manifest on each call; not kept in memory)."""
        for s in _read_manifest(self.path)["shards"]:
            yield from s["ids"]

    def get(self, sample_id: str) -> dict[str, torch.Tensor]:
        """Features of one sample; KeyError naming the id and the cache when it is not there."""
        shard = self._find(sample_id)
        if shard is None:
            raise KeyError(f"{sample_id!r} is not in the feature cache {self.path}")
        f, keys = self._handle(shard)
        out = {}
        for name in ("video", "skeleton"):
            key = f"{sample_id}/{name}"
            if key in keys:
                out[name] = f.get_tensor(key)
        if not out:  # a hash hit on another id: cannot happen unless the manifest and shard disagree
            raise KeyError(f"{sample_id!r}: listed in {self.path / MANIFEST_NAME} but not in {self._files[shard]}")
        return out

    def __getitem__(self, sample_id: str) -> dict[str, torch.Tensor]:
        return self.get(sample_id)

    def check_compatible(self, identity: dict, *, ignore: tuple[str, ...] = ()) -> None:
        """Raise :class:`StaleCacheError` unless the cache can serve a model that expects ``identity``.

        Compared: each encoder's weights hash and sampling settings, and the dtype (informational fields
        such as ``arch``/``pretrained`` are not; see :data:`DESCRIPTIVE_KEYS`). A request without a
        skeleton encoder (``identity["skeleton"] is None``) accepts a cache that also holds skeleton
        features. Dotted keys starting with an entry of ``ignore`` (e.g. ``"dtype"``) are skipped.
        """
        have, want = essential_identity(self.identity), essential_identity(identity)
        if want.get("skeleton") is None:
            have["skeleton"] = None
        diffs = [d for d in identity_diff(have, want) if not d.split(":")[0].startswith(tuple(ignore))]
        if diffs:
            raise StaleCacheError(_stale_message(self.path, diffs))

    def __getstate__(self) -> dict:
        # Only the folder travels to DataLoader workers; each rebuilds its small index on first use.
        return {"path": self.path, "identity": self.identity, "complete": self.complete,
                "max_open_shards": self.max_open_shards}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._hashes = self._shard_of = self._files = None
        self._handles = {}

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.path)!r})"


# ---------------------------------------------------------------------------------------------------
# Writing

class FeatureCacheWriter:
    """Append items to a cache folder shard by shard; resumes an existing folder with the same identity.

    Args:
        path: the cache folder (created when missing).
        identity: what made the features (see module docstring); compared with an existing cache.
        shard_size: items per shard file.
        dtype: storage dtype of the tensors (fp16 halves the disk size, as in Video-ChatGPT's pickles).
    """

    def __init__(self, path: str | Path, identity: dict, shard_size: int = 256, dtype: torch.dtype = torch.float16):
        if shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self.path, self.identity, self.shard_size, self.dtype = Path(path), identity, shard_size, dtype
        if (self.path / MANIFEST_NAME).is_file():
            manifest = _read_manifest(self.path)
            diffs = identity_diff(essential_identity(manifest["identity"]), essential_identity(identity))
            if diffs:
                raise StaleCacheError(_stale_message(self.path, diffs))
            self.manifest = manifest
            self.manifest["complete"] = False
        else:
            if self.path.exists() and any(self.path.iterdir()):
                raise FileExistsError(f"{self.path}: folder exists, is not empty and holds no {MANIFEST_NAME}")
            self.path.mkdir(parents=True, exist_ok=True)
            self.manifest = {"format": CACHE_FORMAT, "identity": identity, "shard_size": shard_size,
                             "complete": False, "shards": [], "num_items": 0, "bad": []}
            self._save_manifest()
        self.done: set[str] = {i for s in self.manifest["shards"] for i in s["ids"]}
        self._buffer: dict[str, dict[str, torch.Tensor]] = {}

    def _save_manifest(self) -> None:
        self.manifest["num_items"] = sum(len(s["ids"]) for s in self.manifest["shards"])
        atomic_write_json(self.path / MANIFEST_NAME, self.manifest, indent=1)

    def add(self, sample_id: str, features: dict[str, torch.Tensor]) -> None:
        """Buffer one item's features (names ``video``/``skeleton``); writes a shard when the buffer is full."""
        if sample_id in self.done or sample_id in self._buffer:
            raise ValueError(f"{sample_id!r} is already in the cache {self.path}")
        bad = set(features) - {"video", "skeleton"}
        if bad or not features:
            raise ValueError(f"{sample_id}: feature names must be 'video' and/or 'skeleton', got {sorted(features)}")
        self._buffer[sample_id] = {k: v.detach().to("cpu", self.dtype).contiguous() for k, v in features.items()}
        if len(self._buffer) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered items as one shard (atomically), then list it in the manifest."""
        if not self._buffer:
            return
        from safetensors.torch import save as st_save

        k = len(self.manifest["shards"])
        name = f"shard-{k:05d}.safetensors"
        tensors = {f"{i}/{n}": t for i, feats in self._buffer.items() for n, t in feats.items()}
        atomic_write_bytes(self.path / name, st_save(tensors, metadata={"format": "pt"}))
        self.manifest["shards"].append({"file": name, "ids": list(self._buffer)})
        self.done.update(self._buffer)
        self._buffer = {}
        self._save_manifest()

    def finish(self, items: list[str] | None = None, bad: list[dict] | None = None, extra: dict | None = None) -> None:
        """Flush, record the requested item list / bad items / extra info, and mark the cache complete."""
        self.flush()
        if items is not None:
            self.manifest["items"] = list(items)
        self.manifest["bad"] = list(bad or [])
        if extra:
            self.manifest.update(extra)
        self.manifest["complete"] = True
        self._save_manifest()


# ---------------------------------------------------------------------------------------------------
# Extraction loop

@dataclass(frozen=True)
class FeatureItem:
    """One sample to encode: its cache id and (absolute) file paths."""

    id: str
    video: str | None
    skeleton: str | None = None


class BadItemError(SkiLvlmError, RuntimeError):
    """An item whose video or skeleton could not be read; names the item and the file."""

    def __init__(self, item: FeatureItem, error: BaseException):
        self.item, self.error = item, error
        super().__init__(f"item {item.id!r}: {type(error).__name__}: {error}")


def _cache_identity(video: VideoFeatureEncoder, skeleton: SkeletonFeatureEncoder | None, dtype: torch.dtype) -> dict:
    return {"video": video.identity(), "skeleton": skeleton.identity() if skeleton else None,
            "dtype": str(dtype).replace("torch.", "")}


def cache_identity(video: VideoFeatureEncoder, skeleton: SkeletonFeatureEncoder | None = None,
                   dtype: torch.dtype = torch.float16) -> dict:
    """The identity a cache made by these encoders records (compare with :meth:`FeatureCache.check_compatible`)."""
    return _cache_identity(video, skeleton, dtype)


def extract_features(items: list[FeatureItem], out: str | Path, video: VideoFeatureEncoder,
                     skeleton: SkeletonFeatureEncoder | None = None, *, batch_size: int = 8, shard_size: int = 256,
                     dtype: torch.dtype = torch.float16, workers: int = 2, skip_bad: bool = False,
                     timeout: float | None = 60.0, progress: bool = True) -> dict:
    """Encode ``items`` into the cache folder ``out`` (created, or resumed when its identity matches).

    Decoding runs in ``workers`` threads ahead of the encoder (at most ``2 * batch_size`` items in
    flight, so memory stays bounded); every ``batch_size`` items go through the towers together.

    Returns:
        a summary: ``requested``, ``already_done``, ``encoded``, ``bad`` (list of ``{id, path, error}``),
        ``missing_skeleton`` (ids whose skeleton file does not exist: cached with video features only),
        ``seconds``, ``videos_per_s``.

    Raises:
        StaleCacheError: ``out`` holds a cache made by other encoders/settings.
        BadItemError: an unreadable item when ``skip_bad`` is False (items encoded so far are kept).
    """
    import time
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise ValueError(f"duplicate sample ids: {dup} (ids are video file stems; rename the files)")
    writer = FeatureCacheWriter(out, _cache_identity(video, skeleton, dtype), shard_size=shard_size, dtype=dtype)
    todo = [it for it in items if it.id not in writer.done]
    bad: list[dict] = []
    no_skeleton: list[str] = []  # appended from loader threads (list.append is atomic)
    load = functools.partial(_load_item, video=video, skeleton=skeleton, timeout=timeout, no_skeleton=no_skeleton)

    start = time.perf_counter()
    encoded = 0
    bar = tqdm(total=len(todo), desc="features", unit="video", disable=not progress, dynamic_ncols=True)
    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:
            batch: list = []
            for it, v, s, where in _prefetched(pool, load, todo, depth=2 * batch_size):
                if v is None:
                    if not skip_bad:
                        encoded += _encode_batch(batch, video, skeleton, writer)  # keep the good items before it
                        raise BadItemError(it, s)
                    bad.append({"id": it.id, "path": str(where), "error": f"{type(s).__name__}: {s}"})
                    bar.update(1)
                    continue
                batch.append((it, v, s))
                if len(batch) >= batch_size:
                    encoded += _encode_batch(batch, video, skeleton, writer)
                    bar.update(len(batch))
                    batch = []
            if batch:
                encoded += _encode_batch(batch, video, skeleton, writer)
                bar.update(len(batch))
    except (BadItemError, KeyboardInterrupt):
        writer.flush()  # keep what is finished; a rerun resumes after it
        raise
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    summary = {"requested": len(items), "already_done": len(items) - len(todo), "encoded": encoded, "bad": bad,
               "missing_skeleton": sorted(no_skeleton),
               "seconds": round(seconds, 3), "videos_per_s": round(encoded / seconds, 3) if seconds > 0 else None}
    writer.finish(items=ids, bad=bad, extra={"last_run": {k: v for k, v in summary.items() if k != "bad"}})
    return summary


def _load_item(it: FeatureItem, *, video: VideoFeatureEncoder, skeleton: SkeletonFeatureEncoder | None,
               timeout: float | None, no_skeleton: list[str]) -> tuple[FeatureItem, Any, Any, str | None]:
    """Decode one item (in a loader thread) -> (item, video, skeleton, None), or (item, None, error, path of
    the file that failed): errors are returned, not raised, so that the caller decides per item."""
    where = it.video
    try:
        if not it.video:
            raise FileNotFoundError("no video path")
        v = video.load(it.video, timeout=timeout)
        where = it.skeleton
        s = None
        if skeleton is not None and it.skeleton:
            if Path(it.skeleton).exists():
                s = skeleton.load(it.skeleton)  # a corrupt file is still a bad item
            else:
                # No skeleton for this sample: cache its video features only ("no skeleton tokens"
                # downstream), never zeros and never a dropped item.
                no_skeleton.append(it.id)
        return it, v, s, None
    except Exception as e:  # noqa: BLE001 - reported per item by the caller
        return it, None, e, where


def _prefetched(pool: Any, fn: Any, items: list, depth: int) -> Iterator:
    """``fn(item)`` for each item in order, computed in ``pool`` with at most ``depth`` calls in flight (the
    decoded videos waiting for the encoder bound the memory)."""
    pending: deque = deque()
    rest = iter(items)

    def refill() -> None:
        while len(pending) < depth:
            nxt = next(rest, None)
            if nxt is None:
                return
            pending.append(pool.submit(fn, nxt))

    refill()
    while pending:
        result = pending.popleft().result()
        refill()
        yield result


def _encode_batch(batch: list[tuple[FeatureItem, torch.Tensor, torch.Tensor | None]], video: VideoFeatureEncoder,
                  skeleton: SkeletonFeatureEncoder | None, writer: FeatureCacheWriter) -> int:
    """Encode a batch through the towers together (skeletons only for the items that have one) and add the
    features to ``writer``; returns the number of items encoded."""
    if not batch:
        return 0
    vfeats = video.encode([v for _, v, _ in batch])
    with_skel = [k for k, (_, _, s) in enumerate(batch) if s is not None]
    sfeats = dict(zip(with_skel, skeleton.encode([batch[k][2] for k in with_skel]))) if with_skel else {}
    for k, (it, _, _) in enumerate(batch):
        feats = {"video": vfeats[k]}
        if k in sfeats:
            feats["skeleton"] = sfeats[k]
        writer.add(it.id, feats)
    return len(batch)
