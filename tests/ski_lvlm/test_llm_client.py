"""ChatClient against a scripted OpenAI-compatible stub server on 127.0.0.1."""

from __future__ import annotations

import itertools
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from ski_lvlm.llm_client import ChatClient, ChatError, StubChatServer

MSG = [{"role": "user", "content": "hi"}]


def _client(server: StubChatServer, **kw) -> ChatClient:
    kw = {"timeout": 2.0, "max_retries": 3, "sleep": lambda s: None, "seed": 0, **kw}
    return ChatClient(server.base_url, "judge-x", **kw)


def _script(*replies):
    """A responder that plays ``replies`` in order, then repeats the last one."""
    it = iter(replies)
    last = [replies[-1]]
    lock = threading.Lock()

    def respond(body):
        with lock:
            return next(it, last[0])

    return respond


def test_valid_answer_and_request_body() -> None:
    with StubChatServer(lambda body: "hello there") as srv:
        c = _client(srv)
        assert c.chat(MSG, temperature=0.2, max_tokens=5) == "hello there"
        body = srv.requests[0]
        assert body["model"] == "judge-x" and body["messages"] == MSG
        assert body["temperature"] == 0.2 and body["max_tokens"] == 5
        assert c.n_requests == 1


@pytest.mark.parametrize("bad", [
    (200, "this is not json", 0.0),
    (200, '{"choices": []}', 0.0),
    (200, '{"choices": [{"message": {"content": null}}]}', 0.0),
    (500, "internal error", 0.0),
    (429, "slow down", 0.0),
])
def test_retries_malformed_and_server_errors_then_succeeds(bad) -> None:
    with StubChatServer(_script(bad, bad, "ok")) as srv:
        c = _client(srv)
        assert c.chat(MSG) == "ok"
        assert len(srv.requests) == 3 and c.n_requests == 3


def test_timeout_is_retried() -> None:
    with StubChatServer(_script((200, '{"choices": [{"message": {"content": "late"}}]}', 1.5), "fast")) as srv:
        c = _client(srv, timeout=0.4)
        assert c.chat(MSG) == "fast"
        assert c.n_requests == 2


def test_persistent_garbage_raises_after_bounded_attempts() -> None:
    with StubChatServer(lambda body: (200, "<html>garbage</html>", 0.0)) as srv:
        c = _client(srv, max_retries=2)
        with pytest.raises(ChatError, match="3 attempts"):
            c.chat(MSG)
        assert len(srv.requests) == 3


def test_client_error_is_not_retried() -> None:
    with StubChatServer(lambda body: (404, '{"error": "model not found"}', 0.0)) as srv:
        c = _client(srv)
        with pytest.raises(ChatError, match="HTTP 404"):
            c.chat(MSG)
        assert len(srv.requests) == 1


def test_backoff_grows_exponentially_with_jitter() -> None:
    delays: list[float] = []
    with StubChatServer(lambda body: (503, "busy", 0.0)) as srv:
        c = _client(srv, max_retries=4, backoff=1.0, max_backoff=5.0, sleep=delays.append)
        with pytest.raises(ChatError):
            c.chat(MSG)
    assert len(delays) == 4
    caps = [1.0, 2.0, 4.0, 5.0]
    assert all(0 <= d <= cap for d, cap in zip(delays, caps))
    assert len(set(delays)) == 4  # jittered, not constant


def test_api_key_from_env_is_sent_but_never_logged(monkeypatch, caplog) -> None:
    secret = "sk-test-SECRET-123"
    monkeypatch.setenv("SKI_TEST_KEY", secret)
    with StubChatServer(_script((500, "boom", 0.0), "fine")) as srv:
        c = _client(srv, api_key_env="SKI_TEST_KEY")
        with caplog.at_level(logging.DEBUG):
            assert c.chat(MSG) == "fine"
        assert srv.requests[0]["_headers"]["authorization"] == f"Bearer {secret}"
    assert secret not in caplog.text and secret not in repr(c)
    monkeypatch.delenv("SKI_TEST_KEY")
    with StubChatServer(lambda body: "x") as srv:
        _client(srv, api_key_env="SKI_TEST_KEY").chat(MSG)
        assert "authorization" not in srv.requests[0]["_headers"]


@pytest.mark.slow
def test_concurrent_use_from_threads() -> None:
    counter = itertools.count()

    def respond(body):
        n = next(counter)
        if n % 4 == 0:
            return (502, "bad gateway", 0.0)
        return "echo:" + body["messages"][0]["content"]

    with StubChatServer(respond) as srv:
        c = _client(srv)
        with ThreadPoolExecutor(8) as pool:
            outs = list(pool.map(lambda i: c.chat([{"role": "user", "content": str(i)}]), range(40)))
    assert outs == [f"echo:{i}" for i in range(40)]
    assert c.n_requests == len(srv.requests) >= 40


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        ChatClient("127.0.0.1:8000", "m")
    with pytest.raises(ValueError):
        ChatClient("http://127.0.0.1:1/v1", "m", timeout=0)


def test_connection_refused_is_retried_then_reported() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delays: list[float] = []
    c = ChatClient(f"http://127.0.0.1:{port}/v1", "m", timeout=1.0, max_retries=2, sleep=delays.append)
    with pytest.raises(ChatError, match="3 attempts"):
        c.chat(MSG)
    assert c.n_requests == 3 and len(delays) == 2
