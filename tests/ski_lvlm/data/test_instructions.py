"""Instruction formats: exact round trips, placeholders, template QA determinism, LLM QA writing."""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ski_lvlm.data.instructions import (InstructionFormatError, TemplateSample, detect_format, from_llavidal,
                                        from_ski_qa, from_videochatgpt, make_record, parse_qa_answer, qa_pairs,
                                        read_instruction_records, strip_placeholders, template_qa, to_llava,
                                        to_llavidal, to_ski_qa, to_videochatgpt, validate_llava, write_qa_with_llm)

VCG = [
    {"video_id": "v_abc", "q": "What is the man doing?", "a": "He is drinking water."},
    {"video_id": "v_abc", "q": "Describe the video.\nBe brief.", "a": "A man drinks, then sits."},
    {"video_id": "v_xyz", "q": "Where is this?", "a": "In a kitchen.", "source": "human"},
]

LLAVIDAL = [  # the ADL-X training JSON: placeholders alternate after/before the question
    {"id": "P01_video_0", "video": "P01_video_0.pkl", "object": "P01_video_0_object.pkl", "pose": "P01_video_0_pose.pkl",
     "conversations": [{"from": "human", "value": "What does the person do first?\n<video><object><human_pose>"},
                       {"from": "gpt", "value": "The person drinks water."}]},
    {"id": "P01_video_1", "video": "P01_video_1.pkl", "object": "P01_video_1_object.pkl", "pose": "P01_video_1_pose.pkl",
     "conversations": [{"from": "human", "value": "<video><object><human_pose>\nSummarise the video."},
                       {"from": "gpt", "value": "Someone sits down and reads."}]},
]

SKI_CONVERTER = [  # SKI's convert_instruction_json_to_training_format.py output: no pose key, literal <object>
    {"id": "S001C001P001R001A001", "video": "S001C001P001R001A001.pkl",
     "conversations": [{"from": "human", "value": "<video><object>\nWhat happens?"}, {"from": "gpt", "value": "Drinking."}]},
]

SKI_QA = [[{"Q": "What is the person doing?", "A": "Drinking water."}, {"Q": "Then?", "A": "Sits down."},
           {"id": "S001C001P001R001A001"}],
          [{"Q": "Which hand?", "A": "The right hand."}, {"id": "S001C001P001R001A002"}]]


def test_videochatgpt_round_trip_exact():
    recs = from_videochatgpt(copy.deepcopy(VCG), "videos/{id}.mp4", "skeletons/{id}.skeleton")
    validate_llava(recs)
    assert recs[0] == {"id": "v_abc", "video": "videos/v_abc.mp4", "skeleton": "skeletons/v_abc.skeleton",
                       "conversations": [{"from": "human", "value": "<video>\n<skeleton>\nWhat is the man doing?"},
                                         {"from": "gpt", "value": "He is drinking water."}]}
    assert recs[2]["source"] == "human"  # unknown keys travel
    assert json.dumps(to_videochatgpt(recs)) == json.dumps(VCG)


def test_llavidal_round_trip_exact_and_placeholders():
    recs = from_llavidal(copy.deepcopy(LLAVIDAL))
    assert recs[0]["skeleton"] == "P01_video_0_pose.pkl" and "pose" not in recs[0]
    assert recs[0]["conversations"][0]["value"] == "What does the person do first?\n<video><skeleton>"
    assert recs[1]["conversations"][0]["value"] == "<video><skeleton>\nSummarise the video."
    assert recs[0]["object"] == "P01_video_0_object.pkl"
    assert to_llavidal(recs) == LLAVIDAL
    assert qa_pairs(recs[0]) == [("What does the person do first?", "The person drinks water.")]
    # SKI's own converter output (literal <object>, no pose): restored exactly, with SKI's <pose> token
    ski = from_llavidal(copy.deepcopy(SKI_CONVERTER))
    assert ski[0]["conversations"][0]["value"] == "<video>\nWhat happens?" and ski[0]["object_placeholder"] is True
    assert to_llavidal(ski, pose_token="<pose>") == SKI_CONVERTER
    # the SKI <pose> placeholder is renamed too
    sk = from_llavidal([{"id": "a", "video": "a.pkl", "pose": "a_pose.pkl",
                         "conversations": [{"from": "human", "value": "<video><pose>\nQ"}, {"from": "gpt", "value": "A"}]}])
    assert sk[0]["conversations"][0]["value"] == "<video><skeleton>\nQ"


