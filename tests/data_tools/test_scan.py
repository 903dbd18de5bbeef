"""`ski-lvlm data scan`: parallel decode, quarantine list, summary, and surviving stuck/crashing workers."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time

import numpy as np
import pytest

import data_tools.scan as S
from ski_lvlm.data.video import read_quarantine, write_video


def _world(tmp_path):
    v = tmp_path / "videos"
    v.mkdir()
    frames = np.zeros((12, 32, 48, 3), np.uint8)
    frames[:, :, :, 1] = np.arange(12)[:, None, None] * 20
    write_video(v / "good.mp4", frames, fps=10)
    write_video(v / "good.mkv", frames[:, :16], fps=5)
    data = (v / "good.mp4").read_bytes()
    (v / "cut.mp4").write_bytes(data[: len(data) // 2])
    (v / "zero.mp4").write_bytes(b"")
    (v / "readme.mp4").write_text("hello\n")
    m = tmp_path / "data" / "train.csv"
    m.parent.mkdir()
    rows = ["video_path,skeleton_path,label"] + [f"../videos/{n},,{i}" for i, n in enumerate(
        ["good.mp4", "good.mkv", "cut.mp4", "zero.mp4", "readme.mp4", "absent.mp4", "good.mp4"])]
    m.write_text("\n".join(rows) + "\n")
    return m, v


def test_scan_cli_writes_quarantine_and_summary(tmp_path, capsys):
    manifest, v = _world(tmp_path)
    out = tmp_path / "scan"
    assert S.main([str(manifest), "--workers", "2", "--out", str(out)]) == 0
    q = read_quarantine(out / "quarantine.txt")
    assert {os.path.basename(p): r.split(":")[0] for p, r in q.items()} == {
        "cut.mp4": "truncated", "zero.mp4": "empty", "readme.mp4": "not_video", "absent.mp4": "missing"}
    assert all(os.path.isabs(p) for p in q)
    s = json.loads((out / "scan_summary.json").read_text())
    assert s["count"] == 6 and s["ok"] == 2  # duplicates counted once
    assert s["failures"] == {"truncated": 1, "empty": 1, "not_video": 1, "missing": 1}
    assert s["resolutions"] == {"48x32": 1, "48x16": 1}
    assert s["fps"] == {"10": 1, "5": 1}
    assert s["duration_s"]["max"] == pytest.approx(2.4, abs=0.05) and s["frames"]["total"] == 24
    assert "4 quarantined" in capsys.readouterr().out
    # default output folder: next to the manifest
    assert S.main([str(manifest), "--workers", "1"]) == 0
    assert (manifest.parent / "scan" / "quarantine.txt").exists()


def test_scan_cli_bad_manifest(tmp_path, capsys):
    m = tmp_path / "m.csv"
    m.write_text("path,label\nx.mp4,0\n")
    assert S.main([str(m)]) == 2
    assert "expected the header" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(mp.get_start_method(allow_none=False) != "fork", reason="monkeypatch reaches workers via fork")
def test_scan_survives_stuck_and_crashing_workers(tmp_path, monkeypatch):
    real = S.scan_video

    def flaky(path, timeout=None):
        if path.endswith("stuck.mp4"):
            time.sleep(60)  # a decoder stuck in C code: only killing the process helps
        if path.endswith("crash.mp4"):
            os._exit(11)  # a decoder segfault
        return real(path, timeout=timeout)

    monkeypatch.setattr(S, "scan_video", flaky)
    monkeypatch.setattr(S, "_GRACE_S", 0.5)
    manifest, v = _world(tmp_path)
    paths = [str(v / "good.mp4"), str(v / "stuck.mp4"), str(v / "crash.mp4"), str(v / "good.mkv")]
    t0 = time.perf_counter()
    recs = S.scan_paths(paths, workers=2, timeout=1.0)
    assert time.perf_counter() - t0 < 30
    by_name = {os.path.basename(r["path"]): r for r in recs}
    assert len(recs) == 4
    assert by_name["good.mp4"]["ok"] and by_name["good.mkv"]["ok"], recs
    assert by_name["stuck.mp4"]["reason"] == "timeout"
    assert by_name["crash.mp4"]["reason"] == "decode_error" and "exit code 11" in by_name["crash.mp4"]["error"]
