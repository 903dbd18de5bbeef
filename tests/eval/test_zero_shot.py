import json
import shutil

import pytest
import torch

from eval.zero_shot import classification_metrics, main
from ski_lvlm.models.ski_vlm import build_ski_vlm, build_skeleton_clip, build_video_clip, save_model

from tests.toy_world import BASE, NOVEL, make_world  # noqa: F401


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("zs")
    world = make_world(root / "world", per_class=1, frames=12, video=True)
    inference = {"templates": ["a video of a person {}."], "num_frames": 2, "skeleton_frames": 12,
                 "skeleton_mode": "pad", "center": True}
    skel = build_skeleton_clip(encoder="tiny", text_pool="mean")
    skel.config["inference"] = inference
    vifi = build_ski_vlm(build_video_clip(text_pool="mean"), None)
    ski = build_ski_vlm(build_video_clip(text_pool="mean"), build_skeleton_clip(encoder="tiny"))
    for model in (vifi, ski):
        model.config["inference"] = inference
    for name, model in (("skel", skel), ("vifi", vifi), ("ski", ski)):
        save_model(model, root / name)
    return root, world


def test_metrics_on_known_scores():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]])
    m = classification_metrics(scores, torch.tensor([0, 1, 2, 2]), ["a", "b", "c"])
    assert m["top1"] == 0.75 and m["top5"] == 1.0 and m["top5_k"] == 3
    assert m["per_class"] == {"a": 1.0, "b": 1.0, "c": 0.5}
    assert m["mean_class_acc"] == pytest.approx(2.5 / 3)
    assert m["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]


@pytest.mark.slow
def test_video_models_run_without_any_skeleton_file(setup, tmp_path):
    root, world = setup
    bare = tmp_path / "bare"
    shutil.copytree(world, bare)
    shutil.rmtree(bare / "skeletons")
    out = tmp_path / "zs"
    assert main(["--world", str(bare), "--out", str(out), "--model", f"vifi={root / 'vifi'}",
                 "--model", f"ski={root / 'ski'}", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["chance"] == 0.5 and set(results["models"]) == {"vifi", "ski"}
    for m in results["models"].values():
        assert m["input"] == "video" and m["num_samples"] == 4 and m["top1"] <= m["top5"]
        assert sum(map(sum, m["confusion"])) == 4
    table = (out / "results.md").read_text()
    assert "| chance |" in table and "ViFi-CLIP (video)" in table and "SKI-VLM (video)" in table
    png = (out / "confusion_ski.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_side_by_side_with_skeleton_model_and_multi_view(setup, tmp_path):
    root, world = setup
    out = tmp_path / "zs"
    assert main(["--world", str(world), "--out", str(out), "--model", f"skeleton={root / 'skel'}",
                 "--model", f"ski={root / 'ski'}", "--model", f"teacher={root / 'ski'}#teacher",
                 "--views", "2", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["models"]["skeleton"]["input"] == "skeleton" and results["models"]["skeleton"]["views"] == 1
    assert results["models"]["teacher"]["input"] == "skeleton" and "teacher" in results["models"]["teacher"]["display"]
    assert results["models"]["ski"]["views"] == 2
    assert "SkeletonCLIP (skeleton -> text)" in (out / "results.md").read_text()


@pytest.mark.slow
def test_models_with_a_hf_text_tower_reload_it_from_their_folder(setup, tmp_path):
    from tests.tiny_text import make_tiny_bert

    root, world = setup
    bert = str(make_tiny_bert(tmp_path / "bert"))
    inference = json.loads((root / "ski" / "model_config.json").read_text())["inference"]
    skel = build_skeleton_clip(encoder="tiny", text_encoder=bert)
    ski = build_ski_vlm(build_video_clip(text_encoder=bert), build_skeleton_clip(encoder="tiny", text_encoder=bert))
    for name, model in (("skel", skel), ("ski", ski)):
        model.config["inference"] = inference
        save_model(model, tmp_path / name)
    out = tmp_path / "zs"
    assert main(["--world", str(world), "--out", str(out), "--model", f"skeleton={tmp_path / 'skel'}",
                 "--model", f"ski={tmp_path / 'ski'}", "--model", f"teacher={tmp_path / 'ski'}#teacher",
                 "--device", "cpu"]) == 0
    for m in json.loads((out / "results.json").read_text())["models"].values():
        assert m["num_samples"] == 4 and 0 <= m["top1"] <= m["top5"] == 1.0


def test_bad_arguments(setup, tmp_path, capsys):
    root, world = setup
    assert main(["--out", str(tmp_path / "x"), "--model", f"a={root / 'ski'}"]) == 2
    assert main(["--world", str(world), "--out", str(tmp_path / "x"), "--model", f"a={tmp_path}"]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert main(["--world", str(world), "--out", str(tmp_path / "x"), "--model", f"a={root / 'vifi'}#teacher"]) == 2
    assert "has a teacher" in capsys.readouterr().err


def test_kind_label_names_a_teacherless_ski_vlm_folder_vifi_clip():
    from eval.zero_shot import kind_label

    assert kind_label({"kind": "ski_vlm", "skeleton": None}) == "ViFi-CLIP (video)"
    assert kind_label({"kind": "ski_vlm", "skeleton": {"kind": "skeleton_clip"}}) == "SKI-VLM (video)"
    assert kind_label({"kind": "skeleton_clip"}) == "SkeletonCLIP (skeleton -> text)"
    assert kind_label({}) == "model folder (kind None)"
