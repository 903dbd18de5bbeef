"""A small OpenAI-compatible chat-completions client (vLLM, Ollama, llama.cpp server, OpenAI).

Used by the LLM judge and by the QA/instruction writers. It speaks ``POST {base_url}/chat/completions``
and returns the first choice's message text. What it adds over a bare ``requests.post``:

* retries with exponential backoff and full jitter on connection errors, timeouts, HTTP 429/5xx and
  malformed responses (non-JSON, no ``choices``); other 4xx errors fail at once (a retry cannot fix a
  wrong model name or a bad key);
* the API key is read from an environment variable *name* and never logged or put in error messages;
* thread safety: one ``requests.Session`` per thread, so one client can serve a ThreadPoolExecutor.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from typing import Any, Callable, Sequence

import requests

from ski_lvlm.utils.errors import SkiLvlmError

__all__ = ["ChatClient", "ChatError", "ChatResponseError", "StubChatServer"]

log = logging.getLogger(__name__)


class ChatError(SkiLvlmError, RuntimeError):
    """The endpoint could not produce an answer (after all retries, or a non-retryable error)."""


class ChatResponseError(ChatError):
    """The endpoint answered, but not with a usable chat completion (retryable)."""


class ChatClient:
    """OpenAI-compatible chat client.

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (vLLM) or ``http://127.0.0.1:11434/v1``
            (Ollama); ``/chat/completions`` is appended.
        model: the model name sent with every request (recorded by callers in their results).
        api_key_env: name of the environment variable holding the key; a missing variable means no
            ``Authorization`` header (local servers do not need one).
        timeout: seconds per HTTP request (connect and read).
        max_retries: retries after the first attempt (so ``max_retries + 1`` attempts at most).
        backoff: base delay in seconds; attempt ``k`` sleeps ``uniform(0, min(max_backoff, backoff * 2**k))``.
        default_gen: generation defaults merged into every request (e.g. ``temperature=0``).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        default_gen: dict[str, Any] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_retries < 0 or timeout <= 0:
            raise ValueError("max_retries must be >= 0 and timeout > 0")
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.default_gen = dict(default_gen or {})
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._local = threading.local()
        self._stats_lock = threading.Lock()
        self.n_requests = 0  # HTTP requests sent (including retries), for tests and reports

    def __repr__(self) -> str:  # no key in here, ever
        return f"ChatClient(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            self._local.session = s
        return s

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _delay(self, attempt: int) -> float:
        with self._rng_lock:
            return self._rng.uniform(0, min(self.max_backoff, self.backoff * (2**attempt)))

    @staticmethod
    def _extract(resp: requests.Response) -> str:
        try:
            data = resp.json()
        except ValueError:
            raise ChatResponseError(f"response is not JSON: {resp.text[:200]!r}") from None
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ChatResponseError(f"response has no choices[0].message.content: {str(data)[:200]}") from None
        if not isinstance(content, str):
            raise ChatResponseError(f"message content is not a string: {content!r:.200}")
        return content

    def chat(self, messages: Sequence[dict[str, str]], **gen: Any) -> str:
        """Send ``messages`` (``[{"role": ..., "content": ...}]``) and return the reply text.

        Extra keyword arguments (``temperature``, ``max_tokens``, ``seed``, ``response_format``...)
        are passed through in the request body. Raises :class:`ChatError` when all attempts fail.
        """
        body = {"model": self.model, "messages": list(messages), **self.default_gen, **gen}
        last: str = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._sleep(self._delay(attempt - 1))
            with self._stats_lock:
                self.n_requests += 1
            try:
                resp = self._session().post(self.url, json=body, headers=self._headers(), timeout=self.timeout)
            except requests.Timeout:
                last = f"timed out after {self.timeout:g} s"
                log.warning("chat request to %s %s (attempt %d)", self.url, last, attempt + 1)
                continue
            except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                    requests.exceptions.InvalidSchema) as e:
                raise ChatError(f"{self.url}: invalid URL ({type(e).__name__})") from None
            except requests.RequestException as e:  # connection refused/reset, truncated body, ...
                last = f"request error: {type(e).__name__}"
                log.warning("chat request to %s failed: %s (attempt %d)", self.url, last, attempt + 1)
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                log.warning("chat request to %s: %s (attempt %d)", self.url, last, attempt + 1)
                continue
            if resp.status_code >= 400:
                raise ChatError(f"{self.url}: HTTP {resp.status_code}: {resp.text[:300]}")
            try:
                return self._extract(resp)
            except ChatResponseError as e:
                last = str(e)
                log.warning("chat request to %s: %s (attempt %d)", self.url, last, attempt + 1)
        raise ChatError(f"{self.url}: no valid answer after {self.max_retries + 1} attempts (last: {last})")


# --------------------------------------------------------------------------------------------------
# A scripted stand-in server for tests and offline demos
# --------------------------------------------------------------------------------------------------
class StubChatServer:
    """An OpenAI-compatible ``/chat/completions`` server on 127.0.0.1 (ephemeral port) in a thread.

    ``responder(body) -> reply`` decides each answer from the request body (a dict). ``reply`` is
    either a string (sent as a valid completion whose message content is that string) or a tuple
    ``(status, raw_body_text, delay_s)`` for malformed bodies, HTTP errors and slow answers.
    Every request body is appended to ``requests`` (thread-safe). Use as a context manager;
    ``base_url`` is ``http://127.0.0.1:PORT/v1``.
    """

    def __init__(self, responder: Callable[[dict], "str | tuple[int, str, float]"]):
        import http.server
        import json as _json

        self.responder = responder
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length", 0))
                try:
                    body = _json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    body = {}
                body["_headers"] = {k.lower(): v for k, v in self.headers.items()}
                with outer._lock:
                    outer.requests.append(body)
                reply = outer.responder(body)
                if isinstance(reply, str):
                    status, delay = 200, 0.0
                    text = _json.dumps({"id": "stub", "object": "chat.completion", "model": body.get("model"),
                                        "choices": [{"index": 0, "finish_reason": "stop",
                                                     "message": {"role": "assistant", "content": reply}}]})
                else:
                    status, text, delay = reply
                if delay:
                    time.sleep(delay)
                data = text.encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> "StubChatServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
