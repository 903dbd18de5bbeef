"""The run-folder names (train_log.jsonl, final/) and the old phase-1/2 names kept as deprecated aliases."""

import json
import warnings

import pytest
import torch

from ski_lvlm.utils.errors import SkiLvlmError
from ski_lvlm.utils.run_layout import (ModelFolderError, config_header, find_train_log, resolve_model_dir, run_recipe,
                                      start_train_log)


def _model(folder):
    folder.mkdir(parents=True)
    (folder / "model_config.json").write_text("{}")
    return folder


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_a_run_folder_resolves_to_its_final_folder(tmp_path, no_warnings):
    final = _model(tmp_path / "run" / "final")
    _model(tmp_path / "run" / "model")  # a stale old-name folder next to it loses
    assert resolve_model_dir(tmp_path / "run") == final


def test_a_model_folder_resolves_to_itself(tmp_path, no_warnings):
    folder = _model(tmp_path / "anything")
    assert resolve_model_dir(folder) == folder
    assert resolve_model_dir(str(folder)) == folder


def test_an_old_run_with_only_model_resolves_to_it_with_a_warning(tmp_path):
    old = _model(tmp_path / "run" / "model")
    with pytest.warns(FutureWarning, match=r"'model' is the old name of 'final'.*rename .*model -> .*final"):
        assert resolve_model_dir(tmp_path / "run") == old


def test_a_path_written_with_the_other_name_resolves_to_the_sibling(tmp_path):
    old_run = _model(tmp_path / "old" / "model")
    with pytest.warns(FutureWarning, match="old name of 'final'"):  # a new config, an old run
        assert resolve_model_dir(tmp_path / "old" / "final") == old_run
    new_run = _model(tmp_path / "new" / "final")
    with pytest.warns(FutureWarning, match="old name of 'final'"):  # an old config, a new run
        assert resolve_model_dir(tmp_path / "new" / "model") == new_run


def test_a_folder_with_neither_names_the_folder_and_what_was_looked_for(tmp_path):
    (tmp_path / "run").mkdir()
    with pytest.raises(ModelFolderError) as e:
        resolve_model_dir(tmp_path / "run")
    msg = str(e.value)
    assert str(tmp_path / "run") in msg and "model_config.json" in msg
    assert str(tmp_path / "run" / "final") in msg and str(tmp_path / "run" / "model") in msg
    # callers that caught the old FileNotFoundError still do; the CLI catches the toolkit's base
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, SkiLvlmError)
    with pytest.raises(ModelFolderError, match="config.json"):  # the LVLM marker; a missing path too
        resolve_model_dir(tmp_path / "nowhere" / "final", marker="config.json")


def test_the_lvlm_marker_finds_a_run_s_final_folder(tmp_path, no_warnings):
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    (final / "config.json").write_text("{}")
    assert resolve_model_dir(tmp_path / "run", marker="config.json") == final
    with pytest.raises(ModelFolderError):
        resolve_model_dir(tmp_path / "run")  # not a SkeletonCLIP / SKI-VLM folder


def test_an_old_run_folder_loads_through_the_model_loaders(tmp_path):
    from ski_lvlm.models.ski_vlm import build_skeleton_clip, load_model, load_skeleton_clip, save_model

    torch.manual_seed(0)
    model = build_skeleton_clip(encoder="tiny", text_pool="mean")
    save_model(model, tmp_path / "run" / "model")
    with pytest.warns(FutureWarning, match="old name"):
        loaded = load_skeleton_clip(tmp_path / "run")
    with pytest.warns(FutureWarning, match="old name"):
        again = load_model(tmp_path / "run" / "final")
    ref = model.state_dict()
    for m in (loaded, again):
        assert all(torch.equal(ref[k], v) for k, v in m.state_dict().items())


def test_find_train_log_prefers_the_new_name_and_falls_back_with_a_warning(tmp_path):
    assert find_train_log(tmp_path) is None
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n")
    with pytest.warns(FutureWarning, match="'metrics.jsonl' is the old name of 'train_log.jsonl'"):
        assert find_train_log(tmp_path) == tmp_path / "metrics.jsonl"
    (tmp_path / "train_log.jsonl").write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_train_log(tmp_path) == tmp_path / "train_log.jsonl"


def test_start_train_log_fresh_clears_both_and_resume_continues_an_old_log(tmp_path):
    old, new = tmp_path / "metrics.jsonl", tmp_path / "train_log.jsonl"
    old.write_text('{"step": 1}\n')
    new.write_text('{"step": 1}\n')
    assert start_train_log(tmp_path, fresh=True) == new
    assert not old.exists() and not new.exists()
    old.write_text('{"step": 1}\n')  # a run interrupted before issue 14, resumed after it
    with pytest.warns(FutureWarning, match="old name"):
        assert start_train_log(tmp_path, fresh=False) == new
    assert new.read_text() == '{"step": 1}\n' and not old.exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert start_train_log(tmp_path, fresh=False) == new  # nothing to rename: the log is kept
    assert new.read_text() == '{"step": 1}\n'


@pytest.mark.parametrize("recipe", ["skeleton-clip", "ski-vlm", "lvlm"])
def test_the_config_header_names_the_recipe_that_wrote_a_run(tmp_path, recipe):
    from dataclasses import dataclass

    from ski_lvlm.config import save_config

    @dataclass
    class Cfg:
        x: int = 1

    save_config(Cfg(), tmp_path / "config.yaml", header=config_header(recipe, tmp_path / "config.yaml"))
    assert (tmp_path / "config.yaml").read_text().startswith(f"# ski-lvlm train {recipe} --config {tmp_path}")
    assert run_recipe(tmp_path) == recipe


def test_a_run_without_a_recipe_header_has_none(tmp_path):
    assert run_recipe(tmp_path) is None  # no config.yaml
    (tmp_path / "config.yaml").write_text("# my own notes\nx: 1\n")
    assert run_recipe(tmp_path) is None
