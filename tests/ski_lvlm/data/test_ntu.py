"""NTU names, splits, class lists, normalisation, resumable conversion and zero-shot manifests."""

from __future__ import annotations

import numpy as np
import pytest

from ski_lvlm.data import ntu as N
from ski_lvlm.data.skeleton import NTU_BONES, SPINE_MID, SkeletonFormatError, write_ntu_skeleton


def test_parse_name_and_benchmarks():
    n = N.parse_ntu_name("/data/S018C002P045R001A061.skeleton")
    assert (n.setup, n.camera, n.performer, n.replication, n.action, n.label) == (18, 2, 45, 1, 61, 60)
    assert not N.is_ntu60(n)
    assert N.is_train_sample(n, "xsub")  # P045 is an NTU120 training subject
    assert N.is_train_sample(n, "xview") and N.is_train_sample(n, "xset")
    m = N.parse_ntu_name("S001C001P003R001A001_rgb.avi")
    assert N.is_ntu60(m) and not N.is_train_sample(m, "xsub")  # P003 is a test subject
    assert not N.is_train_sample(m, "xview") and not N.is_train_sample(m, "xset")
    assert len(N.NTU60_XSUB_TRAIN_SUBJECTS) == 20 and len(N.NTU120_XSUB_TRAIN_SUBJECTS) == 53
    with pytest.raises(ValueError, match="not an NTU sample name"):
        N.parse_ntu_name("clip_0001.mp4")


@pytest.mark.parametrize("split", list(N.ZSL_SPLITS))
def test_packaged_zsl_splits_map_to_ntu_ids(split):
    base, novel = N.load_zsl_classes(split)
    b = [N.class_id(x) for x in base]
    u = [N.class_id(x) for x in novel]
    # names are in NTU order within each file, disjoint, and together cover the whole dataset
    assert b == sorted(b) and u == sorted(u)
    assert sorted(b + u) == list(range(N.ZSL_SPLITS[split]))
    assert len(u) == int(split.split("-")[1])


def test_class_id_spellings_and_missing_list():
    assert len(N.NTU120_CLASS_NAMES) == 120 and N.NTU60_CLASS_NAMES[0] == "drink water"
    assert N.class_id("grab other person\u2019s stuff") == 108
    assert N.class_id("touch person's pocket") == N.class_id("touch other persons pocket") == 56
    assert N.class_id("touch head") == 43
    with pytest.raises(KeyError):
        N.class_id("juggling chainsaws")
    missing = N.load_missing_list()
    assert len(missing) == 302 and "S001C002P005R002A008" in missing


def _person(t_len: int = 6, offset=(0.5, 0.2, 3.0), yaw: float = 0.0) -> np.ndarray:
    """A crude standing body: joints on a vertical line plus shoulders, rotated by ``yaw`` about y."""
    j = np.zeros((25, 3))
    j[:, 1] = np.linspace(-0.8, 0.8, 25)
    j[0] = [0, 0, 0]  # spine base
    j[1] = [0, 0.25, 0]  # spine mid
    j[20] = [0, 0.5, 0]  # spine shoulder
    j[4] = [0.2, 0.5, 0]  # shoulder left
    j[8] = [-0.2, 0.5, 0]  # shoulder right
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    j = j @ rot.T + np.array(offset)
    x = np.zeros((3, t_len, 25, 2), np.float32)
    for t in range(t_len):
        x[:, t, :, 0] = (j + [0.01 * t, 0, 0]).T
    return x


def test_center_on_spine():
    x = _person()
    x[:, 0] = 0  # body absent in the first frame
    c = N.center_on_spine(x)
    np.testing.assert_allclose(c[:, 1, SPINE_MID, 0], 0, atol=1e-6)  # first valid frame's spine at origin
    np.testing.assert_allclose(c[0, 4, SPINE_MID, 0], 0.03, atol=1e-6)  # motion kept
    assert not c[:, 0].any() and not c[..., 1].any()  # absent frames / bodies stay zero
    p = N.center_on_spine(x, mode="per_frame")
    np.testing.assert_allclose(p[:, 1:, SPINE_MID, 0], 0, atol=1e-6)


