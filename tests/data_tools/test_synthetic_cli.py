"""`ski-lvlm data synthetic` and `ski-lvlm data montage` end to end: a tiny world, bad input, the PNG."""

from __future__ import annotations

import json
import os
import sys

import pytest
from PIL import Image

from data_tools import montage, synthetic
from ski_lvlm import cli

TINY = ["--classes", "wave left hand,wave right hand,clap", "--subjects", "2", "--replications", "1",
        "--size", "64", "--workers", "1", "--no-progress", "--seed", "5"]


def test_generate_then_montage(tmp_path, capsys):
    out = tmp_path / "world"
    assert cli.main(["data", "synthetic", "--out", str(out)] + TINY) == 0  # through the router
    printed = capsys.readouterr().out
    assert "6 clips of 3 classes (2 base, 1 novel: wave right hand)" in printed
    assert "train 3, test 3" in printed and "size on disk" in printed and str(out / "world.json") in printed
    rec = json.loads((out / "world.json").read_text())
    assert rec["settings"]["size"] == 64 and rec["seed"] == 5 and rec["bytes"] > 0
    assert rec["generation_seconds"] >= 0 and rec["counts"]["clips"] == 6

    png = tmp_path / "m.png"
    assert montage.main([str(out), "--out", str(png), "--frames", "3", "--cols", "2"]) == 0
    img = Image.open(png)
    assert img.format == "PNG" and img.width > 2 * 3 * 64 and img.height > 2 * 64  # 3 classes in 2 columns
    assert "montage of 3 classes x 3 frames" in capsys.readouterr().out


def test_overwrite_replaces_only_when_asked(tmp_path, capsys):
    out = tmp_path / "world"
    args = ["--out", str(out), "--no-videos"] + TINY
    assert synthetic.main(args) == 0
    (out / "marker").write_text("old")
    assert synthetic.main(args) == 2
    assert "already exists (pass --overwrite" in capsys.readouterr().err
    assert (out / "marker").exists()
    assert synthetic.main(args + ["--overwrite"]) == 0
    assert not (out / "marker").exists() and (out / "world.json").is_file()
    assert not (out / "videos").exists()


def test_yaml_config_plus_overrides(tmp_path, capsys):
    cfg = tmp_path / "world.yaml"
    cfg.write_text("# ski-lvlm data synthetic --config world.yaml\nseed: 9\nclasses: [clap, bow, jump]\n"
                   "novel: [jump]\nsubjects: 3\nvideos: false\n")
    out = tmp_path / "world"
    assert synthetic.main(["--config", str(cfg), "--out", str(out), "--no-progress", "max_frames=40", "workers=1"]) == 0
    rec = json.loads((out / "world.json").read_text())
    assert rec["seed"] == 9 and rec["novel_classes"] == ["jump"] and rec["counts"]["clips"] == 18
    assert rec["frames"]["max"] <= 40 and rec["subjects"] == {"train": [1, 2], "test": [3]}
    assert synthetic.main(["--config", str(cfg), "--out", str(tmp_path / "w2"), "subjectz=3"]) == 2
    assert "subjectz: unknown key (did you mean 'subjects'?)" in capsys.readouterr().err


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("extra, message", [
    (["--subjects", "-1"], "subjects: must be >= 2"),
    (["--replications", "-2"], "replications: must be >= 1"),
    (["--per-class", "-3"], "per_class: must be >= 0"),
    (["--classes", "wave left hand,wave right hnd"],
     "unknown class 'wave right hnd' (did you mean 'wave right hand'?)"),
    (["--novel", "fly"], "novel: unknown class 'fly'"),
    (["--size", "63"], "size: must be an even number"),
])
def test_bad_values_exit_2_and_write_nothing(tmp_path, capsys, extra, message):
    before = _leftovers(tmp_path)
    assert synthetic.main(["--out", str(tmp_path / "world")] + TINY + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("ski-lvlm data synthetic: error:") and message in err
    assert "Traceback" not in err
    assert _leftovers(tmp_path) == before  # no world, no temporary folder


def test_size_decord_cannot_read_is_refused(tmp_path, capsys):
    pytest.importorskip("decord")
    assert synthetic.main(["--out", str(tmp_path / "world")] + TINY + ["--size", "48"]) == 2
    assert "decord cannot decode 48x48" in capsys.readouterr().err
    assert _leftovers(tmp_path) == []


def test_output_path_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "world"
    target.write_text("not a folder")
    assert synthetic.main(["--out", str(target)] + TINY) == 2
    assert "exists and is a file" in capsys.readouterr().err
    assert target.read_text() == "not a folder" and _leftovers(tmp_path) == ["world"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc as a place nobody can write")
def test_unwritable_folder(tmp_path, capsys):
    if os.geteuid() != 0:  # a read-only folder stops ordinary users
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            assert synthetic.main(["--out", str(locked / "world")] + TINY) == 2
            assert "locked" in capsys.readouterr().err and _leftovers(locked) == []
        finally:
            locked.chmod(0o700)
    # /proc refuses new folders even to root
    assert synthetic.main(["--out", "/proc/ski-lvlm-world"] + TINY) == 2
    err = capsys.readouterr().err
    assert err.startswith("ski-lvlm data synthetic: error:") and "/proc" in err


def test_montage_bad_input(tmp_path, capsys):
    assert montage.main([str(tmp_path / "nope"), "--out", str(tmp_path / "m.png")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert montage.main([str(tmp_path), "--out", str(tmp_path / "m.png")]) == 2
    assert "classes.csv: not found" in capsys.readouterr().err
    out = tmp_path / "world"
    assert synthetic.main(["--out", str(out)] + TINY) == 0
    assert montage.main([str(out), "--out", str(tmp_path / "m.png"), "--classes", "jump"]) == 2
    assert "unknown class 'jump'" in capsys.readouterr().err
    assert montage.main([str(out), "--out", str(tmp_path / "m.jpg")]) == 2
    assert not (tmp_path / "m.png").exists() and not (tmp_path / "m.jpg").exists()
