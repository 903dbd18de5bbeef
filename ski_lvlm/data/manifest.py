"""Lazy map-style datasets over sample manifests, instruction JSON and feature caches.

Why lazy: a DataLoader with N workers on G GPUs holds N*G copies of its dataset object. Loading a
100k-row manifest or a 100 MB instruction JSON into Python objects in each copy costs gigabytes, and the
original SKI code went further and loaded the whole skeleton npz per rank. These datasets keep only the
file path and an int64 array of byte offsets (8 bytes per sample), read one row or record from disk in
``__getitem__``, and pickle to a few kilobytes plus that array.

* :class:`ManifestDataset` - ``video_path,skeleton_path,label`` CSVs (extra columns allowed); items are
  :class:`ManifestRecord` (absolute paths) or whatever ``transform(record)`` returns.
* :class:`InstructionDataset` - LLaVA instruction JSON (a JSON array or JSON Lines); items are the
  records plus ``video_path``/``skeleton_path`` resolved against the JSON's folder and ``key``.
* :class:`CachedInstructionDataset` - instruction records joined with their features from a
  :class:`~ski_lvlm.data.feature_cache.FeatureCache` (missing features raise, never turn into zeros).

Sample key rule: a sample's key (its id in a feature cache) is the file stem of its video
(``videos/S001C001P001R001A001.mp4`` -> ``S001C001P001R001A001``), or of its skeleton when it has no video;
:func:`sample_key` is the one implementation.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

__all__ = ["sample_key", "ManifestRecord", "ManifestDataset", "InstructionDataset", "CachedInstructionDataset",
           "ManifestFormatError", "MANIFEST_COLUMNS"]

MANIFEST_COLUMNS = ("video_path", "skeleton_path", "label")


class ManifestFormatError(ValueError):
    """A malformed manifest or instruction file; names the file and line (or record index)."""


def sample_key(video_path: str | None, skeleton_path: str | None = None) -> str:
    """The id of a sample in feature caches: the stem of its video (else of its skeleton)."""
    path = video_path or skeleton_path
    if not path:
        raise ValueError("a sample needs a video or a skeleton path")
    return Path(path).stem


def _resolve(root: Path, value: str | None) -> str | None:
    if not value:
        return None
    p = Path(value)
    return os.path.normpath(p if p.is_absolute() else root / p)


@dataclass(frozen=True)
class ManifestRecord:
    """One manifest row with paths resolved against the manifest's folder."""

    key: str
    video_path: str | None
    skeleton_path: str | None
    label: int
    row: int
    """0-based row index among the data rows."""

    def as_dict(self) -> dict:
        return asdict(self)


