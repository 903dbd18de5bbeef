"""Instruction-tuning data for SKI-LVLM: tokenised conversations + cached features, batched by length.

:class:`LvlmDataset` joins instruction records (LLaVA / LLAVIDAL / Video-ChatGPT JSON, read by
:func:`ski_lvlm.data.instructions.read_instruction_records`) with a feature source (a
:class:`~ski_lvlm.data.feature_cache.FeatureCache` or any object with ``get(key) -> {"video", "skeleton"}``)
and the :class:`~ski_lvlm.models.lvlm.SkiLvlmProcessor`. Batches are right-padded (:func:`lvlm_collate`) or
packed into one row without padding (:func:`lvlm_pack_collate`, ``data.packing``).

Rules:
* Every sample is validated once at construction (labels built with and without skeleton tokens), so a
  bad sample fails the run before training starts, naming the record; with ``skip_bad=True`` it is
  left out and listed in :attr:`LvlmDataset.skipped` instead. Nothing is silently masked.
* A sample with a video needs video features (missing -> error or skip, never zeros).
* Skeleton injection: a sample whose skeleton features exist gets ``<skeleton>`` tokens with
  probability ``p_inject``. The draw is a pure function of ``(seed, epoch, index)``, so a resumed run
  makes the same draws. A sample without skeleton features (no file, missing file) simply gets no
  skeleton tokens; evaluation datasets use ``p_inject=0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from ski_lvlm.data.keys import sample_key
from ski_lvlm.models.lvlm.processing import IGNORE_INDEX, LabelError, SkiLvlmProcessor

__all__ = ["FeatureSource", "FrameSource", "SampleBuilder", "SkippedSample", "LvlmDataset", "lvlm_collate",
           "lvlm_pack_collate", "LengthGroupedBatches"]


class FeatureSource(Protocol):
    def get(self, key: str) -> dict[str, torch.Tensor]: ...


class FrameSource:
    """A feature source that also hands out each video's decoded frames (``"frames"``, uint8
    ``[t, 3, H, W]``), for a video tower that trains with the LVLM (``model.tower_trainable``).

    Why: a trainable tower must see the frames at every step, and decoding every clip every epoch costs
    more than the step itself on CPU. Each clip is decoded once, with the sampling the tower uses at
    inference, and kept in memory (8 frames of a 112 px clip: 0.3 MB).
    """

    def __init__(self, features: FeatureSource, video_paths: dict[str, str], num_frames: int,
                 sampling: str = "segment_middle"):
        self.features, self.video_paths = features, video_paths
        self.num_frames, self.sampling = num_frames, sampling
        self._frames: dict[str, torch.Tensor] = {}

    def get(self, key: str) -> dict[str, torch.Tensor]:
        out = dict(self.features.get(key))
        if key in self.video_paths:
            out["frames"] = self.frames(key)
        return out

    def frames(self, key: str) -> torch.Tensor:
        if key not in self._frames:
            from ski_lvlm.data.video import read_frames

            frames = read_frames(self.video_paths[key], self.num_frames, sampling=self.sampling)  # [t, H, W, 3]
            self._frames[key] = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).contiguous()
        return self._frames[key]


@dataclass
class SkippedSample:
    index: int
    id: str
    reason: str


@dataclass
class _Item:
    index: int
    id: str
    key: str
    conversations: list
    has_video: bool
    has_skeleton: bool
    length: int  # tokens without skeleton tokens (the length-grouping key)


@dataclass
class SampleBuilder:
    """Checks and builds one training sample: the map-style :class:`LvlmDataset` and the stream
    (:mod:`ski_lvlm.data.lvlm_stream`) share it, so both hand out the same dicts for the same record.

    Args:
        processor: builds input ids and labels.
        features: where video / skeleton features come from (keyed by :func:`~ski_lvlm.data.keys.sample_key`).
        p_inject: probability of skeleton tokens for samples that have skeleton features.
        seed: seeds the injection draws.
        video_summary_tokens: rows the projector appends to the features (the processor counts them).
        align_skeleton: hand out every video sample's skeleton steps for ``loss.distill_on=steps``.
    """

    processor: SkiLvlmProcessor
    features: FeatureSource | None
    p_inject: float = 0.0
    seed: int = 0
    video_summary_tokens: int = 0
    align_skeleton: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_inject <= 1.0:
            raise ValueError(f"p_inject must be in [0, 1], got {self.p_inject}")

    def _features(self, key: str) -> dict[str, torch.Tensor]:
        if self.features is None:
            return {}
        try:
            return self.features.get(key)
        except KeyError:
            return {}

    def check(self, i: int, sid: str, rec: dict) -> _Item:
        """Record ``i`` as an item; raises ``LabelError`` / ``KeyError`` / ``ValueError`` naming what is wrong."""
        key = sample_key(rec)
        has_video = bool(rec.get("video_path"))
        feats = self._features(key) if (has_video or rec.get("skeleton_path")) else {}
        if has_video and "video" not in feats:
            raise KeyError(f"no video features for key {key!r} (video {rec.get('video_path')})")
        expected = self.processor.num_video_tokens - self.video_summary_tokens
        if has_video and feats["video"].shape[0] != expected:
            raise ValueError(f"video features have {feats['video'].shape[0]} tokens, the processor expects "
                             f"{expected}")
        has_skeleton = "skeleton" in feats and self.p_inject > 0  # can be injected (alignment resamples any T')
        if has_skeleton and feats["skeleton"].shape[0] != self.processor.num_skeleton_tokens:
            raise ValueError(f"skeleton features have {feats['skeleton'].shape[0]} steps, the processor expects "
                             f"{self.processor.num_skeleton_tokens}")
        ex = self.processor.build_example(rec["conversations"], has_video=has_video, use_skeleton=False)
        if has_skeleton:
            self.processor.build_example(rec["conversations"], has_video=has_video, use_skeleton=True)
        return _Item(i, sid, key, rec["conversations"], has_video, has_skeleton, len(ex.input_ids))

    def check_or_skip(self, i: int, rec: dict, *, skip_bad: bool, source: str) -> _Item | SkippedSample:
        """:meth:`check` for the user: a bad record raises a ``LabelError`` naming ``source``, the record and how
        to skip such samples, or, with ``skip_bad``, comes back as a :class:`SkippedSample` to list."""
        sid = str(rec.get("id", i))
        try:
            return self.check(i, sid, rec)
        except (LabelError, KeyError, ValueError) as e:
            reason = str(e).strip("'\"")
            if not skip_bad:
                raise LabelError(f"{source} record {i} (id {sid!r}): {reason} (fix it, or set "
                                 "data.skip_bad_samples=true to skip and list such samples)") from None
            return SkippedSample(i, sid, reason)

    def inject(self, item: _Item, epoch: int) -> bool:
        """Whether ``item`` gets skeleton tokens in ``epoch`` (pure function of seed, epoch, record index)."""
        if not item.has_skeleton:
            return False
        return bool(np.random.default_rng([self.seed, epoch, item.index]).random() < self.p_inject)

    def build(self, item: _Item, epoch: int) -> dict[str, Any]:
        """The sample dict that the collates take: ids, labels and the features it uses this epoch."""
        use_skel = self.inject(item, epoch)
        ex = self.processor.build_example(item.conversations, has_video=item.has_video, use_skeleton=use_skel)
        feats = self._features(item.key) if (item.has_video or use_skel) else {}
        return {"id": item.id, "input_ids": ex.input_ids, "labels": ex.labels,
                "video_features": feats.get("video") if item.has_video else None,
                "video_frames": feats.get("frames") if item.has_video else None,
                "skeleton_features": feats.get("skeleton") if use_skel else None,
                # injected or not: the per-step alignment target of this sample's video tokens
                "align_skeleton": feats.get("skeleton") if self.align_skeleton and item.has_video else None}


@dataclass
class LvlmDataset(Dataset):
    """Tokenised samples with their features (every record checked up front).

    Args:
        records: instruction records with ``conversations`` and ``video_path`` / ``skeleton_path``.
        skip_bad: leave out (and list) samples that cannot be built instead of raising.
        source: file name used in error messages.
        The others: as :class:`SampleBuilder`.
    """

    records: list[dict]
    processor: SkiLvlmProcessor
    features: FeatureSource | None
    p_inject: float = 0.0
    seed: int = 0
    skip_bad: bool = False
    source: str = "<records>"
    video_summary_tokens: int = 0
    align_skeleton: bool = False
    items: list[_Item] = field(init=False, default_factory=list)
    skipped: list[SkippedSample] = field(init=False, default_factory=list)
    epoch: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.builder = SampleBuilder(self.processor, self.features, self.p_inject, self.seed,
                                     self.video_summary_tokens, self.align_skeleton)
        for i, rec in enumerate(self.records):
            got = self.builder.check_or_skip(i, rec, skip_bad=self.skip_bad, source=self.source)
            (self.skipped if isinstance(got, SkippedSample) else self.items).append(got)
        if not self.items:
            raise LabelError(f"{self.source}: no usable samples ({len(self.skipped)} skipped)")

    # ------------------------------------------------------------------ epoch-dependent draws
    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def inject(self, idx: int) -> bool:
        """Whether item ``idx`` gets skeleton tokens this epoch (pure function of seed, epoch, idx)."""
        return self.builder.inject(self.items[idx], self.epoch)

    @property
    def lengths(self) -> list[int]:
        return [it.length for it in self.items]

    @property
    def num_with_skeleton(self) -> int:
        return sum(it.has_skeleton for it in self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        return self.builder.build(self.items[idx], self.epoch)


def lvlm_collate(batch: list[dict[str, Any]], pad_token_id: int) -> dict[str, Any]:
    """Right-pad ids/labels; stack the features of the samples that have them, in batch order.

    Returns ``input_ids``/``labels``/``attention_mask`` ``[b, s]``, ``video_features`` ``[b_v, n_v, d_v]``
    (or, when the samples carry frames (:class:`FrameSource`), ``pixel_values_videos`` uint8
    ``[b_v, t, 3, H, W]`` instead) and ``skeleton_features`` ``[b_s, T', d_s]`` (None when no sample has
    them), ``ids`` and ``num_tokens`` (non-pad tokens, for throughput logs).
    """
    width = max(len(b["input_ids"]) for b in batch)
    n = len(batch)
    input_ids = torch.full((n, width), pad_token_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    for i, b in enumerate(batch):
        k = len(b["input_ids"])
        input_ids[i, :k] = torch.tensor(b["input_ids"])
        labels[i, :k] = torch.tensor(b["labels"])
        attention_mask[i, :k] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask, **_stack_features(batch),
            "ids": [b["id"] for b in batch], "num_tokens": int(attention_mask.sum())}


def lvlm_pack_collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate the samples into one row, without padding (``data.packing``).

    Hugging Face's ``DataCollatorWithFlattening`` builds the text side: ``input_ids``/``labels``/
    ``position_ids`` ``[1, N]`` (positions restart per sample; each sample's first label is ignored, so no
    token is trained to follow the previous sample) and ``cu_seq_lens_q``/``cu_seq_lens_k`` ``[n + 1]``,
    ``max_length_q``/``max_length_k``. Features are stacked in batch order, which is the order of the
    placeholders in the row, so the model's one ``masked_scatter`` puts every sample's rows in its own slots.
    ``attention_mask`` is None (see :mod:`ski_lvlm.models.lvlm.packing` for how attention stays per sample).
    """
    from transformers import DataCollatorWithFlattening

    flat = DataCollatorWithFlattening(return_flash_attn_kwargs=True, separator_id=IGNORE_INDEX)(
        [{"input_ids": b["input_ids"], "labels": b["labels"]} for b in batch], return_tensors="pt")
    return {**flat, "attention_mask": None, **_stack_features(batch), "ids": [b["id"] for b in batch],
            "num_tokens": int(flat["input_ids"].shape[1])}


