"""`ski-lvlm data charades` end to end on a small real-format CSV and a video folder."""

from __future__ import annotations

import csv
import json

from data_tools.charades import main
from ski_lvlm.data.instructions import validate_llava

CSV = (
    "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
    '46GP8,HR43,Kitchen,6,7,Yes,"Cook, then look.",food;stove,"A person cooks, then looks out.;The person stirs.",'
    "c001 11.90 21.20;c000 0.00 12.60,24.83\n"
    'N11GT,0KZ7,Stairs,,,Yes,"Walk down.",,"A person walks\ndown the stairs.",,8.10\n'
    "0IH69,6RE8,Bedroom,5,6,No,A person sleeps.,bed,,c002 1.0 3.0,30.00\n"
)
CLASSES = "c000 Holding some clothes\nc001 Putting clothes somewhere\nc002 Lying on a bed\n"


def _setup(tmp_path):
    (tmp_path / "Charades_v1_test.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "Charades_v1_classes.txt").write_text(CLASSES, encoding="utf-8")
    vids = tmp_path / "videos"
    vids.mkdir()
    (vids / "46GP8.mp4").write_bytes(b"x")
    (vids / "N11GT.avi").write_bytes(b"x")  # 0IH69 is missing
    return ["--csv", str(tmp_path / "Charades_v1_test.csv"), "--classes", str(tmp_path / "Charades_v1_classes.txt"),
            "--videos", str(vids)]


def test_charades_cli_outputs(tmp_path, capsys):
    args = _setup(tmp_path)
    out = tmp_path / "out"
    assert main(args + ["--out", str(out)]) == 0
    refs = json.loads((out / "caption_eval.json").read_text())
    assert refs == {"46GP8": ["A person cooks, then looks out.", "The person stirs."],
                    "N11GT": ["A person walks down the stairs."]}
    bench = json.loads((out / "caption_benchmark.json").read_text())
    assert [b["video_name"] for b in bench] == ["46GP8", "N11GT"] and bench[0]["A"] == refs["46GP8"][0]
    qa = json.loads((out / "qa.json").read_text())
    assert {q["video_id"] for q in qa} == {"46GP8", "N11GT"} and all(q["q"] and q["a"] for q in qa)
    instr = validate_llava(json.loads((out / "instructions.json").read_text()))
    assert len(instr) == len(qa)
    for rec in instr:  # video paths resolve against the JSON's folder
        assert (out / rec["video"]).is_file()
        assert rec["conversations"][0]["value"].startswith("<video>\n")
    rows = list(csv.DictReader((out / "manifest.csv").open()))
    assert [r["label"] for r in rows] == ["0", "-1"]  # longest action c000 (12.6 s); no actions -> -1
    assert (out / rows[1]["video_path"]).name == "N11GT.avi" and rows[0]["skeleton_path"] == ""
    classes = list(csv.DictReader((out / "classes.csv").open()))
    assert classes[2] == {"id": "2", "name": "Lying on a bed"}
    report = json.loads((out / "report.json").read_text())
    assert report["videos_missing"] == ["0IH69"] and report["videos_written"] == 2
    assert report["parse"]["missing_fields"]["quality"] == 1 and report["parse"]["missing_fields"]["actions"] == 1
    assert "1 missing" in capsys.readouterr().out
    # same seed -> identical QA; a second run needs --overwrite
    assert main(args + ["--out", str(out)]) == 2
    assert main(args + ["--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "qa.json").read_text()) == qa


def test_charades_cli_keep_missing_and_errors(tmp_path, capsys):
    args = _setup(tmp_path)
    assert main(args + ["--out", str(tmp_path / "o2"), "--keep-missing"]) == 0
    refs = json.loads((tmp_path / "o2" / "caption_eval.json").read_text())
    assert refs["0IH69"] == ["A person sleeps."]  # script fallback
    (tmp_path / "bad.csv").write_text(CSV + "X,S,Hall,1,1,Yes,s,o,d,c999 1 2 3,1\n", encoding="utf-8")
    bad = ["--csv", str(tmp_path / "bad.csv")] + args[2:]
    assert main(bad + ["--out", str(tmp_path / "o3")]) == 2
    assert "bad.csv:6" in capsys.readouterr().err and not (tmp_path / "o3").exists()
    assert main(bad + ["--out", str(tmp_path / "o3"), "--skip-bad"]) == 0
    assert json.loads((tmp_path / "o3" / "report.json").read_text())["parse"]["skipped"][0]["line"] == 6
