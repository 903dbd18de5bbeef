"""ski-lvlm eval all on run folders built directly in tmp_path (the files the recipes write)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from eval import report
from ski_lvlm.reporting import Report, plot_curves, save_frame_strip

CLASSES = ["wave right hand", "jump", "squat"]


def _vlm_run(d: Path, config: dict, old: bool) -> None:
    """A finished SkeletonCLIP / SKI-VLM run: final/ + train_log.jsonl, or (``old``, before issue 14)
    model/ + metrics.jsonl."""
    (d / ("model" if old else "final")).mkdir(parents=True)
    (d / ("model" if old else "final") / "model_config.json").write_text(json.dumps(config))
    (d / ("metrics.jsonl" if old else "train_log.jsonl")).write_text(
        "".join(json.dumps({"step": s, "epoch": 0, "loss": 3.0 / s}) + "\n" for s in range(1, 6)))


def _write_zero_shot(run: Path) -> None:
    from ski_lvlm.evaluation.zero_shot import plot_confusion

    zs = run / "zero_shot"
    zs.mkdir(parents=True)
    models = {}
    for label, top1 in (("skeleton_clip", 0.5), ("ski_vlm", 0.4)):
        models[label] = {"kind": label, "input": "skeleton" if label == "skeleton_clip" else "video", "top1": top1,
                         "top5": 1.0, "mean_class_acc": top1, "views": 1, "num_samples": 6,
                         "per_class": {"wave right hand": 1.0, "jump": 0.5, "squat": None},
                         "confusion": [[2, 0, 0], [1, 1, 0], [0, 2, 0]]}
        plot_confusion(models[label]["confusion"], CLASSES, label, zs / f"confusion_{label}.png")
        _vlm_run(run / label, {"kind": label}, old=label == "skeleton_clip")  # one run of each layout
    res = {"manifest": "world/zsl_novel_test.csv", "classes": CLASSES, "num_classes": 3, "chance": 1 / 3,
           "chance_top5": 1.0, "num_samples": 6, "models": models}
    (zs / "results.json").write_text(json.dumps(res))


def _write_lvlm(run: Path, name: str, p_inject: float, world: Path) -> None:
    from ski_lvlm.data.video import write_video
    from ski_lvlm.metrics.captions import compute_caption_metrics

    d = run / name
    (d / "final").mkdir(parents=True)
    (d / "final" / "config.json").write_text("{}")
    info = {"stage": "instruct", "llm_adapter": "lora", "steps": 20, "p_inject": p_inject, "final_loss": 2.0}
    (d / "final" / "run_info.json").write_text(json.dumps(info))
    (d / "train_log.jsonl").write_text(
        "".join(json.dumps({"step": s, "epoch": 0, "loss": 5.0 - 0.1 * s + p_inject, "lr": 1e-3}) + "\n"
                for s in range(1, 21)) + '{"step": 21, "lo')  # a torn last line is skipped
    # the files `ski-lvlm eval captions` leaves in RUN/captions/<name>
    out = run / "captions" / name
    out.mkdir(parents=True)
    (world / "videos").mkdir(parents=True, exist_ok=True)
    refs = {"V1": ["a person jumps.", "someone jumps up."], "V2": ["a person squats down."]}
    cands = {"V1": "a person jumps." if p_inject else "a person waves.", "V2": "a person sits."}
    rng = np.random.default_rng(0)
    for vid in refs:
        if not (world / "videos" / f"{vid}.mp4").exists():
            write_video(world / "videos" / f"{vid}.mp4", rng.integers(0, 255, (6, 32, 48, 3), dtype=np.uint8), fps=10)
    lines = [{"id": v, "kind": "caption", "video_id": v, "question": "Describe.", "answer": refs[v][0],
              "prediction": cands[v], "references": refs[v]} for v in refs]
    lines.append({"id": "V3", "kind": "caption", "video_id": "V3", "question": "Describe.", "answer": "x",
                  "prediction": None, "references": ["x"], "error": "VideoDecodeError: corrupt"})
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    m = compute_caption_metrics({k: [v] for k, v in cands.items()}, refs, meteor="off")
    from ski_lvlm.synthetic.world import class_phrases
    from ski_lvlm.metrics.grounding import Phrases, caption_grounding

    ph = Phrases(**{k: v for k, v in class_phrases(CLASSES).items() if k != "format"})
    grounding = caption_grounding([{"caption": cands["V1"], "action": "jump", "tempo": None},
                                   {"caption": cands["V2"], "action": "squat", "tempo": None}], ph)
    (run / "probe" / name).mkdir(parents=True)
    (run / "probe" / name / "probe.json").write_text(json.dumps({
        "accuracy": 0.7 if p_inject else 0.65, "chance": 0.05, "n_train": 240, "n_test": 120, "train_accuracy": 1.0,
        "features": "LVLM video tokens of x", "encoder_spec": f"lvlm:{d / 'final'}"}))
    groups = {"action": {"jump": {"n": 1, **m["per_item"]["V1"]}, "squat": {"n": 1, **m["per_item"]["V2"]}}}
    res = {"n_items": 3, "n_finished": 3, "n_errors": 1, "errors": [{"id": "V3", "video_id": "V3", "error": "corrupt"}],
           "captions": {"n": 2, "scores": m["scores"], "tokenizer": m["tokenizer"], "meteor": m["meteor"],
                        "per_group": groups, "per_item": m["per_item"]},
           "qa_open": {"n": 2, "automatic": {"exact_match": 50.0, "token_f1": 75.0, "note": "automatic"}, "judge": None},
           "grounding": grounding,
           "qa_closed": {"n": 2, "accuracy": 0.5, "n_unscored": 0, "per_type": {
               "side": {"n": 1, "accuracy": 1.0, "token_f1": 1.0}, "tempo": {"n": 1, "accuracy": 0.0, "token_f1": 0.0}}},
           "model": str(d / "final"), "eval_set": {"path": str(world / "Charades_v1_test.csv")},
           "videos": str(world / "videos"), "settings": {"max_new_tokens": 32}, "training": info}
    (out / "results.json").write_text(json.dumps(res))


def _images_exist(run: Path, md: str, html: str) -> list[str]:
    paths = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert sorted(set(paths)) == sorted(set(srcs))
    for p in paths:
        assert (run / p).is_file(), p
    return paths


@pytest.mark.slow
def test_full_run_folder(tmp_path, capsys):
    run = tmp_path / "run"
    world = run / "world"
    world.mkdir(parents=True)
    _write_zero_shot(run)
    _write_lvlm(run, "lvlm_instruct", 0.5, world)
    _write_lvlm(run, "lvlm_instruct_noskel", 0.0, world)
    # --skip-eval: only results on disk are used (nothing is retrained or regenerated)
    assert report.main(["--run", str(run), "--skip-eval", "--examples", "2"]) == 0
    md = (run / "report.md").read_text()
    html = (run / "report.html").read_text()
    for title in ("Overview", "Zero-shot action recognition", "Confusion matrices", "Video captioning",
                  "Grounded captions and the video pathway", "Question answering", "Training curves",
                  "Caption examples"):
        assert title in md and title in html
    # grounding: probe top-1, action / side / tempo accuracy, distinct captions, top-caption share per run
    assert "| lvlm_instruct | 70.0 | 50.0 | n/a (0) | n/a (0) | n/a | 2 | 50.0 |" in md
    assert "| lvlm_instruct_noskel | 65.0 | 0.0 |" in md
    assert "| video-token probe top-1 % | lvlm_instruct | 70.0 | chance 5.0, 120 test clips |" in md
    assert "| caption action accuracy % | lvlm_instruct | 50.0 | 2 videos, 2 distinct captions |" in md
    assert "| side | 1 | 100.0 / 100.0 | 100.0 / 100.0 |" in md  # closed QA per type, next to token F1
    assert "| jump | 100 | 0 |" in md  # per-class action accuracy
    assert "| chance | - | - | 33.3 |" in md  # chance level next to the models
    assert "| skeleton_clip | SkeletonCLIP (skeleton -> text) | skeleton | 50.0 |" in md
    assert "| zero-shot top-1 % (unseen classes) | ski_vlm | 40.0 | chance 33.3 |" in md  # key numbers
    assert "With vs without skeleton injection" in md and "p_inject 0.5" in md
    assert "not run (no judge endpoint)" in md  # no judge configured -> labelled, not faked
    assert "Not run" not in md  # every part is present
    paths = _images_exist(run, md, html)
    assert "zero_shot/confusion_ski_vlm.png" in paths and "report_assets/loss_lvlm.png" in paths
    assert "report_assets/loss_vlm.png" in paths and "report_assets/zero_shot_per_class.png" in paths
    assert "report_assets/frames_V1.png" in paths
    # caption example: references and both runs' predictions
    assert "a person jumps." in html and "prediction (lvlm_instruct_noskel)" in html
    # HTML opens from disk: no network resources, no scripts
    assert "http://" not in html and "https://" not in html and "<script" not in html
    # embedded variant: one file, images as data URIs
    assert report.main(["--run", str(run), "--skip-eval", "--embed-images"]) == 0
    html2 = (run / "report.html").read_text()
    assert 'src="data:image/png;base64,' in html2 and 'src="report_assets' not in html2


def test_missing_parts_say_not_run(tmp_path):
    run = tmp_path / "empty_run"
    run.mkdir()
    assert report.main(["--run", str(run)]) == 0
    md = (run / "report.md").read_text()
    html = (run / "report.html").read_text()
    assert md.count("**Not run:**") >= 5
    assert "no SkeletonCLIP / SKI-VLM model folder" in md
    assert "no SKI-LVLM run" in md and "no train_log.jsonl" in md
    assert html.count('class="notrun"') == md.count("**Not run:**")


def test_lvlm_run_without_final_and_broken_zero_shot(tmp_path):
    run = tmp_path / "run"
    (run / "lvlm_instruct").mkdir(parents=True)
    (run / "lvlm_instruct" / "train_log.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    (run / "ski_vlm" / "model").mkdir(parents=True)
    (run / "ski_vlm" / "model" / "model_config.json").write_text("{}")  # no kind, no weights
    world = run / "world"
    world.mkdir()
    (world / "zsl_novel_test.csv").write_text("video_path,skeleton_path,label\n")
    (world / "zsl_novel_classes.csv").write_text("id,name\n0,jump\n")
    assert report.main(["--run", str(run)]) == 0
    md = (run / "report.md").read_text()
    assert "ski-lvlm eval zero-shot: " in md and "unknown model kind" in md  # the reason, not a crash
    assert "lvlm_instruct/final/ missing" in md
    assert "report_assets/loss_lvlm.png" in md  # the log is still plotted


def test_old_and_new_layout_runs_are_found_and_plotted(tmp_path):
    """Runs trained before issue 14 (model/ + metrics.jsonl) sit next to new ones (final/ + train_log.jsonl)."""
    run = tmp_path / "run"
    _vlm_run(run / "old_ski", {"kind": "ski_vlm"}, old=True)
    _vlm_run(run / "new_ski", {"kind": "ski_vlm"}, old=False)
    # an unfinished new phase-1 run: its train_log.jsonl does not make it an LVLM run
    (run / "unfinished").mkdir()
    (run / "unfinished" / "config.yaml").write_text("# ski-lvlm train skeleton-clip --config config.yaml\ndata: {}\n")
    (run / "unfinished" / "train_log.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    found = report.discover(run)
    assert found["vlm"] == {"new_ski": run / "new_ski" / "final", "old_ski": run / "old_ski" / "model"}
    assert found["lvlm"] == {}
    assert report.main(["--run", str(run), "--skip-eval"]) == 0
    md = (run / "report.md").read_text()
    assert "| new_ski/final |" in md and "| old_ski/model |" in md  # the overview names each model folder
    assert "report_assets/loss_vlm.png" in md and (run / "report_assets" / "loss_vlm.png").stat().st_size > 0
    for name in ("new_ski", "old_ski"):
        assert f"{name}: loss 3.000 (step 1) -> 0.600 (step 5), 5 log points" in md


def test_bad_run_folder(tmp_path, capsys):
    assert report.main(["--run", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_reporting_blocks(tmp_path):
    rep = Report("T <&>", tmp_path)
    s = rep.section("A | B")
    s.table(["x", "y"], [["a|b", 1.5]]).text("**bold** and `code`").not_run("because")
    save_frame_strip(np.zeros((3, 20, 30, 3), np.uint8), tmp_path / "s.png", height=40)
    from PIL import Image

    assert Image.open(tmp_path / "s.png").size == (3 * 60 + 2 * 2, 40)
    s.image("s.png", "strip")
    plot_curves({"r": ([1, 2, 3], [3.0, 2.0, 1.0])}, tmp_path / "c.png", title="loss")
    assert (tmp_path / "c.png").stat().st_size > 0
    md, html = rep.to_markdown(), rep.to_html()
    assert "a\\|b" in md and "> **Not run:** because" in md and "![strip](s.png)" in md
    assert "T &lt;&amp;&gt;" in html and "<strong>bold</strong>" in html and "<code>code</code>" in html
    with pytest.raises(ValueError):
        save_frame_strip(np.zeros((3, 20, 30)), tmp_path / "bad.png")


@pytest.mark.slow
def test_probe_runs_inside_eval_all(tmp_path):
    """eval all probes each LVLM run's own video pathway; runs with the same tower share one fit."""
    import shutil

    from tests.tiny_lvlm import make_run
    from tests.toy_world import make_world

    world = make_world(tmp_path / "world", per_class=2, frames=8, video=True)
    for src, dst in (("zsl_base_train.csv", "train.csv"), ("zsl_base_val.csv", "test.csv"),
                     ("zsl_base_classes.csv", "classes.csv")):
        shutil.copy(world / src, world / dst)
    run = tmp_path / "run"
    for name in ("lvlm_a", "lvlm_b"):
        make_run(run / name)  # same seed: the same tiny tower
    assert report.main(["--run", str(run), "--world", str(world), "--examples", "0"]) == 0
    a = json.loads((run / "probe" / "lvlm_a" / "probe.json").read_text())
    b = json.loads((run / "probe" / "lvlm_b" / "probe.json").read_text())
    assert a["encoder_spec"] == f"lvlm:{run / 'lvlm_a' / 'final'}" and (a["n_train"], a["n_test"]) == (8, 4)
    assert b["shared_with"] == a["encoder_spec"] and b["accuracy"] == a["accuracy"]
    assert str(run / "lvlm_b" / "final") in b["features"]  # described as its own pathway
    md = (run / "report.md").read_text()
    assert f"| lvlm_a | {100 * a['accuracy']:.1f} | n/a |" in md  # no caption eval set here: grounding n/a
    # a second report reuses the probe (same key), it does not refit
    before = (run / "probe" / "lvlm_a" / "probe.json").stat().st_mtime_ns
    assert report.main(["--run", str(run), "--world", str(world), "--examples", "0"]) == 0
    assert (run / "probe" / "lvlm_a" / "probe.json").stat().st_mtime_ns == before


def test_a_video_model_trained_on_every_class_is_not_in_the_zero_shot_table(tmp_path):
    for name, novel in (("vifi_clip", "zsl_novel_test.csv"), ("lvlm_tower", "null")):
        (tmp_path / name / "model").mkdir(parents=True)
        (tmp_path / name / "model" / "model_config.json").write_text("{}")
        (tmp_path / name / "config.yaml").write_text(f"data:\n  novel_csv: {novel}\n")
    assert sorted(report.discover(tmp_path)["vlm"]) == ["vifi_clip"]
