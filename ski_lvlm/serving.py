"""An OpenAI-compatible chat-completions server around one :class:`~ski_lvlm.inference.Captioner`.

``ski-lvlm serve`` (``demo/serve.py``) wires this module to uvicorn; everything else lives here:

* :func:`parse_request` turns an OpenAI ``/v1/chat/completions`` body into a :class:`ChatRequest`, or raises
  :class:`ApiError` (a 4xx with an OpenAI-style ``{"error": {"message", "type", "code"}}`` body). Supported:
  ``model``, ``messages`` (string content, or ``text`` parts and one ``video_url`` part whose ``url`` is a
  file path, ``file://...`` or ``data:video/mp4;base64,...``), ``temperature``, ``top_p``, ``max_tokens`` /
  ``max_completion_tokens``, ``seed``, ``stream``, ``stream_options.include_usage`` and ``n=1``; other
  fields are ignored. Videos are probed before they are queued (size, duration, "is it a video").
* :class:`BatchingEngine` owns a bounded queue and one worker thread. Each :meth:`Captioner.generate` call
  serves up to ``max_batch`` waiting requests (a full queue is a 503). **Batching rule:** requests share a
  call when their sampling is the same: every greedy request (``temperature=0``; ``top_p`` and ``seed``
  do not matter) batches with every other, sampled requests batch when ``temperature`` and ``top_p`` are
  equal, and a sampled request with a ``seed`` runs alone so that its seed gives the same text under any
  load. ``max_tokens`` may differ inside a batch (a per-row stopping criterion); so may having a video.
  ``Captioner`` has one ``GenerationConfig`` per call, hence the grouping rather than per-row parameters.
* :func:`build_app` is the FastAPI app (``/v1/chat/completions``, ``/v1/models``, ``/health``), with the
  optional API key (``Authorization: Bearer KEY``; ``/health`` stays open) and SSE streaming;
  :class:`BackgroundServer` runs it on 127.0.0.1 in a thread (tests, benchmarks).

Generation goes through ``Captioner.generate`` only: the server, the demo and ``ski-lvlm caption`` share one
inference path. Streaming uses a batch-aware ``transformers`` streamer that splits each step's tokens
``[b]`` by request, so streamed and non-streamed requests share batches too.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' `Request` annotations at runtime, and
# `Request` is imported inside build_app (fastapi is optional for the library).
import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import os
import queue
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote, urlparse

import torch

__all__ = ["ApiError", "Limits", "ChatRequest", "Completion", "Job", "BatchingEngine", "parse_request",
           "load_captioner", "build_app", "BackgroundServer", "free_port", "sse_events", "API_KEY_ENV"]

API_KEY_ENV = "SKI_LVLM_API_KEY"


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


# ---------------------------------------------------------------------------------------------- parsing
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


# ---------------------------------------------------------------------------------------------- engine
class Job:
    """One queued request. The worker emits ``("start",)`` (generation is about to begin), ``("delta", text)``
    (streaming only), then ``("done", Completion)`` or ``("error", ApiError)``.

    ``emit`` receives the events (the app bridges them into asyncio); by default they go to ``self.events``,
    which :meth:`result` reads.
    """

    def __init__(self, request: ChatRequest, emit: Callable[[tuple], None] | None = None):
        self.request = request
        self.events: queue.Queue = queue.Queue()
        self._emit = emit or self.events.put
        self.finished = False

    def emit(self, event: tuple) -> None:
        if event[0] in ("done", "error"):
            self.finished = True
            self.request.cleanup()  # before the client hears of it
        try:
            self._emit(event)
        except RuntimeError:  # the client's event loop is gone (server shutting down)
            pass

    def result(self, timeout: float | None = None) -> Completion:
        """Block until done (library use); raises the request's :class:`ApiError`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            kind, *rest = self.events.get(timeout=left)
            if kind == "done":
                return rest[0]
            if kind == "error":
                raise rest[0]


