"""`ski-lvlm data features`: manifest and instruction inputs, a real SIGKILL + resume, stale and bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from data_tools.features import main
from ski_lvlm.data.feature_cache import FeatureCache
from ski_lvlm.data.skeleton import write_ntu_skeleton
from ski_lvlm.data.video import write_video

pytestmark = pytest.mark.slow  # every test encodes a rendered world's videos

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(1)
    rows = ["video_path,skeleton_path,label"]
    for i in range(5):
        write_video(root / "videos" / f"S{i}.mp4", (rng.random((8, 48, 64, 3)) * 255).astype(np.uint8), fps=10)
        write_ntu_skeleton(root / "skeletons" / f"S{i}.skeleton", rng.standard_normal((3, 16, 25, 1)).astype(np.float32))
        rows.append(f"videos/S{i}.mp4,skeletons/S{i}.skeleton,{i % 2}")
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    recs = [{"id": f"S{i}", "video": f"videos/S{i}.mp4", "skeleton": f"skeletons/S{i}.skeleton",
             "conversations": [{"from": "human", "value": "<video>\n<skeleton>\nQ"}, {"from": "gpt", "value": "A"}]}
            for i in (0, 1, 1)]
    (root / "instructions.json").write_text(json.dumps(recs))
    return root


COMMON = ["--frames", "4", "--max-frames", "4", "--batch-size", "2", "--shard-size", "2", "--no-progress"]


def test_features_from_manifest_and_instructions(world, tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["--manifest", str(world / "train.csv"), "--out", str(out), *COMMON,
                 "--skeleton-encoder", "random:tiny", "--skeleton-frames", "32"]) == 0
    assert "videos/s" in capsys.readouterr().out
    cache = FeatureCache(out)
    assert sorted(cache.ids()) == [f"S{i}" for i in range(5)]
    f = cache.get("S3")
    assert f["video"].shape == (4 + 16, 64) and f["skeleton"].shape == (8, 48)
    report = json.loads((out / "report.json").read_text())
    assert report["encoded"] == 5 and report["items_with_skeleton"] == 5 and report["videos_per_s"] > 0
    # instructions: records sharing a video are encoded once; no skeleton encoder -> video only
    out2 = tmp_path / "i"
    assert main(["--instructions", str(world / "instructions.json"), "--out", str(out2), *COMMON]) == 0
    c2 = FeatureCache(out2)
    assert sorted(c2.ids()) == ["S0", "S1"] and set(c2.get("S1")) == {"video"}
    # the same videos and settings give the same features in both caches
    assert (c2.get("S1")["video"] == cache.get("S1")["video"]).all()


def test_features_stale_and_bad(world, tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["--instructions", str(world / "instructions.json"), "--out", str(out), *COMMON]) == 0
    capsys.readouterr()
    assert main(["--instructions", str(world / "instructions.json"), "--out", str(out), *COMMON[:2], "--max-frames",
                 "8", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "stale" in err and "video.max_frames: cache has 4, requested 8" in err
    bad_csv = tmp_path / "bad.csv"
    (tmp_path / "broken.mp4").write_text("not a video")
    bad_csv.write_text(f"video_path,skeleton_path,label\n{world}/videos/S0.mp4,,0\nbroken.mp4,,1\n")
    assert main(["--manifest", str(bad_csv), "--out", str(tmp_path / "b"), *COMMON]) == 2
    assert "item 'broken'" in capsys.readouterr().err
    assert main(["--manifest", str(bad_csv), "--out", str(tmp_path / "b"), *COMMON, "--skip-bad"]) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert [b["id"] for b in report["bad"]] == ["broken"] and report["already_done"] == 1
    assert main(["--manifest", str(bad_csv), "--out", str(tmp_path / "x"), "--frames", "8", "--max-frames", "4"]) == 2
    assert "--max-frames (4) must be >= --frames (8)" in capsys.readouterr().err
    assert main(["--manifest", str(bad_csv), "--out", str(tmp_path / "x"), "--video-encoder", "nope:x"]) == 2
    assert "cannot load encoder" in capsys.readouterr().err


def test_features_resume_after_sigkill(world, tmp_path):
    """The process is killed right after its first shard; the same command then finishes the job."""
    out = tmp_path / "k"
    args = ["--manifest", str(world / "train.csv"), "--out", str(out), *COMMON]
    script = textwrap.dedent(f"""
        import os, signal
        from ski_lvlm.data import feature_cache
        real = feature_cache.FeatureCacheWriter.flush
        def flush_then_die(self):
            real(self)
            if self.manifest["shards"]:
                os.kill(os.getpid(), signal.SIGKILL)
        feature_cache.FeatureCacheWriter.flush = flush_then_die
        from data_tools.features import main
        main({args!r})
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    partial = FeatureCache(out)
    assert len(partial) == 2 and not partial.complete
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["already_done"] == 2 and report["encoded"] == 3
    assert FeatureCache(out).complete and len(FeatureCache(out)) == 5
