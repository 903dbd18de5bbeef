"""Feature cache: shards + manifest, identity checks, lazy reads, resume after interruption, bad videos."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from ski_lvlm.data.feature_cache import (BadItemError, FeatureCache, FeatureCacheWriter, FeatureItem, StaleCacheError,
                                         cache_identity, extract_features, identity_diff)
from ski_lvlm.data.skeleton import read_ntu_skeleton, write_ntu_skeleton
from ski_lvlm.data.video import read_frames, write_video
from ski_lvlm.models.clip_towers import frame_features
from ski_lvlm.models.encoders import (VideoFeatureEncoder, load_skeleton_encoder, load_video_encoder,
                                     state_dict_sha256)
from ski_lvlm.models.pooling import spatio_temporal_pool

IDENT = {"video": {"kind": "test", "weights_sha256": "abc", "frames": 4}, "skeleton": None, "dtype": "float16"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Five tiny mp4s (6..10 frames, 48x64) with skeletons, plus two broken 'videos'."""
    root = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    items = []
    for i in range(5):
        frames = (rng.random((6 + i, 48, 64, 3)) * 255).astype(np.uint8)
        write_video(root / f"c{i}.mp4", frames, fps=10)
        xyz = rng.standard_normal((3, 20 + 3 * i, 25, 1)).astype(np.float32)
        write_ntu_skeleton(root / f"c{i}.skeleton", xyz)
        items.append(FeatureItem(f"c{i}", str(root / f"c{i}.mp4"), str(root / f"c{i}.skeleton")))
    (root / "text.mp4").write_text("this is not a video\n")
    (root / "empty.mp4").write_bytes(b"")
    return root, items


@pytest.fixture(scope="module")
def tiny_video():
    return load_video_encoder("clip:ski-tiny-ViT", frames=8, max_frames=8)


def test_writer_reader_round_trip_and_laziness(tmp_path):
    w = FeatureCacheWriter(tmp_path / "c", IDENT, shard_size=2)
    data = {f"id/{k}": {"video": torch.randn(5, 3)} for k in range(5)}  # ids may contain '/'
    data["id/1"]["skeleton"] = torch.randn(4, 2)
    for k, v in data.items():
        w.add(k, v)
    w.finish(items=list(data))
    files = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert files == ["cache.json", "shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"]
    cache = FeatureCache(tmp_path / "c")
    assert cache.complete and len(cache) == 5 and list(cache.ids()) == list(data)
    assert "id/3" in cache and "nope" not in cache and 3 not in cache
    got = cache.get("id/1")
    assert set(got) == {"video", "skeleton"} and got["video"].dtype == torch.float16
    torch.testing.assert_close(got["video"], data["id/1"]["video"].half())
    assert set(cache["id/4"]) == {"video"}
    with pytest.raises(KeyError, match="'missing' is not in the feature cache"):
        cache.get("missing")
    blob = pickle.dumps(cache)  # only the folder and identity travel to workers
    assert len(blob) < 1000 and b"id/3" not in blob
    clone = pickle.loads(blob)
    torch.testing.assert_close(clone.get("id/0")["video"], cache.get("id/0")["video"])
    with pytest.raises(ValueError, match="already in the cache"):
        FeatureCacheWriter(tmp_path / "c", IDENT).add("id/0", {"video": torch.zeros(1)})


