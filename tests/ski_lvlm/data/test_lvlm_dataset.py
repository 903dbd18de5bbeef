"""LvlmDataset / lvlm_collate / LengthGroupedBatches: injection rules, errors vs. skips, batching."""

import numpy as np
import pytest
import torch

from ski_lvlm.data.lvlm_dataset import LengthGroupedBatches, LvlmDataset, lvlm_collate, lvlm_pack_collate
from ski_lvlm.models.lvlm import LabelError, SkiLvlmProcessor
from tests.lvlm_samples import D_S, D_V, N_S, N_V, DictFeatures, tiny_processor

@pytest.fixture(scope="module")
def proc():
    return tiny_processor()


def rec(i, skeleton=True, answer=None):
    return {"id": f"s{i}", "video_path": f"/d/videos/s{i}.mp4", "skeleton_path": f"/d/skeletons/s{i}.skeleton"
            if skeleton else None,
            "conversations": [{"from": "human", "value": "Describe the video."},
                              {"from": "gpt", "value": answer or ("word " * (i + 1)).strip()}]}


def feats(n, skeleton_for=()):
    return DictFeatures({f"s{i}": {"video": torch.full((N_V, D_V), float(i)),
                                   **({"skeleton": torch.full((N_S, D_S), float(i))} if i in skeleton_for else {})}
                         for i in range(n)})


def test_injection_only_with_skeleton_features_and_deterministic(proc):
    records = [rec(i) for i in range(40)]
    ds = LvlmDataset(records, proc, feats(40, skeleton_for=range(0, 40, 2)), p_inject=0.5, seed=3)
    assert ds.num_with_skeleton == 20  # odd samples: skeleton file listed but no features -> never injected
    draws = [ds.inject(i) for i in range(40)]
    assert not any(draws[1::2]) and 3 <= sum(draws[0::2]) <= 17
    again = LvlmDataset(records, proc, feats(40, skeleton_for=range(0, 40, 2)), p_inject=0.5, seed=3)
    assert [again.inject(i) for i in range(40)] == draws  # pure function of (seed, epoch, index)
    ds.set_epoch(1)
    assert [ds.inject(i) for i in range(40)] != draws
    for i in range(40):
        item = ds[i]
        n_skel = item["input_ids"].count(proc.skeleton_token_id)
        assert n_skel == (N_S if ds.inject(i) else 0)
        assert (item["skeleton_features"] is not None) == ds.inject(i)
    never = LvlmDataset(records, proc, feats(40, skeleton_for=range(40)), p_inject=0.0)
    assert never.num_with_skeleton == 0 and all(never[i]["skeleton_features"] is None for i in range(40))


def test_missing_video_features_raise_or_skip(proc):
    records = [rec(i) for i in range(4)] + [rec(9)]
    with pytest.raises(LabelError, match=r"record 4 \(id 's9'\): .*no video features"):
        LvlmDataset(records, proc, feats(4), source="x.json")
    records.append({**rec(2), "id": "bad", "conversations": [{"from": "human", "value": "<video><video>"},
                                                            {"from": "gpt", "value": "a"}]})
    ds = LvlmDataset(records, proc, feats(4), skip_bad=True)
    assert len(ds) == 4 and [(s.index, s.id) for s in ds.skipped] == [(4, "s9"), (5, "bad")]
    assert "one video" in ds.skipped[1].reason


def test_wrong_feature_shapes_are_errors(proc):
    bad = DictFeatures({"s0": {"video": torch.zeros(N_V + 1, D_V)}})
    with pytest.raises(LabelError, match="6 tokens, the processor expects 5"):
        LvlmDataset([rec(0)], proc, bad)


def test_collate_pads_and_stacks_in_batch_order(proc):
    ds = LvlmDataset([rec(i) for i in range(3)], proc, feats(3, skeleton_for=(1,)), p_inject=1.0)
    batch = lvlm_collate([ds[0], ds[1], ds[2]], pad_token_id=proc.tokenizer.pad_token_id)
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    assert ids.shape == labels.shape == mask.shape and ids.shape[0] == 3
    assert batch["video_features"].shape == (3, N_V, D_V)
    assert torch.equal(batch["video_features"][:, 0, 0], torch.tensor([0.0, 1.0, 2.0]))
    assert batch["skeleton_features"].shape == (1, N_S, D_S) and batch["skeleton_features"][0, 0, 0] == 1.0
    assert (labels[mask == 0] == -100).all() and batch["num_tokens"] == int(mask.sum())
    assert (ids == proc.skeleton_token_id).sum() == N_S  # only sample 1