class ManifestDataset(Dataset):
    """Rows of a ``video_path,skeleton_path,label`` CSV, read from disk one at a time.

    Args:
        path: the CSV (relative paths inside resolve against its folder).
        transform: ``transform(record) -> sample``; without it an item is ``record.as_dict()``.
        exclude: absolute video paths to leave out (e.g. ``ski_lvlm.data.video.read_quarantine(...)``).

    Raises:
        ManifestFormatError: missing columns, a row with the wrong field count, a non-integer label, a row
            without any path, or a quoted field spanning lines (names file and line).
    """

    def __init__(self, path: str | Path, transform: Callable[[ManifestRecord], Any] | None = None,
                 exclude: set[str] | dict[str, Any] | None = None):
        self.path = Path(path)
        self.root = self.path.resolve().parent
        self.transform = transform
        with open(self.path, "rb") as f:
            header_line = f.readline()
            header = next(csv.reader([header_line.decode("utf-8-sig")]), [])
            header = [h.strip() for h in header]
            missing = [c for c in MANIFEST_COLUMNS if c not in header]
            if missing:
                raise ManifestFormatError(f"{self.path}:1: header lacks {', '.join(missing)} "
                                          f"(expected {','.join(MANIFEST_COLUMNS)})")
            self._cols = tuple(header.index(c) for c in MANIFEST_COLUMNS)
            self._ncols = len(header)
            offsets = []
            pos, line_no = len(header_line), 1
            exclude = {os.path.normpath(os.path.abspath(p)) for p in (exclude or ())}
            for raw in f:
                line_no += 1
                if raw.strip():
                    fields = self._split(raw, line_no)
                    if exclude and _resolve(self.root, fields[self._cols[0]].strip()) in exclude:
                        pos += len(raw)
                        continue
                    offsets.append(pos)
                pos += len(raw)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self._fh = None

    def _split(self, raw: bytes, line_no: int | str) -> list[str]:
        text = raw.decode("utf-8").rstrip("\r\n")
        if text.count('"') % 2:
            raise ManifestFormatError(f"{self.path}:{line_no}: unbalanced quote (fields may not span lines)")
        fields = next(csv.reader([text]))
        if len(fields) != self._ncols:
            raise ManifestFormatError(f"{self.path}:{line_no}: {len(fields)} fields, header has {self._ncols}")
        video, skeleton, label = (fields[c].strip() for c in self._cols)
        if not video and not skeleton:
            raise ManifestFormatError(f"{self.path}:{line_no}: row has neither video_path nor skeleton_path")
        try:
            int(label)
        except ValueError:
            raise ManifestFormatError(f"{self.path}:{line_no}: label {label!r} is not an integer") from None
        return fields

    def __len__(self) -> int:
        return len(self.offsets)

    def record(self, i: int) -> ManifestRecord:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} rows of {self.path}")
        i = i % len(self)
        if self._fh is None:
            self._fh = open(self.path, "rb")
        self._fh.seek(int(self.offsets[i]))
        fields = self._split(self._fh.readline(), f"row {i}")
        video, skeleton, label = (fields[c].strip() for c in self._cols)
        video_path, skeleton_path = _resolve(self.root, video), _resolve(self.root, skeleton)
        return ManifestRecord(sample_key(video_path, skeleton_path), video_path, skeleton_path, int(label), i)

    def __getitem__(self, i: int) -> Any:
        rec = self.record(i)
        return self.transform(rec) if self.transform else rec.as_dict()

    def labels(self) -> np.ndarray:
        """All labels (int64), read in one pass; for class-balanced samplers and reports."""
        return np.asarray([self.record(i).label for i in range(len(self))], dtype=np.int64)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fh"] = None  # file handles do not cross process boundaries
        return state

    def __del__(self) -> None:
        if getattr(self, "_fh", None) is not None:
            self._fh.close()


def _json_offsets(path: Path) -> np.ndarray:
    """[n, 2] byte spans of the records of a JSON array or JSON Lines file.

    Decoding the bytes as latin-1 maps each byte to one character, so ``raw_decode`` positions are byte
    offsets; UTF-8 multi-byte sequences never contain JSON's structural ASCII characters.
    """
    text = path.read_bytes().decode("latin-1")
    dec = json.JSONDecoder()
    spans = []
    ws = " \t\r\n"
    i = len(text) - len(text.lstrip(ws))
    if text.startswith("\xef\xbb\xbf", i):  # UTF-8 BOM
        i += 3
    if i < len(text) and text[i] == "[":
        i += 1
        while True:
            while i < len(text) and text[i] in ws:
                i += 1
            if i < len(text) and text[i] == "]" and not spans:
                break
            try:
                _, end = dec.raw_decode(text, i)
            except json.JSONDecodeError as e:
                raise ManifestFormatError(f"{path}: record {len(spans)}: {e.msg} (line {e.lineno})") from None
            spans.append((i, end))
            i = end
            while i < len(text) and text[i] in ws:
                i += 1
            if i < len(text) and text[i] == ",":
                i += 1
            elif i < len(text) and text[i] == "]":
                break
            else:
                raise ManifestFormatError(f"{path}: record {len(spans)}: expected ',' or ']' at byte {i}")
    else:
        while i < len(text):
            try:
                _, end = dec.raw_decode(text, i)
            except json.JSONDecodeError as e:
                raise ManifestFormatError(f"{path}: line {e.lineno}: {e.msg}") from None
            spans.append((i, end))
            i = end
            while i < len(text) and text[i] in ws:
                i += 1
    return np.asarray(spans, dtype=np.int64).reshape(-1, 2)


