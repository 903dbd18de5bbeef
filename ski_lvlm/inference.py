"""Captioning and chat with a trained / exported SKI-LVLM: the one place model logic for users lives.

``ski-lvlm caption`` and the Gradio demo are thin wrappers around :class:`Captioner`:

    cap = Captioner.from_pretrained("exports/lvlm_instruct")          # export, or a run's final/ folder
    cap.caption(["a.mp4", "b.mp4"], batch_size=16)                     # -> ["...", "..."]
    for chunk in cap.stream("a.mp4", "What is the person doing?"):     # text as it is generated
        print(chunk, end="")
    cap.chat("a.mp4", [{"role": "user", "content": "Describe it."}, {"role": "assistant", "content": "..."},
                       {"role": "user", "content": "And then?"}])
    Captioner.from_llm("SmolLM2 folder").generate([[{"role": "user", "content": "Hi"}]], None)  # text only

Videos are decoded with the training-time settings stored in the model config (``num_frames``,
``frame_sampling``) and encoded by the model's own frozen tower, so inference features match training.
Prompts are left-padded (processor), generation uses the KV cache; features are merged on the prefill
step only. Greedy decoding (``temperature=0``) is deterministic.

Fast path (``fast=None`` -> on for CUDA, off on CPU): a static KV cache with transformers' compiled
decode step (``cache_implementation="static"``) and video decoding overlapped with generation. The CPU
path is plain ``generate`` (what the tests cover). GPU speed has not been measured in this repository.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ski_lvlm.data.video import VIDEO_EXTS
from ski_lvlm.utils.errors import SkiLvlmError

__all__ = ["DEFAULT_PROMPT", "VideoError", "VideoRejected", "CaptionResult", "Captioner",
           "validate_video", "find_videos",
           "resolve_generation_dtype", "dtype_name"]

DEFAULT_PROMPT = "Describe the video in detail."

VideoLike = str | os.PathLike | np.ndarray | torch.Tensor


class VideoError(SkiLvlmError, ValueError):
    """A video cannot be used; the message names the file and says why."""

    def __init__(self, path: str | Path, reason: str, msg: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{self.path}: {msg}")


class VideoRejected(VideoError):
    """A video refused before decoding (too large, too long, not a video)."""


@dataclass
class CaptionResult:
    video: str
    text: str | None
    error: str | None = None
    reason: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def find_videos(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; folders searched recursively for video suffixes (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.suffix.lower() in VIDEO_EXTS and f.is_file())
        else:
            out.append(p)
    return out


def validate_video(path: str | Path, *, max_bytes: int | None = None, max_seconds: float | None = None):
    """Cheap checks before decoding: exists, size, a readable video stream (probe only), duration.

    Returns:
        the :class:`~ski_lvlm.data.video.VideoInfo`.

    Raises:
        VideoRejected: with a message a user can act on.
    """
    from ski_lvlm.data.video import VideoDecodeError, probe_video

    path = Path(path)
    if not path.is_file():
        raise VideoRejected(path, "missing", "file not found")
    size = path.stat().st_size
    if max_bytes is not None and size > max_bytes:
        raise VideoRejected(path, "too_large", f"file is too large ({size / 2**20:.1f} MB > "
                                               f"{max_bytes / 2**20:.0f} MB limit)")
    try:
        info = probe_video(path, timeout=30)
    except VideoDecodeError as e:
        hint = {"not_video": "not a video file (no readable video stream)", "empty": "empty file",
                "no_video_stream": "the file has no video stream", "timeout": "probing the file timed out"}
        raise VideoRejected(path, e.reason, hint.get(e.reason, f"cannot read the video ({e.reason}: {e.detail})")
                            ) from None
    if info.num_frames <= 0:
        raise VideoRejected(path, "empty", "the video has no frames")
    if max_seconds is not None and info.duration > max_seconds:
        raise VideoRejected(path, "too_long", f"video is too long ({info.duration:.0f} s > {max_seconds:.0f} s limit)")
    return info


def resolve_generation_dtype(dtype: str | torch.dtype, device: torch.device | str) -> torch.dtype:
    """``"float32"``/``"bfloat16"`` (or fp32/bf16/fp16, a torch dtype); ``"auto"`` = bf16 on CUDA, fp32 elsewhere.

    ``auto`` keeps CPU runs exact by default; bf16 on CPU is opt-in (it changes greedy outputs).
    """
    from ski_lvlm.utils.runtime import resolve_dtype

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
    return resolve_dtype(dtype)


def dtype_name(dtype: str | torch.dtype, device: torch.device | str = "auto") -> str:
    """The resolved dtype as a name (``"float32"``, ``"bfloat16"``) for settings files; ``device`` may be
    ``"auto"`` (CUDA when available), as the CLIs take it."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return str(resolve_generation_dtype(dtype, device)).removeprefix("torch.")


