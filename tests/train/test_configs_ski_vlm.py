"""Every YAML under train/configs/{skeleton_clip,ski_vlm}/ loads into its dataclass and names its command."""

from pathlib import Path

import pytest

from ski_lvlm.config import load_config
from train.ski_vlm import SKIVLMConfig
from train.skeleton_clip import SkeletonCLIPConfig

ROOT = Path(__file__).resolve().parents[2] / "train" / "configs"
CASES = [(p, SkeletonCLIPConfig) for p in sorted((ROOT / "skeleton_clip").rglob("*.yaml"))] + \
        [(p, SKIVLMConfig) for p in sorted((ROOT / "ski_vlm").rglob("*.yaml"))]


def test_configs_exist():
    names = {p.relative_to(ROOT).as_posix() for p, _ in CASES}
    assert {"skeleton_clip/tiny_cpu.yaml", "skeleton_clip/ntu_48_12.yaml", "ski_vlm/tiny_cpu.yaml",
            "ski_vlm/tiny_cpu_vifi.yaml", "ski_vlm/ntu_48_12.yaml"} <= names


@pytest.mark.parametrize("path,cls", CASES, ids=[p.relative_to(ROOT).as_posix() for p, _ in CASES])
def test_config_loads_and_starts_with_its_command(path, cls):
    cfg = load_config(cls, path)
    first = path.read_text().splitlines()[0]
    stage = "skeleton_clip" if cls is SkeletonCLIPConfig else "ski_vlm"
    assert first.startswith("# ") and path.name in first
    assert f"train {stage.replace('_', '-')}" in first or f"train_{stage}.sh" in first
    if path.name.startswith("ntu_"):  # the paper's settings
        assert cfg.train.lr == 2.2e-5 and cfg.model.clip_arch == "ViT-B-16"
        assert cfg.data.num_classes is not None
        if cls is SKIVLMConfig:
            assert cfg.data.num_frames == 16 and cfg.loss.alpha == 10.0


def test_ablation_arms_differ_from_tiny_cpu_only_in_the_mechanism():
    """scripts/ski_ablation.sh compares these configs: each may change the loss and the teacher, nothing else."""
    from ski_lvlm.config import to_dict

    def strip(cfg):
        d = to_dict(cfg)
        d.pop("loss")
        d["train"].pop("output_dir")
        for k in ("teacher", "teacher_trainable"):
            d["model"].pop(k)
        for k in ("skeleton_frames", "skeleton_mode"):  # read only with a teacher (the vifi config omits them)
            d["data"].pop(k)
        return d

    ski = load_config(SKIVLMConfig, ROOT / "ski_vlm" / "tiny_cpu.yaml")
    arms = {n: load_config(SKIVLMConfig, ROOT / "ski_vlm" / f"tiny_cpu_{n}.yaml") for n in ("vifi", "feat", "original")}
    for name, cfg in arms.items():
        assert strip(cfg) == strip(ski), name
    assert (ski.loss.kind, ski.loss.distill_on, ski.loss.alpha, ski.model.teacher_trainable) == ("clip", "sims", 10.0, True)
    orig = arms["original"]  # the released code: CE without temperature, MSE on those logits, alpha 10
    assert (orig.loss.kind, orig.loss.distill_on, orig.loss.alpha, orig.model.teacher_trainable) == ("ce", "logits", 10.0, True)
    feat = arms["feat"]
    assert (feat.loss.distill_on, feat.model.teacher_trainable) == ("features", False)
    assert arms["vifi"].loss.alpha == 0 and arms["vifi"].model.teacher is None
