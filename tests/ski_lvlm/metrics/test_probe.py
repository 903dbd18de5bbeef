"""The linear probe on synthetic features, the subject split, and each encoder kind on the toy world."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ski_lvlm.metrics.probe import fit_probe, load_probe_encoder, split_by_subject, subject_of

pytestmark = pytest.mark.usefixtures("one_thread")
NAMES = [f"class {i}" for i in range(10)]


def _blobs(n_per_class: int, seed: int, dim: int = 32, spread: float = 0.1):
    """10 well separated Gaussian blobs: x ``[10 * n_per_class, dim]``, y ``[10 * n_per_class]``."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(0, 1, (10, dim))
    y = np.repeat(np.arange(10), n_per_class)
    return (centres[y] + rng.normal(0, spread, (len(y), dim))).astype(np.float32), y


def test_separable_classes_give_one():
    x_tr, y_tr = _blobs(20, seed=0)
    x_te, y_te = _blobs(10, seed=1)
    r = fit_probe(x_tr, y_tr, x_te, y_te, NAMES)
    assert r["accuracy"] == 1.0 and r["train_accuracy"] == 1.0 and r["converged"]
    assert r["per_class"] == {n: 1.0 for n in NAMES}
    assert (r["n_train"], r["n_test"], r["dim"], r["chance"]) == (200, 100, 32, 0.1)


def test_shuffled_labels_give_about_chance():
    x_tr, y_tr = _blobs(20, seed=0)
    x_te, y_te = _blobs(30, seed=1)
    y_tr = np.random.default_rng(0).permutation(y_tr)  # labels no longer follow the features
    r = fit_probe(x_tr, y_tr, x_te, y_te, NAMES)
    assert r["accuracy"] < 0.25  # chance is 0.1; 300 test clips


def test_test_class_missing_from_train_is_named():
    x_tr, y_tr = _blobs(5, seed=0)
    x_te, y_te = _blobs(5, seed=1)
    keep = y_tr != 7
    with pytest.raises(ValueError, match=r"lacks: 'class 7' \(id 7\)"):
        fit_probe(x_tr[keep], y_tr[keep], x_te, y_te, NAMES)
    # a class only in training is fine (its per-class test accuracy is None)
    r = fit_probe(x_tr, y_tr, x_te[y_te != 3], y_te[y_te != 3], NAMES)
    assert r["per_class"]["class 3"] is None and r["accuracy"] == 1.0


def test_split_by_subject():
    names = [f"S001C001P{p:03d}R001A001" for p in (1, 2, 4, 5, 7, 8, 1, 8)]
    assert subject_of(names[2]) == 4 and subject_of("clip7") is None
    tr, va, held = split_by_subject(names)
    assert held == [4, 8]  # every third training subject, as the world picks its test subjects
    assert va.tolist() == [2, 5, 7] and tr.tolist() == [0, 1, 3, 4, 6]
    with pytest.raises(ValueError, match="without a subject"):
        split_by_subject(["a", "b"])
    with pytest.raises(ValueError, match="only subject"):
        split_by_subject(names[:1])


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    from tests.toy_world import make_world

    return make_world(tmp_path_factory.mktemp("toy"), per_class=2, frames=8, video=True)


def _check(enc, toy, dim):
    x, y, names = enc.features(toy / "zsl_base_train.csv", toy / "zsl_base_classes.csv", progress=False)
    assert x.shape == (8, dim) and y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3] and names[0] == "S001C001P001R001A001"
    assert np.isfinite(x).all()
    return x


@pytest.mark.slow
def test_tower_and_cache_encoders_agree(toy, tmp_path):
    from ski_lvlm.data.feature_cache import FeatureItem, extract_features
    from ski_lvlm.models.encoders import load_video_encoder

    enc = load_probe_encoder("clip:ski-tiny-ViT", num_frames=4)  # 4 temporal + 16 spatial tokens of 64
    x = _check(enc, toy, (4 + 16) * 64)
    xt = _check(load_probe_encoder("clip:ski-tiny-ViT", num_frames=4, tokens="temporal"), toy, 4 * 64)
    np.testing.assert_allclose(xt, x[:, : 4 * 64], atol=1e-5)  # the per-frame rows come first
    assert "flattened" in enc.description and enc.identity()["tokens"] == "all"
    # the same tower through a feature cache: the same features (fp32 storage)
    items = [FeatureItem(p.stem, str(p)) for p in sorted((toy / "videos").glob("*.mp4"))]
    extract_features(items, tmp_path / "cache", load_video_encoder("clip:ski-tiny-ViT", frames=4, max_frames=6),
                     dtype=torch.float32, progress=False)
    xc = _check(load_probe_encoder(f"cache:{tmp_path / 'cache'}"), toy, (4 + 16) * 64)
    assert np.abs(xc - x).max() < 0.05  # the cache resizes uint8 frames, the tower float frames


@pytest.mark.slow
def test_embedding_and_lvlm_encoders(toy, tmp_path):
    from ski_lvlm.models.ski_vlm import build_video_clip, save_model
    from tests.tiny_lvlm import make_run

    save_model(build_video_clip(clip_arch="ski-tiny-ViT"), tmp_path / "vifi")
    emb = load_probe_encoder(f"embedding:{tmp_path / 'vifi'}")
    _check(emb, toy, emb.model.clip.visual.output_dim)
    run = make_run(tmp_path / "run")  # 4 frames, max_frames 4, tiny tower
    enc = load_probe_encoder(f"lvlm:{run}")
    assert enc.num_frames == 4 and str(run / "final") in enc.description
    _check(enc, toy, (4 + 16) * 64)
    with pytest.raises(ValueError, match="unknown kind"):
        load_probe_encoder("resnet:x")
    with pytest.raises(FileNotFoundError, match="not an LVLM run"):
        load_probe_encoder(f"lvlm:{tmp_path}")
