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
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ski_lvlm.utils.errors import SkiLvlmError

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
]

SAMPLING_MODES = ("segment_middle", "uniform", "random_segment")
DEFAULT_TIMEOUT = 60.0  # seconds per file; generous for a 1080p Charades clip on one slow core
# The one list of video file suffixes (folder scans, ``<id>.<ext>`` look-ups); the order is the look-up
# priority when one id has several files.
VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg")

# Failure reasons (the keys of ``scan_summary.json["failures"]``).
REASONS = ("missing", "empty", "not_video", "no_video_stream", "truncated", "decode_error", "timeout")


class VideoDecodeError(SkiLvlmError, RuntimeError):
    """A video could not be decoded. ``reason`` is one of ``REASONS``; ``str(e)`` names the file."""

    def __init__(self, path: str | Path, reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        super().__init__(f"{self.path}: {reason}" + (f": {detail}" if detail else ""))

    def __reduce__(self):
        return (type(self), (self.path, self.reason, self.detail))


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    width: int
    height: int
    duration: float  # seconds


# ----------------------------------------------------------------------------------------------------------
# Index sampling


def sample_indices(
    total: int, num_frames: int, sampling: str = "segment_middle", rng: np.random.Generator | None = None
) -> np.ndarray:
    """Pick ``num_frames`` frame indices (int64, non-decreasing, in ``[0, total)``) from a ``total``-frame video.

    * ``segment_middle``: split the video into ``num_frames`` equal segments, take each segment's middle
      frame (deterministic; the evaluation default, as in TSN/ViFi-CLIP test sampling).
    * ``uniform``: evenly spaced from the first to the last frame inclusive (``linspace``, rounded).
    * ``random_segment``: one random frame inside each segment (training augmentation; uses ``rng``,
      a ``numpy.random.Generator``; a fresh unseeded one when ``None``).

    When ``total < num_frames`` the segments are shorter than one frame and frames repeat evenly.
    """
    if total <= 0:
        raise ValueError(f"total must be > 0, got {total}")
    if num_frames <= 0:
        raise ValueError(f"num_frames must be > 0, got {num_frames}")
    n = num_frames
    if sampling == "segment_middle":
        idx = np.floor((np.arange(n) + 0.5) * total / n)
    elif sampling == "uniform":
        idx = np.round(np.linspace(0, total - 1, n)) if n > 1 else np.array([(total - 1) // 2])
    elif sampling == "random_segment":
        rng = np.random.default_rng() if rng is None else rng
        start = np.floor(np.arange(n) * total / n).astype(np.int64)
        end = np.maximum(start + 1, np.floor((np.arange(n) + 1) * total / n).astype(np.int64))
        idx = start + np.floor(rng.random(n) * (end - start))
    else:
        raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {sampling!r}")
    return np.clip(idx.astype(np.int64), 0, total - 1)


# ----------------------------------------------------------------------------------------------------------
# Helpers


def default_backend() -> str:
    """``"decord"`` when it imports, else ``"pyav"``."""
    try:
        import decord  # noqa: F401

        return "decord"
    except Exception:
        return "pyav"


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise VideoDecodeError(path, "missing", "no such file") from None
    if not path.is_file():
        raise VideoDecodeError(path, "not_video", "not a regular file")
    if st.st_size == 0:
        raise VideoDecodeError(path, "empty", "zero-byte file")


class _DecodeThreads:
    """A few reusable *daemon* decode threads (``ThreadPoolExecutor`` threads are joined at interpreter
    exit, so one stuck decoder would hang the program's exit)."""

    def __init__(self, max_threads: int):
        self.max_threads = max_threads
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        self.idle = 0

    def submit(self, fn: Callable[[threading.Event], Any], cancel: threading.Event) -> Future:
        fut: Future = Future()
        with self.lock:
            if self.idle == 0 and self.threads < self.max_threads:
                self.threads += 1
                threading.Thread(target=self._loop, name="ski-decode", daemon=True).start()
        self.tasks.put((fut, fn, cancel))
        return fut

    def retire(self) -> None:
        for _ in range(self.max_threads):
            self.tasks.put(None)

    def _loop(self) -> None:
        while True:
            with self.lock:
                self.idle += 1
            item = self.tasks.get()
            with self.lock:
                self.idle -= 1
            if item is None:
                return
            fut, fn, cancel = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(cancel))
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                if isinstance(e, VideoDecodeError):
                    # the message says it all; drop frames that still hold decoder objects
                    e.__traceback__ = e.__context__ = e.__cause__ = None
                fut.set_exception(e)
            del item, fut, fn, cancel


_POOL_THREADS = 8  # concurrent read_frames calls per process (threaded data loaders)
_pool_lock = threading.Lock()
_pool: _DecodeThreads | None = None


def _get_pool() -> _DecodeThreads:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _DecodeThreads(_POOL_THREADS)
        return _pool


def _reset_after_fork() -> None:
    """A forked child (DataLoader worker, scan worker) inherits the pool object but not its threads."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


_decoded_since_gc = False  # set by every PyAV/decord call


def _collect_before_fork() -> None:
    """Free unreachable decoder objects in the parent before a fork.

    PyAV containers and streams reference each other, so they are freed by the cycle collector, not at
    once. A codec context still waiting for collection when the process forks would be freed in the
    child, where its decoder threads do not exist: ``avcodec_free_context`` then waits forever (a
    DataLoader or ``multiprocessing`` worker that hangs on start). Collecting first avoids that; it runs
    only if this process decoded something since the last fork.
    """
    global _decoded_since_gc
    if _decoded_since_gc:
        import gc

        gc.collect()
        _decoded_since_gc = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_collect_before_fork, after_in_child=_reset_after_fork)


def _retire_pool(pool: _DecodeThreads) -> None:
    """Abandon a pool whose thread is stuck in a decoder; later calls get a fresh pool."""
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.retire()


def _with_deadline(path: Path, timeout: float | None, fn: Callable[[threading.Event], Any]) -> Any:
    """Run ``fn(cancel)`` on a decode thread; raise ``VideoDecodeError(timeout)`` after ``timeout`` s.

    ``fn`` polls ``cancel`` between frames, so an abandoned decode stops soon after the deadline; a decoder
    stuck inside C code keeps its thread, and the pool holding it is retired. The threads are reused
    (a fresh thread per call would get a fresh malloc arena and page-fault the whole frame buffer every
    time, about 5-10 % slower than decoding inline). Threads, not processes: no fork and no copy of the
    decoded frames on the happy path.
    """
    cancel = threading.Event()
    if timeout is None or timeout <= 0:
        return fn(cancel)
    pool = _get_pool()
    fut = pool.submit(fn, cancel)
    try:
        return fut.result(timeout)
    except FutureTimeout:
        cancel.set()
        if not fut.cancel():  # running (not just queued): its thread may be stuck
            _retire_pool(pool)
        raise VideoDecodeError(path, "timeout", f"no result after {timeout:g} s") from None


def _target_size(size: int | Sequence[int] | None, height: int, width: int) -> tuple[int, int] | None:
    """``size`` -> (H, W): an int resizes the short side to ``size`` keeping the aspect ratio (long side
    rounded to the nearest pixel); ``(H, W)`` is taken as is."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)):
        s = int(size)
        if s <= 0:
            raise ValueError(f"size must be > 0, got {size}")
        if height <= width:
            return s, max(1, round(width * s / height))
        return max(1, round(height * s / width)), s
    h, w = (int(v) for v in size)
    if h <= 0 or w <= 0:
        raise ValueError(f"size must be positive, got {tuple(size)}")
    return h, w


def _resize(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Resize one uint8 ``[H, W, 3]`` frame to ``hw`` with PIL's antialiased bilinear filter.

    Both backends use this one function, so decord and PyAV give near-identical resized frames.
    """
    if tuple(frame.shape[:2]) == hw:
        return frame
    from PIL import Image

    return np.asarray(Image.fromarray(frame).resize((hw[1], hw[0]), Image.BILINEAR))


def _looks_like_container(path: Path) -> bool:
    """True when the first bytes are an MP4/MOV, Matroska/WebM or AVI header."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3" or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")


def _classify_open_error(path: Path, e: BaseException) -> VideoDecodeError:
    """An open failure is ``truncated`` when the file starts like a video container (an mp4 cut before its
    ``moov`` index, say) and ``not_video`` otherwise (text, images, random bytes)."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    reason = "truncated" if _looks_like_container(path) else "not_video"
    return VideoDecodeError(path, reason, msg[:300])


# ----------------------------------------------------------------------------------------------------------
# PyAV backend


def _pyav_open(path: Path):
    import av

    global _decoded_since_gc
    _decoded_since_gc = True
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except Exception as e:  # av.error.* (InvalidDataError, ...), OSError
        raise _classify_open_error(path, e) from None
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(path, "no_video_stream", "the file has no video stream")
    return container


def _pyav_count_frames(path: Path, container, stream, cancel: threading.Event | None = None) -> int:
    """Frame count from the header, else by demuxing packets (no decoding; mkv/webm have no count)."""
    n = int(stream.frames or 0)
    if n > 0:
        return n
    try:
        for packet in container.demux(stream):
            if cancel is not None and cancel.is_set():
                break
            if packet.size:
                n += 1
        container.seek(0, stream=stream)
    except Exception as e:
        raise VideoDecodeError(path, "decode_error", f"while counting packets: {e}") from None
    return n


def _pyav_info(path: Path, cancel: threading.Event | None = None) -> VideoInfo:
    container = _pyav_open(path)
    try:
        stream = container.streams.video[0]
        n = _pyav_count_frames(path, container, stream, cancel)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = n / fps if fps else 0.0
        cc = stream.codec_context
        return VideoInfo(num_frames=n, fps=fps, width=int(cc.width), height=int(cc.height), duration=duration)
    finally:
        container.close()


# Tolerated shortfall of decoded frames vs. the header count before a file counts as truncated:
# real datasets have many clips whose container over-reports by a frame or two.
_SHORTFALL_FRAMES = 2


def _pyav_read(
    path: Path, num_frames: int, sampling: str, size, rng, cancel: threading.Event
) -> tuple[np.ndarray, np.ndarray]:
    container = _pyav_open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        total = _pyav_count_frames(path, container, stream, cancel)
        if total <= 0:
            raise VideoDecodeError(path, "empty", "the video stream has no frames")
        idx = sample_indices(total, num_frames, sampling, rng)
        wanted = np.unique(idx)
        cc = stream.codec_context
        hw = _target_size(size, int(cc.height), int(cc.width))
        slot = {int(f): k for k, f in enumerate(wanted)}
        got: list[np.ndarray | None] = [None] * len(wanted)
        last_needed = int(wanted[-1])
        last_frame: np.ndarray | None = None
        decoded = 0
        try:
            for i, frame in enumerate(container.decode(stream)):
                if cancel.is_set():
                    raise VideoDecodeError(path, "timeout", "cancelled")
                decoded = i + 1
                if i in slot:
                    arr = frame.to_ndarray(format="rgb24")  # [H, W, 3]
                    got[slot[i]] = arr if hw is None else _resize(arr, hw)
                    last_frame = arr
                if i >= last_needed:
                    break
        except VideoDecodeError:
            raise
        except Exception as e:
            raise VideoDecodeError(path, "decode_error", f"at frame {decoded}: {e}") from None
        missing = [k for k, a in enumerate(got) if a is None]
        if missing:
            if last_frame is None or total - decoded > _SHORTFALL_FRAMES:
                raise VideoDecodeError(path, "truncated", f"header says {total} frames, decoded only {decoded}")
            for k in missing:  # the last frame or two the header promised are absent: reuse the last one
                got[k] = last_frame
    finally:
        container.close()
    first = got[0]
    out = np.empty((len(idx),) + first.shape, np.uint8)  # [t, H, W, 3]
    pos = np.searchsorted(wanted, idx)
    for k, p in enumerate(pos):
        out[k] = got[p]
    return out, idx


# ----------------------------------------------------------------------------------------------------------
# decord backend

_decord_lock = threading.Lock()
_decord_quiet = False


def _decord_module():
    global _decord_quiet
    import decord

    if not _decord_quiet:
        with _decord_lock:
            try:
                decord.logging.set_level(decord.logging.QUIET)
            except Exception:
                pass
            _decord_quiet = True
    return decord


def _decord_to_numpy(batch) -> np.ndarray:
    """decord batch -> writable numpy ``[t, H, W, 3]``.

    When torch is already loaded (any training process), decord's buffer is handed over through DLPack
    without a copy (``asnumpy()`` copies: about 3 ms per 100 frames at 320x240); otherwise ``asnumpy()``.
    """
    if not hasattr(batch, "asnumpy"):  # decord.bridge set to torch/tensorflow by the caller
        return batch.numpy() if hasattr(batch, "numpy") else np.asarray(batch)
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return torch.utils.dlpack.from_dlpack(batch.to_dlpack()).numpy()
        except Exception:  # an exotic build without DLPack: copy instead
            pass
    return batch.asnumpy()


def _decord_read(
    path: Path, num_frames: int, sampling: str, size, rng, cancel: threading.Event
) -> tuple[np.ndarray, np.ndarray]:
    global _decoded_since_gc
    _decoded_since_gc = True
    decord = _decord_module()
    try:
        # decord's own width/height resize fails for some sizes (row-stride bug), so resize afterwards
        vr = decord.VideoReader(str(path))
    except Exception as e:
        raise _classify_open_error(path, e) from None
    total = len(vr)
    if total <= 0:
        raise VideoDecodeError(path, "empty", "the video stream has no frames")
    idx = sample_indices(total, num_frames, sampling, rng)
    unique = len(idx) == 1 or bool(np.all(idx[1:] != idx[:-1]))
    wanted = idx if unique else np.unique(idx)
    if cancel.is_set():
        raise VideoDecodeError(path, "timeout", "cancelled")
    try:
        batch = vr.get_batch(wanted.tolist())
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        low = msg.lower()
        reason = "truncated" if ("eof" in low or "end of file" in low or "out of bound" in low) else "decode_error"
        raise VideoDecodeError(path, reason, msg[:300]) from None
    out = _decord_to_numpy(batch)
    if out.shape[0] != len(wanted):
        raise VideoDecodeError(path, "truncated", f"asked for {len(wanted)} frames, got {out.shape[0]}")
    if not unique:
        out = out[np.searchsorted(wanted, idx)]
    if size is not None:
        hw = _target_size(size, out.shape[1], out.shape[2])
        if hw != tuple(out.shape[1:3]):
            out = np.stack([_resize(f, hw) for f in out])
    return out, idx


# ----------------------------------------------------------------------------------------------------------
# Public API


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
        frames, idx = _with_deadline(path, timeout, lambda c: reader(path, num_frames, sampling, size, rng, c))
    except VideoDecodeError as e:
        # auto mode: a stream decord chokes on (seek bugs, a frame count one or two too high) gets a
        # second chance with PyAV's sequential decoder; files that are not videos fail fast either way
        if not (auto and backend == "decord" and e.reason in ("decode_error", "truncated")):
            raise
        frames, idx = _with_deadline(path, timeout, lambda c: _pyav_read(path, num_frames, sampling, size, rng, c))
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
    return _with_deadline(path, timeout, lambda cancel: _pyav_info(path, cancel))


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
        _with_deadline(path, timeout, work)
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
