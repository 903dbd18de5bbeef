"""Instruction data through ``datasets``: the same samples, labels and order as today's reader; cached
tokenisation keyed by tokenizer + template; streaming; mixtures at their ratios; ``data instructions --to datasets``.
"""

import copy
import json

import pytest
import torch

pytest.importorskip("datasets")

from ski_lvlm.data.instruction_sets import (PretokenizedProcessor, load_instruction_set,  # noqa: E402
                                            mix_sets, read_training_records, to_records, tokenize_set,
                                            tokenizer_fingerprint)
from ski_lvlm.data.instructions import read_instruction_records  # noqa: E402
from ski_lvlm.data.lvlm_dataset import LengthGroupedBatches, LvlmDataset  # noqa: E402
from ski_lvlm.models.lvlm import SkiLvlmProcessor  # noqa: E402
from ski_lvlm.models.lvlm.presets import train_tokenizer  # noqa: E402

N_V, D_V, N_S, D_S = 5, 8, 3, 4


@pytest.fixture(scope="module")
def proc():
    return SkiLvlmProcessor(train_tokenizer(style="llama"), num_video_tokens=N_V, num_skeleton_tokens=N_S)


class Features:
    """Video features for every clip, skeleton features for every other one (keyed by file stem)."""

    def get(self, key):
        i = int(key.split("_")[-1])
        return {"video": torch.full((N_V, D_V), float(i)),
                **({"skeleton": torch.full((N_S, D_S), float(i))} if i % 2 == 0 else {})}


def llava(n, prefix="v"):
    """LLaVA records: relative paths, skeletons on some, multi-turn on some, one extra key, one bad sample."""
    out = []
    for i in range(n):
        rec = {"id": f"{prefix}_{i}", "video": f"videos/{prefix}_{i}.mp4",
               "conversations": [{"from": "human", "value": "<video>\nDescribe the video."},
                                 {"from": "gpt", "value": " ".join(["word"] * (1 + i % 7))}]}
        if i % 2 == 0:
            rec["skeleton"] = f"skeletons/{prefix}_{i}.skeleton"
        if i % 3 == 0:
            rec["conversations"] += [{"from": "human", "value": "And then?"}, {"from": "gpt", "value": "Nothing."}]
        if i == 4:
            rec["source"] = "handmade"
        if i == 5:
            rec["conversations"][1]["value"] = "word " * 3000  # > max_length: a bad sample, skipped and listed
        out.append(rec)
    return out


def videochatgpt(n):
    return [{"video_id": f"c_{i}", "q": f"What happens in clip {i}?", "a": "A person waves."} for i in range(n)]


def llavidal(n):
    return [{"id": f"l_{i}", "video": f"l_{i}.mp4", "pose": f"poses/l_{i}.npy",
             "conversations": [{"from": "human", "value": "<video><human_pose>\nWhat is going on?"},
                               {"from": "gpt", "value": "Someone cooks."}]} for i in range(n)]


def write(path, records):
    """``records`` as .json, .jsonl or .parquet (by suffix)."""
    if path.suffix == ".json":
        path.write_text(json.dumps(records))
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    else:  # pandas keeps the union of the records' keys (missing -> null)
        import pandas as pd

        pd.DataFrame(records).to_parquet(path)
    return path


class CountingProcessor(SkiLvlmProcessor):
    calls = 0

    def build_example(self, *a, **k):
        CountingProcessor.calls += 1
        return super().build_example(*a, **k)


@pytest.mark.parametrize("fmt, suffix", [("llava", ".json"), ("llava", ".jsonl"), ("llava", ".parquet"),
                                         ("videochatgpt", ".json"), ("llavidal", ".json")])
@pytest.mark.slow
def test_same_samples_labels_and_order_as_todays_reader(proc, tmp_path, fmt, suffix):
    records = {"llava": llava, "videochatgpt": videochatgpt, "llavidal": llavidal}[fmt](12)
    (tmp_path / "ref").mkdir()
    ref = write(tmp_path / "ref" / "set.json", records)  # today's reader takes JSON only
    path = write(tmp_path / f"set{suffix}", records)
    old = read_instruction_records(ref)
    new, rows = read_training_records([str(path)], num_proc=2 if suffix == ".json" else None)
    for r in old:  # the reference copy lives one folder down: same relative paths, other root
        r["video_path"] = r["video_path"] and r["video_path"].replace("/ref/", "/")
        r["skeleton_path"] = r["skeleton_path"] and r["skeleton_path"].replace("/ref/", "/")
    assert new == old
    tokenized = tokenize_set(rows, proc, cache_dir=tmp_path / "tok")
    spy = CountingProcessor(proc.tokenizer, num_video_tokens=N_V, num_skeleton_tokens=N_S)
    kw = dict(p_inject=0.5, seed=3, skip_bad=True, source=str(path))
    ds_old = LvlmDataset(old, proc, Features(), **kw)
    CountingProcessor.calls = 0
    ds_new = LvlmDataset(new, PretokenizedProcessor(spy, tokenized), Features(), **kw)
    assert CountingProcessor.calls == 0  # every example came from the tokenised columns
    assert ds_new.skipped == ds_old.skipped and ds_new.lengths == ds_old.lengths
    assert [s.id for s in ds_old.skipped] == (["v_5"] if fmt == "llava" else [])
    for epoch in (0, 1):
        ds_old.set_epoch(epoch), ds_new.set_epoch(epoch)
        batches, batches_new = (LengthGroupedBatches(d.lengths, 3, seed=3) for d in (ds_old, ds_new))
        batches.set_epoch(epoch), batches_new.set_epoch(epoch)
        assert list(batches_new) == list(batches)
        for batch in batches:
            for i in batch:
                a, b = ds_old[i], ds_new[i]
                assert a["id"] == b["id"] and a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]
                for k in ("video_features", "skeleton_features"):
                    assert (a[k] is None and b[k] is None) or torch.equal(a[k], b[k])
    assert CountingProcessor.calls == 0


