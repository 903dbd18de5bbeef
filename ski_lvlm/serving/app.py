"""HTTP: the FastAPI app (``/v1/chat/completions``, ``/v1/models``, ``/health``) and a thread to run it in."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' `Request` annotations at runtime, and
# `Request` is imported inside the functions that add the endpoints (fastapi is optional for the library).
import asyncio
import contextlib
import hmac
import json
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from ski_lvlm.serving.engine import BatchingEngine
from ski_lvlm.serving.parsing import ApiError, ChatRequest, Completion, Limits, parse_request

API_KEY_ENV = "SKI_LVLM_API_KEY"


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
    from fastapi import FastAPI

    own_tmp = tmp_dir is None  # where data: URL videos are written while their request runs
    tmp_dir = Path(tempfile.mkdtemp(prefix="ski-lvlm-serve-")) if own_tmp else Path(tmp_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        if own_tmp:
            shutil.rmtree(tmp_dir, ignore_errors=True)

    app = FastAPI(title=f"SKI-LVLM: {model_name}", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.engine, app.state.model_name = engine, model_name
    _add_error_handlers(app)
    _add_health(app, engine, model_name)
    _add_models(app, model_name, api_key)
    _add_chat_completions(app, engine, model_name=model_name, limits=limits, api_key=api_key, tmp_dir=tmp_dir)
    return app


def _error(e: ApiError):
    """``e`` as the JSON response a client gets (401s name the auth scheme)."""
    from fastapi.responses import JSONResponse

    headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
    return JSONResponse(e.body(), status_code=e.status, headers=headers)


def _add_error_handlers(app: Any) -> None:
    """Errors outside the endpoints' own handling still reach the client in the OpenAI shape."""
    from fastapi import Request
    from starlette.exceptions import HTTPException

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # 404 / 405 in the OpenAI shape
        return _error(ApiError(exc.status_code, str(exc.detail), str(exc.detail).lower().replace(" ", "_")))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # a bug: still JSON, with the reason
        return _error(ApiError(500, f"internal error: {type(exc).__name__}: {exc}", "internal_error", "server_error"))


def _check_key(request: Any, api_key: str | None) -> None:
    """Raise a 401 unless ``api_key`` is None or the request sends ``Authorization: Bearer <api_key>``."""
    if api_key is None:
        return
    given = request.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise ApiError(401, "missing or wrong API key (send Authorization: Bearer <key>)", "invalid_api_key")


async def _read_body(request: Any, max_body: int) -> bytes:
    """The request body, refused with a 413 as soon as it is known to exceed ``max_body`` bytes."""
    if int(request.headers.get("content-length") or 0) > max_body:
        raise ApiError(413, f"the request body is larger than {max_body / 2**20:.0f} MB", "request_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body:
            raise ApiError(413, f"the request body is larger than {max_body / 2**20:.0f} MB", "request_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


def _add_health(app: Any, engine: BatchingEngine, model_name: str) -> None:
    """``GET /health``: open without the API key (load balancers), with the queue and batching counters."""

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_name, "queued": engine.queued, "max_queue": engine.max_queue,
                "max_batch": engine.max_batch, "generate_calls": engine.generate_calls,
                "requests_served": sum(engine.batch_sizes)}


def _add_models(app: Any, model_name: str, api_key: str | None) -> None:
    """``GET /v1/models``: the one model this server has."""
    from fastapi import Request

    @app.get("/v1/models")
    async def models(request: Request):
        try:
            _check_key(request, api_key)
        except ApiError as e:
            return _error(e)
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0,
                                            "owned_by": "ski-lvlm"}]}


def _add_chat_completions(app: Any, engine: BatchingEngine, *, model_name: str, limits: Limits,
                          api_key: str | None, tmp_dir: Path) -> None:
    """``POST /v1/chat/completions``: check, parse and queue the request, then answer as JSON or as SSE."""
    from fastapi import Request
    from fastapi.responses import StreamingResponse
    from starlette.concurrency import run_in_threadpool

    # a data: URL is base64 (4/3 of the bytes) inside JSON: the largest body a valid request can have
    max_body = limits.max_video_bytes * 4 // 3 + 4 * 2**20

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            _check_key(request, api_key)
            engine.begin_arrival()  # the worker waits a little for requests still being read and parsed
            try:
                body = await _read_body(request, max_body)
                req = await run_in_threadpool(parse_request, body, cap=engine.cap, model_name=model_name,
                                              limits=limits, tmp_dir=tmp_dir)
            except BaseException:
                engine.end_arrival()  # refused: never queued
                raise
            events = await _submit(engine, req)  # submit(arrived=True) ends the arrival
        except ApiError as e:
            return _error(e)
        created = int(time.time())
        if not req.stream:
            return await _completion(events, req, model_name, created)
        return StreamingResponse(_sse(events, req, model_name, created), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})


async def _submit(engine: BatchingEngine, req: ChatRequest) -> asyncio.Queue:
    """Queue ``req``; its events arrive on the returned queue once the first, ``("start",)``, has been read.

    Raises the request's :class:`ApiError` when the first event is an error (decoding its video failed), so
    that the client still gets a plain 4xx/5xx rather than a stream that fails.
    """
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    engine.submit(req, lambda ev: loop.call_soon_threadsafe(events.put_nowait, ev), arrived=True)
    first = await events.get()  # "start", or an error from decoding the video
    if first[0] == "error":
        raise first[1]
    return events


async def _completion(events: asyncio.Queue, req: ChatRequest, model_name: str, created: int):
    """The non-streaming answer: wait for ``done`` -> a ``chat.completion`` body (or the error response)."""
    while (ev := await events.get())[0] == "start":
        pass
    if ev[0] == "error":
        return _error(ev[1])
    c: Completion = ev[1]
    return {"id": req.id, "object": "chat.completion", "created": created, "model": model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                         "finish_reason": c.finish_reason}], "usage": _usage(c)}


async def _sse(events: asyncio.Queue, req: ChatRequest, model_name: str, created: int):
    """The streaming answer: a role chunk, one chunk per delta, the finish chunk (+ usage), then ``[DONE]``."""
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
