"""Chat-completions requests: the OpenAI body -> a validated :class:`ChatRequest`, or an :class:`ApiError`.

See the package docstring (:mod:`ski_lvlm.serving`) for what is supported. Everything here runs before a request
is queued, so a bad request costs no batch slot.
"""

import base64
import binascii
import json
import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse


class ApiError(Exception):
    """An error a client gets as ``{"error": {"message", "type", "code"}}`` with HTTP ``status``."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.type = status, message, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": None}}


@dataclass(frozen=True)
class Limits:
    """Per-request limits; a request over one gets a 4xx before it is queued."""

    max_video_bytes: int = 200 * 2**20
    """Largest video file or decoded ``data:`` URL (413 above)."""
    max_video_seconds: float = 600.0
    """Longest video (400 above)."""
    max_tokens: int = 1024
    """Largest accepted ``max_tokens`` (400 above)."""
    default_max_tokens: int = 256
    """``max_tokens`` of a request that does not say (capped by ``max_tokens``)."""
    video_roots: tuple[str, ...] = ()
    """When set, video file paths must lie under one of these folders (403 otherwise)."""


@dataclass
class ChatRequest:
    """A validated request: text-only messages (``<video>`` where the video part was) + sampling."""

    messages: list[dict[str, str]]
    video: Path | None
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    prompt_tokens: int = 0
    temp_file: Path | None = None  # a decoded data: URL, deleted when the request is done
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex[:24]}")

    @property
    def batch_key(self) -> tuple:
        """Requests with equal keys may share one ``generate`` call (see the module docstring)."""
        if self.temperature <= 0:
            return ("greedy",)
        if self.seed is not None:
            return ("seeded", self.id)  # alone: the seed alone decides the text
        return ("sample", self.temperature, self.top_p)

    def cleanup(self) -> None:
        if self.temp_file is not None:
            self.temp_file.unlink(missing_ok=True)


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (a stop token) | "length" (max_tokens)
    prompt_tokens: int
    completion_tokens: int


def _number(body: dict, name: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo < v <= hi if lo_open else lo <= v <= hi):
        raise ApiError(400, f"{name} must be a number in {'(' if lo_open else '['}{lo:g}, {hi:g}], got {v!r}",
                       "invalid_parameter")
    return float(v)


def _integer(body: dict, name: str) -> int | None:
    v = body.get(name)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
        raise ApiError(400, f"{name} must be an integer, got {v!r}", "invalid_parameter")
    return v


def _video_path(url: str, limits: Limits, tmp_dir: Path) -> tuple[Path, Path | None]:
    """A ``video_url`` -> (local path, temp file to delete or None). ``data:`` URLs are decoded to a file."""
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if not sep or ";base64" not in head:
            raise ApiError(400, "a data: URL must be base64 (data:video/mp4;base64,...)", "invalid_video_url")
        if len(data) * 3 // 4 > limits.max_video_bytes:
            raise ApiError(413, f"video is too large (> {limits.max_video_bytes / 2**20:.0f} MB limit)",
                           "video_too_large")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "the data: URL is not valid base64", "invalid_video_url") from None
        tmp_dir.mkdir(parents=True, exist_ok=True)
        sub = head[5:].split(";")[0].rpartition("/")[2]  # data:video/mp4;base64 -> mp4
        fd, name = tempfile.mkstemp(suffix=f".{sub}" if sub.isascii() and sub.isalnum() and len(sub) <= 5
                                    else ".mp4", dir=tmp_dir)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        return Path(name), Path(name)
    parsed = urlparse(url)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif not parsed.scheme:
        path = Path(url).expanduser()
    else:
        raise ApiError(400, f"video_url scheme {parsed.scheme!r} is not supported (use a file path, file:// or "
                            "data:video/mp4;base64,...; remote URLs are not fetched)", "invalid_video_url")
    if limits.video_roots:
        real = path.resolve()
        if not any(real.is_relative_to(Path(r).resolve()) for r in limits.video_roots):
            raise ApiError(403, f"{path}: outside the allowed video folders", "video_not_allowed")
    return path, None


def _flatten(messages: Any) -> tuple[list[dict[str, str]], str | None]:
    """OpenAI messages -> ``[{"role", "content"}]`` with ``<video>`` at the video part, and the video URL."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", "invalid_messages")
    out, video = [], None
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise ApiError(400, f"messages[{i}] must be an object with role system, user or assistant",
                           "invalid_messages")
        content = m.get("content")
        if isinstance(content, str):
            out.append({"role": m["role"], "content": content})
            continue
        if not isinstance(content, list):
            raise ApiError(400, f"messages[{i}].content must be a string or a list of parts", "invalid_messages")
        texts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind == "video_url":
                ref = part.get("video_url")
                url = ref.get("url") if isinstance(ref, dict) else ref
                if not isinstance(url, str) or not url:
                    raise ApiError(400, f"messages[{i}].content[{j}].video_url.url must be a string",
                                   "invalid_video_url")
                if m["role"] != "user" or video is not None:
                    raise ApiError(400, "one video per request, in a user message", "invalid_messages")
                video = url
                texts.append("<video>")
            else:
                raise ApiError(400, f"messages[{i}].content[{j}]: supported parts are text and video_url "
                                    f"(got {kind!r})", "unsupported_content")
        out.append({"role": m["role"], "content": "\n".join(texts)})
    if out[-1]["role"] != "user":
        raise ApiError(400, "the last message must be the user's", "invalid_messages")
    return out, video


