from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest

from ski_lvlm.config import ConfigError, from_dict, load_config, parse_overrides, save_config


@dataclass
class Optim:
    lr: float = 1e-3
    """Peak learning rate."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])

    def validate(self):
        return ["lr: must be > 0"] if self.lr <= 0 else []


@dataclass
class Cfg:
    name: str = "run"
    steps: int = 10
    precision: Literal["fp32", "bf16"] = "fp32"
    resume: str | None = None
    optim: Optim = field(default_factory=Optim)


def test_yaml_plus_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("# ski-lvlm train x --config c.yaml\nsteps: 5\noptim:\n  lr: 0.01\n")
    cfg = load_config(Cfg, p, ["optim.lr=2e-4", "precision=bf16", "resume=null"])
    assert cfg.steps == 5 and cfg.optim.lr == pytest.approx(2e-4) and cfg.precision == "bf16" and cfg.resume is None


def test_all_problems_reported_at_once_with_key_paths():
    with pytest.raises(ConfigError) as e:
        from_dict(Cfg, {"steps": "many", "precision": "fp8", "optim": {"lr": 1, "betaz": 1}, "nme": "x"})
    text = str(e.value)
    assert "steps: expected an integer" in text
    assert "precision: must be one of 'fp32', 'bf16'" in text
    assert "optim.betaz: unknown key (did you mean 'betas'?)" in text
    assert "nme: unknown key (did you mean 'name'?)" in text
    assert len(e.value.problems) == 4


def test_validate_hooks_prefix_nested_paths():
    with pytest.raises(ConfigError) as e:
        from_dict(Cfg, {"optim": {"lr": -1}})
    assert e.value.problems == ["optim.lr: must be > 0"]


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("steps: 1\noptim: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, p)
    assert f"{p}:" in str(e.value) and "YAML syntax error" in str(e.value)


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["steps"])


def test_save_roundtrip(tmp_path):
    cfg = from_dict(Cfg, {"steps": 3, "optim": {"lr": 0.5}})
    save_config(cfg, tmp_path / "out.yaml", header="ski-lvlm train x --config out.yaml")
    text = (tmp_path / "out.yaml").read_text()
    assert text.startswith("# ski-lvlm train x")
    assert load_config(Cfg, tmp_path / "out.yaml") == cfg


@dataclass
class Renamed:
    RENAMED: ClassVar[dict] = {"out": "optim.out_dir", "optim.rate": ("optim.lr", lambda v: v / 10)}
    optim: "RenamedOptim" = field(default_factory=lambda: RenamedOptim())


@dataclass
class RenamedOptim:
    out_dir: str = ""
    lr: float = 1e-3


def test_renamed_keys_move_convert_and_warn_once_each():
    data = {"out": "runs/a", "optim": {"rate": 0.5}}
    with pytest.warns(FutureWarning) as caught:
        cfg = from_dict(Renamed, data)
    assert (cfg.optim.out_dir, cfg.optim.lr) == ("runs/a", 0.05)
    assert sorted(str(w.message).split(" is ")[0] for w in caught) == ["config key 'optim.rate'", "config key 'out'"]
    assert data == {"out": "runs/a", "optim": {"rate": 0.5}}  # the caller's dict is not changed
    with pytest.raises(ConfigError, match="out: renamed to optim.out_dir; give only optim.out_dir"):
        from_dict(Renamed, {"out": "a", "optim": {"out_dir": "b"}})
    assert from_dict(Renamed, {"optim": {"out_dir": "b"}}).optim.out_dir == "b"  # new names: no warning needed
