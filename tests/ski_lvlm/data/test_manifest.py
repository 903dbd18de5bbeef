"""Lazy datasets: manifests, instruction JSON (array and JSONL), cached features; small pickles."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from ski_lvlm.data.datasets import (CachedInstructionDataset, InstructionDataset, ManifestDataset, ManifestFormatError,
                                    sample_key)
from ski_lvlm.data.feature_cache import FeatureCacheWriter, StaleCacheError

IDENT = {"video": {"kind": "test"}, "skeleton": None, "dtype": "float16"}


def _manifest(tmp_path, n=1000):
    lines = ["video_path,skeleton_path,label,subject"]
    for i in range(n):
        lines.append(f"videos/S{i:04d}.mp4,skeletons/S{i:04d}.skeleton,{i % 7},P{i % 3:03d}")
    lines.insert(5, "")  # blank lines are ignored
    path = tmp_path / "train.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def test_manifest_dataset_lazy_and_small(tmp_path):
    path = _manifest(tmp_path)
    ds = ManifestDataset(path)
    assert len(ds) == 1000
    r = ds.record(7)
    assert r.key == "S0007" and r.label == 0 and r.row == 7
    assert r.video_path == os.path.join(str(tmp_path), "videos", "S0007.mp4")
    assert r.skeleton_path.endswith(os.path.join("skeletons", "S0007.skeleton"))
    assert ds[-1]["key"] == "S0999" and ds.labels()[:8].tolist() == [0, 1, 2, 3, 4, 5, 6, 0]
    blob = pickle.dumps(ds)  # offsets only: about 8 bytes per row, no path strings
    assert len(blob) < 8 * 1000 + 2000 and b"S0500" not in blob
    clone = pickle.loads(blob)
    assert clone.record(500) == ds.record(500)
    with pytest.raises(IndexError):
        ds.record(1000)
    dl = DataLoader(ManifestDataset(path, transform=lambda rec: rec.label), batch_size=100, num_workers=2)
    assert torch.cat(list(dl)).tolist() == [i % 7 for i in range(1000)]
    excl = ManifestDataset(path, exclude={str(tmp_path / "videos" / "S0003.mp4")})
    assert len(excl) == 999 and excl.record(3).key == "S0004"


@pytest.mark.parametrize("text,needle", [
    ("video_path,label\na.mp4,1\n", "lacks skeleton_path"),
    ("video_path,skeleton_path,label\na.mp4,,x\n", ":2: label 'x'"),
    ("video_path,skeleton_path,label\na.mp4,,1\nb.mp4,1\n", ":3: 2 fields"),
    ("video_path,skeleton_path,label\n,,1\n", "neither"),
    ('video_path,skeleton_path,label\n"a\n', "unbalanced quote"),
])
def test_manifest_errors(tmp_path, text, needle):
    (tmp_path / "m.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ManifestFormatError, match=needle):
        ManifestDataset(tmp_path / "m.csv")


RECORDS = [
    {"id": "S1", "video": "videos/S1.mp4", "skeleton": "skeletons/S1.skeleton",
     "conversations": [{"from": "human", "value": "<video>\n<skeleton>\nQuoi? \u00e9t\u00e9 \u2014 \"[x]\", {y}"},
                       {"from": "gpt", "value": "Un homme boit de l'eau. 飲む"}]},
    {"id": "S2", "video": "/abs/S2.mp4", "conversations": [{"from": "human", "value": "<video>\nQ"},
                                                          {"from": "gpt", "value": "A"}]},
    {"id": "S3", "video": "videos/S1.mp4", "conversations": [{"from": "human", "value": "<video>\nQ2"},
                                                            {"from": "gpt", "value": "A2"}]},
]


@pytest.mark.parametrize("layout", ["array", "pretty", "jsonl"])
def test_instruction_dataset(tmp_path, layout):
    path = tmp_path / "instr.json"
    if layout == "array":
        path.write_text(json.dumps(RECORDS, ensure_ascii=False), encoding="utf-8")
    elif layout == "pretty":
        path.write_text(json.dumps(RECORDS, indent=2, ensure_ascii=False), encoding="utf-8")
    else:
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in RECORDS) + "\n", encoding="utf-8")
    ds = InstructionDataset(path)
    assert len(ds) == 3
    rec = ds[0]
    assert rec["conversations"] == RECORDS[0]["conversations"]  # unicode and JSON-special chars intact
    assert rec["key"] == "S1" and rec["video_path"] == str(tmp_path / "videos" / "S1.mp4")
    assert rec["skeleton_path"] == str(tmp_path / "skeletons" / "S1.skeleton")
    assert ds[1]["video_path"] == "/abs/S2.mp4" and ds[1]["skeleton_path"] is None
    assert ds[2]["key"] == "S1"  # several QA records share one video -> one cache entry
    blob = pickle.dumps(ds)
    assert b"conversations" not in blob and len(blob) < 1500
    assert pickle.loads(blob)[2]["id"] == "S3"


def test_instruction_dataset_errors(tmp_path):
    (tmp_path / "a.json").write_text('[{"id": 1, "conversations": []}, {"id": 2,}]', encoding="utf-8")
    with pytest.raises(ManifestFormatError, match="record 1"):
        InstructionDataset(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("[]", encoding="utf-8")
    assert len(InstructionDataset(tmp_path / "b.json")) == 0
    (tmp_path / "c.json").write_text('[{"id": "x"}]', encoding="utf-8")
    with pytest.raises(ManifestFormatError, match="not a LLaVA record"):
        InstructionDataset(tmp_path / "c.json")[0]


def test_cached_instruction_dataset(tmp_path):
    path = tmp_path / "instr.json"
    path.write_text(json.dumps(RECORDS), encoding="utf-8")
    w = FeatureCacheWriter(tmp_path / "cache", IDENT, shard_size=1)
    w.add("S1", {"video": torch.ones(3, 4), "skeleton": torch.zeros(2, 5)})
    w.finish()
    ds = CachedInstructionDataset(path, tmp_path / "cache", identity=IDENT)
    assert ds.missing() == ["S2"]
    item = ds[2]
    assert item["video_features"].shape == (3, 4) and item["skeleton_features"].shape == (2, 5)
    with pytest.raises(KeyError, match="record 1 .*'S2'"):
        ds[1]  # a missing feature is an error, never zeros
    with pytest.raises(StaleCacheError):
        CachedInstructionDataset(path, tmp_path / "cache", identity={**IDENT, "dtype": "float32"})
    assert len(pickle.dumps(ds)) < 2000
    only_s1 = CachedInstructionDataset(path, tmp_path / "cache", transform=lambda r: r["video_features"].sum())
    only_s1.records.spans = only_s1.records.spans[[0, 2]]  # the two records whose video is cached
    dl = DataLoader(only_s1, batch_size=2, num_workers=2)  # workers rebuild the cache index themselves
    assert torch.cat(list(dl)).tolist() == [12.0, 12.0]


def test_sample_key():
    assert sample_key("a/b/S001C001P001R001A001.mp4") == "S001C001P001R001A001"
    assert sample_key(None, "x/y.skeleton") == "y"
    with pytest.raises(ValueError):
        sample_key(None, None)
