"""ski-lvlm eval compare end to end on synthetic score tables (seconds, no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eval import compare
from ski_lvlm.metrics.scores import write_scores

N = 150


def _tables(root, gain: float = 0.4, seeds=(0, 1, 2)):
    """``root/seedS/zs/scores_{vifi,ski}.jsonl``: SKI right wherever ViFi is, plus on ``gain`` of the rest."""
    rng = np.random.default_rng(0)
    for s in seeds:
        vifi = rng.random(N) < 0.5
        ski = vifi | (rng.random(N) < gain)
        for label, x in (("vifi", vifi), ("ski", ski)):
            rows = [{"clip": f"c{i:03d}", "zero_shot_top1": int(v), "zero_shot_top5": 1} for i, v in enumerate(x)]
            write_scores(root / f"seed{s}" / "zs" / f"scores_{label}.jsonl", rows)
    return [f"{root}/seed{s}/zs" for s in seeds]


def _argv(runs, out, *extra):
    return ["--a", *[f"{'vifi=' if i == 0 else ''}{r}#vifi" for i, r in enumerate(runs)],
            "--b", *[f"{'ski=' if i == 0 else ''}{r}#ski" for i, r in enumerate(runs)],
            "--out", str(out), "--n-boot", "1000", "--n-perm", "1000", *extra]


def test_compare_writes_json_and_markdown(tmp_path, capsys):
    runs = _tables(tmp_path / "abl")
    out = tmp_path / "cmp"
    assert compare.main(_argv(runs, out)) == 0
    res = json.loads((out / "compare.json").read_text())
    assert res["paired"] and res["arms"]["a"]["name"] == "vifi" and res["arms"]["b"]["name"] == "ski"
    assert [r["seed"] for r in res["arms"]["b"]["runs"]] == [0, 1, 2]
    m = res["metrics"]["zero_shot_top1"]
    assert m["n_clips"] == N and 0 < m["ci_low"] < 0.2 < m["ci_high"] and m["p_value"] < 0.01
    # top-5 is 1 everywhere: no difference, nothing to reject
    assert res["metrics"]["zero_shot_top5"]["diff"] == 0 and res["metrics"]["zero_shot_top5"]["p_value"] == 1
    md = (out / "compare.md").read_text()
    assert md.startswith("# ski vs vifi") and "| zero_shot_top1 (%) |" in md and "paired by seed (0, 1, 2)" in md
    assert "wrote" in capsys.readouterr().out
    # --metric picks one; --fixed-seeds holds the runs fixed
    assert compare.main(_argv(runs, out, "--metric", "zero_shot_top1", "--fixed-seeds")) == 0
    res = json.loads((out / "compare.json").read_text())
    assert set(res["metrics"]) == {"zero_shot_top1"} and res["settings"]["resample_seeds"] is False


def test_compare_no_difference(tmp_path):
    runs = _tables(tmp_path / "abl", gain=0.0)
    assert compare.main(_argv(runs, tmp_path / "cmp")) == 0
    m = json.loads((tmp_path / "cmp" / "compare.json").read_text())["metrics"]["zero_shot_top1"]
    assert m["diff"] == 0 and m["p_value"] == 1 and m["ci_low"] <= 0 <= m["ci_high"]


def test_compare_reads_caption_eval_folders(tmp_path):
    from ski_lvlm.synthetic.world import CLASS_NAMES, class_phrases

    phrases = tmp_path / "class_phrases.json"
    phrases.write_text(json.dumps(class_phrases(list(CLASS_NAMES))))
    refs = ["A person waves their left hand slowly."]
    for arm, caption in (("p0", "A person moves."), ("p05", "A person waves their left hand slowly.")):
        for s in (0, 1):
            folder = tmp_path / f"{arm}_seed{s}"
            folder.mkdir()
            (folder / "results.json").write_text(json.dumps({"grounding": {"phrases": str(phrases)}}))
            (folder / "predictions.jsonl").write_text("".join(
                json.dumps({"id": f"v{i}", "kind": "caption", "video_id": f"v{i}", "prediction": caption,
                            "references": refs, "answer": refs[0]}) + "\n" for i in range(20)))
    argv = ["--a", f"p0={tmp_path}/p0_seed0", f"{tmp_path}/p0_seed1", "--b", f"p05={tmp_path}/p05_seed0",
            f"{tmp_path}/p05_seed1", "--out", str(tmp_path / "cmp"), "--n-boot", "200", "--n-perm", "200"]
    assert compare.main(argv) == 0
    res = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert set(res["metrics"]) == {"caption_action", "caption_side_all", "caption_tempo_all"}
    assert res["metrics"]["caption_action"]["diff"] == 1.0 and res["metrics"]["caption_action"]["n_clips"] == 20


def test_bad_input_exits_2_naming_the_problem(tmp_path, capsys):
    runs = _tables(tmp_path / "abl", seeds=(0,))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"clip": "c000", "zero_shot_top1": 1}\n{oops\n')
    out = str(tmp_path / "cmp")
    cases = [
        (["--a", f"vifi={runs[0]}#vifi", "--b", f"ski={bad}", "--out", out], ["arm ski", "bad.jsonl:2"]),
        (["--a", f"vifi={runs[0]}#nope", "--b", f"ski={runs[0]}#ski", "--out", out],
         ["arm vifi", "scores_nope.jsonl"]),
        (["--a", f"vifi={tmp_path}/missing", "--b", f"ski={runs[0]}#ski", "--out", out], ["arm vifi", "missing"]),
        (["--a", f"x={runs[0]}#vifi", "--b", f"x={runs[0]}#ski", "--out", out], ["same name"]),
    ]
    other = tmp_path / "other.jsonl"
    write_scores(other, [{"clip": "elsewhere", "zero_shot_top1": 1}])
    cases.append((["--a", f"vifi={runs[0]}#vifi", "--b", f"ski={other}", "--out", out],
                   ["arms vifi and ski share no clip"]))
    for argv, words in cases:
        assert compare.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("ski-lvlm eval compare: error:") and all(w in err for w in words), err
    assert not (tmp_path / "cmp").exists()
    with pytest.raises(SystemExit) as e:  # an arm without runs: argparse says so
        compare.main(["--a", "--b", f"ski={runs[0]}#ski", "--out", out])
    assert e.value.code == 2


def test_cli_routes_to_compare(capsys):
    from ski_lvlm.cli import main

    with pytest.raises(SystemExit) as e:
        main(["eval", "compare", "--help"])
    assert e.value.code == 0 and "NAME=RUN" in capsys.readouterr().out


def test_compare_table_collects_several_comparisons(tmp_path, capsys):
    from eval import compare_table

    for name, gain in (("helps", 0.4), ("same", 0.0)):
        runs = _tables(tmp_path / name, gain=gain)
        assert compare.main(_argv(runs, tmp_path / f"cmp_{name}")) == 0
    out = tmp_path / "table.md"
    assert compare_table.main([f"xsub={tmp_path / 'cmp_helps'}", str(tmp_path / "cmp_same" / "compare.json"),
                               "--out", str(out), "--metric", "zero_shot_top1"]) == 0
    rows = [r for r in out.read_text().splitlines() if r.startswith("| ") and "zero_shot" in r]
    assert len(rows) == 2  # top-5 left out
    helps = json.loads((tmp_path / "cmp_helps" / "compare.json").read_text())["metrics"]["zero_shot_top1"]
    cells = [c.strip() for c in rows[0].split("|")[1:-1]]
    assert cells[:4] == ["xsub", "zero_shot_top1 (%)", "vifi", "ski"]
    assert cells[6] == f"+{100 * helps['diff']:.1f}"
    assert cells[7] == f"[{100 * helps['ci_low']:.1f}, {100 * helps['ci_high']:.1f}]" and helps["ci_low"] > 0
    assert rows[1].split("|")[1].strip() == "cmp_same"  # a bare folder is labelled by its name
    assert compare_table.main([str(tmp_path / "nothing"), "--out", str(out)]) == 2
