import numpy as np
import pytest
import torch

from ski_lvlm.data.action_dataset import ActionDataset, epoch_order, fit_skeleton, read_class_csv
from ski_lvlm.data.skeleton import write_ntu_skeleton
from ski_lvlm.data.video import write_video
from ski_lvlm.utils.errors import UserError


@pytest.fixture()
def split(tmp_path):
    (tmp_path / "classes.csv").write_text("id,name\n1,sit down\n0,wave left hand\n")
    xyz = np.zeros((3, 10, 25, 1), np.float32)
    xyz[1] = np.linspace(0.5, 1.5, 25)[None, :, None]
    xyz[0, :, 7, 0] = np.linspace(0, 0.3, 10)
    write_ntu_skeleton(tmp_path / "sk" / "S001C001P001R001A001.skeleton", xyz)
    frames = np.zeros((6, 48, 64, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(6)[:, None, None] * 40  # red encodes the frame index
    write_video(tmp_path / "v" / "S001C001P001R001A001.mp4", frames, fps=10)
    (tmp_path / "split.csv").write_text(
        "video_path,skeleton_path,label\nv/S001C001P001R001A001.mp4,sk/S001C001P001R001A001.skeleton,1\n"
        "v/S001C001P001R001A001.mp4,sk/S001C001P001R001A001.skeleton,0\n")
    return tmp_path, xyz


def test_items_have_the_documented_shapes(split):
    root, xyz = split
    ds = ActionDataset(root / "split.csv", root / "classes.csv", num_frames=3, image_size=32, skeleton_frames=16,
                       center=False)
    assert ds.class_names == ["wave left hand", "sit down"] and ds.labels == [1, 0]
    item = ds[0]
    assert item["video"].shape == (3, 3, 32, 32) and item["video"].dtype == torch.float32
    assert item["skeleton"].shape == (3, 16, 25, 2)
    np.testing.assert_array_equal(item["skeleton"][:, :10, :, :1].numpy(), xyz)  # padded at the end, exact
    assert item["skeleton"][:, 10:].abs().sum() == 0 and item["skeleton"][..., 1].abs().sum() == 0
    assert item["name"] == "S001C001P001R001A001" and item["label"] == 1
    # segment middles of 6 frames -> frames 1, 3, 5: red channel rises over time
    red = (item["video"][:, 0] * 0.26862954 + 0.48145466).mean((1, 2))
    assert red[0] < red[1] < red[2]
    views = ActionDataset(root / "split.csv", root / "classes.csv", num_frames=3, image_size=32, num_views=2,
                          with_skeleton=False)[0]["video"]
    assert views.shape == (2, 3, 3, 32, 32)


def test_video_only_never_touches_skeletons(split):
    root, _ = split
    for p in (root / "sk").iterdir():
        p.unlink()
    ds = ActionDataset(root / "split.csv", root / "classes.csv", num_frames=2, image_size=32, with_skeleton=False)
    assert set(ds[1]) == {"video", "label", "index", "name"}
    with pytest.raises(UserError, match="skeleton file not found"):
        ActionDataset(root / "split.csv", root / "classes.csv", with_video=False).check()


def test_fit_skeleton_resize_and_center():
    x = np.zeros((3, 8, 25, 2), np.float32)
    x[:, 2:6, :, 0] = np.arange(4, dtype=np.float32)[None, :, None] + 1.0  # body present in frames 2..5
    out = fit_skeleton(x, 7, mode="resize", center=True)
    assert out.shape == (3, 7, 25, 2)
    np.testing.assert_allclose(out[0, :, 0, 0], np.linspace(0, 3, 7), atol=1e-6)  # centred on the first frame
    assert np.abs(out[..., 1]).sum() == 0


def test_epoch_order_is_deterministic_and_sharded():
    a = epoch_order(10, seed=3, epoch=1)
    assert a == epoch_order(10, seed=3, epoch=1) and sorted(a) == list(range(10))
    assert a != epoch_order(10, seed=3, epoch=2)
    shards = [epoch_order(10, seed=3, epoch=1, rank=r, world_size=3) for r in range(3)]
    assert all(len(s) == 4 for s in shards) and set(sum(shards, [])) == set(range(10))


@pytest.mark.parametrize("text,msg", [
    ("name\nwave\n", "header"),
    ("id,name\n0,a\n2,b\n", "without gaps"),
    ("id,name\n0,a\n0,b\n", "duplicate"),
])
def test_bad_class_lists(tmp_path, text, msg):
    (tmp_path / "c.csv").write_text(text)
    with pytest.raises(UserError, match=msg):
        read_class_csv(tmp_path / "c.csv")


def test_bad_manifests(split):
    root, _ = split
    with pytest.raises(UserError, match="num_classes=3"):
        ActionDataset(root / "split.csv", root / "classes.csv", num_classes=3)
    (root / "bad.csv").write_text("video_path,skeleton_path,label\nv/x.mp4,sk/x.skeleton,5\n")
    with pytest.raises(UserError, match=r"bad.csv:2: label 5 outside"):
        ActionDataset(root / "bad.csv", root / "classes.csv")
    (root / "empty.csv").write_text("video_path,skeleton_path,label\n")
    with pytest.raises(UserError, match="empty"):
        ActionDataset(root / "empty.csv", root / "classes.csv")
    np.save(root / "j17.npy", np.zeros((3, 5, 17, 2), np.float32))
    (root / "j.csv").write_text(f"video_path,skeleton_path,label\n,{root / 'j17.npy'},0\n")
    with pytest.raises(UserError, match="17 joints"):
        ActionDataset(root / "j.csv", root / "classes.csv", with_video=False).check()


# ------------------------------------------------------------------ mirroring and the decoded-clip cache
def test_mirror_class_map_swaps_sides_and_leaves_out_sided_classes_without_a_partner():
    from ski_lvlm.data.action_dataset import mirror_class_map

    names = ["wave left hand", "wave right hand", "clap", "point with right hand", "drink water"]
    assert mirror_class_map(names) == {0: 1, 1: 0, 2: 2, 4: 4}


def test_mirror_text_keeps_capitals_and_whole_words():
    from ski_lvlm.data.action_dataset import mirror_text

    assert mirror_text("Right: waves their left hand, brightly to the right.") == \
        "Left: waves their right hand, brightly to the left."


def test_mirror_skeleton_negates_x_swaps_joints_and_is_an_involution():
    from ski_lvlm.data.action_dataset import mirror_skeleton

    x = np.random.default_rng(0).normal(size=(3, 4, 25, 2)).astype(np.float32)
    m = mirror_skeleton(x)
    np.testing.assert_array_equal(m[0, :, 8], -x[0, :, 4])  # left shoulder <- right shoulder, x negated
    np.testing.assert_array_equal(m[1:, :, 8], x[1:, :, 4])
    np.testing.assert_array_equal(m[:, :, 0], x[:, :, 0] * np.array([-1, 1, 1]).reshape(3, 1, 1))  # spine
    np.testing.assert_array_equal(mirror_skeleton(m), x)


def test_mirror_flips_video_and_relabels_about_half_the_items(tmp_path):
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    frames[:, :, :8] = 255  # a bright band on the left edge
    write_video(tmp_path / "v.mp4", frames, fps=10)
    (tmp_path / "classes.csv").write_text("id,name\n0,wave left hand\n1,wave right hand\n2,point with right hand\n")
    (tmp_path / "split.csv").write_text("video_path,skeleton_path,label\nv.mp4,,0\nv.mp4,,2\n")
    kw = dict(num_frames=2, image_size=32, with_skeleton=False)
    plain = ActionDataset(tmp_path / "split.csv", tmp_path / "classes.csv", **kw)
    mirror = ActionDataset(tmp_path / "split.csv", tmp_path / "classes.csv", mirror=True, **kw)
    flipped = 0
    for epoch in range(10):
        plain.set_epoch(epoch)
        mirror.set_epoch(epoch)
        a, b = plain[1], mirror[1]  # "point with right hand" has no left partner: never flipped
        assert b["label"] == 2
        torch.testing.assert_close(a["video"], b["video"])
        a, b = plain[0], mirror[0]
        if b["label"] == 1:  # relabelled "wave right hand" <=> the video is mirrored
            torch.testing.assert_close(b["video"], a["video"].flip(-1))
            assert not torch.equal(a["video"], b["video"])
            flipped += 1
        else:
            torch.testing.assert_close(a["video"], b["video"])
    assert 0 < flipped < 10


def test_cached_frames_equal_decoded_frames(split):
    root, _ = split
    kw = dict(num_frames=3, image_size=32, with_skeleton=False, sampling="random_segment")
    decoded = ActionDataset(root / "split.csv", root / "classes.csv", **kw)
    cached = ActionDataset(root / "split.csv", root / "classes.csv", cache_frames=True, **kw)
    for epoch in range(3):
        decoded.set_epoch(epoch)
        cached.set_epoch(epoch)
        torch.testing.assert_close(decoded[0]["video"], cached[0]["video"], rtol=0, atol=0)
    assert len(cached._frames) == 1
