"""Video decoding on small files written by the test: mp4, mkv, truncated, zero-byte, text named .mp4."""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest

from ski_lvlm.data import video as V
from ski_lvlm.data.video import (
    VideoDecodeError,
    probe_video,
    read_frames,
    read_quarantine,
    sample_indices,
    scan_video,
    write_video,
)

N = 30  # frames per test video; frame i is a flat grey of value 8*i, so its index is readable back
BACKENDS = ["pyav"] + (["decord"] if V.default_backend() == "decord" else [])


def _frames(n: int = N, h: int = 48, w: int = 64) -> np.ndarray:
    f = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        f[i] = 8 * i
    return f


def _index_of(frames: np.ndarray) -> np.ndarray:
    return np.round(frames.reshape(len(frames), -1).mean(1) / 8).astype(int)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    out = {"mp4": d / "ok.mp4", "mkv": d / "ok.mkv"}
    write_video(out["mp4"], _frames(), fps=25)
    write_video(out["mkv"], _frames(), fps=25)
    data = out["mp4"].read_bytes()
    out["truncated"] = d / "truncated.mp4"
    out["truncated"].write_bytes(data[: len(data) // 2])  # mp4 cut before its moov index
    # faststart mp4 (index first) cut in the middle of the frame data
    import av

    fs = d / "faststart.mp4"
    with av.open(str(fs), "w", container_options={"movflags": "+faststart"}) as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        noise = np.random.default_rng(0).integers(0, 255, (N, 48, 64, 3), dtype=np.uint8)
        for k in range(N):
            for pkt in st.encode(av.VideoFrame.from_ndarray(noise[k], format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    data_fs = fs.read_bytes()
    assert b"moov" in data_fs[:64]
    out["truncated_faststart"] = d / "truncated_faststart.mp4"
    out["truncated_faststart"].write_bytes(data_fs[: len(data_fs) // 2])
    mkv = out["mkv"].read_bytes()
    out["truncated_mkv"] = d / "truncated.mkv"
    out["truncated_mkv"].write_bytes(mkv[: len(mkv) * 2 // 3])
    out["empty"] = d / "empty.mp4"
    out["empty"].write_bytes(b"")
    out["text"] = d / "notes.mp4"
    out["text"].write_text("this is not a video\n" * 20)
    out["missing"] = d / "missing.mp4"
    return out


# ---------------------------------------------------------------------------------------- sample_indices


def test_sample_indices_modes():
    np.testing.assert_array_equal(sample_indices(100, 4, "segment_middle"), [12, 37, 62, 87])
    np.testing.assert_array_equal(sample_indices(100, 4, "uniform"), [0, 33, 66, 99])
    rng = np.random.default_rng(0)
    r = sample_indices(100, 4, "random_segment", rng)
    assert all(25 * k <= r[k] < 25 * (k + 1) for k in range(4))
    # reproducible with a seeded generator
    np.testing.assert_array_equal(
        sample_indices(100, 8, "random_segment", np.random.default_rng(3)),
        sample_indices(100, 8, "random_segment", np.random.default_rng(3)),
    )


@pytest.mark.parametrize("sampling", V.SAMPLING_MODES)
def test_short_video_repeats_evenly(sampling):
    idx = sample_indices(3, 6, sampling, np.random.default_rng(0))
    assert len(idx) == 6 and np.all(np.diff(idx) >= 0) and idx.min() >= 0 and idx.max() <= 2
    assert sorted(np.bincount(idx, minlength=3)) == [2, 2, 2]  # every frame used, equally often
    assert sample_indices(1, 5, sampling).tolist() == [0] * 5


def test_sample_indices_rejects_bad_input():
    with pytest.raises(ValueError):
        sample_indices(0, 4)
    with pytest.raises(ValueError):
        sample_indices(10, 4, "bogus")


# ---------------------------------------------------------------------------------------- read/probe


@pytest.mark.parametrize("kind", ["mp4", "mkv"])
def test_probe(files, kind):
    info = probe_video(files[kind])
    assert (info.num_frames, info.width, info.height) == (N, 64, 48)
    assert info.fps == pytest.approx(25.0) and info.duration == pytest.approx(N / 25, abs=0.05)


@pytest.mark.parametrize("kind", ["mp4", "mkv"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_read_frames_picks_requested_indices(files, kind, backend):
    frames, idx = read_frames(files[kind], 8, backend=backend, return_indices=True)
    assert frames.shape == (8, 48, 64, 3) and frames.dtype == np.uint8 and frames.flags.writeable
    np.testing.assert_array_equal(idx, sample_indices(N, 8, "segment_middle"))
    np.testing.assert_array_equal(_index_of(frames), idx)  # the pixels really come from those frames
    # longer than the video: 45 frames from 30, repeats follow sample_indices
    frames, idx = read_frames(files[kind], 45, sampling="uniform", backend=backend, return_indices=True)
    assert frames.shape[0] == 45
    np.testing.assert_array_equal(_index_of(frames), sample_indices(N, 45, "uniform"))


@pytest.mark.skipif(len(BACKENDS) < 2, reason="decord not installed")
@pytest.mark.parametrize("kind", ["mp4", "mkv"])
def test_backends_agree(files, kind):
    rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
    a, ia = read_frames(files[kind], 12, "random_segment", backend="decord", rng=rng_a, return_indices=True)
    b, ib = read_frames(files[kind], 12, "random_segment", backend="pyav", rng=rng_b, return_indices=True)
    np.testing.assert_array_equal(ia, ib)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_resize(files, backend):
    short = read_frames(files["mp4"], 4, size=24, backend=backend)
    assert short.shape == (4, 24, 32, 3)  # short side 48 -> 24, aspect kept
    exact = read_frames(files["mp4"], 4, size=(20, 30), backend=backend)
    assert exact.shape == (4, 20, 30, 3)
    np.testing.assert_array_equal(_index_of(exact), sample_indices(N, 4, "segment_middle"))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "kind,reason",
    [("truncated", "truncated"), ("truncated_faststart", "truncated"), ("empty", "empty"), ("text", "not_video"),
     ("missing", "missing")],
)
def test_bad_files_raise_quickly(files, backend, kind, reason):
    t0 = time.perf_counter()
    with pytest.raises(VideoDecodeError) as ei:
        read_frames(files[kind], 8, backend=backend)
    assert ei.value.reason == reason
    assert str(files[kind]) in str(ei.value)
    assert time.perf_counter() - t0 < 10  # generous; the real point is "no hang"


def test_timeout_does_not_hang(files, monkeypatch):
    started = threading.Event()

    def stuck(path, num_frames, sampling, size, rng, cancel):
        started.set()
        cancel.wait(30)  # a decoder stuck on a pathological file
        raise AssertionError("should have been abandoned")

    monkeypatch.setattr(V, "_pyav_read", stuck)
    t0 = time.perf_counter()
    with pytest.raises(VideoDecodeError) as ei:
        read_frames(files["mp4"], 4, backend="pyav", timeout=0.3)
    assert ei.value.reason == "timeout" and started.is_set()
    assert time.perf_counter() - t0 < 5


# ---------------------------------------------------------------------------------------- scan/write


def test_scan_video_reports(files):
    ok = scan_video(files["mkv"])
    assert ok["ok"] and ok["decoded_frames"] == N and ok["width"] == 64
    assert scan_video(files["truncated_mkv"])["reason"] == "truncated"  # mkv cut mid-stream
    assert scan_video(files["truncated"])["reason"] == "truncated"
    assert scan_video(files["empty"])["reason"] == "empty"
    assert scan_video(files["text"])["reason"] == "not_video"


def test_write_video_is_reproducible_and_validates(tmp_path):
    f = _frames(10)
    write_video(tmp_path / "a.mp4", f, 10)
    write_video(tmp_path / "b.mp4", f, 10)
    digest = [hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in ("a.mp4", "b.mp4")]
    assert digest[0] == digest[1]
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "c.mp4", np.zeros((2, 47, 64, 3), np.uint8), 10)
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "c.mp4", np.zeros((2, 48, 64, 3), np.float32), 10)


def test_read_quarantine(tmp_path):
    q = tmp_path / "scan" / "quarantine.txt"
    q.parent.mkdir()
    q.write_text("# comment\n/abs/bad.mp4\ttruncated: cut\n../videos/x.mp4\tnot_video: text\n\n")
    got = read_quarantine(q)
    assert got == {"/abs/bad.mp4": "truncated: cut", str(tmp_path / "videos" / "x.mp4"): "not_video: text"}


def _child_read(path, q):
    try:
        q.put(read_frames(path, 4, backend="pyav", timeout=10).shape)
    except Exception as e:  # noqa: BLE001
        q.put(repr(e))


@pytest.mark.slow
@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="needs fork")
def test_read_frames_in_forked_worker(files):
    # the parent's decode threads do not exist in a forked child (DataLoader workers): it must get its own
    import multiprocessing as mp

    read_frames(files["mp4"], 2, backend="pyav")  # parent starts its decode thread
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_read, args=(str(files["mp4"]), q))
    p.start()
    got = q.get(timeout=30)
    p.join(10)
    assert got == (4, 48, 64, 3)


@pytest.mark.skipif(len(BACKENDS) < 2, reason="decord not installed")
def test_auto_backend_falls_back_to_pyav(files, monkeypatch):
    def broken(path, *a, **k):
        raise VideoDecodeError(path, "decode_error", "decord seek bug")

    monkeypatch.setattr(V, "_decord_read", broken)
    frames = read_frames(files["mp4"], 5)  # backend=None: decord fails, PyAV answers
    np.testing.assert_array_equal(_index_of(frames), sample_indices(N, 5, "segment_middle"))
    with pytest.raises(VideoDecodeError, match="decord seek bug"):
        read_frames(files["mp4"], 5, backend="decord")  # explicit backend: no fallback
    with pytest.raises(VideoDecodeError) as ei:
        read_frames(files["text"], 5)
    assert ei.value.reason == "not_video"
