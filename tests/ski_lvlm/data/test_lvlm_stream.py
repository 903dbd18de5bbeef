"""LvlmStream: the map-style set's samples from a stream, seeded shuffling, exact resume, rank slices, bad rows."""

import json

import pytest
import torch

from ski_lvlm.data.instruction_sets import load_instruction_set, to_records
from ski_lvlm.data.lvlm_dataset import LvlmDataset, SampleBuilder
from ski_lvlm.data.lvlm_stream import LvlmStream, first_records
from ski_lvlm.models.lvlm import LabelError
from tests.lvlm_samples import D_S, D_V, N_S, N_V, DictFeatures, tiny_processor

@pytest.fixture(scope="module")
def proc():
    return tiny_processor()


def rec(i, **kw):
    return {"id": f"s{i}", "video": f"videos/s{i}.mp4", "skeleton": f"skeletons/s{i}.skeleton",
            "conversations": [{"from": "human", "value": "<video>\nDescribe the video."},
                              {"from": "gpt", "value": ("word " * (i % 7 + 1)).strip()}], **kw}


FEATS = DictFeatures({f"s{i}": {"video": torch.full((N_V, D_V), float(i)), "skeleton": torch.full((N_S, D_S), -i / 1.0)}
                      for i in range(30)})


@pytest.fixture()
def jsonl(tmp_path):
    def write(records):
        path = tmp_path / "train.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        return path
    return write


def stream(path, proc, **kw):
    builder = SampleBuilder(proc, FEATS, p_inject=0.5, seed=3)
    kw = {"batch_size": 3, "collate": list, "shuffle_buffer": 0, **kw}
    return LvlmStream(load_instruction_set(path, streaming=True), builder, source=str(path), **kw)


def ids(batches):
    return [[s["id"] for s in b] for _, b, _ in batches]


def test_the_stream_hands_out_the_map_style_sets_samples(proc, jsonl):
    path = jsonl([rec(i) for i in range(10)])
    mapped = LvlmDataset(to_records(load_instruction_set(path)), proc, FEATS, p_inject=0.5, seed=3)
    for epoch in (0, 1):
        mapped.set_epoch(epoch)
        got = [s for _, b, _ in stream(path, proc).batches(epoch) for s in b]
        assert len(got) == 10
        for i, s in enumerate(got):
            want = mapped[i]
            assert (s["id"], s["input_ids"], s["labels"]) == (want["id"], want["input_ids"], want["labels"])
            assert torch.equal(s["video_features"], want["video_features"])
            assert (s["skeleton_features"] is None) == (want["skeleton_features"] is None)  # the same draw
    assert sum(s["skeleton_features"] is not None for _, b, _ in stream(path, proc).batches(0) for s in b) in range(2, 9)


def test_batches_in_file_order_with_the_last_flagged(proc, jsonl):
    batches = list(stream(jsonl([rec(i) for i in range(8)]), proc).batches(0))
    assert ids(batches) == [["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s6", "s7"]]
    assert [bi for bi, _, _ in batches] == [0, 1, 2] and [last for *_, last in batches] == [False, False, True]


def test_shuffle_is_seeded_per_epoch_and_resume_skips_exactly(proc, jsonl):
    path = jsonl([rec(i) for i in range(20)])
    a, b = stream(path, proc, shuffle_buffer=8, seed=1), stream(path, proc, shuffle_buffer=8, seed=1)
    e0, e1 = ids(a.batches(0)), ids(a.batches(1))
    assert sorted(sum(e0, [])) == sorted(f"s{i}" for i in range(20)) == sorted(sum(e1, []))
    assert sum(e0, []) != [f"s{i}" for i in range(20)] and e0 != e1  # shuffled, differently per epoch
    assert ids(b.batches(1)) == e1  # the same seed gives the same order
    resumed = list(b.batches(1, start=4))  # what a run resumed after 4 micro-batches of epoch 1 sees
    assert [bi for bi, _, _ in resumed] == [4, 5, 6] and ids(resumed) == e1[4:]
    assert b.samples_seen == 20 + 3 + 3 + 2  # the 12 rows before micro-batch 4 were not built


def test_ranks_take_disjoint_slices_and_drop_the_short_last_group(proc, jsonl):
    path = jsonl([rec(i) for i in range(14)])  # groups of 2 x 3 = 6 rows: 6 + 6 + 2 (dropped)
    r0, r1 = (list(stream(path, proc, rank=r, world_size=2).batches(0)) for r in (0, 1))
    assert ids(r0) == [["s0", "s1", "s2"], ["s6", "s7", "s8"]] and ids(r1) == [["s3", "s4", "s5"], ["s9", "s10", "s11"]]
    assert [last for *_, last in r0] == [False, True] == [last for *_, last in r1]
    with pytest.raises(ValueError, match="rank 2 < world_size 2"):
        stream(path, proc, rank=2, world_size=2)


def test_bad_rows_fail_naming_the_record_or_are_listed_once(proc, jsonl):
    records = [rec(i) for i in range(6)] + [rec(40)] + [rec(i) for i in range(7, 9)]  # s40: no features
    path = jsonl(records)
    with pytest.raises(LabelError, match=r"train.jsonl record 6 \(id 's40'\): .*no video features.*skip_bad_samples"):
        list(stream(path, proc).batches(0))
    s = stream(path, proc, skip_bad=True)
    assert ids(s.batches(0)) == [["s0", "s1", "s2"], ["s3", "s4", "s5"], ["s7", "s8"]]  # the batch shrinks
    list(s.batches(1))
    assert [(k, v.id) for k, v in s.skipped.items()] == [(6, "s40")]  # once, not once per epoch
    with pytest.raises(LabelError, match="every sample of micro-batch 0 of epoch 0"):
        list(stream(jsonl([rec(40), rec(41)]), proc, skip_bad=True).batches(0))


def test_first_records_reads_only_the_head_in_file_order(jsonl):
    rows = load_instruction_set(jsonl([rec(i) for i in range(10)]), streaming=True)
    head = first_records(rows, 3)
    assert [r["id"] for r in head] == ["s0", "s1", "s2"] and head[0]["video_path"].endswith("videos/s0.mp4")
