"""ski_lvlm.serving without HTTP: request parsing, the batching rule, per-row max_tokens, streaming events,
failures that reach only their own request, and Captioner's mixed video / text-only batches."""

import pytest
import torch

from ski_lvlm.serving import ApiError, BatchingEngine, Limits, parse_request
from tests.tiny_lvlm import make_run, make_videos

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from ski_lvlm.serving import load_captioner

    root = tmp_path_factory.mktemp("serving")
    make_run(root / "run")
    videos = make_videos(root / "videos", 2)
    return load_captioner(root / "run" / "final", device="cpu"), videos, root  # a run's final/ folder serves too


def req(cap, text="Describe it.", video=None, **kw):
    content = text if video is None else [{"type": "video_url", "video_url": {"url": str(video)}},
                                          {"type": "text", "text": text}]
    return parse_request({"messages": [{"role": "user", "content": content}], **kw}, cap=cap, model_name="m")


def test_parse_request_builds_the_prompt_and_defaults(setup):
    cap, videos, _ = setup
    r = req(cap, "What happens?", videos[0])
    assert r.messages == [{"role": "user", "content": "<video>\nWhat happens?"}] and r.video == videos[0]
    assert (r.temperature, r.top_p, r.max_tokens, r.seed, r.stream) == (0.0, 1.0, 256, None, False)
    assert r.prompt_tokens == len(cap.processor.build_prompt(r.messages))
    assert req(cap, max_completion_tokens=7).max_tokens == 7
    assert req(cap).video is None
    limited = parse_request({"messages": [{"role": "user", "content": "hi"}]}, cap=cap, model_name="m",
                            limits=Limits(max_tokens=16))
    assert limited.max_tokens == 16  # the default is capped by the limit
    with pytest.raises(ApiError) as e:
        parse_request({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 17}, cap=cap,
                      model_name="m", limits=Limits(max_tokens=16))
    assert e.value.status == 400 and "[1, 16]" in e.value.message
    with pytest.raises(ApiError) as e:
        parse_request(b"{oops", cap=cap, model_name="m")
    assert e.value.status == 400 and e.value.body()["error"]["code"] == "invalid_json"


def test_video_roots_confine_paths(setup, tmp_path):
    cap, videos, root = setup
    limits = Limits(video_roots=(str(root / "videos"),))
    body = lambda v: {"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": v}}]}]}
    assert parse_request(body(str(videos[0])), cap=cap, model_name="m", limits=limits).video == videos[0]
    outside = tmp_path / "x.mp4"
    outside.write_bytes(videos[0].read_bytes())
    for url in (str(outside), str(root / "videos" / ".." / ".." / outside.name)):
        with pytest.raises(ApiError) as e:
            parse_request(body(url), cap=cap, model_name="m", limits=limits)
        assert e.value.status == 403


def test_batch_key_groups_by_sampling():
    from ski_lvlm.serving import ChatRequest

    greedy = [ChatRequest([], None, temperature=0.0, top_p=p, seed=s) for p, s in ((1.0, None), (0.5, 3))]
    assert greedy[0].batch_key == greedy[1].batch_key  # top_p and seed do not matter when greedy
    a, b = ChatRequest([], None, temperature=0.7, top_p=0.9), ChatRequest([], None, temperature=0.7, top_p=0.9)
    assert a.batch_key == b.batch_key != ChatRequest([], None, temperature=0.8, top_p=0.9).batch_key
    s1, s2 = (ChatRequest([], None, temperature=0.7, top_p=0.9, seed=1) for _ in range(2))
    assert s1.batch_key != s2.batch_key  # seeded sampling runs alone


def test_engine_batches_waiting_requests_by_key(setup):
    """7 queued requests, max_batch 4: 4 greedy (one call), 1 greedy, then 2 sampled alike (one call)."""
    cap, videos, _ = setup
    engine = BatchingEngine(cap, max_batch=4, batch_window_s=0)
    g = [req(cap, video=videos[i % 2], max_tokens=2 + i) for i in range(3)] + [req(cap, "Hi?", max_tokens=4)]
    s = [req(cap, "Hi?", temperature=0.8, top_p=0.9, max_tokens=3) for _ in range(2)]
    later = req(cap, "Later?", max_tokens=2)
    jobs = [(r, engine.submit(r)) for r in (g[0], g[1], s[0], g[2], g[3], s[1], later)]  # queue order
    engine.start()
    results = {r.id: job.result(60) for r, job in jobs}
    engine.close()
    assert engine.batch_sizes == [4, 2, 1]  # the oldest request's key first; order kept within a key
    for r in g + [later]:
        res = results[r.id]
        assert res.completion_tokens <= r.max_tokens  # per-row max_tokens inside one batch
        feats = cap.features(r.video) if r.video else None
        assert res.text == cap.generate([r.messages], feats, max_new_tokens=r.max_tokens)[0]
        assert res.finish_reason == ("length" if res.completion_tokens == r.max_tokens else "stop")