def test_ski_qa_round_trip_exact():
    recs = from_ski_qa(copy.deepcopy(SKI_QA), "videos/{id}.mp4")
    assert len(recs) == 2 and len(recs[0]["conversations"]) == 4
    assert recs[0]["conversations"][0]["value"] == "<video>\nWhat is the person doing?"
    assert recs[0]["conversations"][2]["value"] == "Then?"  # placeholders only in the first turn
    assert to_ski_qa(recs) == SKI_QA
    with pytest.raises(InstructionFormatError, match=r"\[0\]"):
        from_ski_qa([[{"Q": "q", "A": "a"}]])


def test_detect_and_validate():
    assert detect_format(VCG) == "videochatgpt"
    assert detect_format(LLAVIDAL) == "llavidal"
    assert detect_format(SKI_QA) == "ski-qa"
    assert detect_format(from_videochatgpt(VCG)) == "llava"
    assert to_llava(LLAVIDAL)[0]["skeleton"] == "P01_video_0_pose.pkl"
    with pytest.raises(InstructionFormatError, match=r"x\.json\[1\]: conversations\[1\]"):
        validate_llava([make_record("a", [("q", "a")], "a.mp4"),
                        {"id": "b", "conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "a"}]}],
                       "x.json")
    with pytest.raises(InstructionFormatError, match=r"\[1\]"):
        from_videochatgpt([VCG[0], {"video_id": "x", "q": "no answer"}])


def test_strip_placeholders():
    assert strip_placeholders("<video>\n<skeleton>\nWhat?") == "What?"
    assert strip_placeholders("What?\n<video><object><human_pose>") == "What?"
    assert strip_placeholders("<video><pose>\nWhat?") == "What?"
    assert strip_placeholders("plain") == "plain"


def test_template_qa_deterministic_and_order_independent():
    samples = [TemplateSample("a", ["drink water"], ["A man drinks water."]),
               TemplateSample("b", ["sit down", "stand up"], ["Someone sits, then stands.", "A woman sits."]),
               TemplateSample("c", [], ["Only a caption."], [("Where?", "In a kitchen.")])]
    names = ["drink water", "sit down", "stand up", "wave"]
    qa1 = template_qa(samples, seed=3, per_video=3, all_labels=names)
    assert qa1 == template_qa(samples, seed=3, per_video=3, all_labels=names)
    by_vid = lambda qa, v: [x for x in qa if x["video_id"] == v]  # noqa: E731
    qa_rev = template_qa(samples[::-1], seed=3, per_video=3, all_labels=names)
    for v in "abc":
        assert by_vid(qa_rev, v) == by_vid(qa1, v)
    assert len(by_vid(qa1, "a")) == 3 and len(by_vid(qa1, "c")) == 2  # c has only 2 candidates
    seeds = {json.dumps(template_qa(samples, seed=s, per_video=2, all_labels=names)) for s in range(8)}
    assert len(seeds) > 1
    answers = {x["a"] for x in template_qa(samples, seed=0, per_video=10, all_labels=names)}
    assert 'The person performs "sit down" and "stand up", in this order.' in answers
    assert "A man drinks water." in answers and "In a kitchen." in answers


def test_parse_qa_answer():
    assert parse_qa_answer('[{"Q": "a?", "A": "b."}]') == [("a?", "b.")]
    fenced = 'Sure!\n```json\n[{"question": "a?", "answer": "b."}, {"q": "c?", "a": "d."}]\n```'
    assert parse_qa_answer(fenced, max_items=1) == [("a?", "b.")]
    assert parse_qa_answer("[{'Q': 'a?', 'A': 'b.'}]") == [("a?", "b.")]  # python literal
    for bad, msg in (("no list here", "no JSON list"), ("[]", "empty"), ('[{"Q": "a"}]', "lacks"),
                     ("[{'Q': 'a', 'A': }]", "neither")):
        with pytest.raises(ValueError, match=msg):
            parse_qa_answer(bad)


class _Stub(BaseHTTPRequestHandler):
    """OpenAI-compatible /chat/completions: good for 'good', malformed once for 'flaky', always bad for 'bad'."""

    calls: dict = {}

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        vid = prompt.split("Video id: ")[1].split("\n")[0]
        n = _Stub.calls[vid] = _Stub.calls.get(vid, 0) + 1
        if vid.startswith("bad") or (vid.startswith("flaky") and n == 1):
            content = "I cannot answer in JSON, sorry."
        else:
            content = json.dumps([{"Q": f"What does {vid} show?", "A": "A person drinking."},
                                  {"Q": "Then?", "A": "The person sits."}])
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def stub_url():
    _Stub.calls = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_write_qa_with_llm_retries_and_reports(stub_url):
    from ski_lvlm.llm_client import ChatClient

    client = ChatClient(stub_url, "stub", api_key_env=None, timeout=5, max_retries=0)
    samples = [TemplateSample("good1", ["drink water"], ["A man drinks."]), TemplateSample("flaky1", ["sit down"]),
               TemplateSample("bad1", [], ["x"])]
    items, failures = write_qa_with_llm(samples, client, num_questions=2, attempts=3)
    assert [i["video_id"] for i in items] == ["good1", "good1", "flaky1", "flaky1"]
    assert items[0] == {"video_id": "good1", "q": "What does good1 show?", "a": "A person drinking."}
    assert _Stub.calls == {"good1": 1, "flaky1": 2, "bad1": 3}  # retried, bounded
    assert len(failures) == 1 and failures[0]["video_id"] == "bad1" and failures[0]["attempts"] == 3
    assert "malformed" in failures[0]["error"] and "cannot answer" in failures[0]["last_answer"]


def test_write_qa_with_llm_unreachable_endpoint():
    from ski_lvlm.llm_client import ChatClient

    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = ChatClient(f"http://127.0.0.1:{port}/v1", "stub", api_key_env=None, timeout=2, max_retries=0)
    items, failures = write_qa_with_llm([TemplateSample("a", ["wave"])], client, attempts=2)
    assert items == [] and failures[0]["error"].startswith("request failed")


def test_read_llavidal_and_video_chatgpt_json(tmp_path):
    from ski_lvlm.models.lvlm import SkiLvlmProcessor
    from ski_lvlm.models.lvlm.presets import train_tokenizer

    llavidal = [{"id": "v1", "video": "v1.pkl", "object": "v1_object.pkl", "pose": "poses/v1_pose.pkl",
                 "conversations": [{"from": "human", "value": "What happens?\n<video><object><human_pose>"},
                                   {"from": "gpt", "value": "A person drinks."}]}]
    (tmp_path / "llavidal.json").write_text(json.dumps(llavidal))
    recs = read_instruction_records(tmp_path / "llavidal.json")
    assert recs[0]["skeleton_path"] == str(tmp_path / "poses" / "v1_pose.pkl")
    assert recs[0]["video_path"] == str(tmp_path / "v1.pkl")
    proc = SkiLvlmProcessor(train_tokenizer(), num_video_tokens=2, num_skeleton_tokens=3)
    msgs = proc.prepare_messages(recs[0]["conversations"], use_skeleton=True)
    assert msgs[0]["content"] == "What happens?\n" + "<video>" * 2 + "<skeleton>" * 3
    vcg = [{"video_id": "v_abc", "q": "What is shown?", "a": "A dog."}]
    (tmp_path / "vcg.json").write_text(json.dumps(vcg))
    recs = read_instruction_records(tmp_path / "vcg.json")
    assert recs[0]["video_path"] == str(tmp_path / "v_abc.mp4") and recs[0]["skeleton_path"] is None
    assert proc.build_example(recs[0]["conversations"]).num_trained > 0
    (tmp_path / "broken.json").write_text("[{]")
    with pytest.raises(ValueError, match="broken.json:1"):
        read_instruction_records(tmp_path / "broken.json")
