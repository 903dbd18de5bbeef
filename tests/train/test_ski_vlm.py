import json
import os
import shutil
import signal

import pytest
import torch
from safetensors.torch import load_file

from ski_lvlm.models.ski_vlm import build_skeleton_clip, build_video_clip, load_video_clip, save_model
from train import ski_vlm
from train.ski_vlm import main

from tests.toy_world import BASE, NOVEL, make_world  # noqa: F401

pytestmark = pytest.mark.slow  # every test trains a tiny SKI-VLM run


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), per_class=2, frames=12, video=True)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """An (untrained) phase-1 SkeletonCLIP model folder: enough to exercise the phase-2 plumbing."""
    folder = tmp_path_factory.mktemp("teacher") / "model"
    save_model(build_skeleton_clip(encoder="tiny", text_pool="mean"), folder)
    return folder


def _args(world, out, *extra):
    # the tiny random CLIP text tower keeps these tests fast and free of the MiniLM wheel
    return ["--config", "train/configs/ski_vlm/tiny_cpu.yaml", f"data.root={world}", f"train.output_dir={out}",
            "data.num_frames=3", "data.skeleton_frames=12", "train.batch_size=4", "train.eval_batch_size=8",
            "data.val_csv=null", "model.text_encoder=clip", *extra]


def _losses(out):
    return [r for r in map(json.loads, (out / "train_log.jsonl").read_text().splitlines()) if "loss" in r]


def test_collaborative_smoke_run(world, teacher, tmp_path):
    out = tmp_path / "run"
    assert main(_args(world, out, f"model.teacher={teacher}", "train.max_steps=2", "loss.caption_weight=1")) == 0
    rows = _losses(out)
    assert [r["step"] for r in rows] == [1, 2]
    assert {"video_text", "skel_text", "distill", "video_caption", "skel_caption", "grad_norm"} <= set(rows[0])
    results = json.loads((out / "results.json").read_text())
    assert results["novel"]["num_samples"] == 4
    # the file names all three recipes share (issue 14); the old ones are no longer written
    assert (out / "train_log.jsonl").is_file() and not (out / "metrics.jsonl").exists()
    assert not (out / "model").exists()
    video = load_video_clip(out / "final")
    assert video.config["inference"]["num_frames"] == 3 and video.frame_input == "median_residual"
    # collaborative: the teacher's weights moved too
    before, after = load_file(str(teacher / "model.safetensors")), load_file(str(out / "final" / "model.safetensors"))
    assert any(not torch.equal(before[k], after[f"skeleton.{k}"]) for k in before)


def test_hf_text_student_with_a_clip_text_teacher(world, teacher, tmp_path):
    """Each branch tokenizes with its own text tower: WordPiece for the student, CLIP BPE for the teacher."""
    from tests.tiny_text import make_tiny_bert

    bert = make_tiny_bert(tmp_path / "bert")
    out = tmp_path / "run"
    assert main(_args(world, out, f"model.teacher={teacher}", f"model.text_encoder={bert}", "train.max_steps=2",
                      "loss.caption_weight=1")) == 0
    assert {"skel_text", "distill", "video_caption", "skel_caption"} <= set(_losses(out)[0])
    cfg = json.loads((out / "final" / "model_config.json").read_text())
    assert cfg["video"]["text_encoder"] == str(bert) and cfg["skeleton"]["text_encoder"] == "clip"
    assert json.loads((out / "results.json").read_text())["novel"]["num_samples"] == 4


def test_frozen_teacher_stays_bit_identical(world, teacher, tmp_path):
    out = tmp_path / "run"
    assert main(_args(world, out, f"model.teacher={teacher}", "model.teacher_trainable=false",
                      "train.max_steps=2", "train.lr=1e-2")) == 0
    assert {"video_text", "distill"} <= set(_losses(out)[0]) and "skel_text" not in _losses(out)[0]
    before, after = load_file(str(teacher / "model.safetensors")), load_file(str(out / "final" / "model.safetensors"))
    for k, v in before.items():  # weights and BatchNorm buffers alike
        assert torch.equal(v, after[f"skeleton.{k}"]), k
    video_before = build_video_clip(text_pool="mean")  # same seed -> same init as the run's video branch
    assert any(not torch.equal(v, after[f"video.{k}"]) for k, v in video_before.state_dict().items()
               if v.dtype.is_floating_point)


