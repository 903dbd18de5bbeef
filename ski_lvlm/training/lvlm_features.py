"""Frozen-tower features for LVLM training: the feature cache, the projectors' statistics and pre-alignment.

The LLM never sees pixels during training with a frozen tower: every clip is encoded once, up front, into
a :class:`~ski_lvlm.data.feature_cache.FeatureCache` (``data.feature_cache`` made by ``ski-lvlm data
features``, or ``OUT/features``). The two steps after it read that cache and change the fresh model
before the loop: the ``std_*`` projectors' feature statistics and the optional projector pre-alignment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ski_lvlm.data.feature_cache import (BadItemError, FeatureCache, FeatureItem, StaleCacheError, cache_identity,
                                         extract_features)
from ski_lvlm.data.keys import sample_key
from ski_lvlm.models.lvlm.projector import standardizer_of
from ski_lvlm.training.distributed import barrier
from ski_lvlm.training.prealign import answer_embeddings, answer_word_targets, prealign_projector
from ski_lvlm.utils.errors import UserError

__all__ = ["check_feature_cache", "compute_features", "read_training_features", "fit_standardizers", "prealign"]


def check_feature_cache(folder: str, video_encoder: Any, skeleton_encoder: Any) -> FeatureCache:
    """Open a ready cache, refusing one made with other encoders (the differing keys in the message)."""
    cache = FeatureCache(folder)
    try:
        # storage dtype is irrelevant; skeleton features a run does not use may or may not be there
        ignore = ("dtype",) if skeleton_encoder is not None else ("dtype", "skeleton")
        cache.check_compatible(cache_identity(video_encoder, skeleton_encoder), ignore=ignore)
    except StaleCacheError as e:
        raise UserError(f"data.feature_cache: {e}") from None
    return cache


def compute_features(records: list[dict], path: Path, video_encoder: Any, skeleton_encoder: Any, *,
                     batch_size: int, skip_bad: bool, is_main: bool, log: Callable[[str], None]) -> FeatureCache:
    """Encode every record's video (and skeleton file, when it exists) once into ``path`` (rank 0 writes,
    the others wait); already encoded items are kept."""
    if is_main:
        items, seen = [], set()
        for r in records:
            key = sample_key(r)
            if key in seen or not r.get("video_path"):
                continue
            seen.add(key)
            sk = r.get("skeleton_path") if skeleton_encoder is not None else None
            items.append(FeatureItem(key, r["video_path"], sk if sk and Path(sk).is_file() else None))
        try:
            summary = extract_features(items, path, video_encoder, skeleton_encoder, batch_size=batch_size,
                                       workers=1, skip_bad=skip_bad, progress=is_main)
        except StaleCacheError as e:
            raise UserError(f"{path} was made with other encoders/settings; delete it or use another output "
                            f"folder ({e})") from None
        except BadItemError as e:  # an unreadable video names itself
            raise UserError(f"{e} (set data.skip_bad_samples=true to skip unreadable samples)") from None
        log(f"features: {summary['encoded']} encoded, {summary['already_done']} cached, "
            f"{len(summary['bad'])} unreadable -> {path}")
    barrier()
    return FeatureCache(path)


def read_training_features(records: list[dict], cache: FeatureCache) -> dict[str, dict[str, torch.Tensor]]:
    """Every training sample's cached features, read once (key -> ``{"video", "skeleton"}``), for the two
    steps below; samples without an entry are left out (the dataset reports them)."""
    out = {}
    for key in sorted({sample_key(r) for r in records}):  # fixed order: same float sums on resume
        try:
            out[key] = cache.get(key)
        except KeyError:
            continue
    return out


def fit_standardizers(model: torch.nn.Module, features: dict[str, dict[str, torch.Tensor]],
                      log: Callable[[str], None]) -> None:
    """Fit the ``std_*`` projectors' feature statistics on the training features (:func:`read_training_features`;
    a fresh model only: a model from ``model.init_from`` keeps the statistics it was trained with)."""
    for name, proj in (("video", model.video_projector), ("skeleton", model.skeleton_projector)):
        std = standardizer_of(proj)
        if std is None:
            continue
        rows = [f[name].reshape(-1, f[name].shape[-1]).float() for f in features.values() if name in f]
        if rows:
            std.fit(torch.cat(rows))  # [sum rows, d]
            log(f"{name} projector: feature statistics fitted on {len(rows)} training samples")


def prealign(model: torch.nn.Module, tokenizer: Any, records: list[dict], features: dict[str, dict[str, torch.Tensor]],
             *, steps: int, target: str, summary_tokens: int, seed: int, log: Callable[[str], None]) -> None:
    """Fit the video projector so each video's tokens land on its first answer's word embeddings
    (``ski_lvlm.training.prealign``), before any LLM pass."""
    feats, answers = [], []
    for r in records:
        turns = [t for t in r["conversations"] if t.get("from") in ("gpt", "assistant")]
        video = features.get(sample_key(r), {}).get("video")
        if video is not None and turns:
            feats.append(video.float())
            answers.append(turns[0]["value"])
    if not feats:
        return
    emb = model.get_input_embeddings()
    if target == "words":
        targets = answer_word_targets(answers, tokenizer, emb, summary_tokens)  # [n, k, d]
    else:
        targets = answer_embeddings(answers, tokenizer, emb)  # [n, d]
    losses = prealign_projector(model.video_projector, torch.stack(feats), targets, steps=steps, seed=seed)
    log(f"prealign: video projector fitted to {len(feats)} answers in {steps} steps "
        f"(loss {losses[0]:.3f} -> {losses[-1]:.3f})")
