"""`ski-lvlm export` recipe: exit codes, printed next steps, --merge/--dtype, refusal to overwrite."""

import json

import pytest

from tests.tiny_lvlm import make_run
from train.export import main


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]  # trains a run, then exports it


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


def test_export_cli_adapter_then_merged(run, tmp_path, capsys):
    out = tmp_path / "exp"
    assert main(["--run", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "reload check max abs diff" in printed and f"ski-lvlm demo --model {out}" in printed
    assert json.loads((out / "export_info.json").read_text())["layout"] == "adapter"
    # refuses to overwrite without --overwrite (exit 2, one clear line), replaces with it
    assert main(["--run", str(run), "--out", str(out), "--merge"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["--run", str(run / "final"), "--out", str(out), "--merge", "--dtype", "fp16", "--overwrite",
                 "--max-shard-size", "200KB"]) == 0
    info = json.loads((out / "export_info.json").read_text())
    assert info["layout"] == "merged" and info["dtype"] == "fp16" and info["reload_check"]["passed"]


def test_export_cli_bad_inputs(tmp_path, capsys, run):
    assert main(["--run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["--run", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a SKI-LVLM run" in capsys.readouterr().err
    # a failing reload check: exit 1, nothing at --out
    assert main(["--run", str(run), "--out", str(tmp_path / "o"), "--atol", "-1"]) == 1
    assert "reload check failed" in capsys.readouterr().err and not (tmp_path / "o").exists()