def test_stale_cache_refused(tmp_path):
    FeatureCacheWriter(tmp_path / "c", IDENT).finish()
    other = json.loads(json.dumps(IDENT))
    other["video"]["frames"] = 8
    other["video"]["weights_sha256"] = "def"
    with pytest.raises(StaleCacheError, match=r"video.frames: cache has 4, requested 8") as e:
        FeatureCacheWriter(tmp_path / "c", other)
    assert "video.weights_sha256" in str(e.value)
    cache = FeatureCache(tmp_path / "c")
    cache.check_compatible(IDENT)
    with pytest.raises(StaleCacheError, match="stale"):
        cache.check_compatible(other)
    cache.check_compatible(other, ignore=("video.frames", "video.weights_sha256"))
    # informational fields do not make a cache stale; the weights hash does
    cache.check_compatible({**IDENT, "video": {**IDENT["video"], "kind": "clip", "arch": "x", "pretrained": "y"}})
    FeatureCacheWriter(tmp_path / "c", {**IDENT, "video": {**IDENT["video"], "kind": "ski_vlm"}})
    # a video-only request may use a cache that also holds skeleton features, but not the reverse
    with_skel = {**IDENT, "skeleton": {"weights_sha256": "s", "skeleton_frames": 300}}
    FeatureCacheWriter(tmp_path / "s", with_skel).finish()
    FeatureCache(tmp_path / "s").check_compatible(IDENT)
    with pytest.raises(StaleCacheError, match="skeleton"):
        cache.check_compatible(with_skel)
    with pytest.raises(StaleCacheError, match="skeleton"):
        FeatureCacheWriter(tmp_path / "s", IDENT)
    assert identity_diff({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}) == ["a.c: not in cache, requested 2"]
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(FileExistsError):
        FeatureCacheWriter(tmp_path / "junk", IDENT)


def test_writer_resume_keeps_only_complete_shards(tmp_path):
    w = FeatureCacheWriter(tmp_path / "c", IDENT, shard_size=2)
    for k in range(5):
        w.add(f"s{k}", {"video": torch.full((2, 2), float(k))})
    # "killed" here: s4 sits in the buffer and is lost; a stray unlisted shard file is ignored/overwritten
    (tmp_path / "c" / "shard-00002.safetensors").write_bytes(b"half-written")
    w2 = FeatureCacheWriter(tmp_path / "c", IDENT, shard_size=2)
    assert w2.done == {"s0", "s1", "s2", "s3"}
    w2.add("s4", {"video": torch.full((2, 2), 4.0)})
    w2.finish()
    cache = FeatureCache(tmp_path / "c")
    assert [float(cache.get(f"s{k}")["video"][0, 0]) for k in range(5)] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_state_dict_hash():
    a = torch.nn.Linear(3, 2)
    b = torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    assert state_dict_sha256(a) == state_dict_sha256(b) == state_dict_sha256(dict(reversed(list(a.state_dict().items()))))
    with torch.no_grad():
        b.bias[0] += 1e-3
    assert state_dict_sha256(a) != state_dict_sha256(b)


def test_video_features_match_video_chatgpt_recipe(clips, tiny_video):
    _, items = clips
    enc = tiny_video
    x = enc.load(items[0].video)  # 6-frame video, frames=8 -> min(total, frames) = 6 frames
    assert x.shape == (6, 3, 64, 64)
    frames = read_frames(items[0].video, 6, sampling="segment_middle")
    torch.testing.assert_close(x, enc.preprocess(frames))
    feats = enc.encode([x, enc.load(items[4].video)])
    assert feats[0].shape == (8 + 16, 64)  # 8 temporal (padded) + 16 spatial tokens, width 64
    with torch.no_grad():
        tokens = frame_features(enc.visual, x, layer=-2)[1]  # [6, 16, 64]
    torch.testing.assert_close(feats[0], spatio_temporal_pool(tokens, max_frames=8), atol=1e-5, rtol=1e-4)
    assert torch.all(feats[0][6:8] == 0) and not torch.all(feats[1][6:8] == 0)  # only the short video is padded
    # same spec -> same seeded random tower -> same identity
    assert load_video_encoder("clip:ski-tiny-ViT", frames=8, max_frames=8).identity() == enc.identity()
    with pytest.raises(ValueError, match="frames"):
        VideoFeatureEncoder(enc.visual, {}, frames=9, max_frames=8)