def test_align_view_rotates_to_camera():
    x = _person(yaw=0.7)
    a = N.align_view(x)
    f = a[:, 0, :, 0]
    side = f[:, 4] - f[:, 8]
    up = f[:, 20] - f[:, 0]
    np.testing.assert_allclose(side / np.linalg.norm(side), [1, 0, 0], atol=1e-5)
    np.testing.assert_allclose(up / np.linalg.norm(up), [0, 1, 0], atol=1e-5)
    # rigid: bone lengths unchanged; spine-mid of the reference frame stays put; empty body stays zero
    for c, p in NTU_BONES:
        np.testing.assert_allclose(np.linalg.norm(a[:, 2, c, 0] - a[:, 2, p, 0]),
                                   np.linalg.norm(x[:, 2, c, 0] - x[:, 2, p, 0]), atol=1e-5)
    np.testing.assert_allclose(a[:, 0, SPINE_MID, 0], x[:, 0, SPINE_MID, 0], atol=1e-6)
    assert not a[..., 1].any()


def test_temporal_resample_modes():
    x = np.zeros((3, 20, 25, 2), np.float32)
    x[0, :10, 0, 0] = np.arange(1, 11)  # 10 valid frames, then padding
    assert N.valid_length(x) == 10
    u = N.temporal_resample(x, 5, "uniform")
    np.testing.assert_array_equal(u[0, :, 0, 0], [1, 3, 5, 8, 10])  # spans first..last valid frame
    long = N.temporal_resample(x, 20, "uniform")
    assert sorted(np.bincount(long[0, :, 0, 0].astype(int))[1:]) == [2] * 10  # even repeats
    pad = N.temporal_resample(x[:, :10], 300, "pad300")
    assert pad.shape == (3, 300, 25, 2) and pad[0, 9, 0, 0] == 10 and not pad[:, 10:].any()
    r1 = N.temporal_resample(x, 4, "random_crop", np.random.default_rng(1))
    r2 = N.temporal_resample(x, 4, "random_crop", np.random.default_rng(1))
    np.testing.assert_array_equal(r1, r2)
    vals = r1[0, :, 0, 0]
    assert np.all(np.diff(vals) >= 0) and vals.min() >= 1 and vals.max() <= 10
    assert N.temporal_resample(np.zeros((3, 5, 25, 2), np.float32), 4).shape == (3, 4, 25, 2)


def _make_set(folder, names, t_len=8):
    rng = np.random.default_rng(0)
    for i, name in enumerate(names):
        x = rng.normal(size=(3, t_len + i % 3, 25, 1)).astype(np.float32)
        x[..., 0] += i  # identifiable
        write_ntu_skeleton(folder / f"{name}.skeleton", x)


NAMES = [f"S001C00{c}P00{p}R001A00{a}" for c in (1, 2) for p in (1, 3) for a in (1, 2, 7)]


@pytest.mark.slow
def test_convert_resumes_after_kill(tmp_path):
    skel = tmp_path / "sk"
    skel.mkdir()
    _make_set(skel, NAMES)
    files = sorted(str(p) for p in skel.glob("*.skeleton"))
    out = tmp_path / "out" / "ntu.npz"
    opts = N.ConvertOptions(benchmark="xsub", frames=16, sampling="pad300", center_spine=True)

    class Killed(Exception):
        pass

    def kill_after_first_chunk(n):
        if n >= 4:
            raise Killed

    with pytest.raises(Killed):
        N.convert_ntu(files, out, opts, chunk_size=4, progress=kill_after_first_chunk)
    assert not out.exists() and (out.parent / "ntu.npz.parts" / "chunk_00000.npz").exists()
    summary = N.convert_ntu(files, out, opts, chunk_size=4, workers=2)
    assert summary["from_cache"] == 4 and summary["converted_now"] == len(NAMES) - 4
    assert not (out.parent / "ntu.npz.parts").exists()
    z = np.load(out)
    assert z["x_train"].shape == (6, 3, 16, 25, 2) and z["x_test"].shape == (6, 3, 16, 25, 2)
    assert all("P001" in f for f in z["files_train"]) and all("P003" in f for f in z["files_test"])
    np.testing.assert_array_equal(z["y_train"], [N.parse_ntu_name(f).label for f in z["files_train"]])
    # same result as a one-shot serial run
    ref = N.convert_ntu(files, tmp_path / "ref.npz", opts, chunk_size=100)
    assert ref["converted_now"] == len(NAMES)
    zr = np.load(tmp_path / "ref.npz")
    for k in ("x_train", "x_test", "files_train", "y_test"):
        np.testing.assert_array_equal(z[k], zr[k])
    # centred: body 0's spine-mid of the first frame is the origin
    np.testing.assert_allclose(z["x_train"][:, :, 0, SPINE_MID, 0], 0, atol=1e-6)