class _Rows:
    """A ``transformers`` streamer for a whole batch: splits each step's tokens ``[b]`` by request.

    Tracks per row the generated ids (without the stop token), whether a stop token ended it, and, for
    streaming requests, emits the text added since the last step (held back while it ends in a partial
    UTF-8 character).
    """

    def __init__(self, jobs: list[Job], processor: Any):
        self.jobs, self.processor = jobs, processor
        self.stop_ids = set(processor.stop_token_ids)
        self.tokens: list[list[int]] = [[] for _ in jobs]
        self.stopped = [False] * len(jobs)
        self.sent = [""] * len(jobs)
        self.width: int | None = None  # prompt width s (left-padded)

    def done(self, i: int) -> bool:
        return self.stopped[i] or len(self.tokens[i]) >= self.jobs[i].request.max_tokens

    def put(self, value: torch.Tensor) -> None:
        if self.width is None:  # generate first hands over the prompt ids [b, s]
            self.width = value.shape[-1]
            return
        for i, tok in enumerate(value.reshape(-1).tolist()):  # [b]
            if self.done(i):
                continue  # padding after the row ended
            if tok in self.stop_ids:
                self.stopped[i] = True
                continue
            self.tokens[i].append(tok)
            if self.jobs[i].request.stream:
                self.flush(i)

    def flush(self, i: int, final: str | None = None) -> None:
        text = self.processor.decode(self.tokens[i]) if final is None else final
        if (final is None and text.endswith("\ufffd")) or not text.startswith(self.sent[i]):
            return  # a partial character, or a retokenised prefix: wait for more
        delta, self.sent[i] = text[len(self.sent[i]):], text
        if delta:
            self.jobs[i].emit(("delta", delta))

    def end(self) -> None:
        pass


class _MaxTokens:
    """Per-row ``max_tokens`` as a stopping criterion ``[b]``: rows of one batch may want different lengths.

    Counted from ``input_ids`` ``[b, s + n]``: generate calls the criteria before the streamer sees a step.
    """

    def __init__(self, rows: _Rows):
        self.limits = torch.tensor([j.request.max_tokens for j in rows.jobs])  # [b]
        self.rows = rows

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        n = input_ids.shape[1] - (self.rows.width or 0)
        return (n >= self.limits).to(input_ids.device)  # [b]


