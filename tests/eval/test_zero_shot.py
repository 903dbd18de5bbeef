import json
import shutil

import numpy as np
import pytest
import torch

from eval.zero_shot import classification_metrics, main
from ski_lvlm.data.skeleton import write_ntu_skeleton
from ski_lvlm.data.video import write_video
from ski_lvlm.models.ski_vlm import build_ski_vlm, build_skeleton_clip, build_video_clip, save_model

BASE = ["raise left hand", "raise right hand", "wave left hand", "clap"]
NOVEL = ["wave right hand", "kick"]


def make_world(root, per_class=3, frames=20, video=False):
    """A toy world in the real formats: class k moves joint group k (skeleton) and a blob (video)."""
    rng = np.random.default_rng(0)

    def clip(name, k):
        t = np.arange(frames) / frames
        xyz = np.zeros((3, frames, 25, 1), np.float32)
        xyz[1, :, :, 0] = np.linspace(0, 1.5, 25)[None] + rng.normal(0, 0.01, (frames, 25))
        xyz[0, :, 4 * k + 2: 4 * k + 6, 0] += 0.3 * np.sin(2 * np.pi * t)[:, None]
        write_ntu_skeleton(root / "skeletons" / f"{name}.skeleton", xyz)
        if video:
            img = np.full((frames, 64, 64, 3), 30, np.uint8)
            for i in range(frames):
                y = int(8 + 10 * k + 4 * np.sin(2 * np.pi * i / frames))
                img[i, y:y + 8, 8 + 8 * k: 20 + 8 * k] = 220
            write_video(root / "videos" / f"{name}.mp4", img, fps=10)
        return f"videos/{name}.mp4,skeletons/{name}.skeleton"

    def split(file, names, offset, subjects):
        rows = ["video_path,skeleton_path,label"]
        for label, _ in enumerate(names):
            for s in subjects:
                rows.append(f"{clip(f'S001C001P{s:03d}R001A{offset + label + 1:03d}', offset + label)},{label}")
        (root / file).write_text("\n".join(rows) + "\n")

    (root / "skeletons").mkdir(parents=True)
    for file, names in (("zsl_base_classes.csv", BASE), ("zsl_novel_classes.csv", NOVEL)):
        (root / file).write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    split("zsl_base_train.csv", BASE, 0, range(1, per_class + 1))
    split("zsl_base_val.csv", BASE, 0, [50])
    split("zsl_novel_test.csv", NOVEL, len(BASE), [60, 61])
    caps = {p.stem: [f"a person does motion {p.stem[-2:]}"] for p in (root / "skeletons").iterdir()}
    (root / "captions.json").write_text(json.dumps(caps))
    return root


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


def test_bad_arguments(setup, tmp_path, capsys):
    root, world = setup
    assert main(["--out", str(tmp_path / "x"), "--model", f"a={root / 'ski'}"]) == 2
    assert main(["--world", str(world), "--out", str(tmp_path / "x"), "--model", f"a={tmp_path}"]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert main(["--world", str(world), "--out", str(tmp_path / "x"), "--model", f"a={root / 'vifi'}#teacher"]) == 2
    assert "has a teacher" in capsys.readouterr().err
