"""Every train/configs/lvlm YAML loads into LvlmRecipeConfig; every DeepSpeed JSON resolves against a recipe."""

from pathlib import Path

import pytest

from ski_lvlm.config import ConfigError, load_config
from ski_lvlm.training.distributed import load_deepspeed_config
from train.lvlm import LvlmRecipeConfig

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "train" / "configs" / "lvlm").rglob("*.yaml"))
DS = sorted((ROOT / "train" / "configs" / "deepspeed").glob("*.json"))


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_yaml_loads(path, tmp_path):
    assert path.read_text().startswith("# ski-lvlm train lvlm --config ")  # the command that runs it
    data = tmp_path / "train.json"
    data.write_text("[]")
    cfg = load_config(LvlmRecipeConfig, path, [f"data.train_json={data}", f"model.init_from={tmp_path}"])
    assert cfg.train.output_dir and cfg.train.stage in ("align", "instruct")
    if cfg.train.deepspeed:
        assert (ROOT / cfg.train.deepspeed).is_file()


def test_old_setting_names_still_work_and_warn(tmp_path):
    """Before issue 14 the LVLM recipe said out / grad_clip (0 = off) / keep_last; they map to the phase-1/2 names."""
    data = tmp_path / "train.json"
    data.write_text("[]")
    yaml_path = tmp_path / "old.yaml"  # an old config file with a top-level out:
    yaml_path.write_text("out: runs/old\ntrain:\n  grad_clip: 0\n")
    with pytest.warns(FutureWarning) as caught:
        cfg = load_config(LvlmRecipeConfig, yaml_path, [f"data.train_json={data}", "train.keep_last=5"])
    assert (cfg.train.output_dir, cfg.train.clip_grad, cfg.train.keep_checkpoints) == ("runs/old", None, 5)
    text = " ".join(str(w.message) for w in caught)
    for old, new in (("out", "train.output_dir"), ("train.grad_clip", "train.clip_grad"),
                     ("train.keep_last", "train.keep_checkpoints")):
        assert f"{old!r} is deprecated: use {new!r}" in text
    with pytest.raises(ConfigError, match="give only train.output_dir"):  # both in one source: which one?
        load_config(LvlmRecipeConfig, yaml_path, [f"data.train_json={data}", "out=a", "train.output_dir=b"])
    # an old command with a new YAML (or the reverse): the command line wins, as for any key
    with pytest.warns(FutureWarning, match="'out' is deprecated"):
        cfg = load_config(LvlmRecipeConfig, ROOT / "train/configs/lvlm/align_tiny.yaml",
                          [f"data.train_json={data}", "out=runs/cli"])
    assert cfg.train.output_dir == "runs/cli"
    assert load_config(LvlmRecipeConfig, yaml_path, [f"data.train_json={data}", "train.output_dir=runs/new"]
                       ).train.output_dir == "runs/new"


def test_invalid_combinations_are_reported_together(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(LvlmRecipeConfig, ROOT / "train/configs/lvlm/align_tiny.yaml",
                    ["train.output_dir=", "train.llm_adapter=lora", "data.p_inject=2", "train.lr=0", "trian.lr=1"])
    text = str(e.value)
    assert "trian: unknown key (did you mean 'train'?)" in text
    with pytest.raises(ConfigError) as e:
        load_config(LvlmRecipeConfig, ROOT / "train/configs/lvlm/align_tiny.yaml",
                    ["train.output_dir=", "train.llm_adapter=lora", "data.p_inject=2", "train.lr=0"])
    text = str(e.value)
    for msg in ("train.output_dir: required", "align stage trains projectors only", "p_inject: must be in [0, 1]",
                "lr: must be > 0", "train_json: required"):
        assert msg in text


def test_step_alignment_needs_a_skeleton_encoder_and_a_frozen_tower(tmp_path):
    data = tmp_path / "train.json"
    data.write_text("[]")
    with pytest.raises(ConfigError) as e:
        load_config(LvlmRecipeConfig, ROOT / "train/configs/lvlm/instruct_tiny.yaml",
                    [f"data.train_json={data}", "loss.distill_on=steps", "loss.alpha=-1", "model.skeleton_encoder=null",
                     "model.tower_trainable=lora"])
    text = str(e.value)
    for msg in ("loss.distill_on: steps aligns video tokens to skeleton tokens; set model.skeleton_encoder",
                "it needs model.tower_trainable=frozen", "alpha: must be >= 0"):
        assert msg in text
    cfg = load_config(LvlmRecipeConfig, ROOT / "train/configs/lvlm/instruct_tiny.yaml", [f"data.train_json={data}"])
    assert (cfg.loss.distill_on, cfg.loss.alpha) == ("none", 1.0)  # off unless asked


@pytest.mark.parametrize("path", DS, ids=lambda p: p.name)
def test_deepspeed_json(path):
    cfg = load_deepspeed_config(path, micro_batch_size=4, grad_accum=2, grad_clip=1.0, bf16=True, world_size=8)
    assert cfg["train_batch_size"] == 64 and cfg["bf16"]["enabled"] is True
    assert cfg["zero_optimization"]["stage"] in (2, 3)


def test_deepspeed_json_disagreement(tmp_path):
    p = tmp_path / "ds.json"
    p.write_text('{"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 2}}')
    with pytest.raises(ValueError, match="train_micro_batch_size_per_gpu: ds.json says 2, the recipe says 4"):
        load_deepspeed_config(p, micro_batch_size=4, grad_accum=1, grad_clip=1.0, bf16=False)
