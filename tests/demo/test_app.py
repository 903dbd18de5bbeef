"""Gradio demo: a gradio_client round trip on localhost (caption + chat), clear refusals, sample discovery."""

import json
import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")
gradio_client = pytest.importorskip("gradio_client")

from demo.app import DemoLogic, _text, build_demo, default_samples, free_port, launch, list_samples  # noqa: E402
from tests.tiny_lvlm import make_run, make_videos  # noqa: E402


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # Gradio app around an exported run


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from ski_lvlm.export import export_run
    from ski_lvlm.inference import Captioner

    root = tmp_path_factory.mktemp("demo")
    export_run(make_run(root / "run"), root / "export", log=lambda m: None)
    videos = make_videos(root / "samples", 2)
    cap = Captioner.from_pretrained(root / "export", device="cpu")
    logic = DemoLogic(cap, list_samples(root / "samples"), max_mb=1.0, max_seconds=60)
    demo = build_demo(logic, max_new_tokens=8)
    launch(demo, host="127.0.0.1", port=free_port(), max_mb=1.0, allowed_paths=[str(root)], block=False)
    client = gradio_client.Client(demo.local_url, verbose=False)
    yield client, cap, videos, root
    client.close() if hasattr(client, "close") else None
    demo.close()


def test_round_trip_caption_and_chat(served):
    client, cap, videos, _ = served
    assert client.src.startswith("http://127.0.0.1:")
    gallery, caption, history, status, *_ = client.predict(
        gradio_client.handle_file(str(videos[0])), None, "Describe the video in detail.", 8, 0.0, api_name="/caption")
    assert caption and caption == cap.caption(videos[0], max_new_tokens=8)[0]
    assert len(gallery) == cap.config.num_frames and "clip0.mp4" in status
    assert _text(history[-1]["content"]) == caption  # gradio 6 hands back content parts
    # a bundled sample by name, then a follow-up question in the chat (multi-turn, streamed server side)
    _, caption2, history2, _, *_ = client.predict(None, "clip1.mp4", "", 8, 0.0, api_name="/caption")
    assert caption2 == cap.caption(videos[1], max_new_tokens=8)[0]
    # the video path lives in the session state set by /caption (State is not part of the API)
    chat, cleared, status3 = client.predict("Is the person alone?", history2, 8, 0.0, api_name="/chat")
    assert cleared == "" and len(chat) == 4 and _text(chat[2]["content"]) == "Is the person alone?"
    msgs = [{"role": m["role"], "content": _text(m["content"])} for m in history2]
    want = cap.chat(videos[1], msgs + [{"role": "user", "content": "Is the person alone?"}], max_new_tokens=8)
    assert _text(chat[3]["content"]) == want


def test_text_file_renamed_mp4_gets_a_clear_message(served, tmp_path):
    client, *_ = served
    fake = tmp_path / "holiday.mp4"
    fake.write_text("these are my notes, not a video\n" * 20)
    gallery, caption, history, status, *_ = client.predict(
        gradio_client.handle_file(str(fake)), None, "", 8, 0.0, api_name="/caption")
    assert gallery == [] and caption == "" and history == []
    assert "Cannot use this video" in status and "not a video file" in status and "holiday" in status
    _, _, _, status, *_ = client.predict(None, None, "", 8, 0.0, api_name="/caption")
    assert "upload a video or pick a sample" in status
    fresh = gradio_client.Client(client.src, verbose=False)  # a new session: no video captioned yet
    _, _, status = fresh.predict("hello?", [], 8, 0.0, api_name="/chat")
    assert "Caption a video first" in status


def test_limits_and_sample_discovery(served, tmp_path):
    _, cap, videos, root = served
    logic = DemoLogic(cap, {}, max_mb=0.000001, max_seconds=60)
    *_, status, path = next(logic.caption(str(videos[0]), None, "", 4, 0.0))
    assert "too large" in status and path is None
    logic = DemoLogic(cap, {}, max_mb=10, max_seconds=0.1)
    assert "too long" in next(logic.caption(str(videos[0]), None, "", 4, 0.0))[3]
    # default samples: MODEL/samples, else the trained-on world's test split via export_info.json
    world = tmp_path / "world"
    make_videos(world / "videos", 2)
    (world / "instructions_test.json").write_text(json.dumps([{"id": "a", "video": "videos/clip1.mp4"}]))
    model = tmp_path / "model"
    model.mkdir()
    (model / "export_info.json").write_text(json.dumps({"train_json": str(world / "instructions_train.json")}))
    src = default_samples(model)
    assert src == world / "instructions_test.json" and list(list_samples(src)) == ["clip1.mp4"]
    (model / "samples").mkdir()
    assert default_samples(model) == model / "samples"


def test_cli_binds_localhost_by_default_and_checks_inputs(tmp_path, capsys):
    from demo.app import build_parser, main

    args = build_parser().parse_args(["--model", "m"])
    assert args.host == "127.0.0.1" and args.concurrency == 1
    assert main(["--model", str(tmp_path / "missing")]) == 2
    assert "export folder not found" in capsys.readouterr().err
