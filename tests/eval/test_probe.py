"""ski-lvlm eval probe end to end on the toy world (a random tiny tower; the blobs are easy to separate)."""

from __future__ import annotations

import json

import pytest

from eval import probe

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from tests.toy_world import make_world

    return make_world(tmp_path_factory.mktemp("toy"), per_class=2, frames=8, video=True)


def _argv(toy, out, *extra):
    return ["--train", str(toy / "zsl_base_train.csv"), "--test", str(toy / "zsl_base_val.csv"),
            "--classes", str(toy / "zsl_base_classes.csv"), "--encoder", "clip:ski-tiny-ViT", "--frames", "4",
            "--out", str(out), "--no-progress", *extra]


@pytest.mark.slow
def test_probe_recipe_writes_probe_json(toy, tmp_path, capsys):
    out = tmp_path / "probe"
    assert probe.main(_argv(toy, out)) == 0
    res = json.loads((out / "probe.json").read_text())
    assert {"accuracy", "per_class", "n_train", "n_test", "features", "encoder_spec", "key"} <= set(res)
    assert (res["n_train"], res["n_test"], res["dim"]) == (8, 4, (4 + 16) * 64)
    assert res["accuracy"] == 1.0 and set(res["per_class"]) == {"raise left hand", "raise right hand",
                                                                 "wave left hand", "clap"}
    assert "LVLM video tokens" in res["features"] and "top-1 100.0%" in capsys.readouterr().out
    # --reuse: same encoder and data -> kept, not recomputed
    before = (out / "probe.json").stat().st_mtime_ns
    assert probe.main(_argv(toy, out, "--reuse")) == 0
    assert (out / "probe.json").stat().st_mtime_ns == before and "kept" in capsys.readouterr().out
    # validation on held-out training subjects: the test manifest is never read
    assert probe.main(_argv(toy, out, "--val-from-train", "--test", str(tmp_path / "missing.csv"))) == 0
    res = json.loads((out / "probe.json").read_text())
    assert (res["n_train"], res["n_test"], res["test"]) == (4, 4, None) and "subjects [2]" in res["split"]


def test_missing_train_class_is_a_clear_error(toy, tmp_path, capsys):
    rows = (toy / "zsl_base_train.csv").read_text().splitlines()
    (toy / "train_no_clap.csv").write_text("\n".join(r for r in rows if not r.endswith(",3")) + "\n")
    argv = _argv(toy, tmp_path / "o")
    argv[1] = str(toy / "train_no_clap.csv")
    assert probe.main(argv) == 2
    assert "training set lacks: 'clap' (id 3)" in capsys.readouterr().err  # found before any video is decoded
    assert not (tmp_path / "o" / "probe.json").exists()


def test_bad_arguments(toy, tmp_path, capsys):
    assert probe.main(["--world", str(tmp_path), "--encoder", "clip:ski-tiny-ViT", "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert probe.main(_argv(toy, tmp_path / "o", "--encoder", "nope")) == 2
    assert "--encoder nope" in capsys.readouterr().err
