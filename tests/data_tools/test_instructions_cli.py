"""`ski-lvlm data instructions` convert / generate / llm-qa on small files in the real formats."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from data_tools.instructions import main
from ski_lvlm.data.instructions import validate_llava

LLAVIDAL = [
    {"id": "P01_video_0", "video": "P01_video_0.pkl", "object": "P01_video_0_object.pkl", "pose": "P01_video_0_pose.pkl",
     "conversations": [{"from": "human", "value": "What does the person do first?\n<video><object><human_pose>"},
                       {"from": "gpt", "value": "The person drinks water, then sits."}]},
]


def _world(tmp_path):
    """A mini synthetic-world layout: manifest, classes, captions."""
    (tmp_path / "classes.csv").write_text("id,name\n0,drink water\n1,sit down\n2,wave\n", encoding="utf-8")
    (tmp_path / "train.csv").write_text(
        "video_path,skeleton_path,label\nvideos/A.mp4,skeletons/A.skeleton,0\nvideos/B.mp4,,1\n", encoding="utf-8")
    (tmp_path / "captions.json").write_text(json.dumps({"A": ["A man drinks water."], "B": ["A woman sits down."],
                                                        "C": ["Not in the manifest."]}), encoding="utf-8")
    return ["--captions", str(tmp_path / "captions.json"), "--manifest", str(tmp_path / "train.csv"),
            "--classes", str(tmp_path / "classes.csv")]


def test_convert_round_trip_via_cli(tmp_path):
    src = tmp_path / "adlx.json"
    src.write_text(json.dumps(LLAVIDAL), encoding="utf-8")
    assert main(["convert", str(src), str(tmp_path / "llava.json")]) == 0
    llava = validate_llava(json.loads((tmp_path / "llava.json").read_text()))
    assert llava[0]["skeleton"] == "P01_video_0_pose.pkl"
    assert main(["convert", str(tmp_path / "llava.json"), str(tmp_path / "back.json"), "--to", "llavidal"]) == 0
    assert json.loads((tmp_path / "back.json").read_text()) == LLAVIDAL
    vcg = [{"video_id": "v1", "q": "Q?", "a": "A."}]
    (tmp_path / "vcg.json").write_text(json.dumps(vcg), encoding="utf-8")
    assert main(["convert", str(tmp_path / "vcg.json"), str(tmp_path / "v.json"), "--video-template", "videos/{id}.mp4"]) == 0
    assert json.loads((tmp_path / "v.json").read_text())[0]["video"] == "videos/v1.mp4"
    assert main(["convert", str(tmp_path / "v.json"), str(tmp_path / "v2.json"), "--to", "videochatgpt"]) == 0
    assert json.loads((tmp_path / "v2.json").read_text()) == vcg


def test_convert_errors(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("[{", encoding="utf-8")
    assert main(["convert", str(tmp_path / "bad.json"), str(tmp_path / "o.json")]) == 2
    assert "bad.json:1" in capsys.readouterr().err
    (tmp_path / "odd.json").write_text(json.dumps({"a": 1}), encoding="utf-8")
    assert main(["convert", str(tmp_path / "odd.json"), str(tmp_path / "o.json")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err


def test_generate_from_manifest(tmp_path):
    args = _world(tmp_path)
    out = tmp_path / "sub" / "instr.json"
    assert main(["generate", *args, "--out", str(out), "--per-video", "2", "--seed", "1"]) == 0
    recs = validate_llava(json.loads(out.read_text()))
    assert {r["id"] for r in recs} == {"A", "B"} and len(recs) == 4  # C is not in the manifest
    a = [r for r in recs if r["id"] == "A"][0]
    assert a["video"] == "../videos/A.mp4" and a["skeleton"] == "../skeletons/A.skeleton"  # relative to out's folder
    assert a["conversations"][0]["value"].startswith("<video>\n<skeleton>\n")
    b = [r for r in recs if r["id"] == "B"][0]
    assert "skeleton" not in b and b["conversations"][0]["value"].startswith("<video>\n") \
        and "<skeleton>" not in b["conversations"][0]["value"]
    first = out.read_text()
    assert main(["generate", *args, "--out", str(out), "--per-video", "2", "--seed", "1"]) == 0
    assert out.read_text() == first  # deterministic
    assert main(["generate", *args, "--out", str(tmp_path / "q.json"), "--format", "videochatgpt"]) == 0
    qa = json.loads((tmp_path / "q.json").read_text())
    assert all(set(x) == {"video_id", "q", "a"} for x in qa)


class _Stub(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        content = "no json" if "Video id: B" in prompt else json.dumps([{"Q": "What happens?", "A": "Drinking."}])
        data = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_llm_qa_cli(tmp_path, stub_url, capsys):
    args = _world(tmp_path)
    out = tmp_path / "llm.json"
    assert main(["llm-qa", *args, "--out", str(out), f"base_url={stub_url}", "model=stub", "attempts=2",
                 "max_retries=0", "num_questions=1"]) == 0
    recs = json.loads(out.read_text())
    assert [r["id"] for r in recs] == ["A"] and recs[0]["conversations"][1]["value"] == "Drinking."
    fails = json.loads((tmp_path / "llm.json.failures.json").read_text())
    assert [f["video_id"] for f in fails["failed"]] == ["B"] and fails["failed"][0]["attempts"] == 2
    assert "1 failed" in capsys.readouterr().out
    assert main(["llm-qa", *args, "--out", str(out), "base_url=ftp://x"]) == 2
    assert "base_url" in capsys.readouterr().err