@pytest.mark.slow
def test_extract_resume_after_interruption(clips, tiny_video, tmp_path, monkeypatch):
    _, items = clips
    skel = load_skeleton_encoder("random:tiny", num_frames=40)
    full = extract_features(items, tmp_path / "full", tiny_video, skel, batch_size=2, shard_size=2, progress=False)
    assert full["encoded"] == 5 and full["bad"] == []

    calls = {"n": 0}
    real_encode = VideoFeatureEncoder.encode

    def flaky(self, videos, chunk=256):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user hits Ctrl-C during the third batch
        return real_encode(self, videos, chunk)

    monkeypatch.setattr(VideoFeatureEncoder, "encode", flaky)
    with pytest.raises(KeyboardInterrupt):
        extract_features(items, tmp_path / "part", tiny_video, skel, batch_size=2, shard_size=2, progress=False)
    assert len(FeatureCache(tmp_path / "part")) == 4 and not FeatureCache(tmp_path / "part").complete
    monkeypatch.setattr(VideoFeatureEncoder, "encode", real_encode)
    resumed = extract_features(items, tmp_path / "part", tiny_video, skel, batch_size=2, shard_size=2, progress=False)
    assert resumed["already_done"] == 4 and resumed["encoded"] == 1
    a, b = FeatureCache(tmp_path / "full"), FeatureCache(tmp_path / "part")
    assert b.complete and sorted(a.ids()) == sorted(b.ids())
    for it in items:
        fa, fb = a.get(it.id), b.get(it.id)
        assert fa["skeleton"].shape == (10, 48)  # 40 frames / 4
        for k in ("video", "skeleton"):
            torch.testing.assert_close(fa[k], fb[k])
    a.check_compatible(cache_identity(tiny_video, skel))
    with pytest.raises(StaleCacheError, match="skeleton"):
        extract_features(items, tmp_path / "part", tiny_video, None, progress=False)


def test_extract_bad_videos(clips, tiny_video, tmp_path):
    root, items = clips
    bad_items = items[:2] + [FeatureItem("text", str(root / "text.mp4")), FeatureItem("empty", str(root / "empty.mp4")),
                             FeatureItem("gone", str(root / "gone.mp4"))] + items[2:3]
    with pytest.raises(BadItemError, match="item 'text'.*text.mp4"):
        extract_features(bad_items, tmp_path / "a", tiny_video, batch_size=1, progress=False)
    assert set(FeatureCache(tmp_path / "a").ids()) == {"c0", "c1"}  # finished items were kept
    summary = extract_features(bad_items, tmp_path / "b", tiny_video, batch_size=2, skip_bad=True, progress=False)
    assert [b["id"] for b in summary["bad"]] == ["text", "empty", "gone"]
    assert all(b["path"].endswith(f"{b['id']}.mp4") for b in summary["bad"])
    cache = FeatureCache(tmp_path / "b")
    assert sorted(cache.ids()) == ["c0", "c1", "c2"]
    assert json.loads((tmp_path / "b" / "cache.json").read_text())["bad"][0]["id"] == "text"
    with pytest.raises(ValueError, match="duplicate sample ids"):
        extract_features(items[:1] * 2, tmp_path / "d", tiny_video, progress=False)


@pytest.mark.slow
def test_encoders_from_trained_checkpoints(tmp_path, clips):
    from ski_lvlm.models.ski_vlm import build_skeleton_clip, build_ski_vlm, build_video_clip, save_model

    _, items = clips
    model = build_ski_vlm(build_video_clip(clip_arch="ski-tiny-ViT"), build_skeleton_clip(encoder="tiny"))
    save_model(model, tmp_path / "ski_vlm")
    sclip = build_skeleton_clip(encoder="tiny")
    sclip.config["inference"] = {"skeleton_frames": 24, "skeleton_mode": "resize", "center": False}
    save_model(sclip, tmp_path / "skeleton_clip")
    rec = load_skeleton_encoder(f"skeleton_clip:{tmp_path / 'skeleton_clip'}")  # training settings recorded
    assert (rec.num_frames, rec.mode, rec.center) == (24, "resize", False)
    x = rec.load(items[1].skeleton)  # 23 frames resized to 24, not centred
    assert x.shape == (3, 24, 25, 2) and torch.allclose(x[:, 0], torch.from_numpy(read_ntu_skeleton(items[1].skeleton))[:, 0])
    assert load_skeleton_encoder(f"skeleton_clip:{tmp_path / 'skeleton_clip'}", num_frames=40).num_frames == 40
    video = load_video_encoder(f"ski_vlm:{tmp_path / 'ski_vlm'}", frames=4, max_frames=4)
    assert video.identity()["weights_sha256"] == state_dict_sha256(model.video.clip.visual)
    assert video.identity()["kind"] == "ski_vlm" and video.identity()["model_config"]["kind"] == "video_clip"
    skel = load_skeleton_encoder(f"skeleton_clip:{tmp_path / 'ski_vlm'}", num_frames=16)
    assert skel.identity()["weights_sha256"] == state_dict_sha256(model.skeleton.encoder)
    feats = skel.encode([skel.load(items[0].skeleton)])
    with torch.no_grad():
        want = model.skeleton.eval().skeleton_features(skel.load(items[0].skeleton)[None])[0]
    torch.testing.assert_close(feats[0], want)
    with pytest.raises(ValueError, match="kind must be"):
        load_skeleton_encoder("what:ever")