def _stack_features(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor | None]:
    """``video_features [b_v, n_v, d_v]`` (or the samples' frames as ``pixel_values_videos``, see
    :class:`FrameSource`) / ``skeleton_features [b_s, T', d_s]`` of the samples that have them; with
    ``align_skeleton``, ``align_skeleton [b_a, T', d_s]`` and ``align_rows [b_a]`` (which rows of
    ``video_features`` they belong to)."""
    with_video = [b for b in batch if b["video_features"] is not None]
    frames = [b["video_frames"] for b in batch if b.get("video_frames") is not None]
    skel = [b["skeleton_features"] for b in batch if b["skeleton_features"] is not None]
    rows = [i for i, b in enumerate(with_video) if b.get("align_skeleton") is not None]
    return {"video_features": torch.stack([b["video_features"] for b in with_video]).float()
            if with_video and not frames else None,
            "pixel_values_videos": torch.stack(frames) if frames else None,  # [b_v, t, 3, H, W] uint8
            "skeleton_features": torch.stack(skel).float() if skel else None,
            "align_skeleton": torch.stack([with_video[i]["align_skeleton"] for i in rows]).float() if rows else None,
            "align_rows": torch.tensor(rows, dtype=torch.long) if rows else None}


class LengthGroupedBatches:
    """Deterministic batches of similar length (less padding), optionally sharded across ranks.

    Per epoch: permute all indices with ``(seed, epoch)``, cut into mega-batches of
    ``batch_size * world_size * mega_batch`` items, sort each by length (longest first), cut into
    global batches and shuffle their order (the very first batch stays the longest, so memory problems
    show up at step 1). Rank ``r`` takes the ``r``-th slice of every global batch. ``group_by_length=False``
    gives plain shuffled batches. The last incomplete global batch is dropped only when ``drop_last``.
    """

    def __init__(self, lengths: list[int], batch_size: int, *, seed: int = 0, group_by_length: bool = True,
                 mega_batch: int = 16, rank: int = 0, world_size: int = 1, drop_last: bool = False):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.group = batch_size, seed, group_by_length
        self.mega, self.rank, self.world, self.drop_last = mega_batch, rank, world_size, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _global_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng([self.seed, self.epoch, 7])
        order = rng.permutation(len(self.lengths))
        g = self.batch_size * self.world
        if self.group:
            mega = g * self.mega
            chunks = [order[i:i + mega] for i in range(0, len(order), mega)]
            order = np.concatenate([c[np.argsort(-self.lengths[c], kind="stable")] for c in chunks])
        batches = [order[i:i + g] for i in range(0, len(order), g)]
        if self.drop_last and batches and len(batches[-1]) < g:
            batches = batches[:-1]
        if self.group and len(batches) > 1:
            longest = int(np.argmax([self.lengths[b].max() for b in batches]))
            rest = [b for k, b in enumerate(batches) if k != longest]
            perm = rng.permutation(len(rest))
            batches = [batches[longest]] + [rest[k] for k in perm]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for b in self._global_batches():
            mine = b[self.rank::self.world] if self.world > 1 else b
            if len(mine):
                yield [int(i) for i in mine]

    def __len__(self) -> int:
        g = self.batch_size * self.world
        return len(self.lengths) // g if self.drop_last else math.ceil(len(self.lengths) / g)
