"""Video decoding that never hangs and never guesses: frame sampling, probing, writing.

* :func:`sample_indices` is the one place frame indices are chosen, so the decord and PyAV backends
  return the same frames for the same file.
* :func:`read_frames` decodes only what it needs (decord ``get_batch`` on the unique indices, or one
  sequential PyAV pass that stops after the last needed frame) and raises :class:`VideoDecodeError`
  (with the file name and a short ``reason``) for missing, empty, non-video, truncated or corrupt files.
  Decoding runs in a worker thread with a deadline (``timeout`` seconds), so a pathological file cannot
  stall a data loader.
* :func:`write_video` writes H.264 mp4/mkv through PyAV, single-threaded so the bytes are reproducible.

Short videos: when a video has fewer frames than ``num_frames``, every sampling mode still returns exactly
``num_frames`` indices in time order; frames repeat as evenly as possible (a 3-frame video sampled to 6
gives ``0 0 1 1 2 2``). Nothing is padded with black frames.

Modules: :mod:`~ski_lvlm.data.video.base` (errors, :class:`VideoInfo`, :func:`sample_indices`),
:mod:`~ski_lvlm.data.video.threads` (the deadline and fork safety), :mod:`~ski_lvlm.data.video.backends`
(PyAV and decord); the functions below are the public API, and the public names of the others import from
here too.
"""

from __future__ import annotations

import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ski_lvlm.data.video.backends import (
    _SHORTFALL_FRAMES,
    _decord_read,
    _pyav_info,
    _pyav_open,
    _pyav_read,
    default_backend,
)
from ski_lvlm.data.video.base import (
    DEFAULT_TIMEOUT,
    REASONS,
    SAMPLING_MODES,
    VIDEO_EXTS,
    VideoDecodeError,
    VideoInfo,
    sample_indices,
)
from ski_lvlm.data.video.threads import with_deadline

__all__ = [
    "VideoDecodeError",
    "VideoInfo",
    "SAMPLING_MODES",
    "sample_indices",
    "read_frames",
    "probe_video",
    "scan_video",
    "write_video",
    "default_backend",
    "read_quarantine",
    "DEFAULT_TIMEOUT",
    "VIDEO_EXTS",
    "find_video",
    "REASONS",
]


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise VideoDecodeError(path, "missing", "no such file") from None
    if not path.is_file():
        raise VideoDecodeError(path, "not_video", "not a regular file")
    if st.st_size == 0:
        raise VideoDecodeError(path, "empty", "zero-byte file")