def test_missing_skeleton_file_means_video_only_but_corrupt_one_is_bad(clips, tiny_video, tmp_path):
    """A sample without a skeleton file keeps its video features and gets no skeleton entry (never zeros);
    a skeleton file that exists but cannot be parsed is still a bad item."""
    root, items = clips
    skel = load_skeleton_encoder("random:tiny", num_frames=16)
    gone = FeatureItem("c3", items[3].video, str(root / "no_such.skeleton"))
    summary = extract_features([items[0], gone], tmp_path / "a", tiny_video, skel, batch_size=2, progress=False)
    assert summary["bad"] == [] and summary["missing_skeleton"] == ["c3"]
    cache = FeatureCache(tmp_path / "a")
    assert set(cache.get("c0")) == {"video", "skeleton"} and set(cache.get("c3")) == {"video"}
    broken = root / "broken.skeleton"
    broken.write_text("3\n1\n")  # truncated: 3 frames announced, one body line missing
    bad = FeatureItem("c4", items[4].video, str(broken))
    summary = extract_features([bad], tmp_path / "b", tiny_video, skel, skip_bad=True, progress=False)
    assert [b["id"] for b in summary["bad"]] == ["c4"] and summary["bad"][0]["path"].endswith("broken.skeleton")


def test_median_residual_tower_is_applied_by_the_cache_and_the_lvlm_tower(tmp_path, clips):
    """A video model trained on median residuals gives the same features through the feature cache
    and the LVLM's online tower, and both differ from feeding it plain frames."""
    from ski_lvlm.models.clip_towers import apply_frame_input, frame_features
    from ski_lvlm.models.lvlm.modeling import VideoTower
    from ski_lvlm.models.pooling import spatio_temporal_pool
    from ski_lvlm.models.ski_vlm import build_ski_vlm, build_video_clip, save_model

    _, items = clips
    model = build_ski_vlm(build_video_clip(clip_arch="ski-tiny-ViT", frame_input="median_residual"), None)
    save_model(model, tmp_path / "m")
    enc = load_video_encoder(f"ski_vlm:{tmp_path / 'm'}", frames=4, max_frames=4)
    assert enc.frame_input == "median_residual"
    x = enc.load(items[0].video)  # [4, 3, S, S]
    got = enc.encode([x])[0]
    with torch.no_grad():
        want = spatio_temporal_pool(frame_features(model.video.clip.visual, apply_frame_input(x[None], "median_residual")[0])[1], 4)
        plain = spatio_temporal_pool(frame_features(model.video.clip.visual, x)[1], 4)
    torch.testing.assert_close(got, want)
    assert (got - plain).abs().max() > 1e-3
    tower = VideoTower({**enc.config, "layer": enc.layer}, max_frames=4)
    tower.visual.load_state_dict(model.video.clip.visual.state_dict())
    assert tower.frame_input == "median_residual"
    mean, std = tower.mean, tower.std
    torch.testing.assert_close(tower((x * std + mean)[None])[0], got, atol=1e-4, rtol=1e-4)