def test_streaming_events_join_to_the_final_text(setup):
    cap, videos, _ = setup
    engine = BatchingEngine(cap).start()
    job = engine.submit(req(cap, video=videos[1], stream=True, max_tokens=8))
    events = []
    while not events or events[-1][0] not in ("done", "error"):
        events.append(job.events.get(timeout=60))
    engine.close()
    assert events[0] == ("start",) and events[-1][0] == "done"
    assert "".join(e[1] for e in events if e[0] == "delta") == events[-1][1].text


def test_failures_reach_only_their_own_requests(setup, tmp_path, monkeypatch):
    cap, videos, _ = setup
    gone = tmp_path / "gone.mp4"
    gone.write_bytes(videos[0].read_bytes())
    doomed = req(cap, video=gone)  # probed fine, deleted before its batch runs
    gone.unlink()
    engine = BatchingEngine(cap, max_batch=4)
    jobs = [engine.submit(doomed), engine.submit(req(cap, video=videos[0], max_tokens=3))]
    engine.start()
    with pytest.raises(ApiError) as e:
        jobs[0].result(60)
    assert e.value.status == 400 and "gone.mp4" in e.value.message
    assert jobs[1].result(60).completion_tokens <= 3 and engine.batch_sizes == [1]
    engine.close()
    # closing answers what is still queued with a 503
    engine = BatchingEngine(cap)
    queued = engine.submit(req(cap))
    engine.close()
    with pytest.raises(ApiError) as e:
        queued.result(5)
    assert e.value.status == 503
    # a generate failure is a 500 for every request of that batch, and the worker keeps serving
    engine = BatchingEngine(cap, max_batch=2)
    real = cap.generate
    monkeypatch.setattr(cap, "generate", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("out of memory")))
    failed = [engine.submit(req(cap, max_tokens=2)) for _ in range(2)]
    engine.start()
    for job in failed:
        with pytest.raises(ApiError) as e:
            job.result(60)
        assert e.value.status == 500 and "out of memory" in e.value.message
    monkeypatch.setattr(cap, "generate", real)
    assert engine.submit(req(cap, max_tokens=2)).result(60).completion_tokens <= 2
    engine.close()
    with pytest.raises(ApiError) as e:
        engine.submit(req(cap))
    assert e.value.status == 503


def test_captioner_mixes_video_and_text_rows(setup):
    cap, videos, _ = setup
    video_conv = [{"role": "user", "content": "Describe it."}]
    text_conv = [{"role": "user", "content": "Hello there."}]
    f = cap.features(videos[0])  # [1, n_v, d_v]
    mixed = cap.generate([text_conv, video_conv], f, has_video=[False, True], max_new_tokens=5)
    assert mixed == [cap.generate([text_conv], None, max_new_tokens=5)[0],
                     cap.generate([video_conv], f, max_new_tokens=5)[0]]
    with pytest.raises(ValueError, match="feature rows"):
        cap.generate([text_conv, video_conv], torch.cat([f, f]), has_video=[False, True])


@pytest.mark.parametrize("arrival_wait_s", [0.0, 30.0])
def test_a_batch_waits_for_requests_still_being_received(setup, arrival_wait_s):
    """Lock-step clients: a request being parsed when a batch starts joins it (unless arrival_wait_s is 0)."""
    import threading

    cap, _, _ = setup
    engine = BatchingEngine(cap, max_batch=4, batch_window_s=0.0, arrival_wait_s=arrival_wait_s)
    first = engine.submit(req(cap, max_tokens=2))
    engine.begin_arrival()  # a second request is still being read and parsed
    engine.start()
    timer = threading.Timer(0.5, lambda: engine.submit(req(cap, "Later?", max_tokens=2), arrived=True))
    timer.start()
    first.result(20)  # never the whole 30 s: the arrival ends the wait
    timer.join()
    while sum(engine.batch_sizes) < 2:
        threading.Event().wait(0.05)
    engine.close()
    assert engine.batch_sizes == ([2] if arrival_wait_s else [1, 1])


def test_a_refused_arrival_does_not_hold_the_batch(setup):
    cap, _, _ = setup
    engine = BatchingEngine(cap, max_batch=4, batch_window_s=0.0, arrival_wait_s=30.0)
    job = engine.submit(req(cap, max_tokens=2))
    engine.begin_arrival()
    engine.start()
    engine.end_arrival()  # its body was malformed: answered with a 4xx, never queued
    assert job.result(20).completion_tokens <= 2 and engine.batch_sizes == [1]
    engine.close()
