import json
import os
import signal

import numpy as np
import pytest
import torch

from train import skeleton_clip
from train.skeleton_clip import main

from tests.toy_world import BASE, NOVEL, make_world  # noqa: F401


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"))


def _args(world, out, *extra):
    # the tiny random CLIP text tower keeps these tests fast and free of the MiniLM wheel
    return ["--config", "train/configs/skeleton_clip/tiny_cpu.yaml", f"data.root={world}", f"train.output_dir={out}",
            "data.skeleton_frames=20", "train.batch_size=4", "train.eval_batch_size=8", "model.text_encoder=clip",
            *extra]


def _losses(out):
    return [r for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.slow
def test_smoke_run_writes_model_and_zero_shot_results(world, tmp_path):
    out = tmp_path / "run"
    assert main(_args(world, out, "train.max_steps=3", "loss.caption_weight=0.5")) == 0
    rows = _losses(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert {"skel_text", "caption", "lr", "grad_norm"} <= set(rows[0])
    assert all(np.isfinite(r["loss"]) for r in rows)
    results = json.loads((out / "results.json").read_text())
    assert results["novel"]["num_samples"] == 4 and results["novel"]["chance"] == 0.5
    assert (out / "final" / "model.safetensors").is_file()
    cfg = json.loads((out / "final" / "model_config.json").read_text())
    assert cfg["kind"] == "skeleton_clip" and cfg["inference"]["skeleton_frames"] == 20
    # the file names all three recipes share (issue 14); the old ones are no longer written
    assert not (out / "metrics.jsonl").exists() and not (out / "model").exists()


def test_hf_text_encoder_run_trains_only_the_projection_of_a_frozen_body(world, tmp_path):
    from safetensors.torch import load_file

    from tests.tiny_text import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "bert")
    out = tmp_path / "run"
    assert main(_args(world, out, "train.max_steps=2", f"model.text_encoder={bert}", "model.text_unlocked_layers=0",
                      "loss.caption_weight=0.5")) == 0
    cfg = json.loads((out / "final" / "model_config.json").read_text())
    assert cfg["text_encoder"] == str(bert) and cfg["text_unlocked_layers"] == 0
    assert json.loads((out / "results.json").read_text())["novel"]["num_samples"] == 4
    body, after = load_file(str(bert / "model.safetensors")), load_file(str(out / "final" / "model.safetensors"))
    assert all(torch.equal(v, after[f"text.text.transformer.{k}"]) for k, v in body.items())


@pytest.mark.slow
def test_frozen_text_tower_is_unchanged_and_encoder_trains(world, tmp_path):
    from ski_lvlm.training.checkpoint import latest_checkpoint
    from safetensors.torch import load_file

    out = tmp_path / "run"
    assert main(_args(world, out, "train.max_steps=2", "train.save_every=1", "train.keep_checkpoints=3",
                      "model.freeze_text=true", "train.lr=1e-2")) == 0
    first = load_file(str(out / "checkpoints" / "step_00000001" / "model.safetensors"))
    last = load_file(str(latest_checkpoint(out / "checkpoints") / "model.safetensors"))
    changed = {k for k in first if not torch.equal(first[k], last[k])}
    assert changed and all(k.startswith(("encoder.", "head.")) for k in changed)
    assert any(k.startswith("encoder.layers") and k.endswith("weight") for k in changed)


@pytest.mark.parametrize("problem", ["num_classes", "joints", "empty"])
def test_bad_input_fails_before_training(world, tmp_path, problem, capsys):
    extra = []
    if problem == "num_classes":
        extra = ["data.num_classes=5"]
        want = "has 4 classes but the config says num_classes=5"
    elif problem == "joints":
        np.save(tmp_path / "bad.npy", np.zeros((3, 20, 17, 2), np.float32))
        (tmp_path / "bad.csv").write_text(f"video_path,skeleton_path,label\n,{tmp_path / 'bad.npy'},0\n")
        extra = [f"data.train_csv={tmp_path / 'bad.csv'}"]
        want = "17 joints"
    else:
        (tmp_path / "empty.csv").write_text("video_path,skeleton_path,label\n")
        extra = [f"data.train_csv={tmp_path / 'empty.csv'}"]
        want = "empty"
    assert main(_args(world, tmp_path / "run", *extra)) == 2
    assert want in capsys.readouterr().err
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


@pytest.mark.slow
def test_sigterm_then_resume_matches_uninterrupted_losses(world, tmp_path, monkeypatch):
    common = ("train.epochs=2", "train.batch_size=2", "train.grad_accum=2", "train.save_every=0",
              "data.val_csv=null", "data.novel_csv=null", "data.novel_classes_csv=null")
    full = tmp_path / "full"
    assert main(_args(world, full, *common)) == 0

    calls = {"n": 0}
    original = skeleton_clip.SkeletonTextLoss.forward

    def kill_on_fifth(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:  # mid optimizer step 3 (2 micro-batches per step), mid epoch 1
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *a, **k)

    part = tmp_path / "part"
    monkeypatch.setattr(skeleton_clip.SkeletonTextLoss, "forward", kill_on_fifth)
    assert main(_args(world, part, *common)) == skeleton_clip.EXIT_INTERRUPTED
    monkeypatch.setattr(skeleton_clip.SkeletonTextLoss, "forward", original)
    assert [r["step"] for r in _losses(part)] == [1, 2, 3]
    assert main(_args(world, part, *common) + ["--resume"]) == 0
    a, b = _losses(full), _losses(part)
    assert [r["step"] for r in b] == list(range(1, 7)) == [r["step"] for r in a]
    assert [r["loss"] for r in b] == [r["loss"] for r in a]  # exact, not approximate
