"""Instruction data through Hugging Face ``datasets``: files, saved folders, streaming, mixtures, cached tokenisation.

Why ``datasets`` rather than ``json.loads``: the records live in memory-mapped Arrow files (a set larger than
memory stays on disk), tokenisation runs in ``num_proc`` processes once and is cached on disk, a set can be
streamed, and several sets mix with sampling ratios (``interleave_datasets``, as LLaMA-Factory's
``interleave_probs``).

Sources (:func:`load_instruction_set`): LLaVA / LLAVIDAL / Video-ChatGPT records as ``.json`` (a list),
``.jsonl`` or ``.parquet``, or a folder written by ``Dataset.save_to_disk`` (``ski-lvlm data instructions
convert IN OUT --to datasets``). SKI's list-of-lists QA JSON has no row form; it is converted in memory.

Every source becomes one schema, ``RECORD_FEATURES``: ``id``, ``conversations`` (the turns as a JSON string:
turns of any shape survive Arrow unchanged), ``video_path`` / ``skeleton_path`` (absolute; relative paths
resolve against the source file's folder, as :func:`~ski_lvlm.data.instructions.read_instruction_records`
does) and ``meta`` (the record's other keys, as JSON). :func:`to_records` turns rows back into the dicts that
``read_instruction_records`` returns: the same records in the same order, so the trainer's seeded batches,
samples and labels are unchanged (``tests/ski_lvlm/data/test_instruction_sets.py``).

Tokenisation (:func:`tokenize_set`) maps ``processor.build_example`` over the rows, with and without skeleton
tokens. The result is cached under a fingerprint of the rows, the tokenizer (its vocabulary, special tokens
and chat template) and the processor settings. :class:`PretokenizedProcessor` then answers
``build_example`` from those columns, so :class:`~ski_lvlm.data.lvlm_dataset.LvlmDataset` runs unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = ["RECORD_FEATURES", "load_instruction_set", "mix_sets", "to_records", "tokenize_set", "tokenizer_fingerprint",
           "PretokenizedProcessor", "save_instruction_set", "read_training_records", "read_training_stream"]

def _features():
    from datasets import Features, Value

    return Features({"id": Value("string"), "conversations": Value("string"), "video_path": Value("string"),
                     "skeleton_path": Value("string"), "meta": Value("string")})


RECORD_FEATURES = ("id", "conversations", "video_path", "skeleton_path", "meta")


def _drop_nulls(x: Any) -> Any:
    """Remove the ``None`` values Arrow adds when it unifies records with different keys (recursively)."""
    if isinstance(x, dict):
        return {k: _drop_nulls(v) for k, v in x.items() if v is not None}
    if isinstance(x, list):
        return [_drop_nulls(v) for v in x]
    return x


def _to_row(raw: dict, idx: int, *, fmt: str, root: str, source: str) -> dict[str, str | None]:
    """One raw record (any format) -> a ``RECORD_FEATURES`` row, exactly as ``read_instruction_records``."""
    from ski_lvlm.data.instructions import to_llava

    try:
        rec = to_llava([_drop_nulls(dict(raw))], fmt=fmt, source=source)[0]  # map passes a dict-like row
    except ValueError as e:
        raise ValueError(f"{source} record {idx}: {e}") from None

    def resolve(v: str | None) -> str | None:
        return os.path.normpath(v if os.path.isabs(v) else os.path.join(root, v)) if v else None

    video, skeleton = resolve(rec.get("video")), resolve(rec.get("skeleton") or rec.get("pose"))
    meta = {k: v for k, v in rec.items() if k not in ("id", "conversations", "video_path", "skeleton_path")}
    return {"id": str(rec.get("id", idx)), "conversations": json.dumps(rec["conversations"], ensure_ascii=False),
            "video_path": video, "skeleton_path": skeleton, "meta": json.dumps(meta, ensure_ascii=False)}


def _read_raw(path: Path, streaming: bool):
    """The file or folder as a ``datasets`` (Iterable)Dataset of raw rows, or None for a non-row JSON."""
    import datasets

    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
        return ds.to_iterable_dataset() if streaming else ds
    kind = {".json": "json", ".jsonl": "json", ".parquet": "parquet"}.get(path.suffix.lower())
    if kind is None:
        raise ValueError(f"{path}: expected a .json, .jsonl or .parquet file or a saved datasets folder")
    if path.suffix.lower() == ".json":
        with path.open(encoding="utf-8") as f:
            head = f.read(4096).lstrip()
        if head.startswith("[") and head[1:].lstrip().startswith("["):
            return None  # SKI's [[{Q, A}, ..., {id}], ...]: no row per record
    try:
        return datasets.load_dataset(kind, data_files=str(path), split="train", streaming=streaming)
    except (datasets.exceptions.DatasetGenerationError, ValueError) as e:
        cause = e.__cause__ or e
        raise ValueError(f"{path}: datasets cannot read it ({type(cause).__name__}: {str(cause)[:300]})") from None


def load_instruction_set(path: str | Path, *, streaming: bool = False, num_proc: int | None = None):
    """A set of instruction records as a ``datasets.Dataset`` (``IterableDataset`` when ``streaming``).

    Columns are ``RECORD_FEATURES``; rows are in file order. ``num_proc`` converts in that many processes.
    """
    import datasets

    from ski_lvlm.data.instructions import detect_format, to_llava

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    raw = _read_raw(path, streaming)
    source, root = str(path), str((path if path.is_dir() else path.parent).resolve())
    if raw is None:  # SKI list-of-lists: converted in memory (these files are small annotation outputs)
        recs = to_llava(json.loads(path.read_text(encoding="utf-8")), source=source)
        rows = [_to_row(r, i, fmt="llava", root=root, source=source) for i, r in enumerate(recs)]
        ds = datasets.Dataset.from_list(rows, features=_features())
        return ds.to_iterable_dataset() if streaming else ds
    if set(raw.column_names or ()) == set(RECORD_FEATURES):  # saved by save_instruction_set
        return raw
    head = raw.take(50) if streaming else raw.select(range(min(50, len(raw))))
    fmt = detect_format([_drop_nulls(dict(r)) for r in head])  # as read_instruction_records: from the first records
    kw: dict[str, Any] = dict(with_indices=True, remove_columns=raw.column_names, features=_features(),
                              fn_kwargs={"fmt": fmt, "root": root, "source": source})
    if not streaming:
        kw.update(num_proc=num_proc if num_proc and num_proc > 1 else None, desc=f"reading {path.name}")
    return raw.map(_to_row, **kw)


def mix_sets(sets: Sequence[Any], probabilities: Sequence[float] | None, *, seed: int = 0,
             stopping_strategy: str = "first_exhausted"):
    """Several sets as one: each next sample comes from set ``k`` with probability ``probabilities[k]``.

    ``interleave_datasets`` with a seed, so the mixture (and its order) is the same on every run.
    ``first_exhausted`` stops when one set runs out (no sample repeats); ``all_exhausted`` oversamples the
    smaller sets until every set has been seen once. One set is returned unchanged.
    """
    from datasets import interleave_datasets

    if len(sets) == 1:
        return sets[0]
    if probabilities is not None:
        if len(probabilities) != len(sets) or any(p < 0 for p in probabilities) or sum(probabilities) <= 0:
            raise ValueError(f"{len(sets)} sets need {len(sets)} non-negative ratios, got {list(probabilities)}")
        total = float(sum(probabilities))
        probabilities = [p / total for p in probabilities]
    return interleave_datasets(list(sets), probabilities=probabilities, seed=seed,
                               stopping_strategy=stopping_strategy)


def to_records(rows: Iterable[dict]) -> list[dict]:
    """``RECORD_FEATURES`` rows -> ``read_instruction_records``-style dicts (``id``, ``conversations``, paths)."""
    out = []
    for r in rows:
        meta = json.loads(r["meta"]) if r.get("meta") else {}
        out.append({**meta, "id": r["id"], "conversations": json.loads(r["conversations"]),
                    "video_path": r["video_path"], "skeleton_path": r["skeleton_path"]})
    return out


def save_instruction_set(records: Sequence[dict], out_dir: str | Path, *, root: str | Path) -> int:
    """Write LLaVA records (paths relative to ``root``) as a ``datasets`` folder in ``RECORD_FEATURES``."""
    import datasets

    rows = [_to_row(r, i, fmt="llava", root=str(Path(root).resolve()), source=str(out_dir))
            for i, r in enumerate(records)]
    datasets.Dataset.from_list(rows, features=_features()).save_to_disk(str(out_dir))
    return len(rows)


# ---------------------------------------------------------------------------------------------- tokenisation
def tokenizer_fingerprint(processor: Any) -> str:
    """sha256 of what decides the token ids: vocabulary + merges, special tokens, chat template, settings."""
    tok = processor.tokenizer
    backend = getattr(tok, "backend_tokenizer", None)
    vocab = backend.to_str() if backend is not None else json.dumps(sorted(tok.get_vocab().items()))
    blob = json.dumps({"vocab": hashlib.sha256(vocab.encode()).hexdigest(), "class": type(tok).__name__,
                       "special": tok.special_tokens_map, "added": sorted(tok.get_added_vocab().items()),
                       "template": getattr(tok, "chat_template", None), "processor": processor.to_dict()},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _tokenize_row(row: dict, *, processor: Any) -> dict:
    """Input ids and labels with and without skeleton tokens; a sample that cannot be built keeps its error.

    Both variants for every row: whether a sample gets skeleton tokens depends on the feature cache, which
    tokenisation does not see, and the ids depend only on (conversation, has video, skeleton tokens).
    """
    from ski_lvlm.models.lvlm.processing import LabelError

    conv, has_video = json.loads(row["conversations"]), bool(row["video_path"])
    out: dict[str, Any] = {}
    for suffix, skel in (("", False), ("_skel", True)):
        try:
            ex = processor.build_example(conv, has_video=has_video, use_skeleton=skel)
            out |= {f"input_ids{suffix}": ex.input_ids, f"labels{suffix}": ex.labels, f"error{suffix}": None}
        except (LabelError, KeyError, ValueError) as e:
            out |= {f"input_ids{suffix}": [], f"labels{suffix}": [], f"error{suffix}": f"{type(e).__name__}:{e}"}
    return out


def tokenize_set(ds: Any, processor: Any, *, num_proc: int | None = None, cache_dir: str | Path | None = None):
    """``ds`` + columns ``input_ids``/``labels``/``error`` and their ``_skel`` twins (``[n_tokens]`` each).

    A map-style set is tokenised by ``.map(num_proc=...)`` into ``cache_dir`` (default: next to the set's
    Arrow files), keyed by the set's fingerprint and :func:`tokenizer_fingerprint`; a second call with the
    same tokenizer and template loads the cache instead of tokenising. A streaming set is tokenised lazily.
    """
    from datasets import IterableDataset

    if isinstance(ds, IterableDataset):
        return ds.map(_tokenize_row, fn_kwargs={"processor": processor})
    key = hashlib.sha256(f"{ds._fingerprint}:{tokenizer_fingerprint(processor)}".encode()).hexdigest()[:32]
    cache_file = None
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache_file = str(Path(cache_dir) / f"tokenized-{key}.arrow")
    return ds.map(_tokenize_row, fn_kwargs={"processor": processor}, new_fingerprint=key,
                  cache_file_name=cache_file, load_from_cache_file=True,
                  num_proc=num_proc if num_proc and num_proc > 1 else None, desc="tokenising")


class PretokenizedProcessor:
    """A processor whose ``build_example`` answers from :func:`tokenize_set`'s columns (everything else delegates).

    Looked up by the conversation's text and flags, so :class:`~ski_lvlm.data.lvlm_dataset.LvlmDataset` runs
    unchanged and never tokenises. A conversation it has not seen is tokenised by the real processor.
    """

    def __init__(self, processor: Any, tokenized: Any):
        self._processor = processor
        self._tokenized = tokenized
        self._rows = {self._key(c, bool(v)): i for i, (c, v) in
                      enumerate(zip(tokenized["conversations"], tokenized["video_path"]))}

    @staticmethod
    def _key(conversations: str | list, has_video: bool) -> str:
        text = conversations if isinstance(conversations, str) else json.dumps(conversations, ensure_ascii=False)
        return hashlib.sha1(f"{int(has_video)}{text}".encode()).hexdigest()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._processor, name)

    def build_example(self, conversation: list[dict], *, has_video: bool = True, use_skeleton: bool = False):
        from ski_lvlm.models.lvlm.processing import Example, LabelError

        i = self._rows.get(self._key(conversation, has_video))
        if i is None:
            return self._processor.build_example(conversation, has_video=has_video, use_skeleton=use_skeleton)
        suffix = "_skel" if use_skeleton else ""
        row = self._tokenized[i]
        if row[f"error{suffix}"]:
            kind, _, msg = row[f"error{suffix}"].partition(":")
            raise {"KeyError": KeyError, "ValueError": ValueError}.get(kind, LabelError)(msg)
        return Example(row[f"input_ids{suffix}"], row[f"labels{suffix}"], has_video, use_skeleton)


# ---------------------------------------------------------------------------------------------- the trainer's hook
def read_training_records(paths: Sequence[str], probabilities: Sequence[float] | None = None, *, seed: int = 0,
                          stopping_strategy: str = "first_exhausted", num_proc: int | None = None):
    """(records, the rows as a ``datasets.Dataset``) for ``train lvlm``: one set, or a seeded mixture."""
    sets = [load_instruction_set(p, num_proc=num_proc) for p in paths]
    ds = mix_sets(sets, probabilities, seed=seed, stopping_strategy=stopping_strategy)
    return to_records(ds), ds


def read_training_stream(paths: Sequence[str], probabilities: Sequence[float] | None = None, *, seed: int = 0,
                         stopping_strategy: str = "first_exhausted", max_samples: int | None = None):
    """The rows of ``train lvlm --data.streaming`` as an ``IterableDataset``: one set, or a seeded mixture,
    cut to ``max_samples``. Nothing is read until it is iterated."""
    rows = mix_sets([load_instruction_set(p, streaming=True) for p in paths], probabilities, seed=seed,
                    stopping_strategy=stopping_strategy)
    return rows.take(max_samples) if max_samples else rows
