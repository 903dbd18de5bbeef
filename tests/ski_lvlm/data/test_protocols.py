"""Cross-view and zero-shot validation manifests (ski_lvlm.data.protocols; seconds, no rendering)."""

from __future__ import annotations

import csv

import pytest

from ski_lvlm.data.protocols import camera_of, protocol_splits, pseudo_novel, write_protocol_files
from ski_lvlm.synthetic.world import SyntheticConfig, generate_world

CLASSES = ["wave left hand", "wave right hand", "raise right hand", "sit down", "stand up", "clap", "bow", "jump", "squat"]
NOVEL = ["wave right hand"]


def _clips():
    """Every class x subject 1..6 x camera 1..3; subjects 3 and 6 are the cross-subject test subjects."""
    return [{"name": f"S001C{cam:03d}P{subj:03d}R001A{i + 1:03d}", "class": c, "subject": subj}
            for i, c in enumerate(CLASSES) for subj in range(1, 7) for cam in (1, 2, 3)]


def _clip_of(row):
    return row[0].split("/")[1].removesuffix(".mp4")


def test_camera_of_reads_the_sample_name():
    assert camera_of("S004C002P003R001A011") == 2
    with pytest.raises(ValueError, match="NTU-style"):
        camera_of("clip_07")


def test_cross_view_holds_out_the_front_camera():
    s = protocol_splits(_clips(), CLASSES, NOVEL, test_subjects=[3, 6])
    n = len(CLASSES) * 6  # clips per camera
    assert len(s["xview_train"]) == 2 * n and len(s["xview_test"]) == n
    assert {camera_of(_clip_of(r)) for r in s["xview_train"]} == {2, 3}
    assert {camera_of(_clip_of(r)) for r in s["xview_test"] + s["xview_zsl_novel_test"] + s["xview_zsl_base_val"]} == {1}
    # labels are classes.csv ids for the full-class files, positions in the base / novel lists for zero-shot
    assert {r[2] for r in s["xview_test"]} == set(range(len(CLASSES)))
    base = [c for c in CLASSES if c not in NOVEL]
    assert sorted({r[2] for r in s["xview_zsl_base_train"]}) == list(range(len(base)))
    assert {r[2] for r in s["xview_zsl_novel_test"]} == {0} and len(s["xview_zsl_novel_test"]) == 6
    # the validation split: training views only, the test subjects' share of them
    fit = {_clip_of(r) for r in s["xview_train_fit"]}
    val = {_clip_of(r) for r in s["xview_train_val"]}
    assert fit | val == {_clip_of(r) for r in s["xview_train"]} and not fit & val
    assert {int(c[9:12]) for c in val} == {3, 6}


def test_zero_shot_validation_never_sees_novel_classes_or_test_subjects_or_views():
    s = protocol_splits(_clips(), CLASSES, NOVEL, test_subjects=[3, 6])
    base = [c for c in CLASSES if c not in NOVEL]
    held = pseudo_novel(base)
    assert held == [base[3], base[7]] and NOVEL[0] not in held
    novel_ids = {CLASSES.index(c) + 1 for c in NOVEL}
    for prefix, cams, subjects in (("", {1, 2, 3}, {1, 2, 4, 5}), ("xview_", {2, 3}, set(range(1, 7)))):
        train = [_clip_of(r) for r in s[f"{prefix}zslval_base_train"]]
        test = [_clip_of(r) for r in s[f"{prefix}zslval_novel_test"]]
        assert {camera_of(c) for c in train + test} == cams
        assert {int(c[9:12]) for c in train + test} == subjects
        assert not {int(c[-3:]) for c in train + test} & novel_ids  # no true novel class anywhere
        assert {CLASSES[int(c[-3:]) - 1] for c in test} == set(held)
        assert not {CLASSES[int(c[-3:]) - 1] for c in train} & set(held)


def _read(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.mark.slow
def test_generated_world_writes_them_and_the_cli_rewrites_the_same(tmp_path):
    from data_tools.protocols import main

    world = tmp_path / "w"
    cfg = SyntheticConfig(out=str(world), classes=["wave left hand", "wave right hand", "sit down", "stand up"],
                          novel=["wave right hand"], subjects=3, replications=2, videos=False, workers=1)
    generate_world(cfg, progress=False)
    before = {p.name: _read(p) for p in world.glob("*.csv") if p.name.startswith(("xview_", "zslval_"))}
    assert "xview_zsl_novel_test.csv" in before and "zslval_novel_classes.csv" in before
    default = {p.name: p.read_bytes() for p in world.glob("*.csv") if not p.name.startswith(("xview_", "zslval_"))}
    for p in before:
        (world / p).unlink()
    assert main([str(world)]) == 0
    assert {p: _read(world / p) for p in before} == before
    assert {p.name: p.read_bytes() for p in world.glob("*.csv") if p.name in default} == default


def test_write_protocol_files_counts(tmp_path):
    counts = write_protocol_files(tmp_path, _clips(), CLASSES, NOVEL, [3, 6])
    assert counts["xview_test"] == len(_read(tmp_path / "xview_test.csv")) - 1
    assert _read(tmp_path / "zslval_novel_classes.csv")[1:] == [["0", "stand up"], ["1", "squat"]]
