"""What every part of the video package shares: the failure type, the container facts, the suffixes and
timeout defaults, and :func:`sample_indices`, the one place frame indices are chosen (so the decord and PyAV
backends return the same frames for the same file)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ski_lvlm.utils.errors import SkiLvlmError

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
