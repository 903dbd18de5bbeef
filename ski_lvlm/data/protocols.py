"""Evaluation protocols of a synthetic world beyond cross-subject: cross-view, and zero-shot validation.

The world's default files (``train.csv``/``test.csv``, ``zsl_*.csv``) hold out *subjects*. NTU's second
protocol holds out a *viewpoint* instead (cross-view: cameras 2 and 3 train, camera 1 tests), one of the ADL
challenges the SKI paper names. The world's camera number is the azimuth bin in every sample name
(``SsssCcccPppp...``: 1 = front, 2 = the person's left, 3 = the person's right), so the manifests follow from
``clips.csv`` alone: :func:`protocol_splits` derives them, :func:`write_protocol_files` writes them next to
the default ones (new worlds write them when generated; ``ski-lvlm data protocols WORLD`` adds them to an
existing world). The default files are never touched, so the default protocol's numbers stay the same.

Files (same columns as ``train.csv``: ``video_path,skeleton_path,label``):

* cross-view, all classes: ``xview_train.csv`` (cameras 2, 3, every subject), ``xview_test.csv`` (camera 1);
  ``xview_train_fit.csv`` / ``xview_train_val.csv`` split the training views by subject (every third
  subject validates), for choosing settings without the test view;
* cross-view, zero-shot: ``xview_zsl_base_train.csv`` (base classes, training views),
  ``xview_zsl_base_val.csv`` (base classes, test view), ``xview_zsl_novel_test.csv`` (novel classes, test
  view); the class lists are the default ``zsl_base_classes.csv`` / ``zsl_novel_classes.csv``;
* zero-shot validation: the novel classes are the test, so settings cannot be chosen on them. Every
  fourth base class becomes a *pseudo-novel* class (``zslval_novel_classes.csv``); the others
  (``zslval_base_classes.csv``) train on ``zslval_base_train.csv`` and the pseudo-novel ones are scored
  zero-shot on ``zslval_novel_test.csv``. Both hold only training-subject clips (cross-subject) or only
  training-view clips (``xview_zslval_*``), so neither the test subjects/view nor the novel classes are seen.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any, Iterable

__all__ = ["TRAIN_CAMERAS", "TEST_CAMERAS", "camera_of", "pseudo_novel", "protocol_splits", "write_protocol_files",
           "read_clips"]

TRAIN_CAMERAS = (2, 3)  # NTU cross-view: the two side cameras train ...
TEST_CAMERAS = (1,)  # ... and the front camera tests
_CAMERA = re.compile(r"C(\d{3})P")
HEADER = ["video_path", "skeleton_path", "label"]


def camera_of(name: str) -> int:
    """Camera number of an NTU-style sample name (``S001C002P003R001A004`` -> 2)."""
    m = _CAMERA.search(name)
    if m is None:
        raise ValueError(f"{name!r}: not an NTU-style sample name (SsssCcccPpppRrrrAaaa)")
    return int(m.group(1))


def pseudo_novel(base: list[str]) -> list[str]:
    """Every fourth base class (from the fourth): the unseen classes of the zero-shot validation split."""
    return base[3::4] if len(base) >= 4 else base[-1:]


def _rows(clips: Iterable[dict[str, Any]], classes: list[str]) -> list[list[Any]]:
    """Manifest rows for the clips whose class is in ``classes``; labels are positions in ``classes``."""
    return [[f"videos/{c['name']}.mp4", f"skeletons/{c['name']}.skeleton", classes.index(c["class"])]
            for c in clips if c["class"] in classes]


def _zslval(clips: list[dict[str, Any]], base: list[str], prefix: str) -> dict[str, list[list[Any]]]:
    held = pseudo_novel(base)
    kept = [c for c in base if c not in held]
    return {f"{prefix}zslval_base_train": _rows(clips, kept), f"{prefix}zslval_novel_test": _rows(clips, held)}


def protocol_splits(clips: list[dict[str, Any]], classes: list[str], novel: list[str],
                    test_subjects: Iterable[int]) -> dict[str, list[list[Any]]]:
    """Manifest rows per file stem (``xview_train``, ..., ``zslval_novel_test``) from the world's clip facts.

    ``clips``: dicts with ``name``, ``class`` and ``subject`` (``clips.csv`` rows); ``classes``: every class
    in ``classes.csv`` order; ``novel``: the zero-shot unseen classes; ``test_subjects``: the cross-subject
    test subjects (they also validate the cross-view protocol, on the training views only).
    """
    test_subjects = {int(s) for s in test_subjects}
    base = [c for c in classes if c not in novel]
    train_view = [c for c in clips if camera_of(c["name"]) in TRAIN_CAMERAS]
    test_view = [c for c in clips if camera_of(c["name"]) in TEST_CAMERAS]
    xsub_train = [c for c in clips if int(c["subject"]) not in test_subjects]
    splits = {
        "xview_train": _rows(train_view, classes),
        "xview_test": _rows(test_view, classes),
        "xview_train_fit": _rows([c for c in train_view if int(c["subject"]) not in test_subjects], classes),
        "xview_train_val": _rows([c for c in train_view if int(c["subject"]) in test_subjects], classes),
        "xview_zsl_base_train": _rows(train_view, base),
        "xview_zsl_base_val": _rows(test_view, base),
        "xview_zsl_novel_test": _rows(test_view, novel),
    }
    splits.update(_zslval(xsub_train, base, ""))
    splits.update(_zslval(train_view, base, "xview_"))
    return splits


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def write_protocol_files(root: str | Path, clips: list[dict[str, Any]], classes: list[str], novel: list[str],
                         test_subjects: Iterable[int]) -> dict[str, int]:
    """Write every protocol manifest (and the pseudo-novel class lists) into ``root``; return row counts."""
    root = Path(root)
    splits = protocol_splits(clips, classes, novel, test_subjects)
    for stem, rows in splits.items():
        _write_csv(root / f"{stem}.csv", HEADER, rows)
    base = [c for c in classes if c not in novel]
    held = pseudo_novel(base)
    _write_csv(root / "zslval_base_classes.csv", ["id", "name"], [[i, c] for i, c in enumerate(b for b in base if b not in held)])
    _write_csv(root / "zslval_novel_classes.csv", ["id", "name"], [[i, c] for i, c in enumerate(held)])
    return {stem: len(rows) for stem, rows in splits.items()}


def read_clips(root: str | Path) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """``clips.csv`` rows, the class list (``classes.csv``) and the novel classes of an existing world."""
    root = Path(root)

    def names(path: Path) -> list[str]:
        with open(path, encoding="utf-8", newline="") as f:
            return [r["name"] for r in csv.DictReader(f)]

    with open(root / "clips.csv", encoding="utf-8", newline="") as f:
        clips = list(csv.DictReader(f))
    return clips, names(root / "classes.csv"), names(root / "zsl_novel_classes.csv")