def read_frames(
    path: str | Path,
    num_frames: int,
    sampling: str = "segment_middle",
    size: int | tuple[int, int] | None = None,
    backend: str | None = None,
    rng: np.random.Generator | None = None,
    timeout: float | None = DEFAULT_TIMEOUT,
    return_indices: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Decode ``num_frames`` RGB frames -> uint8 ``[t, H, W, 3]``.

    Args:
        sampling: see :func:`sample_indices` (also for videos shorter than ``num_frames``).
        size: ``None`` keeps the native size; an int resizes the *short side* to that many pixels and keeps
            the aspect ratio; ``(H, W)`` resizes to exactly that (PIL antialiased bilinear, the same for
            both backends).
        backend: ``"decord"`` or ``"pyav"``; ``None`` = decord when installed, else PyAV, and PyAV again
            when decord fails on a stream (``decode_error``/``truncated``). Both pick the same indices
            through :func:`sample_indices`.
        timeout: seconds before :class:`VideoDecodeError` ``reason="timeout"``; ``None`` decodes inline.
        return_indices: also return the int64 frame indices that were decoded.

    Raises:
        VideoDecodeError: missing, zero-byte, non-video, truncated or corrupt file, or the timeout.
    """
    path = Path(path)
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be > 0, got {num_frames}")
    auto = backend is None
    backend = backend or default_backend()
    if backend not in ("decord", "pyav"):
        raise ValueError(f"backend must be 'decord' or 'pyav', got {backend!r}")
    _check_file(path)
    reader = _decord_read if backend == "decord" else _pyav_read
    try:
        frames, idx = with_deadline(path, timeout, lambda c: reader(path, num_frames, sampling, size, rng, c))
    except VideoDecodeError as e:
        # auto mode: a stream decord chokes on (seek bugs, a frame count one or two too high) gets a
        # second chance with PyAV's sequential decoder; files that are not videos fail fast either way
        if not (auto and backend == "decord" and e.reason in ("decode_error", "truncated")):
            raise
        frames, idx = with_deadline(path, timeout, lambda c: _pyav_read(path, num_frames, sampling, size, rng, c))
    return (frames, idx) if return_indices else frames


def find_video(folder: str | Path, video_id: str) -> Path | None:
    """``folder/<id>.<ext>`` for the first of :data:`VIDEO_EXTS` that exists (or ``<id>`` itself when it
    already ends in one); ``None`` when there is none. Datasets name videos by id, not by file."""
    folder = Path(folder)
    direct = folder / video_id
    if direct.suffix.lower() in VIDEO_EXTS and direct.is_file():
        return direct
    for ext in VIDEO_EXTS:
        p = folder / f"{video_id}{ext}"
        if p.is_file():
            return p
    return None


def probe_video(path: str | Path, timeout: float | None = DEFAULT_TIMEOUT) -> VideoInfo:
    """Frame count, fps, size and duration from the container (no decoding; PyAV).

    Containers without a frame count (mkv, webm) are counted by demuxing packets.
    """
    path = Path(path)
    _check_file(path)
    return with_deadline(path, timeout, lambda cancel: _pyav_info(path, cancel))


def scan_video(path: str | Path, timeout: float | None = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Decode every frame of ``path`` (PyAV, no RGB conversion) and report what was found.

    Returns ``{"path", "ok", "reason", "error", "num_frames", "decoded_frames", "fps", "width", "height",
    "duration"}``; never raises for a bad video (``ok=False`` with a ``reason`` from ``REASONS``).
    """
    path = Path(path)
    rec: dict[str, Any] = {"path": str(path), "ok": False, "reason": None, "error": None, "num_frames": None,
                           "decoded_frames": 0, "fps": None, "width": None, "height": None, "duration": None}

    def work(cancel: threading.Event) -> None:
        info = _pyav_info(path, cancel)
        rec.update(num_frames=info.num_frames, fps=info.fps, width=info.width, height=info.height,
                   duration=info.duration)
        container = _pyav_open(path)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            n = 0
            try:
                for _ in container.decode(stream):
                    if cancel.is_set():
                        return
                    n += 1
            except Exception as e:
                rec["decoded_frames"] = n
                raise VideoDecodeError(path, "decode_error", f"at frame {n}: {e}") from None
            rec["decoded_frames"] = n
        finally:
            container.close()
        if n == 0:
            raise VideoDecodeError(path, "empty", "no frame could be decoded")
        # mkv/webm carry no frame count but do carry a duration: a cut file keeps the full duration
        expected = max(info.num_frames, round(info.duration * info.fps) if info.fps else 0)
        if expected - n > _SHORTFALL_FRAMES:
            raise VideoDecodeError(path, "truncated", f"decoded {n} of the {expected} frames the header promises")

    try:
        _check_file(path)
        with_deadline(path, timeout, work)
        rec["ok"] = True
    except VideoDecodeError as e:
        rec["reason"], rec["error"] = e.reason, str(e)
    return rec


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    codec: str = "libx264",
    crf: int | None = None,
) -> None:
    """Write uint8 RGB frames ``[t, H, W, 3]`` (H and W even) as H.264 yuv420p; container from the suffix.

    The encoder runs single-threaded without B-frames, so the same frames give the same bytes on every
    run with the same FFmpeg build. ``crf`` (libx264 quality, default 23) is passed through when given.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [t, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    t, h, w, _ = frames.shape
    if t == 0:
        raise ValueError("frames is empty")
    if h % 2 or w % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {h}x{w}")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    # x264's lookahead (B-frame decisions, macroblock tree) reads uninitialised memory on small frames and
    # gives different bytes run to run; without it (and with one thread) the output is reproducible, and
    # with no B-frames the decode order is the display order.
    x264 = "bframes=0:rc-lookahead=0:mbtree=0"
    options = {"threads": "1", "x264-params": x264} if codec == "libx264" else {"threads": "1"}
    if crf is not None:
        options["crf"] = str(int(crf))
    # +bitexact: no random matroska segment UID and no encoder version string, so bytes are reproducible
    with av.open(str(path), mode="w", container_options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.thread_count = 1
        for k in range(t):
            frame = av.VideoFrame.from_ndarray(frames[k], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def read_quarantine(path: str | Path) -> dict[str, str]:
    """Read a ``quarantine.txt`` written by ``ski-lvlm data scan`` -> ``{absolute video path: reason}``.

    Each line is ``PATH<TAB>REASON: detail``; relative paths resolve against the list's folder; blank
    lines and ``#`` comments are skipped. Training code drops manifest rows whose resolved video path is
    a key of this dict.
    """
    path = Path(path)
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            p, _, reason = line.partition("\t")
            vp = Path(p)
            if not vp.is_absolute():
                vp = path.parent / vp
            out[os.path.normpath(str(vp))] = reason or "unknown"
    return out