def _messages(prompt: str | None, history: Sequence | None) -> list[dict[str, str]]:
    """``history`` as ``[(user, assistant), ...]`` or ``[{"role", "content"}, ...]`` + the new prompt."""
    msgs: list[dict[str, str]] = []
    for turn in history or []:
        if isinstance(turn, dict):
            msgs.append({"role": turn["role"], "content": str(turn["content"])})
        else:
            user, assistant = turn
            msgs += [{"role": "user", "content": str(user)}, {"role": "assistant", "content": str(assistant)}]
    msgs.append({"role": "user", "content": prompt or DEFAULT_PROMPT})
    return msgs


class Captioner:
    """Batched, streaming, multi-turn captioning around a SKI-LVLM model + processor.

    Args:
        model: :class:`~ski_lvlm.models.lvlm.SkiLvlmForConditionalGeneration`; without a video tower
            (``config.video_encoder`` None) only :meth:`generate` with precomputed features works.
        processor: its :class:`~ski_lvlm.models.lvlm.SkiLvlmProcessor`.
        fast: GPU fast path (static cache + compiled decode step); ``None`` = on for CUDA only.
        dtype: cast the model for generation: ``"float32"``, ``"bfloat16"`` (also on CPU, where it is the
            speed lever for generation), ``"auto"`` = bf16 on CUDA and fp32 on CPU, or ``None`` = keep the
            model as loaded (see :func:`resolve_generation_dtype`).
        decode_timeout: seconds allowed to decode one video.
        feature_cache_size: videos whose features are kept (chat turns about the same video reuse them).
    """

    def __init__(self, model: nn.Module, processor: Any, *, fast: bool | None = None, decode_timeout: float = 60.0,
                 feature_cache_size: int = 16, dtype: str | torch.dtype | None = None):
        self.device = next(model.parameters()).device
        if dtype is not None:  # cast once here, so features, prefill and decode all run in this dtype
            model = model.to(resolve_generation_dtype(dtype, self.device))
        self.model = model.eval()
        self.processor = processor
        self.fast = (self.device.type == "cuda") if fast is None else bool(fast)
        self.decode_timeout = decode_timeout
        self._features: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._cache_size = feature_cache_size
        self._lock = threading.RLock()  # one generation at a time on the shared model

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "auto", dtype: torch.dtype | str | None = None,
                        fast: bool | None = None, **kw: Any) -> "Captioner":
        """Load an export (``ski-lvlm export``) or a run's ``final/`` folder (:func:`ski_lvlm.models.lvlm.load`).

        ``dtype``: ``None`` = bf16 on CUDA, fp32 on CPU (or ``"fp32"`` / ``"bf16"`` / ``"fp16"`` / a torch dtype);
        ``"saved"`` keeps the weights' stored dtype (what ``eval captions`` does by default). A LoRA adapter is
        merged before the cast, so every dtype gives the same weights as loading as saved and casting after.
        """
        from ski_lvlm.models.lvlm import load
        from ski_lvlm.utils.runtime import pick_device

        dev = pick_device(device)
        dtype = None if dtype == "saved" else resolve_generation_dtype("auto" if dtype is None else dtype, dev)
        model, processor = load(path, device=dev, dtype=dtype)
        return cls(model, processor, fast=fast, **kw)

    @classmethod
    def from_llm(cls, path: str | Path, *, device: str = "auto", dtype: torch.dtype | str | None = None,
                 fast: bool | None = None, **kw: Any) -> "Captioner":
        """A plain causal LM folder (e.g. a prepared SmolLM2) as a text-only Captioner.

        The processor uses the tokenizer's chat template (Vicuna v1.1 without one), so text-only prompts are
        built exactly as for an LVLM and ``ski-lvlm serve`` can run a local LLM judge through this class.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ski_lvlm.models.lvlm import SkiLvlmProcessor
        from ski_lvlm.utils.runtime import pick_device

        dev = pick_device(device)
        dtype = resolve_generation_dtype("auto" if dtype is None else dtype, dev)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(dev)
        return cls(model, SkiLvlmProcessor(AutoTokenizer.from_pretrained(path)), fast=fast, **kw)

    @property
    def config(self):
        return self.model.config

    @property
    def takes_video(self) -> bool:
        """False for a plain LLM (:meth:`from_llm`) or an LVLM without a video tower."""
        return getattr(self.config, "video_encoder", None) is not None

    # ------------------------------------------------------------------ video -> features
    def sample_frames(self, video: VideoLike) -> np.ndarray:
        """The frames the model sees: uint8 ``[t, H, W, 3]`` (training-time count and sampling)."""
        if isinstance(video, torch.Tensor):
            video = video.cpu().numpy()
        if isinstance(video, np.ndarray):
            if video.ndim != 4 or video.shape[-1] != 3:
                raise ValueError(f"frames must be [t, H, W, 3], got {list(video.shape)}")
            return video
        from ski_lvlm.data.video import VideoDecodeError, default_backend, read_frames

        path = Path(video)
        try:
            try:
                return read_frames(path, self.config.num_frames, sampling=self.config.frame_sampling,
                                   timeout=self.decode_timeout)
            except VideoDecodeError:
                # decord rejects some valid files (seen: H.264 at 48x32 px, "DECORDArrayCopyFromTo: The size
                # must exactly match") for reasons read_frames does not retry; both backends pick the same
                # frame indices, so PyAV gives the same frames
                if default_backend() == "pyav":
                    raise
                return read_frames(path, self.config.num_frames, sampling=self.config.frame_sampling,
                                   timeout=self.decode_timeout, backend="pyav")
        except VideoDecodeError as e:
            raise VideoError(path, e.reason, f"cannot decode video ({e.reason}" + (f": {e.detail})" if e.detail
                                                                                    else ")")) from None

    @staticmethod
    def _key(video: VideoLike) -> tuple | None:
        if isinstance(video, (np.ndarray, torch.Tensor)):
            return None
        p = Path(video)
        try:
            st = p.stat()
        except OSError:
            return None
        return (str(p.resolve()), st.st_mtime_ns, st.st_size)

    @torch.no_grad()
    def encode(self, frames: Sequence[np.ndarray]) -> torch.Tensor:
        """Frames of several videos (sizes may differ) -> tower features ``[b, n_v, d_v]`` on the device."""
        out: list[torch.Tensor | None] = [None] * len(frames)
        groups: dict[tuple, list[int]] = {}
        for i, f in enumerate(frames):
            groups.setdefault(tuple(f.shape), []).append(i)
        for idx in groups.values():  # one tower call per frame size
            x = torch.from_numpy(np.stack([frames[i] for i in idx])).permute(0, 1, 4, 2, 3)  # [b, t, 3, H, W]
            feats = self.model.encode_video(x.to(self.device))  # [b, n_v, d_v]
            for j, i in enumerate(idx):
                out[i] = feats[j]
        return torch.stack(out)  # type: ignore[arg-type]

    def features(self, video: VideoLike) -> torch.Tensor:
        """Features ``[1, n_v, d_v]`` of one video, cached by path + mtime + size."""
        key = self._key(video)
        if key is not None and key in self._features:
            self._features.move_to_end(key)
            return self._features[key]
        feats = self.encode([self.sample_frames(video)])
        if key is not None:
            self._features[key] = feats
            while len(self._features) > self._cache_size:
                self._features.popitem(last=False)
        return feats

    # ------------------------------------------------------------------ generation
    def _gen_kwargs(self, max_new_tokens: int, temperature: float, top_p: float) -> dict[str, Any]:
        tok = self.processor.tokenizer
        kw: dict[str, Any] = dict(max_new_tokens=int(max_new_tokens), pad_token_id=tok.pad_token_id,
                                  eos_token_id=self.processor.stop_token_ids)
        if temperature and temperature > 0:
            kw.update(do_sample=True, temperature=float(temperature), top_p=float(top_p))
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.fast:
            kw["cache_implementation"] = "static"  # fixed-shape KV cache -> transformers compiles the decode step
        return kw

    def _inputs(self, conversations: list[list[dict[str, str]]], has_video: Sequence[bool]
                 ) -> dict[str, torch.Tensor]:
        """Left-padded prompts for several conversations (each ends with a user turn), by the processor."""
        inputs = self.processor(conversations, has_video=list(has_video))
        return {k: v.to(self.device) for k, v in inputs.items()}

    @torch.no_grad()
    def generate(self, conversations: list[list[dict[str, str]]], features: torch.Tensor | None, *,
                 has_video: Sequence[bool] | None = None, max_new_tokens: int = 64, temperature: float = 0.0,
                 top_p: float = 0.9, seed: int | None = None, streamer: Any = None, **generate_kwargs: Any
                 ) -> list[str]:
        """One batched ``generate`` call: ``features [b_v, n_v, d_v]`` pair with ``conversations`` in order.

        ``has_video`` marks the conversations that have a video (default: all when ``features`` is given,
        none when it is ``None``), so text-only and video chats share one batch; ``features`` then holds
        only the rows of the videos, ``b_v = sum(has_video)``.
        ``generate_kwargs`` go to ``model.generate`` (e.g. ``min_new_tokens`` for benchmarks, the server's
        per-row ``stopping_criteria``).
        """
        has_video = [features is not None] * len(conversations) if has_video is None else list(has_video)
        n_feats = 0 if features is None else features.shape[0]
        if len(has_video) != len(conversations) or n_feats != sum(has_video):
            raise ValueError(f"{len(conversations)} conversations, {sum(has_video)} with video, but {n_feats} "
                             "feature rows")
        inputs = self._inputs(conversations, has_video)
        if features is not None:
            inputs["video_features"] = features.to(self.device)  # a plain LLM never gets this keyword
        with self._lock:
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(**inputs, streamer=streamer,
                                      **{**self._gen_kwargs(max_new_tokens, temperature, top_p), **generate_kwargs})
        return self.processor.batch_decode(out[:, inputs["input_ids"].shape[1]:])

    def caption_iter(self, videos: Sequence[VideoLike], prompt: str | None = None, *, max_new_tokens: int = 64,
                     temperature: float = 0.0, top_p: float = 0.9, batch_size: int = 8, errors: str = "raise",
                     seed: int | None = None) -> Iterator[CaptionResult]:
        """Caption ``videos`` in batches, in order; the next batch decodes while this one generates.

        ``errors="record"`` yields a :class:`CaptionResult` with ``error`` for an unreadable video instead of
        raising (the other videos of its batch are still captioned).
        """
        if errors not in ("raise", "record"):
            raise ValueError("errors must be 'raise' or 'record'")
        batch_size = max(1, int(batch_size))
        conv = _messages(prompt, None)
        names = [v if isinstance(v, (str, os.PathLike)) else f"<frames {i}>" for i, v in enumerate(videos)]

        def load(chunk: range) -> list[tuple[int, np.ndarray | VideoError, float]]:
            res = []
            for i in chunk:
                t0 = time.perf_counter()
                try:
                    res.append((i, self.sample_frames(videos[i]), time.perf_counter() - t0))
                except VideoError as e:
                    res.append((i, e, time.perf_counter() - t0))
            return res

        chunks = [range(s, min(s + batch_size, len(videos))) for s in range(0, len(videos), batch_size)]
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(load, chunks[0]) if chunks else None
            for k in range(len(chunks)):
                loaded = pending.result()
                pending = pool.submit(load, chunks[k + 1]) if k + 1 < len(chunks) else None
                good = [(i, f, dt) for i, f, dt in loaded if not isinstance(f, VideoError)]
                texts: dict[int, tuple[str, float]] = {}
                if good:
                    t0 = time.perf_counter()
                    feats = self.encode([f for _, f, _ in good])
                    outs = self.generate([conv] * len(good), feats, max_new_tokens=max_new_tokens,
                                         temperature=temperature, top_p=top_p, seed=seed)
                    per = (time.perf_counter() - t0) / len(good)
                    texts = {i: (t, per + dt) for (i, _, dt), t in zip(good, outs)}
                for i, f, dt in loaded:
                    if isinstance(f, VideoError):
                        if errors == "raise":
                            if pending is not None:
                                pending.cancel()
                            raise f
                        yield CaptionResult(str(names[i]), None, str(f), f.reason, dt)
                    else:
                        yield CaptionResult(str(names[i]), texts[i][0], seconds=texts[i][1])

    def caption(self, videos: VideoLike | Sequence[VideoLike], prompt: str | None = None, *,
                max_new_tokens: int = 64, temperature: float = 0.0, top_p: float = 0.9, batch_size: int = 8,
                seed: int | None = None) -> list[str]:
        """Captions for many videos (paths or uint8 frame arrays ``[t, H, W, 3]``), in order.

        Raises:
            VideoError: naming the first video that cannot be decoded.
        """
        if isinstance(videos, (str, os.PathLike)) or (isinstance(videos, (np.ndarray, torch.Tensor))
                                                      and videos.ndim == 4):
            videos = [videos]
        return [r.text or "" for r in self.caption_iter(list(videos), prompt, max_new_tokens=max_new_tokens,
                                                        temperature=temperature, top_p=top_p,
                                                        batch_size=batch_size, seed=seed)]

    def stream(self, video: VideoLike, prompt: str | None = None, history: Sequence | None = None, *,
               max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 0.9,
               seed: int | None = None) -> Iterator[str]:
        """Yield the answer's text in chunks as tokens are generated (generation runs in a thread).

        ``history``: earlier turns, ``[(user, assistant), ...]`` or role/content dicts.
        """
        from transformers import TextIteratorStreamer

        feats = self.features(video)  # decode errors surface here, before the thread starts
        conv = _messages(prompt, history)
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=600)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                self.generate([conv], feats, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                              seed=seed, streamer=streamer)
            except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
                failure.append(e)
                streamer.end()

        thread = threading.Thread(target=run, name="ski-lvlm-generate", daemon=True)
        thread.start()
        first = True
        try:
            for chunk in streamer:
                if first:  # the template's leading space after "ASSISTANT:"
                    chunk, first = chunk.lstrip(), not chunk.strip()
                if chunk:
                    yield chunk
        finally:
            thread.join()
        if failure:
            raise failure[0]

    def chat(self, video: VideoLike, messages: Sequence[dict[str, str]], *, max_new_tokens: int = 128,
             temperature: float = 0.0, top_p: float = 0.9, seed: int | None = None) -> str:
        """The assistant's reply to a conversation about ``video`` (the last message is the user's)."""
        messages = list(messages)
        if not messages or messages[-1].get("role") != "user":
            raise ValueError("chat: the last message must have role 'user'")
        conv = _messages(messages[-1]["content"], messages[:-1])
        return self.generate([conv], self.features(video), max_new_tokens=max_new_tokens, temperature=temperature,
                             top_p=top_p, seed=seed)[0]
