"""The synthetic ADL world: formats, read-back, determinism, splits and the motions themselves."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ski_lvlm.config import ConfigError
from ski_lvlm.synthetic import motions as mo
from ski_lvlm.data.charades import read_charades_csv
from ski_lvlm.data.instructions import validate_llava
from ski_lvlm.data.skeleton import read_ntu_skeleton
from ski_lvlm.synthetic.actions import ACTIONS, CLASS_NAMES, DEFAULT_NOVEL
from ski_lvlm.synthetic.clips import camera_id, make_clip, sample_name
from ski_lvlm.synthetic.world import (
    SyntheticConfig,
    generate_world,
    plan_clips,
    held_out_subjects,
)
from ski_lvlm.data.video import probe_video, read_frames

pytestmark = pytest.mark.slow  # every test renders a synthetic world

TINY = ["wave left hand", "wave right hand", "sit down", "stand up"]
ANNOTATIONS = ["classes.csv", "zsl_base_classes.csv", "zsl_novel_classes.csv", "train.csv", "test.csv",
               "zsl_base_train.csv", "zsl_base_val.csv", "zsl_novel_test.csv", "captions.json", "qa.json",
               "instructions_train.json", "instructions_test.json", "Charades_v1_test.csv", "Charades_v1_classes.txt",
               "clips.csv", "class_phrases.json"]


def tiny_cfg(out: Path, **kw) -> SyntheticConfig:
    # seed 1: the 8 clips include both one-person and two-person clips (checked below)
    args = dict(out=str(out), seed=1, classes=list(TINY), subjects=2, replications=2, size=64, second_person=0.5,
                workers=1)
    args.update(kw)
    return SyntheticConfig(**args)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("syn") / "world"
    generate_world(tiny_cfg(out), progress=False)
    return out


def test_layout_and_world_json(world):
    for name in ANNOTATIONS + ["world.json", "skeletons.npz"]:
        assert (world / name).is_file(), name
    rec = json.loads((world / "world.json").read_text())
    assert rec["classes"] == TINY
    assert rec["novel_classes"] == ["wave right hand"]  # the default novel classes present in the subset
    assert rec["counts"]["clips"] == 16 and rec["subjects"] == {"train": [1], "test": [2]}
    assert rec["counts"]["train"] + rec["counts"]["test"] == 16
    assert len(list((world / "skeletons").glob("*.skeleton"))) == 16
    assert len(list((world / "videos").glob("*.mp4"))) == 16
    assert not list(world.parent.glob(".*partial*")), "temporary folder left behind"


def test_skeleton_files_read_back_equal_npz(world):
    data = np.load(world / "skeletons.npz")
    clips = {r["name"]: r for r in read_csv(world / "clips.csv")}
    bodies = set()
    for split in ("train", "test"):
        x, y, files = data[f"x_{split}"], data[f"y_{split}"], data[f"files_{split}"]
        assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape[1:] == (3, x.shape[2], 25, 2)
        manifest = read_csv(world / f"{split}.csv")
        assert [Path(r["skeleton_path"]).stem for r in manifest] == list(files)
        assert [int(r["label"]) for r in manifest] == list(y)
        for xi, name in zip(x, files):
            back = read_ntu_skeleton(world / "skeletons" / f"{name}.skeleton")
            t = back.shape[1]
            assert t == int(clips[name]["frames"])
            np.testing.assert_array_equal(back, xi[:, :t])  # bit-exact float32 round trip
            assert not xi[:, t:].any(), "padding must be zeros"
            bodies.add(int(back[..., 1].any()) + 1)
            assert re.fullmatch(r"S\d{3}C00[123]P\d{3}R\d{3}A\d{3}", name)
            assert name[-4:] == f"A{int(clips[name]['label']) + 1:03d}"
    assert bodies == {1, 2}, "the tiny world should contain one- and two-person clips"


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_videos_decode_to_skeleton_frame_count(world, backend):
    if backend == "decord":
        pytest.importorskip("decord")
    for row in read_csv(world / "clips.csv")[:3]:
        path = world / "videos" / f"{row['name']}.mp4"
        t = int(row["frames"])
        info = probe_video(path)
        assert (info.num_frames, info.width, info.height, info.fps) == (t, 64, 64, 30.0)
        frames = read_frames(path, t, sampling="uniform", backend=backend)
        assert frames.shape == (t, 64, 64, 3) and frames.dtype == np.uint8
        assert frames.std() > 10  # a picture, not a blank frame


def test_base_and_novel_classes_are_disjoint(world):
    classes = [r["name"] for r in read_csv(world / "classes.csv")]
    base = read_csv(world / "zsl_base_classes.csv")
    novel = read_csv(world / "zsl_novel_classes.csv")
    assert [int(r["id"]) for r in base] == list(range(len(base)))
    assert [int(r["id"]) for r in novel] == list(range(len(novel)))
    assert not {r["name"] for r in base} & {r["name"] for r in novel}
    assert sorted(r["name"] for r in base + novel) == sorted(classes)
    clips = {r["name"]: r for r in read_csv(world / "clips.csv")}
    for split, names in (("zsl_base_train", base), ("zsl_base_val", base), ("zsl_novel_test", novel)):
        for row in read_csv(world / f"{split}.csv"):
            clip = clips[Path(row["video_path"]).stem]
            assert names[int(row["label"])]["name"] == clip["class"]
    novel_clips = [c for c in clips.values() if c["class"] in {r["name"] for r in novel}]
    assert len(read_csv(world / "zsl_novel_test.csv")) == len(novel_clips)
    train_subj = {clips[Path(r["video_path"]).stem]["subject"] for r in read_csv(world / "zsl_base_train.csv")}
    val_subj = {clips[Path(r["video_path"]).stem]["subject"] for r in read_csv(world / "zsl_base_val.csv")}
    assert train_subj and val_subj and not train_subj & val_subj


def test_every_index_points_to_existing_files(world):
    for name in ("train.csv", "test.csv", "zsl_base_train.csv", "zsl_base_val.csv", "zsl_novel_test.csv"):
        rows = read_csv(world / name)
        assert rows, name
        for r in rows:
            assert (world / r["video_path"]).is_file() and (world / r["skeleton_path"]).is_file()
    for name in ("instructions_train.json", "instructions_test.json"):
        for item in json.loads((world / name).read_text()):
            assert (world / item["video"]).is_file() and (world / item["skeleton"]).is_file()
    names = {p.stem for p in (world / "skeletons").glob("*.skeleton")}
    assert set(json.loads((world / "captions.json").read_text())) == names
    assert {q["video_id"] for q in json.loads((world / "qa.json").read_text())} <= names
    assert {r["id"] for r in read_csv(world / "Charades_v1_test.csv")} <= names


def test_language_annotations(world):
    clips = {r["name"]: r for r in read_csv(world / "clips.csv")}
    captions = json.loads((world / "captions.json").read_text())
    tempo_words = {"slow": ("slow", "unhurriedly"), "normal": ("normal", "steady", "steadily"),
                   "fast": ("quick", "rapid", "fast")}
    for name, caps in captions.items():
        clip = clips[name]
        assert 3 <= len(caps) <= 5 and len(set(caps)) == len(caps)
        assert all(";" not in c and c[0].isupper() for c in caps)
        side = clip["class"].split()[1] if clip["class"].startswith("wave") else None
        if side:
            assert all(f"{side} hand" in c for c in caps)
        assert any(w in caps[0] for w in tempo_words[clip["tempo"]])
    for item in json.loads((world / "instructions_train.json").read_text()):
        conv = item["conversations"]
        assert conv[0]["from"] == "human" and conv[0]["value"].startswith("<video>\n")
        assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
        assert all("<video>" not in t["value"] for t in conv[1:])
    qa = json.loads((world / "qa.json").read_text())
    assert qa and all(set(q) == {"video_id", "q", "a"} for q in qa)
    hands = {q["a"] for q in qa if q["q"] == "Which hand does the person use?"}
    assert hands <= {"The left hand.", "The right hand."} and hands
    validate_llava(json.loads((world / "instructions_test.json").read_text()), "instructions_test.json")
    videos, report = read_charades_csv(world / "Charades_v1_test.csv")  # the toolkit's own Charades reader
    assert not report.skipped and len(videos) == len(read_csv(world / "test.csv"))
    rows = read_csv(world / "Charades_v1_test.csv")
    assert list(rows[0]) == ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects",
                             "descriptions", "actions", "length"]
    for r in rows:
        assert r["descriptions"].split(";") == captions[r["id"]]
        m = re.fullmatch(r"c(\d{3}) (\d+\.\d\d) (\d+\.\d\d)", r["actions"])
        assert m and int(m.group(1)) == int(clips[r["id"]]["label"])
        assert 0 <= float(m.group(2)) < float(m.group(3)) <= float(r["length"])
    lines = (world / "Charades_v1_classes.txt").read_text().splitlines()
    assert lines == [f"c{i:03d} {n}" for i, n in enumerate(TINY)]


def test_same_seed_same_bytes_whatever_the_worker_count(world, tmp_path):
    again = tmp_path / "again"
    generate_world(tiny_cfg(again, workers=2), progress=False)
    for sk in (world / "skeletons").glob("*.skeleton"):
        assert (again / "skeletons" / sk.name).read_bytes() == sk.read_bytes(), sk.name
    for name in ANNOTATIONS:
        assert (again / name).read_bytes() == (world / name).read_bytes(), name
    for video in (world / "videos").glob("*.mp4"):  # single-threaded x264: videos are reproducible too
        assert (again / "videos" / video.name).read_bytes() == video.read_bytes(), video.name
    a, b = np.load(world / "skeletons.npz"), np.load(again / "skeletons.npz")
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    # a different seed is a different world
    other = tmp_path / "other"
    generate_world(tiny_cfg(other, seed=2, videos=False), progress=False)
    assert (other / "captions.json").read_bytes() != (world / "captions.json").read_bytes()
    assert not (other / "videos").exists()


def test_class_subset_reproduces_the_same_clips(world):
    # the clip seed uses the canonical class index, so a subset world equals the matching clips of a full one
    full = SyntheticConfig(out="unused", seed=1, subjects=2, replications=2)
    spec = next(s for s in plan_clips(full) if CLASS_NAMES[s.canonical] == "sit down" and s.subject == 2)
    clip = make_clip(spec, None)
    data = np.load(world / "skeletons.npz")
    i = [n[:-4] for n in data["files_test"]].index(clip["name"][:-4])
    np.testing.assert_array_equal(data["x_test"][i, :, : clip["frames"]], clip["xyz"])


def test_class_list_is_compositional():
    assert len(CLASS_NAMES) == 20 and len(set(CLASS_NAMES)) == 20
    assert CLASS_NAMES[0] == "wave left hand" and CLASS_NAMES[19] == "throw"
    base = [c for c in CLASS_NAMES if c not in DEFAULT_NOVEL]
    seen_words = {w for c in base for w in c.split()}
    for novel in DEFAULT_NOVEL:  # every unseen class recombines words of seen classes
        assert set(novel.split()) <= seen_words, novel
    assert set(ACTIONS) == set(CLASS_NAMES)


def test_naming_and_splits():
    assert sample_name(2, 1, 3, 4, 17) == "S002C001P003R004A017"
    assert [camera_id(a) for a in (0, 19.9, 20, 45, -20, -60)] == [1, 1, 2, 2, 3, 3]
    assert held_out_subjects(9) == [3, 6, 9] and held_out_subjects(8) == [3, 6] and held_out_subjects(2) == [2]


def test_config_validation_reports_every_problem(tmp_path):
    cfg = SyntheticConfig(out=str(tmp_path / "w"), subjects=-1, replications=0, per_class=-2, size=63,
                          classes=["wave left hand", "wave leftt hand"], second_person=1.5, workers=0)
    problems = cfg.validate()
    text = "\n".join(problems)
    for key in ("subjects:", "replications:", "per_class:", "size:", "second_person:", "workers:"):
        assert key in text
    assert "unknown class 'wave leftt hand' (did you mean 'wave left hand'?)" in text
    with pytest.raises(ConfigError):
        generate_world(cfg, progress=False)
    assert not (tmp_path / "w").exists()
    msg = "\n".join(SyntheticConfig(out=str(tmp_path / "w"), classes=["clap", "bow"]).validate())
    assert "no novel class" in msg
    msg = "\n".join(SyntheticConfig(out=str(tmp_path / "w"), classes=["clap", "bow"], novel=["jump"]).validate())
    assert "'jump' is not one of the generated classes" in msg
    assert SyntheticConfig(out=str(tmp_path / "w")).validate() == []


# ----------------------------------------------------------------------------------------------------------
# The motions: the subtle pairs really differ in the named way


def _clean(key: str, t: int = 60) -> np.ndarray:
    """Noise-free body-frame joints ``[T, 25, 3]`` of a motion at full progress range."""
    body = mo.sample_body(np.random.default_rng(0))
    fn, side = mo.MOTIONS[key]
    tau = np.linspace(0, 1, t)
    return mo.forward_kinematics(fn(tau, body, mo.Style(), side), body)


def _travel(joints: np.ndarray, j: int) -> float:
    return float(np.linalg.norm(np.diff(joints[:, j], axis=0), axis=-1).sum())


@pytest.mark.parametrize("kind, left_joint, right_joint", [
    ("wave", mo.J.WRIST_L, mo.J.WRIST_R), ("raise", mo.J.WRIST_L, mo.J.WRIST_R),
    ("touch_head", mo.J.WRIST_L, mo.J.WRIST_R), ("kick", mo.J.ANKLE_L, mo.J.ANKLE_R)])
def test_left_and_right_classes_move_the_named_side(kind, left_joint, right_joint):
    left, right = _clean(f"{kind}_left"), _clean(f"{kind}_right")
    assert _travel(left, left_joint) > 5 * _travel(left, right_joint)
    assert _travel(right, right_joint) > 5 * _travel(right, left_joint)
    # mirror images of each other: flipping the lateral axis and swapping sides gives the other class
    swap = list(range(25))
    for a, b in [(4, 8), (5, 9), (6, 10), (7, 11), (12, 16), (13, 17), (14, 18), (15, 19), (21, 23), (22, 24)]:
        swap[a], swap[b] = b, a
    mirrored = left[:, swap] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(mirrored, right, atol=1e-6)


def test_stand_up_is_sit_down_backwards():
    sit, stand = _clean("sit_down"), _clean("stand_up")
    np.testing.assert_allclose(stand, sit[::-1], atol=1e-9)
    assert sit[-1, mo.J.SPINE_BASE, 1] < sit[0, mo.J.SPINE_BASE, 1] - 0.3  # ends seated, hips lower


def test_drink_tilts_the_head_and_brushing_oscillates_at_the_mouth():
    drink, brush = _clean("drink"), _clean("brush_teeth")
    for j in (drink, brush):  # both bring the right hand close to the mouth
        mid = j[len(j) // 2]
        assert np.linalg.norm(mid[mo.J.HAND_R] - mid[mo.J.HEAD]) < 0.25
    tilt = lambda j: j[:, mo.J.HEAD, 2] - j[:, mo.J.NECK, 2]  # noqa: E731 - head forward of the neck
    assert tilt(drink).min() < tilt(brush).min() - 0.02  # drinking tilts the head back
    lateral = lambda j: np.abs(np.diff(j[:, mo.J.HAND_R, 0])).sum()  # noqa: E731
    assert lateral(brush) > 2 * lateral(drink)  # brushing scrubs sideways


def test_camera_follows_the_kinect_convention():
    body = mo.sample_body(np.random.default_rng(0))
    joints = mo.forward_kinematics(mo.rest_pose(1), body)
    cam = mo.Camera(azimuth=0.0, elevation=0.0, distance=3.0, aim_height=0.9)
    xyz = cam.to_camera(joints)[0]
    assert xyz[mo.J.SHOULDER_R, 0] > xyz[mo.J.SHOULDER_L, 0]  # x grows towards the sensor's left
    assert xyz[mo.J.HEAD, 1] > xyz[mo.J.FOOT_L, 1] + 1.2  # y up
    assert abs(xyz[mo.J.SPINE_BASE, 2] - 3.0) < 0.1  # z = distance
    side = mo.Camera(azimuth=60.0, elevation=0.0, distance=3.0).to_camera(joints)[0]
    assert side[mo.J.SHOULDER_L, 2] < side[mo.J.SHOULDER_R, 2]  # camera on the person's left sees it closer


def test_class_phrases_read_the_worlds_own_language(world):
    """Every clip's references name exactly its class and its tempo; every closed QA answer reads back."""
    from ski_lvlm.metrics.grounding import closed_qa_accuracy, load_phrases, reference_truth

    ph = load_phrases(world / "class_phrases.json")
    assert list(ph.classes) == TINY and ph.classes["sit down"]["verbs"] == ["sits down", "sitting down", "sit down"]
    clips = {r["name"]: r for r in read_csv(world / "clips.csv")}
    for name, refs in json.loads((world / "captions.json").read_text()).items():
        assert reference_truth(refs, ph) == (clips[name]["class"], clips[name]["tempo"]), refs
    qa = json.loads((world / "qa.json").read_text())
    r = closed_qa_accuracy([{"question": q["q"], "prediction": q["a"], "answer": q["a"]} for q in qa], ph)
    assert r["accuracy"] == 1.0 and r["n_unscored"] == 0 and "tempo" in r["per_type"]


