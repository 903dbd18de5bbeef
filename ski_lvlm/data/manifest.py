"""A lazy map-style dataset over ``video_path,skeleton_path,label`` manifests (the data tools' reader).

Why lazy: a DataLoader with N workers on G GPUs holds N*G copies of its dataset object. Loading a
100k-row manifest into Python objects in each copy costs gigabytes. :class:`ManifestDataset` keeps only the
file path and an int64 array of byte offsets (8 bytes per row), reads one row from disk in ``__getitem__``,
and pickles to a few kilobytes plus that array. Items are :class:`ManifestRecord` (absolute paths, and the
feature-cache ``key`` of :func:`~ski_lvlm.data.keys.sample_key`) or whatever ``transform(record)`` returns.

Instruction JSON is read by :mod:`ski_lvlm.data.instruction_sets` (Hugging Face ``datasets``, as training
reads it) and features by :class:`~ski_lvlm.data.feature_cache.FeatureCache`.
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch.utils.data import Dataset

from ski_lvlm.data.keys import sample_key

__all__ = ["ManifestRecord", "ManifestDataset", "ManifestFormatError", "MANIFEST_COLUMNS"]

MANIFEST_COLUMNS = ("video_path", "skeleton_path", "label")


class ManifestFormatError(ValueError):
    """A malformed manifest; names the file and line."""


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
        key = sample_key({"video_path": video_path, "skeleton_path": skeleton_path})
        return ManifestRecord(key, video_path, skeleton_path, int(label), i)

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
