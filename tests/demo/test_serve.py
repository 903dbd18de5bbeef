"""`ski-lvlm serve` over loopback: an in-process uvicorn server on 127.0.0.1 (free port) with a tiny export.

Covers the happy path (video as a path, file:// and data: URL), SSE streaming, dynamic batching (concurrent
requests served by fewer generate calls), each bad input (malformed JSON, not a video, too large, too long,
unknown model, bad parameters), a full queue (503), the API key, and text-only chat with a plain causal LM.
"""

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from ski_lvlm.serving import (BackgroundServer, BatchingEngine, Limits, build_app,  # noqa: E402
                               load_captioner, sse_events)
from tests.tiny_lvlm import make_run, make_videos  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "tiny-export"
PROMPT = "What is the person doing?"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny export, its Captioner, small clips, a 10 s clip, a large clip and the limits they test."""
    from ski_lvlm.data.video import write_video
    from ski_lvlm.export import export_run

    root = tmp_path_factory.mktemp("serve")
    export_run(make_run(root / "run"), root / "export", log=lambda m: None)
    videos = make_videos(root / "videos", 2)
    write_video(root / "long.mp4", np.full((60, 16, 16, 3), 100, np.uint8), fps=6)  # 10 s, a few KB
    big = np.random.default_rng(0).integers(0, 255, (8, 128, 128, 3), dtype=np.uint8)
    write_video(root / "big.mp4", big, fps=8)  # 1 s, noise: many bytes
    max_bytes = max(p.stat().st_size for p in [*videos, root / "long.mp4"]) + 1000
    assert (root / "big.mp4").stat().st_size > max_bytes
    (root / "notes.mp4").write_text("these are my notes, not a video\n" * 20)
    cap = load_captioner(root / "export", device="cpu")
    return {"root": root, "cap": cap, "videos": videos,
            "limits": Limits(max_video_bytes=max_bytes, max_video_seconds=5.0, max_tokens=32)}


@pytest.fixture(scope="module")
def server(world):
    engine = BatchingEngine(world["cap"], max_batch=4, max_queue=8, batch_window_s=0.0).start()
    app = build_app(engine, model_name=NAME, limits=world["limits"], tmp_dir=world["root"] / "uploads")
    with BackgroundServer(app) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            yield client, engine
    engine.close()


def video_msg(url, text=PROMPT):
    """A user message with the video first: the same prompt as ``Captioner.caption(video, text)``."""
    return {"role": "user", "content": [{"type": "video_url", "video_url": {"url": url}},
                                        {"type": "text", "text": text}]}


def post(client, body, **kw):
    return client.post("/v1/chat/completions", json=body, **kw)


@pytest.mark.slow
def test_happy_path_path_file_url_and_data_url(server, world):
    client, _ = server
    cap, video = world["cap"], world["videos"][0]
    want = cap.caption(video, PROMPT, max_new_tokens=6)[0]
    data = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
    for url in (str(video), video.as_uri(), data):
        r = post(client, {"model": NAME, "messages": [video_msg(url)], "max_tokens": 6, "temperature": 0})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["object"] == "chat.completion" and out["model"] == NAME and out["id"].startswith("chatcmpl-")
        choice = out["choices"][0]
        assert choice["message"] == {"role": "assistant", "content": want}  # the one inference path
        assert choice["finish_reason"] in ("stop", "length")
        usage = out["usage"]
        assert 0 < usage["completion_tokens"] <= 6 and usage["prompt_tokens"] > cap.config.num_video_tokens
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert not list((world["root"] / "uploads").glob("*"))  # data: URL temp files are deleted
    # multi-turn with a system prompt; text-only chat on the LVLM; "model" may be left out
    msgs = [{"role": "system", "content": "Be brief."}, video_msg(str(video), "Describe it."),
            {"role": "assistant", "content": "A person."}, {"role": "user", "content": "Alone?"}]
    r = post(client, {"messages": msgs, "max_tokens": 4})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 4
    r = post(client, {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4})
    no_video = cap.processor.build_prompt([{"role": "user", "content": "Hello"}], has_video=False)
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == len(no_video)
    models = client.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == [NAME]
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == NAME and health["generate_calls"] >= 5


def test_streaming_sends_openai_chunks_that_join_to_the_answer(server, world):
    client, _ = server
    body = {"model": NAME, "messages": [video_msg(str(world["videos"][1]))], "max_tokens": 8}
    want = post(client, body).json()
    with client.stream("POST", "/v1/chat/completions",
                       json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r.iter_lines()))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == want["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == want["choices"][0]["finish_reason"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == want["usage"]
    # a streamed request with a bad video still gets a plain 4xx JSON error, not a broken stream
    r = post(client, {**body, "stream": True, "messages": [video_msg(str(world["root"] / "notes.mp4"))]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_video"


@pytest.mark.slow
def test_concurrent_requests_are_batched(world):
    """6 concurrent greedy requests, max_batch 4: 2 generate calls (4 + 2), answers as when served alone.

    The worker starts once all 6 are queued, so the count does not depend on how fast the machine is.
    """
    cap, videos = world["cap"], world["videos"]
    # (video or None, question, max_tokens): video and text-only rows, different max_tokens, one streamed
    specs = [(videos[0], PROMPT, 3), (videos[1], PROMPT, 4), (videos[0], PROMPT, 5), (videos[1], PROMPT, 6),
             (None, "Question 1?", 5), (None, "Question 2?", 5)]
    bodies = [{"messages": [video_msg(str(v), q) if v else {"role": "user", "content": q}], "max_tokens": n}
              for v, q, n in specs]
    bodies[1]["stream"] = True
    engine = BatchingEngine(cap, max_batch=4, max_queue=16, batch_window_s=0.0)
    try:
        with BackgroundServer(build_app(engine, model_name=NAME, limits=world["limits"])) as url:
            def send(body):
                with httpx.Client(base_url=url, timeout=60) as c:
                    if body.get("stream"):
                        with c.stream("POST", "/v1/chat/completions", json=body) as r:
                            return "".join(e["choices"][0]["delta"].get("content", "")
                                           for e in sse_events(r.iter_lines()) if e != "[DONE]")
                    return post(c, body).json()["choices"][0]["message"]["content"]

            with ThreadPoolExecutor(len(bodies)) as pool:
                futures = [pool.submit(send, body) for body in bodies]
                deadline = time.monotonic() + 30
                while engine.queued < len(bodies) and time.monotonic() < deadline:
                    time.sleep(0.01)
                engine.start()
                texts = [f.result() for f in futures]
    finally:
        engine.close()
    assert engine.generate_calls == 2 and engine.batch_sizes == [4, 2]
    for (video, question, n), text in zip(specs, texts):
        if video is None:
            alone = cap.generate([[{"role": "user", "content": question}]], None, max_new_tokens=n)[0]
        else:
            alone = cap.caption(video, question, max_new_tokens=n)[0]
        assert text == alone


@pytest.mark.parametrize("body, status, code", [
    ({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4"}, 404, "model_not_found"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 400, "invalid_parameter"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_p": 0}, 400, "invalid_parameter"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "invalid_parameter"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 33}, 400, "invalid_parameter"),
    ({"messages": [{"role": "user", "content": "hi"}], "seed": "1"}, 400, "invalid_parameter"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, 400, "invalid_parameter"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "invalid_parameter"),
    ({"messages": []}, 400, "invalid_messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, 400, "invalid_messages"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}, 400,
     "invalid_messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x.png"}}]}]}, 400,
     "unsupported_content"),
    ({"messages": [video_msg("https://example.com/a.mp4")]}, 400, "invalid_video_url"),
    ({"messages": [video_msg("data:video/mp4;base64,@@@not-base64@@@")]}, 400, "invalid_video_url"),
    ({"messages": [video_msg("/no/such/clip.mp4")]}, 400, "video_not_found"),
])
def test_bad_requests_get_openai_style_4xx(server, body, status, code):
    client, _ = server
    r = post(client, body)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["type"] == "invalid_request_error" and err["message"]


def test_bad_videos_and_bodies(server, world):
    client, engine = server
    root, calls = world["root"], engine.generate_calls
    cases = [  # (request, status, code, words in the message)
        (post(client, {"messages": [video_msg(str(root / "notes.mp4"))]}), 400, "invalid_video", "not a video"),
        (post(client, {"messages": [video_msg(str(root / "big.mp4"))]}), 413, "video_too_large", "too large"),
        (post(client, {"messages": [video_msg("data:video/mp4;base64," + base64.b64encode(
            (root / "big.mp4").read_bytes()).decode())]}), 413, "video_too_large", "too large"),
        (post(client, {"messages": [video_msg(str(root / "long.mp4"))]}), 400, "video_too_long", "too long"),
        (post(client, {"messages": [video_msg(str(world["videos"][0])), video_msg(str(world["videos"][1]))]}),
         400, "invalid_messages", "one video"),
        (client.post("/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"}),
         400, "invalid_json", "not valid JSON"),
        (client.post("/v1/chat/completions", content=b"[1, 2]"), 400, "invalid_json", "JSON object"),
        (client.get("/v1/nothing"), 404, "not_found", "Not Found"),
    ]
    for r, status, code, words in cases:
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code and words in r.json()["error"]["message"], r.text
    assert engine.generate_calls == calls  # refused before the queue
    assert not list((root / "uploads").glob("*"))
    assert post(client, {"messages": [{"role": "user", "content": "still fine?"}], "max_tokens": 2}).status_code == 200


def test_full_queue_gets_503(world):
    engine = BatchingEngine(world["cap"], max_batch=1, max_queue=1)  # worker not started: the queue only fills
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with BackgroundServer(build_app(engine, model_name=NAME)) as url:
        first: list = []
        waiter = threading.Thread(target=lambda: first.append(httpx.post(url + "/v1/chat/completions", json=body,
                                                                          timeout=60)))
        waiter.start()
        deadline = time.monotonic() + 20
        while engine.queued < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = httpx.post(url + "/v1/chat/completions", json=body, timeout=10)
        assert r.status_code == 503 and r.json()["error"]["code"] == "queue_full"
        assert httpx.get(url + "/health").json()["queued"] == 1
        engine.start()  # the queued request is served once the worker runs
        waiter.join(60)
        assert first[0].status_code == 200
    engine.close()


def test_api_key(world, caplog):
    engine = BatchingEngine(world["cap"]).start()
    key = "sk-test-0123456789"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    with BackgroundServer(build_app(engine, model_name=NAME, api_key=key)) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key}):
            r = post(client, body, headers=headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            assert key not in r.text
            assert client.get("/v1/models", headers=headers).status_code == 401
        ok = {"Authorization": f"Bearer {key}"}
        assert post(client, body, headers=ok).status_code == 200
        assert client.get("/v1/models", headers=ok).json()["data"][0]["id"] == NAME
        assert client.get("/health").status_code == 200  # open: for load balancers and scripts
    engine.close()
    assert key not in caplog.text


def test_text_only_chat_with_a_plain_causal_lm(world):
    """A plain LLM folder (the run's base_llm: Llama + tokenizer, no SKI-LVLM files) as a local judge."""
    folder = world["root"] / "run" / "base_llm"
    llm = load_captioner(folder, device="cpu")
    assert not llm.takes_video
    engine = BatchingEngine(llm).start()
    msgs = [{"role": "system", "content": "You are a strict judge."},
            {"role": "user", "content": "Score the caption 'a person waves' from 0 to 5."}]
    with BackgroundServer(build_app(engine, model_name="base_llm")) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        r = post(client, {"model": "base_llm", "messages": msgs, "max_tokens": 6, "temperature": 0})
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == llm.generate([msgs], None, max_new_tokens=6)[0]
        # seeded sampling is reproducible; the judge client speaks to this server
        body = {"messages": msgs, "max_tokens": 6, "temperature": 1.0, "top_p": 0.9, "seed": 7}
        assert post(client, body).json()["choices"][0] == post(client, body).json()["choices"][0]
        r = post(client, {"messages": [video_msg(str(world["videos"][0]))]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "video_not_supported"
        from ski_lvlm.llm_client import ChatClient

        greedy = llm.generate([msgs], None, max_new_tokens=6)[0]
        assert ChatClient(url + "/v1", "base_llm", api_key_env=None).chat(msgs, temperature=0, max_tokens=6) == greedy
    engine.close()


def test_cli_help_and_bad_arguments(capsys, tmp_path):
    from demo.serve import build_parser, main

    args = build_parser().parse_args(["--model", "m"])
    assert args.host == "127.0.0.1" and args.port == 8000 and args.max_batch == 8
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "SKI_LVLM_API_KEY" in capsys.readouterr().out
    assert main(["--model", str(tmp_path / "missing")]) == 2
    assert "folder not found" in capsys.readouterr().err
    assert main(["--model", str(tmp_path), "--max-batch", "0", "--queue", "0"]) == 2
    err = capsys.readouterr().err
    assert "--max-batch must be >= 1" in err and "--queue must be >= 1" in err


@pytest.mark.slow
def test_cli_builds_a_serving_app(world, monkeypatch):
    from demo.serve import build_parser, make_server

    monkeypatch.setenv("SKI_LVLM_API_KEY", "k")
    args = build_parser().parse_args(["--model", str(world["root"] / "export"), "--device", "cpu",
                                      "--max-tokens-limit", "4"])
    app, engine = make_server(args)
    try:
        with BackgroundServer(app) as url:
            r = httpx.post(url + "/v1/chat/completions", headers={"Authorization": "Bearer k"}, timeout=60,
                           json={"model": "export", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] <= 4
            assert json.loads(httpx.get(url + "/health").text)["model"] == "export"
    finally:
        engine.close()