def test_tokenisation_is_cached_and_keyed_by_tokenizer_and_template(proc, tmp_path):
    rows = load_instruction_set(write(tmp_path / "set.jsonl", llava(10)))
    first = tokenize_set(rows, proc, cache_dir=tmp_path / "tok")

    def refuse(*a, **k):
        raise AssertionError("tokenised again")

    same = SkiLvlmProcessor(proc.tokenizer, num_video_tokens=N_V, num_skeleton_tokens=N_S)
    same.build_example = refuse  # same tokenizer and settings: the cache must answer
    again = tokenize_set(rows, same, cache_dir=tmp_path / "tok")
    assert again.cache_files == first.cache_files and again["input_ids"] == first["input_ids"]
    # another template (its system prompt) or another tokenizer (one more token): another cache entry
    other_template = SkiLvlmProcessor(proc.tokenizer, system_prompt="Answer briefly.", num_video_tokens=N_V,
                                      num_skeleton_tokens=N_S)
    tok = copy.deepcopy(proc.tokenizer)
    tok.add_tokens(["<extra>"])
    other_tokenizer = SkiLvlmProcessor(tok, num_video_tokens=N_V, num_skeleton_tokens=N_S)
    keys = {tokenizer_fingerprint(p) for p in (proc, same, other_template, other_tokenizer)}
    assert len(keys) == 3
    other = tokenize_set(rows, other_template, cache_dir=tmp_path / "tok")
    assert other.cache_files != first.cache_files and other["input_ids"] != first["input_ids"]
    tokenize_set(rows, other_tokenizer, cache_dir=tmp_path / "tok")
    assert len(list((tmp_path / "tok").glob("tokenized-*.arrow"))) == 3
    ok = [i for i, e in enumerate(first["error"]) if e is None]
    ex = proc.build_example(json.loads(rows[ok[1]]["conversations"]), has_video=True)
    assert first[ok[1]]["input_ids"] == ex.input_ids and first[ok[1]]["labels"] == ex.labels


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_streaming_yields_the_same_first_samples(proc, tmp_path, suffix):
    path = write(tmp_path / f"set{suffix}", llava(40))
    full = load_instruction_set(path)
    stream = load_instruction_set(path, streaming=True)
    assert list(stream.take(8)) == full.select(range(8)).to_list()
    toks = list(tokenize_set(stream, proc).take(8))
    ref = tokenize_set(full, proc, cache_dir=tmp_path / "tok").select(range(8)).to_list()
    assert toks == ref


@pytest.mark.slow
def test_a_mixture_draws_each_set_at_its_ratio(tmp_path):
    a = load_instruction_set(write(tmp_path / "a.jsonl", llava(400, "a")))
    b = load_instruction_set(write(tmp_path / "b.json", videochatgpt(400)))
    mixed = mix_sets([a, b], [3, 1], seed=0)  # ratios are normalised: 0.75 / 0.25
    ids = mixed["id"]
    head = ids[:400]
    share = sum(i.startswith("a_") for i in head) / len(head)
    assert abs(share - 0.75) < 0.06, share
    # first_exhausted: it ends when the 0.75 set runs out, and nothing repeats
    assert sum(i.startswith("a_") for i in ids) == 400 and len(set(ids)) == len(ids)
    assert [i for i in ids if i.startswith("a_")] == a["id"]  # each set keeps its own order
    assert mix_sets([a, b], [3, 1], seed=0)["id"] == ids and mix_sets([a, b], [3, 1], seed=1)["id"] != ids
    streamed = mix_sets([a.to_iterable_dataset(), b.to_iterable_dataset()], [0.2, 0.8], seed=0)
    head = [r["id"] for r in streamed.take(400)]
    assert abs(sum(i.startswith("c_") for i in head) / 400 - 0.8) < 0.06
    recs, _ = read_training_records([str(tmp_path / "a.jsonl"), str(tmp_path / "b.json")], [3, 1], seed=0)
    assert [r["id"] for r in recs] == ids
    with pytest.raises(ValueError, match="2 sets need 2"):
        mix_sets([a, b], [1.0], seed=0)


def test_data_instructions_writes_a_datasets_folder(tmp_path, capsys):
    from data_tools.instructions import main

    src = write(tmp_path / "vcg.json", videochatgpt(6))
    assert main(["convert", str(src), str(tmp_path / "ds"), "--to", "datasets", "--video-template",
                 "clips/{id}.mp4"]) == 0
    assert "6 rows" in capsys.readouterr().out
    llava_json = tmp_path / "llava.json"
    assert main(["convert", str(src), str(llava_json), "--video-template", "clips/{id}.mp4"]) == 0
    rows = load_instruction_set(tmp_path / "ds")
    assert to_records(rows) == read_instruction_records(llava_json)
    assert rows[0]["video_path"] == str(tmp_path / "clips" / "c_0.mp4")
    recs, _ = read_training_records([str(tmp_path / "ds")])
    assert recs == read_instruction_records(llava_json)
