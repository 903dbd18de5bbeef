"""`ski-lvlm caption`: JSONL results, bad videos recorded (not a crash), resumable, folders expanded."""

import json

import pytest

from demo.caption import main
from tests.tiny_lvlm import make_run, make_videos


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # exports a run, then captions


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from ski_lvlm.export import export_run

    root = tmp_path_factory.mktemp("cap")
    export_run(make_run(root / "run"), root / "export", log=lambda m: None)
    return root / "export"


def read(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_caption_cli_records_errors_and_resumes(model, tmp_path, capsys):
    videos = make_videos(tmp_path / "videos", 3)
    bad = tmp_path / "videos" / "broken.mp4"
    bad.write_text("not a video")
    out = tmp_path / "results.jsonl"
    args = ["--model", str(model), "--out", str(out), "--max-new-tokens", "6", "--batch-size", "2"]
    assert main([str(videos[0]), str(bad), *args]) == 0
    recs = read(out)
    assert [r["video"] for r in recs] == [str(videos[0]), str(bad)]
    assert recs[0]["caption"] and "error" not in recs[0]
    assert "broken.mp4" in recs[1]["error"] and recs[1]["reason"] == "not_video"
    assert "captioned 1 videos, 1 errors" in capsys.readouterr().err
    # a torn last line (killed mid-write) is ignored; the folder expands to all 4; done ones are skipped
    with open(out, "a") as f:
        f.write('{"video": "x", "capt')
    assert main([str(tmp_path / "videos"), *args]) == 0
    err = capsys.readouterr().err
    assert "unreadable line ignored" in err and "2 already done" in err
    good = [json.loads(x) for x in out.read_text().splitlines() if x.startswith('{"video": "/')]
    assert sorted(r["video"] for r in good) == sorted(map(str, [*videos, bad]))
    # same greedy caption as the library gives
    from ski_lvlm.inference import Captioner

    first = next(r for r in good if r["video"] == str(videos[1]))
    assert first["caption"] == Captioner.from_pretrained(model, device="cpu").caption(videos[1], max_new_tokens=6)[0]
    # everything done: nothing to do; --retry-errors tries the broken file again
    assert main([str(tmp_path / "videos"), *args]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main([str(bad), *args, "--retry-errors"]) == 0
    assert "captioned 0 videos, 1 errors" in capsys.readouterr().err


def test_caption_cli_stdout_and_bad_model(model, tmp_path, capsys):
    v = make_videos(tmp_path, 1)[0]
    assert main([str(v), "--model", str(model), "--max-new-tokens", "4"]) == 0
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["video"] == str(v) and "caption" in rec
    assert main([str(v), "--model", str(tmp_path / "none")]) == 2
    assert "folder not found" in capsys.readouterr().err