class InstructionDataset(Dataset):
    """Records of a LLaVA instruction file (JSON array or JSON Lines), parsed one at a time.

    Each item is the record plus ``key`` (:func:`sample_key`), ``video_path`` and ``skeleton_path``
    (absolute, or None when the record has no such key). ``transform(item)`` is applied when given.
    """

    def __init__(self, path: str | Path, transform: Callable[[dict], Any] | None = None):
        self.path = Path(path)
        self.root = self.path.resolve().parent
        self.transform = transform
        self.spans = _json_offsets(self.path)
        self._fh = None

    def __len__(self) -> int:
        return len(self.spans)

    def record(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} records of {self.path}")
        start, end = (int(v) for v in self.spans[i % len(self)])
        if self._fh is None:
            self._fh = open(self.path, "rb")
        self._fh.seek(start)
        rec = json.loads(self._fh.read(end - start).decode("utf-8"))
        if not isinstance(rec, dict) or "conversations" not in rec:
            raise ManifestFormatError(f"{self.path}: record {i % len(self)} is not a LLaVA record "
                                      "(an object with 'conversations')")
        rec["video_path"] = _resolve(self.root, rec.get("video"))
        rec["skeleton_path"] = _resolve(self.root, rec.get("skeleton"))
        rec["key"] = sample_key(rec["video_path"], rec["skeleton_path"]) if (rec["video_path"] or rec["skeleton_path"]) \
            else str(rec.get("id"))
        return rec

    def __getitem__(self, i: int) -> Any:
        rec = self.record(i)
        return self.transform(rec) if self.transform else rec

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fh"] = None
        return state

    def __del__(self) -> None:
        if getattr(self, "_fh", None) is not None:
            self._fh.close()


class CachedInstructionDataset(Dataset):
    """Instruction records with their cached features: ``{**record, "video_features", "skeleton_features"}``.

    Args:
        instructions: LLaVA JSON (or an :class:`InstructionDataset`).
        cache: a feature-cache folder (or a :class:`FeatureCache`).
        identity: when given, the cache must have been made with exactly this identity
            (:class:`~ski_lvlm.data.feature_cache.StaleCacheError` otherwise).
        require_skeleton: raise for a record that has a skeleton but no cached skeleton features.
    """

    def __init__(self, instructions: str | Path | InstructionDataset, cache: str | Path | Any,
                 identity: dict | None = None, require_skeleton: bool = False,
                 transform: Callable[[dict], Any] | None = None):
        from ski_lvlm.data.feature_cache import FeatureCache

        self.records = instructions if isinstance(instructions, InstructionDataset) else InstructionDataset(instructions)
        self.cache = cache if isinstance(cache, FeatureCache) else FeatureCache(cache)
        if identity is not None:
            self.cache.check_compatible(identity)
        self.require_skeleton = require_skeleton
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def missing(self) -> list[str]:
        """Keys of records whose features are not in the cache (one pass; call it before training)."""
        keys = {self.records.record(i)["key"] for i in range(len(self.records))}
        return sorted(k for k in keys if k not in self.cache)

    def __getitem__(self, i: int) -> Any:
        rec = self.records.record(i)
        try:
            feats = self.cache.get(rec["key"])
        except KeyError:
            raise KeyError(f"{self.records.path} record {i} (id {rec.get('id')!r}): no features for key "
                           f"{rec['key']!r} in {self.cache.path}") from None
        if self.require_skeleton and rec.get("skeleton_path") and "skeleton" not in feats:
            raise KeyError(f"{self.records.path} record {i}: no skeleton features for {rec['key']!r} in {self.cache.path}")
        rec["video_features"] = feats.get("video")
        rec["skeleton_features"] = feats.get("skeleton")
        return self.transform(rec) if self.transform else rec