class BatchingEngine:
    """A bounded queue and one worker thread that serves it in batches through ``cap.generate``.

    Args:
        cap: the :class:`~ski_lvlm.inference.Captioner`.
        max_batch: requests per ``generate`` call at most.
        max_queue: requests waiting (not yet running) at most; :meth:`submit` raises a 503 beyond.
        batch_window_s: after taking the first waiting request, wait this long for more to arrive
            unless the batch is already full. While a batch runs, new requests queue anyway, so under load
            batches fill without it; it helps clients that send in lock step.
    """

    def __init__(self, cap: Any, *, max_batch: int = 8, max_queue: int = 64, batch_window_s: float = 0.01):
        if max_batch < 1 or max_queue < 1 or batch_window_s < 0:
            raise ValueError("max_batch and max_queue must be >= 1, batch_window_s >= 0")
        self.cap, self.max_batch, self.max_queue, self.batch_window_s = cap, max_batch, max_queue, batch_window_s
        self._waiting: deque[Job] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.generate_calls = 0
        self.batch_sizes: list[int] = []  # one entry per generate call (tests, /health)

    def start(self) -> "BatchingEngine":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ski-lvlm-serve", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking requests; queued ones get a 503; the running batch finishes."""
        with self._cond:
            self._closed = True
            left = list(self._waiting)
            self._waiting.clear()
            self._cond.notify_all()
        for job in left:
            job.emit(("error", ApiError(503, "the server is shutting down", "shutting_down", "server_error")))
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def submit(self, request: ChatRequest, emit: Callable[[tuple], None] | None = None) -> Job:
        job = Job(request, emit)
        with self._cond:
            if self._closed or len(self._waiting) >= self.max_queue:
                request.cleanup()
                raise ApiError(503, f"the server is busy ({len(self._waiting)} requests queued); retry later",
                               "queue_full", "server_error")
            self._waiting.append(job)
            self._cond.notify()
        return job

    def _take(self) -> list[Job] | None:
        """The next batch: the oldest request and up to ``max_batch - 1`` later ones with its batch key."""
        with self._cond:
            while not self._waiting and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = time.monotonic() + self.batch_window_s
            while len(self._waiting) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if not self._waiting:
                return None
            key = self._waiting[0].request.batch_key
            batch = [j for j in self._waiting if j.request.batch_key == key][: self.max_batch]
            for j in batch:
                self._waiting.remove(j)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            try:
                self.run_batch(batch)
            finally:
                for job in batch:
                    if not job.finished:
                        job.emit(("error", ApiError(500, "internal error", "internal_error", "server_error")))

    def run_batch(self, jobs: list[Job]) -> None:
        """Decode the videos (features are cached per file), then one ``generate`` call for the batch."""
        from transformers import StoppingCriteriaList

        from ski_lvlm.inference import VideoError

        ready, feats = [], []
        for job in jobs:
            if job.request.video is not None:
                try:
                    feats.append(self.cap.features(job.request.video))  # [1, n_v, d_v]
                except VideoError as e:
                    job.emit(("error", ApiError(400, str(e), "invalid_video")))
                    continue
            ready.append(job)
        if not ready:
            return
        for job in ready:
            job.emit(("start",))
        reqs = [j.request for j in ready]
        rows = _Rows(ready, self.cap.processor)
        first = reqs[0]  # every request of the batch samples alike (batch_key)
        try:
            texts = self.cap.generate(
                [r.messages for r in reqs], torch.cat(feats) if feats else None,  # [b_v, n_v, d_v]
                has_video=[r.video is not None for r in reqs], max_new_tokens=max(r.max_tokens for r in reqs),
                temperature=first.temperature, top_p=first.top_p,
                seed=first.seed if first.temperature > 0 else None, streamer=rows,
                stopping_criteria=StoppingCriteriaList([_MaxTokens(rows)]))
        except Exception as e:  # noqa: BLE001 - every client of the batch gets a 500 with the reason
            err = ApiError(500, f"generation failed: {type(e).__name__}: {e}", "generation_failed", "server_error")
            for job in ready:
                job.emit(("error", err))
            return
        finally:
            self.generate_calls += 1
            self.batch_sizes.append(len(ready))
        for i, (job, text) in enumerate(zip(ready, texts)):
            if job.request.stream:
                rows.flush(i, final=text)
            job.emit(("done", Completion(text, "stop" if rows.stopped[i] else "length", job.request.prompt_tokens,
                                         len(rows.tokens[i]))))


def load_captioner(path: str | Path, *, device: str = "auto", dtype: str | None = None) -> Any:
    """An export / a run's ``final/`` folder (``processor_config.json``) or a plain causal-LM folder (text only)."""
    from ski_lvlm.inference import Captioner

    path = Path(path)
    if (path / "processor_config.json").is_file():
        return Captioner.from_pretrained(path, device=device, dtype=dtype)
    if (path / "config.json").is_file():
        return Captioner.from_llm(path, device=device, dtype=dtype)
    raise FileNotFoundError(f"{path}: neither a SKI-LVLM export (processor_config.json) nor a model folder "
                            "(config.json)")


# ---------------------------------------------------------------------------------------------- HTTP
def _chunk(req: ChatRequest, model: str, created: int, delta: dict, finish: str | None = None) -> str:
    data = {"id": req.id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def _usage(c: Completion) -> dict[str, int]:
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens}