def test_align_skeleton_hands_out_every_video_samples_steps_without_injecting(proc):
    """loss.distill_on=steps: the alignment target of each video sample, injected or not, in video-row order."""
    ds = LvlmDataset([rec(i) for i in range(4)], proc, feats(4, skeleton_for=(1, 2)), p_inject=0.0,
                     align_skeleton=True)
    assert ds.num_with_skeleton == 0 and not any(ds.inject(i) for i in range(4))  # none can be injected
    items = [ds[i] for i in range(4)]
    assert all(it["skeleton_features"] is None for it in items)
    assert all(it["input_ids"].count(proc.skeleton_token_id) == 0 for it in items)
    for collate in (lvlm_pack_collate, lambda b: lvlm_collate(b, pad_token_id=proc.tokenizer.pad_token_id)):
        batch = collate(items)
        assert batch["skeleton_features"] is None
        assert batch["align_rows"].tolist() == [1, 2]
        assert batch["align_skeleton"].shape == (2, N_S, D_S)
        # each target sits next to its own video's row
        torch.testing.assert_close(batch["video_features"][batch["align_rows"], 0, 0], batch["align_skeleton"][:, 0, 0])
    plain = lvlm_collate([LvlmDataset([rec(0)], proc, feats(1, skeleton_for=(0,)))[0]], pad_token_id=0)
    assert plain["align_rows"] is None and plain["align_skeleton"] is None


def test_pack_collate_concatenates_without_padding(proc):
    ds = LvlmDataset([rec(i) for i in range(3)], proc, feats(3, skeleton_for=(1,)), p_inject=1.0)
    items = [ds[0], ds[1], ds[2]]
    padded = lvlm_collate(items, pad_token_id=proc.tokenizer.pad_token_id)
    packed = lvlm_pack_collate(items)
    lengths = [len(b["input_ids"]) for b in items]
    n = sum(lengths)
    assert packed["input_ids"].shape == packed["labels"].shape == packed["position_ids"].shape == (1, n)
    assert packed["attention_mask"] is None and packed["num_tokens"] == padded["num_tokens"] == n
    assert packed["input_ids"][0].tolist() == sum((b["input_ids"] for b in items), [])
    assert packed["position_ids"][0].tolist() == sum((list(range(k)) for k in lengths), [])
    assert packed["cu_seq_lens_q"].tolist() == [0, lengths[0], lengths[0] + lengths[1], n]
    assert packed["cu_seq_lens_q"].dtype == torch.int32 and packed["max_length_q"] == max(lengths)
    starts = packed["cu_seq_lens_q"][:-1].long()
    assert (packed["labels"][0, starts] == -100).all()  # nothing is trained across a sample boundary
    assert int((packed["labels"] != -100).sum()) == int((padded["labels"] != -100).sum())
    for k in ("video_features", "skeleton_features"):  # same order as the placeholders in the row
        assert torch.equal(packed[k], padded[k])


def test_too_long_samples_follow_the_same_rule_when_packed(proc):
    """The length rule lives in the dataset, which both collates read: an error naming the record, or a
    listed skip; the packed row then holds only the samples that fit."""
    short = SkiLvlmProcessor(proc.tokenizer, num_video_tokens=N_V, num_skeleton_tokens=N_S, max_length=80)
    records = [rec(0), rec(1, answer="word " * 60), rec(2)]
    with pytest.raises(LabelError, match=r"record 1 .*> max_length=80.*skip_bad_samples"):
        LvlmDataset(records, short, feats(3))
    ds = LvlmDataset(records, short, feats(3), skip_bad=True)
    assert [s.index for s in ds.skipped] == [1] and len(ds) == 2
    packed = lvlm_pack_collate([ds[0], ds[1]])
    assert packed["max_length_q"] <= 80 and packed["ids"] == ["s0", "s2"]


def test_length_grouped_batches():
    lengths = list(np.random.default_rng(0).integers(10, 500, size=103))
    s = LengthGroupedBatches(lengths, 4, seed=1, mega_batch=4)
    batches = list(s)
    assert sorted(i for b in batches for i in b) == list(range(103)) and len(batches) == len(s) == 26
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # longest first: OOM shows at step 1
    assert list(LengthGroupedBatches(lengths, 4, seed=1, mega_batch=4)) == batches
    s.set_epoch(1)
    assert list(s) != batches
    # less padding than random batches
    waste = lambda bs: sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in bs)  # noqa: E731
    assert waste(batches) < waste(list(LengthGroupedBatches(lengths, 4, seed=1, group_by_length=False)))
    # two ranks: disjoint shards of every global batch, the same number of batches each
    r0 = list(LengthGroupedBatches(lengths, 4, seed=1, rank=0, world_size=2, drop_last=True))
    r1 = list(LengthGroupedBatches(lengths, 4, seed=1, rank=1, world_size=2, drop_last=True))
    assert len(r0) == len(r1) == 12 and not set(sum(r0, [])) & set(sum(r1, []))