def test_vifi_baseline_needs_no_skeleton_files(world, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(world, bare)
    shutil.rmtree(bare / "skeletons")
    out = tmp_path / "run"
    assert main(["--config", "train/configs/ski_vlm/tiny_cpu_vifi.yaml", f"data.root={bare}", f"train.output_dir={out}",
                 "data.num_frames=3", "train.batch_size=4", "train.max_steps=1", "data.val_csv=null",
                 "loss.caption_weight=1"]) == 0
    assert set(_losses(out)[0]) >= {"video_text", "video_caption"} and "distill" not in _losses(out)[0]
    cfg = json.loads((out / "final" / "model_config.json").read_text())
    assert cfg["kind"] == "ski_vlm" and cfg["skeleton"] is None


def test_alpha_without_teacher_is_a_config_error(world, tmp_path, capsys):
    assert main(_args(world, tmp_path / "run", "model.teacher=null", "loss.alpha=10", "data.num_frames=2")) == 2
    err = capsys.readouterr().err  # both problems reported at once
    assert "needs model.teacher" in err and "median_residual needs >= 3 frames" in err


def test_wrong_class_count_fails_before_training(world, teacher, tmp_path, capsys):
    assert main(_args(world, tmp_path / "run", f"model.teacher={teacher}", "data.num_classes=16")) == 2
    assert "num_classes=16" in capsys.readouterr().err


def test_teacher_path_of_an_old_layout_run_still_loads(world, teacher, tmp_path, capsys):
    """model.teacher=RUN/final (the new name) of a phase-1 run trained before issue 14, which wrote RUN/model:
    the old folder is used with a warning; a path that holds neither is a clear config error."""
    out = tmp_path / "run"
    assert teacher.name == "model" and not (teacher.parent / "final").exists()
    with pytest.warns(FutureWarning, match="'model' is the old name of 'final'"):
        assert main(_args(world, out, f"model.teacher={teacher.parent / 'final'}", "train.max_steps=1")) == 0
    trained, before = load_file(str(out / "final" / "model.safetensors")), load_file(str(teacher / "model.safetensors"))
    assert set(before) == {k[len("skeleton."):] for k in trained if k.startswith("skeleton.")}  # the teacher is in
    assert main(_args(world, tmp_path / "run2", f"model.teacher={tmp_path / 'nowhere'}")) == 2
    err = capsys.readouterr().err
    assert "model.teacher" in err and "not a model folder" in err and "run ski-lvlm train skeleton-clip first" in err


def test_sigterm_mid_epoch_then_resume_matches_uninterrupted(world, teacher, tmp_path, monkeypatch):
    common = (f"model.teacher={teacher}", "train.epochs=2", "train.batch_size=2", "train.grad_accum=2",
              "loss.caption_weight=0", "data.novel_csv=null", "data.novel_classes_csv=null")
    full = tmp_path / "full"
    assert main(_args(world, full, *common)) == 0

    calls = {"n": 0}
    original = ski_vlm.SKIVLMLoss.forward

    def kill_on_third(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # inside optimizer step 2 of epoch 0 (4 micro-batches = 2 steps per epoch)
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *a, **k)

    part = tmp_path / "part"
    monkeypatch.setattr(ski_vlm.SKIVLMLoss, "forward", kill_on_third)
    assert main(_args(world, part, *common)) == ski_vlm.EXIT_INTERRUPTED
    monkeypatch.setattr(ski_vlm.SKIVLMLoss, "forward", original)
    assert [r["step"] for r in _losses(part)] == [1, 2]
    assert main(_args(world, part, *common) + ["--resume"]) == 0
    a, b = _losses(full), _losses(part)
    assert [r["step"] for r in a] == [1, 2, 3, 4] == [r["step"] for r in b]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [r["distill"] for r in a] == [r["distill"] for r in b]


def test_feature_distillation_pulls_the_video_embedding_to_the_frozen_teacher(world, teacher, tmp_path):
    """distill_on=features: logged as ``distill`` (no teacher CE), and it moves the video embedding towards the
    teacher's; the same run with alpha 0 stays further away. Compared on the training clips, both runs from one
    seed, so the distance at step 0 is the same."""
    from ski_lvlm.data.action_dataset import ActionDataset
    from ski_lvlm.models.ski_vlm import load_model
    from ski_lvlm.models.clip_towers import clip_image_stats

    def distance(out):
        model = load_model(out / "final").eval()
        mean, std, size = clip_image_stats(model.video.clip)
        ds = ActionDataset(world / "zsl_base_train.csv", world / "zsl_base_classes.csv", num_frames=3, image_size=size,
                           mean=mean, std=std, with_skeleton=True, skeleton_frames=12, skeleton_mode="resize")
        batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
        with torch.no_grad():
            v = model.video.encode_video(batch["video"], normalize=True)
            s = model.skeleton.encode_skeleton(batch["skeleton"], normalize=True)
        return (v - s).pow(2).sum(-1).mean().item()

    runs = {}
    for alpha in (0.0, 20.0):
        out = tmp_path / f"a{alpha:g}"
        args = _args(world, out, f"model.teacher={teacher}", "train.max_steps=6", "train.lr=3e-3",
                     "train.warmup_epochs=0", f"loss.alpha={alpha}")
        args[1] = "train/configs/ski_vlm/tiny_cpu_feat.yaml"
        assert main(args) == 0
        runs[alpha] = out
    rows = _losses(runs[20.0])
    assert "skel_text" not in rows[0] and 0 < rows[0]["distill"] / 20.0 <= 4  # a squared distance of unit vectors
    assert distance(runs[20.0]) < distance(runs[0.0]) - 0.05


def test_step_distillation_run_trains_saves_resumes_exactly_and_keeps_the_video_branch(world, teacher, tmp_path,
                                                                                       monkeypatch):
    """tiny_cpu_lvlm_tower_steps.yaml on the toy world: 4 frames against T' = 3 teacher steps (resampled), a
    frozen teacher, a ``distill`` term; SIGTERM mid-run and --resume give the uninterrupted run's losses (the
    step head is in the checkpoint); final/ holds the head, and its video branch loads alone."""
    from ski_lvlm.models.ski_vlm import load_model

    def args(out, *extra):
        return ["--config", "train/configs/ski_vlm/tiny_cpu_lvlm_tower_steps.yaml", f"data.root={world}",
                f"train.output_dir={out}", f"model.teacher={teacher}", "data.train_csv=zsl_base_train.csv",
                "data.classes_csv=zsl_base_classes.csv", "data.num_frames=4", "data.skeleton_frames=12",
                "train.epochs=2", "train.batch_size=2", "train.grad_accum=2", *extra]

    full = tmp_path / "full"
    assert main(args(full)) == 0
    calls = {"n": 0}
    original = ski_vlm.SKIVLMLoss.forward

    def kill_on_third(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # inside optimizer step 2 of epoch 0
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *a, **k)

    part = tmp_path / "part"
    monkeypatch.setattr(ski_vlm.SKIVLMLoss, "forward", kill_on_third)
    assert main(args(part)) == ski_vlm.EXIT_INTERRUPTED
    monkeypatch.setattr(ski_vlm.SKIVLMLoss, "forward", original)
    ckpt = next((part / "checkpoints").glob("step_*"))
    assert "step_head.weight" in load_file(str(ckpt / "model.safetensors"))
    assert main(args(part) + ["--resume"]) == 0

    a, b = _losses(full), _losses(part)
    assert [r["step"] for r in a] == [1, 2, 3, 4] == [r["step"] for r in b]
    assert "distill" in a[0] and "skel_text" not in a[0] and all(0 < r["distill"] <= 4 for r in a)  # alpha 1
    assert [r["loss"] for r in a] == [r["loss"] for r in b] and [r["distill"] for r in a] == [r["distill"] for r in b]

    trained = load_model(full / "final")
    assert trained.step_head is not None and trained.config["step_head"] is True
    video = load_video_clip(full / "final")
    assert video.frame_input == "motion_crop" and not any("step_head" in k for k in video.state_dict())
    from ski_lvlm.models.clip_towers import clip_image_stats

    size = clip_image_stats(video.clip)[2]
    clip = torch.randn(2, 4, 3, size, size)
    with torch.no_grad():
        assert torch.equal(video.encode_video(clip), trained.video.encode_video(clip))


def test_step_distillation_config_errors_name_the_keys(world, tmp_path, capsys):
    assert main(["--config", "train/configs/ski_vlm/tiny_cpu_lvlm_tower_steps.yaml", f"data.root={world}",
                 f"train.output_dir={tmp_path / 'run'}", "model.teacher=null", "loss.alpha=0",
                 "data.skeleton_mode=pad"]) == 2
    err = capsys.readouterr().err  # all three reported at once
    assert "loss.distill_on: steps needs model.teacher" in err
    assert "loss.alpha=0" in err and "data.skeleton_mode=resize" in err
