"""Manifests (``video_path,skeleton_path,label`` CSV) and the NTU zero-shot split manifests."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ski_lvlm.data.ntu.names import (
    _NAME_RE,
    BENCHMARKS,
    ZSL_SPLITS,
    class_id,
    is_ntu60,
    is_train_sample,
    load_zsl_classes,
    parse_ntu_name,
)
from ski_lvlm.data.video import VIDEO_EXTS  # the one list of video suffixes


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
