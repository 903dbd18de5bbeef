"""Recipe train/lvlm.py on a tiny generated dataset (8 videos + skeletons), CPU, tiny models."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from train.lvlm import main

CAPTIONS = ["a person waves the left hand", "someone drinks water from a red cup", "the man sits down slowly",
            "a woman claps her hands twice", "the child jumps up and down", "a person bows to the camera",
            "someone kicks with the right leg", "the person picks up a small box"]
FAST = ["model.num_frames=4", "model.max_frames=4", "model.skeleton_frames=32", "train.log_every=1"]


def make_world(root: Path, n: int = 8, missing_skeleton: tuple[int, ...] = (), multi_turn: bool = False) -> Path:
    from ski_lvlm.data.skeleton import write_ntu_skeleton
    from ski_lvlm.data.video import write_video

    rng = np.random.default_rng(0)
    (root / "videos").mkdir(parents=True)
    (root / "skeletons").mkdir()
    records = []
    for i in range(n):
        name = f"S001C001P{i + 1:03d}R001A001"
        # visually distinct clips: a per-sample colour and stripe period, moving over time
        colour = np.array([(37 * i) % 256, (91 * i + 60) % 256, (151 * i + 120) % 256], np.uint8)
        frames = np.zeros((8, 64, 64, 3), np.uint8)
        for t in range(8):
            stripes = ((np.arange(64)[None, :] + 3 * t) // (2 + i)) % 2
            frames[t] = colour[None, None, :] * stripes[..., None] + (255 - colour)[None, None, :] * (1 - stripes[..., None])
        write_video(root / "videos" / f"{name}.mp4", frames, fps=8)
        if i not in missing_skeleton:
            write_ntu_skeleton(root / "skeletons" / f"{name}.skeleton",
                               rng.normal(size=(3, 20, 25, 1)).astype(np.float32))
        conv = [{"from": "human", "value": "<video>\nDescribe the video."}, {"from": "gpt", "value": CAPTIONS[i]}]
        if multi_turn:
            conv += [{"from": "human", "value": "Is the person alone?"}, {"from": "gpt", "value": "Yes."}]
        records.append({"id": name, "video": f"videos/{name}.mp4", "skeleton": f"skeletons/{name}.skeleton",
                        "conversations": conv})
    (root / "instructions_train.json").write_text(json.dumps(records, indent=1))
    return root / "instructions_train.json"


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # every test trains or exports a run


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world"), missing_skeleton=(7,), multi_turn=True)


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "train_log.jsonl").read_text().splitlines())}


def test_align_then_instruct_lora_with_skeleton_injection(tmp_path, world):
    align = tmp_path / "align"
    assert main(["--config", "train/configs/lvlm/align_tiny.yaml", f"train.output_dir={align}", f"data.train_json={world}",
                 "train.max_steps=2", "data.p_inject=0", *FAST]) == 0
    final = align / "final"
    for f in ("config.json", "model.safetensors", "mm_modules.safetensors", "mm_projector.bin",
              "processor_config.json", "run_info.json"):
        assert (final / f).is_file(), f
    assert (align / "features" / "cache.json").is_file() and (align / "tb").is_dir()
    assert len(losses(align)) == 2

    # a cache made once by `ski-lvlm data features` with the same encoders serves the next stage
    from data_tools.features import main as features_main

    cache = tmp_path / "cache"
    sub = tmp_path / "with_skeletons.json"  # that CLI treats a missing skeleton file as a bad item
    sub.write_text(json.dumps([{**r, "video": str(world.parent / r["video"]), "skeleton": str(world.parent / r["skeleton"])}
                               for r in json.loads(world.read_text())[:7]]))
    assert features_main(["--instructions", str(sub), "--out", str(cache), "--video-encoder", "clip:ski-tiny-ViT",
                          "--frames", "4", "--max-frames", "4", "--skeleton-encoder", "random:tiny",
                          "--skeleton-frames", "32", "--device", "cpu", "--no-progress"]) == 0
    inst = tmp_path / "instruct"
    assert main(["--config", "train/configs/lvlm/instruct_tiny.yaml", f"train.output_dir={inst}", f"data.train_json={sub}",
                 f"model.init_from={final}", "train.max_steps=3", "data.p_inject=1.0", "train.deepspeed=null",
                 f"data.feature_cache={cache}", *FAST]) == 0
    assert not (inst / "features").exists()
    # a cache made with another tower is refused with the differing keys
    assert main(["--config", "train/configs/lvlm/instruct_tiny.yaml", f"train.output_dir={tmp_path / 'x'}",
                 f"data.train_json={sub}", f"data.feature_cache={cache}", "train.max_steps=1",
                 "model.num_frames=2", "model.max_frames=2", "model.skeleton_frames=32"]) == 2
    log = [json.loads(x) for x in (inst / "train_log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) and r["tokens_per_s"] > 0 for r in log)
    # every sample has skeleton features; with p_inject=1 every one of them gets skeleton tokens
    assert all(r["skeleton_frac"] == 1.0 for r in log)
    assert (inst / "final" / "adapter" / "adapter_config.json").is_file()
    info = json.loads((inst / "final" / "run_info.json").read_text())
    assert info["stage"] == "instruct" and info["adapter"] and info["p_inject"] == 1.0

    # inference from video alone, with the frozen tower inside the model (no skeleton, no cache)
    from ski_lvlm.data.video import read_frames
    from ski_lvlm.models.lvlm import load

    model, proc = load(inst / "final")
    frames = torch.from_numpy(read_frames(world.parent / "videos" / "S001C001P001R001A001.mp4", 4)).permute(0, 3, 1, 2)
    inputs = proc("Describe the video.")
    out = model.generate(**inputs, pixel_values_videos=frames[None], max_new_tokens=4, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]
    # the adapter-only path (base reference + adapter + mm_modules) gives the same logits as the merged weights
    merged, _ = load(inst / "final")
    (inst / "final" / "model.safetensors").rename(inst / "final" / "model.safetensors.off")
    via_adapter, _ = load(inst / "final")
    ids = torch.tensor([proc.build_prompt("Describe the video.")])
    feats = merged.encode_video(frames[None])
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids, video_features=feats).logits,
                                   via_adapter(input_ids=ids, video_features=feats).logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("engine", ["torch", "zero2"])
def test_stop_and_resume_gives_same_losses(tmp_path, world, engine):
    ds = "null" if engine == "torch" else "train/configs/deepspeed/zero2.json"
    common = ["--config", "train/configs/lvlm/instruct_tiny.yaml", f"data.train_json={world}", "train.max_steps=6",
              "train.batch_size=2", "data.p_inject=0.5", "lora.dropout=0.1", f"train.deepspeed={ds}", *FAST]
    full = tmp_path / "full"
    assert main([*common, f"train.output_dir={full}"]) == 0
    part = tmp_path / "part"
    assert main([*common, f"train.output_dir={part}", "train.stop_after_steps=2"]) == 0  # stops mid-epoch (4 batches/epoch)
    assert not (part / "final").exists() and (part / "checkpoints" / "latest").is_file()
    assert main([*common, f"train.output_dir={part}", "train.stop_after_steps=2"]) == 0  # stops exactly at the epoch end
    assert main([*common, f"train.output_dir={part}"]) == 0
    a, b = losses(full), losses(part)
    assert sorted(b) == [1, 2, 3, 4, 5, 6]
    from ski_lvlm.data.feature_cache import FeatureCache

    cache = FeatureCache(full / "features")  # sample 8 has no skeleton file: no skeleton features, never zeros
    assert "skeleton" not in cache.get("S001C001P008R001A001") and "skeleton" in cache.get("S001C001P001R001A001")
    assert [a[s] for s in range(1, 7)] == [b[s] for s in range(1, 7)]  # bit-identical on CPU


def test_sigterm_saves_exits_143_and_resumes_exactly(tmp_path, world, monkeypatch):
    """The same stop contract as phases 1/2: finish the step, save, exit EXIT_INTERRUPTED; rerun resumes."""
    import os
    import signal

    from train import lvlm

    common = ["--config", "train/configs/lvlm/align_tiny.yaml", f"data.train_json={world}", "train.max_steps=4",
              "train.batch_size=2", "train.deepspeed=null", *FAST]
    assert main([*common, f"train.output_dir={tmp_path / 'full'}"]) == 0
    original, calls = lvlm.LvlmRecipe._loss, {"n": 0}

    def term_on_second(self, module, batch):
        calls["n"] += 1
        if calls["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, module, batch)

    part = tmp_path / "part"
    monkeypatch.setattr(lvlm.LvlmRecipe, "_loss", term_on_second)
    assert main([*common, f"train.output_dir={part}"]) == lvlm.EXIT_INTERRUPTED == 143
    monkeypatch.setattr(lvlm.LvlmRecipe, "_loss", original)
    assert sorted(losses(part)) == [1, 2] and not (part / "final").exists()
    assert main([*common, f"train.output_dir={part}"]) == 0
    assert losses(part) == losses(tmp_path / "full")


def test_checkpointing_workers_and_zero3_match_the_plain_run(tmp_path, world):
    common = ["--config", "train/configs/lvlm/instruct_tiny.yaml", f"data.train_json={world}", "train.max_steps=3",
              "data.p_inject=0.5", "lora.dropout=0", *FAST]
    assert main([*common, f"train.output_dir={tmp_path / 'plain'}", "train.deepspeed=null"]) == 0
    assert main([*common, f"train.output_dir={tmp_path / 'ckpt'}", "train.deepspeed=null", "train.gradient_checkpointing=true",
                 "data.num_workers=1"]) == 0
    assert main([*common, f"train.output_dir={tmp_path / 'z3'}", "train.deepspeed=train/configs/deepspeed/zero3.json"]) == 0
    ref = losses(tmp_path / "plain")
    assert losses(tmp_path / "ckpt") == pytest.approx(ref, rel=1e-6)
    # ZeRO-3 steps flat fp32 partitions with its own clipping: same trajectory up to float rounding
    assert losses(tmp_path / "z3") == pytest.approx(ref, rel=1e-3)
    from ski_lvlm.models.lvlm import load

    load(tmp_path / "z3" / "final")  # ZeRO-3 shards were gathered before saving


def test_qlora_on_cpu_saves_adapter_and_loads(tmp_path, world):
    run = tmp_path / "q"
    assert main(["--config", "train/configs/lvlm/instruct_tiny.yaml", f"train.output_dir={run}", f"data.train_json={world}",
                 "train.llm_adapter=qlora", "train.deepspeed=null", "train.max_steps=2", *FAST]) == 0
    final = run / "final"
    assert not (final / "model.safetensors").exists() and (final / "adapter" / "adapter_model.safetensors").is_file()
    cfg = json.loads((final / "config.json").read_text())
    assert Path(cfg["llm_name_or_path"]) == (run / "base_llm").resolve()
    from ski_lvlm.models.lvlm import load

    model, proc = load(final)  # fp32 base + merged adapter + projectors
    inputs = proc("Describe the video.")
    feats = torch.zeros(1, proc.num_video_tokens, model.config.video_feature_dim)
    assert model.generate(**inputs, video_features=feats, max_new_tokens=2, do_sample=False).shape[1] >= \
        inputs["input_ids"].shape[1] + 1


def test_deepspeed_zero2_single_process_cpu_trains(tmp_path, world):
    run = tmp_path / "ds"
    assert main(["--config", "train/configs/lvlm/instruct_tiny.yaml", f"train.output_dir={run}", f"data.train_json={world}",
                 "train.max_steps=3", "train.deepspeed=train/configs/deepspeed/zero2.json", "train.lr=1e-2",
                 *FAST]) == 0
    assert len(losses(run)) == 3
    from safetensors.torch import load_file

    adapter = load_file(str(run / "final" / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b)  # LoRA B starts at zero: it trained


def test_bad_samples_fail_or_are_listed(tmp_path, world, capsys):
    records = json.loads(world.read_text())
    records[3]["conversations"][0]["value"] = "<video><video> twice?"
    bad = world.parent / "bad.json"
    bad.write_text(json.dumps(records))
    args = ["--config", "train/configs/lvlm/align_tiny.yaml", f"data.train_json={bad}", "train.max_steps=1", *FAST]
    assert main([*args, f"train.output_dir={tmp_path / 'a'}"]) == 2
    assert "record 3" in capsys.readouterr().err
    assert main([*args, f"train.output_dir={tmp_path / 'b'}", "data.skip_bad_samples=true"]) == 0
    skipped = json.loads((tmp_path / "b" / "skipped_samples.json").read_text())
    assert [s["index"] for s in skipped] == [3] and "one video" in skipped[0]["reason"]
    assert main([*args[:2], f"data.train_json={world}", *args[3:], f"train.output_dir={tmp_path / 'b'}",
                 "resume=false"]) == 0  # the mended set in the same folder: no earlier list left behind
    assert not (tmp_path / "b" / "skipped_samples.json").exists()
    assert main(["--config", "train/configs/lvlm/align_tiny.yaml", f"train.output_dir={tmp_path / 'c'}",
                 f"data.train_json={world}", "train.llm_adapter=lora"]) == 2


def test_tiny_model_overfits_8_samples_and_generates_their_captions(tmp_path):
    world = make_world(tmp_path / "w")
    run = tmp_path / "run"
    assert main(["--config", "train/configs/lvlm/instruct_tiny.yaml", f"train.output_dir={run}", f"data.train_json={world}",
                 "train.llm_adapter=full", "train.batch_size=8", "train.max_steps=150", "train.lr=3e-3",
                 "train.warmup_ratio=0.05", "train.deepspeed=null", "data.p_inject=0", "train.log_every=25",
                 *FAST]) == 0
    assert losses(run)[150] < 0.05
    from ski_lvlm.data.video import read_frames
    from ski_lvlm.models.lvlm import load

    model, proc = load(run / "final")
    videos = sorted((world.parent / "videos").glob("*.mp4"))
    frames = torch.stack([torch.from_numpy(read_frames(v, 4)).permute(0, 3, 1, 2) for v in videos])
    inputs = proc(["Describe the video."] * len(videos))
    out = model.generate(**inputs, pixel_values_videos=frames, max_new_tokens=24, do_sample=False)
    assert proc.batch_decode(out[:, inputs["input_ids"].shape[1]:]) == CAPTIONS


def test_standardising_projector_fits_on_the_training_features_and_travels_with_the_model(tmp_path, world):
    run = tmp_path / "std"
    assert main(["--config", "train/configs/lvlm/instruct_tiny.yaml", f"train.output_dir={run}", f"data.train_json={world}",
                 "model.projector_type=std_linear", "model.skeleton_projector_type=std_mlp2x_gelu",
                 "train.deepspeed=null", "train.max_steps=2", "data.p_inject=1", *FAST]) == 0
    from ski_lvlm.data.feature_cache import FeatureCache
    from ski_lvlm.models.lvlm import load

    cache = FeatureCache(run / "features")
    video = torch.cat([cache.get(k)["video"].float() for k in cache.ids()])  # [8 * n_v, d_v]
    model, _ = load(run / "final")
    std = model.video_projector[0]
    torch.testing.assert_close(std.mean, video.mean(0), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(std.std, video.std(0).clamp_min(1e-4), rtol=1e-4, atol=1e-4)
    standardised = std(video)
    assert standardised.mean(0).abs().max() < 1e-3
    skel = model.skeleton_projector[0]
    assert not torch.equal(skel.mean, torch.zeros_like(skel.mean))  # fitted on the 7 skeleton files


def test_summary_tokens_and_prealign_train_reload_and_generate(tmp_path, world, capsys):
    run = tmp_path / "sum"
    assert main(["--config", "train/configs/lvlm/instruct_tiny.yaml", f"train.output_dir={run}", f"data.train_json={world}",
                 "model.projector_type=std_linear", "model.video_summary_tokens=2", "train.prealign_steps=5",
                 "train.deepspeed=null", "train.max_steps=2", *FAST]) == 0
    assert "prealign: video projector fitted to 8 answers in 5 steps" in capsys.readouterr().out
    from ski_lvlm.models.lvlm import load

    model, proc = load(run / "final")
    assert model.config.video_summary_tokens == 2 and proc.num_video_tokens == 4 + 16 + 2  # frames + patches + 2
    inputs = proc("Describe the video.")
    frames = torch.randint(0, 256, (1, 4, 3, 64, 64), dtype=torch.uint8)
    out = model.generate(**inputs, pixel_values_videos=frames, max_new_tokens=2, do_sample=False)
    assert out.shape[1] >= inputs["input_ids"].shape[1] + 1


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_tower_trainable_trains_the_tower_and_saves_plain_weights(tmp_path, world, capsys, mode):
    from ski_lvlm.models.lvlm import load

    common = [f"data.train_json={world}", "train.deepspeed=null", "train.max_steps=2", "train.lr=1e-2", *FAST]
    assert main(["--config", "train/configs/lvlm/instruct_tiny.yaml", f"train.output_dir={tmp_path / 'frozen'}", *common]) == 0
    assert main(["--config", "train/configs/lvlm/instruct_tiny.yaml", f"train.output_dir={tmp_path / mode}",
                 f"model.tower_trainable={mode}", *common]) == 0
    assert f"trainable parameters ({mode})" in capsys.readouterr().out
    frozen, _ = load(tmp_path / "frozen" / "final")
    trained, proc = load(tmp_path / mode / "final")
    before, after = frozen.video_tower.state_dict(), trained.video_tower.state_dict()
    assert before.keys() == after.keys()  # LoRA merged away: the saved tower loads like any other
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(k.startswith("visual.") for k in changed)
    frames = torch.randint(0, 256, (1, 4, 3, 64, 64), dtype=torch.uint8)
    assert not torch.allclose(frozen.encode_video(frames), trained.encode_video(frames))
    assert not trained.video_tower.training  # batch-norm / dropout stay in inference mode


def test_frame_source_decodes_each_clip_once_and_collate_stacks_frames(world):
    from ski_lvlm.data.lvlm_dataset import FrameSource, lvlm_collate

    records = json.loads(Path(world).read_text())
    video = str(Path(world).parent / records[0]["video"])

    class Cached:
        def get(self, key):
            return {"video": torch.zeros(3, 2)}

    src = FrameSource(Cached(), {"a": video}, num_frames=4)
    first = src.get("a")
    assert first["frames"].dtype == torch.uint8 and first["frames"].shape[:2] == (4, 3)  # [t, 3, H, W]
    assert src.get("a")["frames"] is first["frames"]  # decoded once
    assert "frames" not in src.get("b")
    item = {"input_ids": [1, 2], "labels": [1, 2], "video_features": first["video"],
            "video_frames": first["frames"], "skeleton_features": None, "id": "a"}
    batch = lvlm_collate([item, item], pad_token_id=0)
    assert batch["video_features"] is None and batch["pixel_values_videos"].shape == (2, *first["frames"].shape)


def test_packing_gives_the_losses_of_the_padded_run(tmp_path, world, capsys):
    """data.packing changes the layout, not the samples of a step: the same loss curve (float rounding)."""
    common = ["--config", "train/configs/lvlm/instruct_tiny.yaml", f"data.train_json={world}", "train.max_steps=3",
              "train.batch_size=3", "data.p_inject=0.5", "lora.dropout=0", "train.deepspeed=null", *FAST]
    assert main([*common, f"train.output_dir={tmp_path / 'padded'}"]) == 0
    assert main([*common, f"train.output_dir={tmp_path / 'packed'}", "data.packing=true"]) == 0
    assert "no padding, attention per sample (sdpa_varlen)" in capsys.readouterr().out
    assert losses(tmp_path / "packed") == pytest.approx(losses(tmp_path / "padded"), abs=1e-5)


def test_bf16_on_cpu_trains_close_to_fp32(tmp_path, world):
    """train.precision=bf16 on CPU: frozen weights in bf16, LoRA/projectors fp32 under bf16 autocast."""
    common = ["--config", "train/configs/lvlm/instruct_tiny.yaml", f"data.train_json={world}", "train.max_steps=2",
              "train.deepspeed=null", "lora.dropout=0", *FAST]
    assert main([*common, f"train.output_dir={tmp_path / 'fp32'}"]) == 0
    assert main([*common, f"train.output_dir={tmp_path / 'bf16'}", "train.precision=bf16"]) == 0
    exact, half = losses(tmp_path / "fp32"), losses(tmp_path / "bf16")
    assert exact.keys() == half.keys() == {1, 2}
    assert exact[1] != half[1]  # bf16 really computed something else...
    assert abs(exact[1] - half[1]) < 0.05 * exact[1]  # ...and close to the exact loss


def test_step_alignment_adds_alpha_times_the_distance_and_pulls_the_frames_to_the_skeleton(tmp_path, world):
    common = ["--config", "train/configs/lvlm/instruct_tiny.yaml", f"data.train_json={world}", "train.deepspeed=null",
              "train.max_steps=6", "data.p_inject=0", "model.projector_type=std_mlp2x_gelu", *FAST]
    assert main([*common, f"train.output_dir={tmp_path / 'lm'}"]) == 0
    assert main([*common, f"train.output_dir={tmp_path / 'steps'}", "loss.distill_on=steps", "loss.alpha=2"]) == 0
    lm = losses(tmp_path / "lm")
    log = [json.loads(x) for x in (tmp_path / "steps" / "train_log.jsonl").read_text().splitlines()]
    # step 1 sees the same weights and batch in both runs: the only difference is alpha x the distance
    assert log[0]["loss"] - lm[1] == pytest.approx(2 * log[0]["distill"], rel=1e-4)
    assert log[-1]["distill"] < 0.7 * log[0]["distill"]  # the frames move towards the skeleton steps
    assert all(r["skeleton_frac"] == 0.0 for r in log)  # aligned, never injected (p_inject=0)
    from ski_lvlm.models.lvlm import load

    info = json.loads((tmp_path / "steps" / "final" / "run_info.json").read_text())
    assert info["distill_on"] == "steps"
    a, _ = load(tmp_path / "lm" / "final")
    b, _ = load(tmp_path / "steps" / "final")
    # the skeleton projector is a target only: without injection nothing trains it (same init in both runs)
    for (k, va), vb in zip(a.skeleton_projector.state_dict().items(), b.skeleton_projector.state_dict().values()):
        assert torch.equal(va, vb), k


def test_streaming_trains_resumes_exactly_and_finds_bad_rows_when_it_reaches_them(tmp_path, world, capsys):
    """data.streaming: rows read one by one from a JSONL stream (features from a cache), buffer-shuffled."""
    common = ["--config", "train/configs/lvlm/instruct_tiny.yaml", "train.batch_size=2", "data.p_inject=0.5",
              "train.deepspeed=null", *FAST]
    assert main([*common, f"data.train_json={world}", f"train.output_dir={tmp_path / 'map'}", "train.max_steps=1"]) == 0
    cache = tmp_path / "map" / "features"
    rows = json.loads(world.read_text())
    jsonl = world.parent / "train.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    stream = [*common, f"data.train_json={jsonl}", f"data.feature_cache={cache}", "data.streaming=true",
              "data.shuffle_buffer=4", "data.stats_samples=4", "train.max_steps=6"]  # 4 micro-batches per epoch
    assert main([*stream, f"train.output_dir={tmp_path / 'full'}"]) == 0
    out = capsys.readouterr().out
    assert "data: streaming" in out and "statistics from the first 4 records" in out
    part = tmp_path / "part"
    assert main([*stream, f"train.output_dir={part}", "train.stop_after_steps=3"]) == 0  # mid-epoch
    assert main([*stream, f"train.output_dir={part}"]) == 0
    a, b = losses(tmp_path / "full"), losses(part)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6] and a == b  # bit-identical on CPU
    info = json.loads((part / "final" / "run_info.json").read_text())
    assert info["skipped"] == 0 and info["samples_seen"] == 12 - 6  # the resumed part built 3 steps x 2 samples

    rows[5]["conversations"][0]["value"] = "<video><video> twice?"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = [a for a in stream if not a.startswith("data.shuffle_buffer")] + ["data.shuffle_buffer=0"]
    assert main([*plain, f"train.output_dir={tmp_path / 'bad'}"]) == 2  # file order: row 5 is in micro-batch 2
    err = capsys.readouterr().err
    assert "train.jsonl record 5" in err and "Stopped at step 2/6" in err
    assert (tmp_path / "bad" / "checkpoints" / "latest").is_file()  # the 2 steps before it are saved on the error
    assert main([*plain, f"train.output_dir={tmp_path / 'bad'}", "data.skip_bad_samples=true"]) == 0  # resumes, skips
    skipped = json.loads((tmp_path / "bad" / "skipped_samples.json").read_text())
    assert [s["index"] for s in skipped] == [5] and "one video" in skipped[0]["reason"]
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in json.loads(world.read_text())))  # row 5 mended
    assert main([*plain, f"train.output_dir={tmp_path / 'bad'}", "resume=false"]) == 0  # a fresh run in that folder
    assert not (tmp_path / "bad" / "skipped_samples.json").exists()  # does not keep the earlier run's list
    assert main([*common, f"data.train_json={jsonl}", "data.streaming=true", f"train.output_dir={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err
    assert "data.streaming: needs data.feature_cache" in err and "data.streaming: needs train.max_steps" in err