def build_app(engine: BatchingEngine, *, model_name: str, limits: Limits = Limits(), api_key: str | None = None,
              tmp_dir: Path | None = None):
    """The FastAPI app. ``api_key``: when set, every ``/v1`` call needs ``Authorization: Bearer <key>``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    own_tmp = tmp_dir is None  # where data: URL videos are written while their request runs
    tmp_dir = Path(tempfile.mkdtemp(prefix="ski-lvlm-serve-")) if own_tmp else Path(tmp_dir)
    # a data: URL is base64 (4/3 of the bytes) inside JSON: the largest body a valid request can have
    max_body = limits.max_video_bytes * 4 // 3 + 4 * 2**20

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if own_tmp:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    app = FastAPI(title=f"SKI-LVLM: {model_name}", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.engine, app.state.model_name = engine, model_name

    def error(e: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return JSONResponse(e.body(), status_code=e.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # 404 / 405 in the OpenAI shape
        return error(ApiError(exc.status_code, str(exc.detail), str(exc.detail).lower().replace(" ", "_")))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # a bug: still JSON, with the reason
        return error(ApiError(500, f"internal error: {type(exc).__name__}: {exc}", "internal_error", "server_error"))

    def check_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key (send Authorization: Bearer <key>)", "invalid_api_key")

    async def read_body(request: Request) -> bytes:
        if int(request.headers.get("content-length") or 0) > max_body:
            raise ApiError(413, f"the request body is larger than {max_body / 2**20:.0f} MB", "request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_body:
                raise ApiError(413, f"the request body is larger than {max_body / 2**20:.0f} MB", "request_too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, "queued": engine.queued, "max_queue": engine.max_queue,
                "max_batch": engine.max_batch, "generate_calls": engine.generate_calls,
                "requests_served": sum(engine.batch_sizes)}

    @app.get("/v1/models")
    async def models(request: Request):
        try:
            check_key(request)
        except ApiError as e:
            return error(e)
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "ski-lvlm"}]}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            check_key(request)
            body = await read_body(request)
            req = await run_in_threadpool(parse_request, body, cap=engine.cap, model_name=model_name, limits=limits,
                                          tmp_dir=tmp_dir)
            loop = asyncio.get_running_loop()
            events: asyncio.Queue = asyncio.Queue()
            engine.submit(req, lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev))
            first = await events.get()  # "start", or an error from decoding the video
            if first[0] == "error":
                raise first[1]
        except ApiError as e:
            return error(e)
        created = int(time.time())
        if not req.stream:
            while (ev := await events.get())[0] == "start":
                pass
            if ev[0] == "error":
                return error(ev[1])
            c: Completion = ev[1]
            return {"id": req.id, "object": "chat.completion", "created": created, "model": model_name,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                                 "finish_reason": c.finish_reason}], "usage": _usage(c)}

        async def sse():
            yield _chunk(req, model_name, created, {"role": "assistant", "content": ""})
            while True:
                kind, *rest = await events.get()
                if kind == "delta":
                    yield _chunk(req, model_name, created, {"content": rest[0]})
                elif kind == "error":  # after the response started: an error event, then the end
                    yield f"data: {json.dumps(rest[0].body())}\n\n"
                    break
                elif kind == "done":
                    yield _chunk(req, model_name, created, {}, rest[0].finish_reason)
                    if req.include_usage:
                        data = {"id": req.id, "object": "chat.completion.chunk", "created": created,
                                "model": model_name, "choices": [], "usage": _usage(rest[0])}
                        yield f"data: {json.dumps(data)}\n\n"
                    break
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class BackgroundServer:
    """Run an app with uvicorn in a daemon thread (tests, benchmarks): ``with BackgroundServer(app) as url:``.

    ``url`` is ``http://127.0.0.1:PORT``; the OpenAI base URL is ``url + "/v1"``.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None):
        import uvicorn

        self.host, self.port = host, port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=self.port, log_level="warning",
                                                    access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="ski-lvlm-uvicorn", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.url}")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def sse_events(lines: Iterator[str]) -> Iterator[dict | str]:
    """Parse an SSE body line by line -> the JSON of each ``data:`` event, and ``"[DONE]"`` (clients, tests)."""
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):].strip()
            yield data if data == "[DONE]" else json.loads(data)
