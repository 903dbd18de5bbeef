"""The lazy manifest dataset: rows, errors, exclusion, small pickles, DataLoader workers."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from ski_lvlm.data.manifest import ManifestDataset, ManifestFormatError


def _manifest(tmp_path, n=1000):
    lines = ["video_path,skeleton_path,label,subject"]
    for i in range(n):
        lines.append(f"videos/S{i:04d}.mp4,skeletons/S{i:04d}.skeleton,{i % 7},P{i % 3:03d}")
    lines.insert(5, "")  # blank lines are ignored
    path = tmp_path / "train.csv"
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


@pytest.mark.slow
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