def test_convert_changed_options_discard_cache_and_bad_files(tmp_path):
    skel = tmp_path / "sk"
    skel.mkdir()
    _make_set(skel, NAMES[:4])
    bad = skel / "S001C001P001R001A009.skeleton"
    bad.write_text("2\n1\n")  # truncated
    files = sorted(str(p) for p in skel.glob("*.skeleton"))
    out = tmp_path / "a.npz"
    with pytest.raises(SkeletonFormatError, match="A009.skeleton:3"):
        N.convert_ntu(files, out, N.ConvertOptions(frames=8), chunk_size=2)
    s = N.convert_ntu(files, out, N.ConvertOptions(frames=10, sampling="uniform"), chunk_size=2, skip_bad=True)
    assert s["from_cache"] == 0  # options changed: the old chunks were not reused
    assert [p for p, _ in s["bad"]] == [str(bad)] and s["train"] + s["test"] == 4
    assert np.load(out)["x_train"].shape[2] == 10


def test_manifest_round_trip(tmp_path):
    (tmp_path / "v").mkdir()
    rows = [(tmp_path / "v" / "a.mp4", tmp_path / "s" / "a.skeleton", 3), (tmp_path / "v" / "b.mp4", None, 0)]
    out = tmp_path / "m" / "train.csv"
    assert N.write_manifest(out, rows) == 2
    text = out.read_text().splitlines()
    assert text[0] == "video_path,skeleton_path,label" and text[1].startswith("../v/a.mp4,")
    back = N.read_manifest(out)
    assert [(r.video_path, r.skeleton_path, r.label) for r in back] == rows
    out.write_text("video_path,skeleton_path,label\nx.mp4,,notanint\n")
    with pytest.raises(ValueError, match=r"train\.csv:2: label"):
        N.read_manifest(out)


def test_build_zsl_manifests(tmp_path):
    vids, skels = tmp_path / "rgb", tmp_path / "sk"
    vids.mkdir()
    skels.mkdir()
    # 48-12 (NTU60): A003 brushing teeth is base id 2; A004 brushing hair is novel id 0
    names = ["S001C001P001R001A003", "S001C001P003R001A003", "S001C001P001R001A004", "S001C001P003R001A004",
             "S018C001P001R001A003",  # NTU120 setup: not part of an NTU60 split
             "S001C002P005R002A008"]  # in the packaged missing-skeleton list
    for n in names:
        (vids / f"{n}_rgb.avi").write_bytes(b"")
        (skels / f"{n}.skeleton").write_text("0\n")
    (vids / "S001C002P001R001A003_rgb.avi").write_bytes(b"")  # video without skeleton
    counts = N.build_zsl_manifests("48-12", vids, skels, tmp_path / "zsl", "xsub", N.load_missing_list())
    assert counts["base_train"] == 1 and counts["base_val"] == 1 and counts["novel_test"] == 2
    assert counts["no_skeleton"] == 1 and counts["missing_skeleton_list"] == 1 and counts["other_dataset"] == 1
    train = N.read_manifest(tmp_path / "zsl" / "zsl_base_train.csv")
    assert train[0].label == 2 and train[0].video_path == vids / "S001C001P001R001A003_rgb.avi"
    assert train[0].skeleton_path == skels / "S001C001P001R001A003.skeleton"
    novel = N.read_manifest(tmp_path / "zsl" / "zsl_novel_test.csv")
    assert {r.label for r in novel} == {0}
    base_csv = (tmp_path / "zsl" / "zsl_base_classes.csv").read_text().splitlines()
    assert base_csv[0] == "id,name" and base_csv[3] == "2,brushing teeth" and len(base_csv) == 49
