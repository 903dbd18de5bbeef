"""The two decoders behind :func:`ski_lvlm.data.video.read_frames`: PyAV (one sequential pass that stops
after the last needed frame) and decord (``get_batch`` on the unique indices). Both pick frames through
:func:`~ski_lvlm.data.video.base.sample_indices`, resize with the same PIL filter and raise
:class:`~ski_lvlm.data.video.base.VideoDecodeError` with a ``reason``; each polls ``cancel`` (set when
the caller's deadline passes).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ski_lvlm.data.video.base import VideoDecodeError, VideoInfo, sample_indices
from ski_lvlm.data.video.threads import note_decoded


def default_backend() -> str:
    """``"decord"`` when it imports, else ``"pyav"``."""
    try:
        import decord  # noqa: F401

        return "decord"
    except Exception:
        return "pyav"


# ----------------------------------------------------------------------------------------------------------
# Shared by both backends


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

    note_decoded()
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
    note_decoded()
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