def parse_request(body: bytes | str | dict, *, cap: Any, model_name: str, limits: Limits = Limits(),
                  tmp_dir: Path | None = None) -> ChatRequest:
    """Validate a chat-completions body (probing its video) -> :class:`ChatRequest`; raise :class:`ApiError`.

    Blocking (video probe, tokenisation): the app calls it in a worker thread.
    """
    from ski_lvlm.inference import VideoRejected, validate_video
    from ski_lvlm.models.lvlm.processing import LabelError

    if not isinstance(body, dict):
        try:
            body = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ApiError(400, f"the body is not valid JSON ({e})", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_json")
    if body.get("model") not in (None, model_name):
        raise ApiError(404, f"model {body.get('model')!r} does not exist; this server has {model_name!r}",
                       "model_not_found")
    if body.get("n") not in (None, 1):
        raise ApiError(400, "only n=1 is supported", "invalid_parameter")
    temperature = _number(body, "temperature", 0.0, 0.0, 2.0)
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True)
    max_tokens = _integer(body, "max_tokens")
    max_tokens = _integer(body, "max_completion_tokens") if max_tokens is None else max_tokens
    if max_tokens is not None and not 1 <= max_tokens <= limits.max_tokens:
        raise ApiError(400, f"max_tokens must be in [1, {limits.max_tokens}], got {max_tokens}", "invalid_parameter")
    seed = _integer(body, "seed")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, f"stream must be true or false, got {stream!r}", "invalid_parameter")
    opts = body.get("stream_options") or {}
    messages, url = _flatten(body.get("messages"))

    path = temp = None
    if url is not None:
        if not cap.takes_video:
            raise ApiError(400, f"model {model_name!r} is text-only; remove the video_url part", "video_not_supported")
        path, temp = _video_path(url, limits, Path(tmp_dir or tempfile.gettempdir()))
    try:
        if path is not None:
            try:
                validate_video(path, max_bytes=limits.max_video_bytes, max_seconds=limits.max_video_seconds)
            except VideoRejected as e:
                shown = "the data: URL" if temp is not None else str(path)
                msg = f"{shown}: {str(e).split(': ', 1)[-1]}"
                status = 413 if e.reason == "too_large" else 400
                code = {"too_large": "video_too_large", "too_long": "video_too_long",
                        "missing": "video_not_found"}.get(e.reason, "invalid_video")
                raise ApiError(status, msg, code) from None
        try:
            ids = cap.processor.build_prompt(messages, has_video=path is not None)
        except (LabelError, ValueError) as e:
            raise ApiError(400, f"messages: {e}", "invalid_messages") from None
        if len(ids) > cap.processor.max_length:
            raise ApiError(400, f"the prompt has {len(ids)} tokens > {cap.processor.max_length}",
                           "context_length_exceeded")
    except ApiError:
        if temp is not None:
            temp.unlink(missing_ok=True)
        raise
    return ChatRequest(messages, path, temperature=temperature, top_p=top_p,
                       max_tokens=max_tokens or min(limits.default_max_tokens, limits.max_tokens), seed=seed,
                       stream=stream, include_usage=bool(isinstance(opts, dict) and opts.get("include_usage")),
                       prompt_tokens=len(ids), temp_file=temp)