def test_validation_split_is_made_of_training_subjects_only(tmp_path):
    from ski_lvlm.synthetic.world import validation_subjects

    assert held_out_subjects(9) == [3, 6, 9] and validation_subjects(9) == [4, 8]
    assert validation_subjects(2) == []
    out = tmp_path / "w"
    generate_world(tiny_cfg(out, classes=TINY[:2], subjects=9, replications=1, videos=False), progress=False)

    def subjects(rows, key="video_path"):
        return {int(re.search(r"P(\d{3})", r[key]).group(1)) for r in rows}

    fit, val = read_csv(out / "train_fit.csv"), read_csv(out / "train_val.csv")
    assert subjects(val) == {4, 8} and subjects(fit) == {1, 2, 5, 7}
    assert len(fit) + len(val) == len(read_csv(out / "train.csv"))
    assert subjects(read_csv(out / "Charades_v1_val.csv"), "id") == {4, 8}
    fit_ids = {r["id"] for r in json.loads((out / "instructions_train_fit.json").read_text())}
    assert subjects([{"id": i} for i in fit_ids], "id") == {1, 2, 5, 7}
    qa_val = json.loads((out / "qa_val.json").read_text())
    assert subjects([{"id": q["video_id"]} for q in qa_val], "id") == {4, 8}
