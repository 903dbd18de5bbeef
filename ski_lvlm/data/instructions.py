"""Instruction data: convert between Video-ChatGPT, LLAVIDAL, SKI and the toolkit's LLaVA format; make QA.

The toolkit's format (LLaVA conversation records, paths relative to the JSON file's folder)::

    {"id": "S001C001P001R001A001", "video": "videos/S001C001P001R001A001.mp4",
     "skeleton": "skeletons/S001C001P001R001A001.skeleton",            # optional
     "conversations": [{"from": "human", "value": "<video>\\n<skeleton>\\nWhat is the person doing?"},
                       {"from": "gpt", "value": "..."}]}

Placeholders: ``<video>`` and ``<skeleton>`` (LLAVIDAL writes ``<human_pose>``, SKI ``<pose>``; both are
renamed). Records this module *creates* put the placeholders at the front of the first human turn, one
per line (``<video>\\n<skeleton>\\n``); records *converted* from LLAVIDAL keep the source layout (before or
after the question) so the conversion back is exact. Unknown keys are carried through unchanged.

Round trips (tested): Video-ChatGPT -> LLaVA -> Video-ChatGPT, LLAVIDAL -> LLaVA -> LLAVIDAL and SKI's
list-of-lists QA -> LLaVA -> SKI QA reproduce the input exactly, given the same templates. The one
lossy step is by design: LLAVIDAL's ``<object>`` placeholder is dropped from the text (the toolkit has no
object modality; SKI left it in as literal text, original-system.md §6.2); the ``object`` key is kept and
the placeholder is restored on the way back.

QA generation: :func:`template_qa` is deterministic given a seed (each video's questions depend only on
the seed and the video id, not on the order of the input); :func:`write_qa_with_llm` asks any
OpenAI-compatible chat endpoint (``ski_lvlm.llm_client.ChatClient``) and retries malformed answers a
bounded number of times, reporting each item that never parsed instead of looping forever.
"""

from __future__ import annotations

import ast
import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol

__all__ = [
    "VIDEO_TOKEN", "SKELETON_TOKEN", "OBJECT_TOKEN", "LLAVIDAL_POSE_TOKEN", "SKI_POSE_TOKEN",
    "InstructionFormatError", "validate_llava", "strip_placeholders", "make_record", "add_placeholders",
    "from_videochatgpt", "to_videochatgpt", "from_llavidal", "to_llavidal", "from_ski_qa", "to_ski_qa",
    "qa_pairs", "detect_format", "to_llava", "read_instruction_records", "TemplateSample", "template_qa",
    "QAWriterConfig", "parse_qa_answer", "write_qa_with_llm", "QA_SYSTEM_PROMPT",
]

VIDEO_TOKEN = "<video>"
SKELETON_TOKEN = "<skeleton>"
OBJECT_TOKEN = "<object>"
LLAVIDAL_POSE_TOKEN = "<human_pose>"
SKI_POSE_TOKEN = "<pose>"
_PLACEHOLDERS = (VIDEO_TOKEN, SKELETON_TOKEN)
_POSE_TOKENS = (LLAVIDAL_POSE_TOKEN, SKI_POSE_TOKEN)


class InstructionFormatError(ValueError):
    """A record that does not fit the expected instruction format; names the source and item index."""

    def __init__(self, source: str, index: int | None, msg: str):
        self.source, self.index = source, index
        where = f"{source}[{index}]" if index is not None else source
        super().__init__(f"{where}: {msg}")


# ---------------------------------------------------------------------------------------------------
# LLaVA records

def validate_llava(records: Any, source: str = "<records>") -> list[dict]:
    """Check the toolkit's LLaVA format; returns the records or raises one error naming the item."""
    if not isinstance(records, list):
        raise InstructionFormatError(source, None, f"expected a JSON list of records, got {type(records).__name__}")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise InstructionFormatError(source, i, "record is not an object")
        for key in ("id", "conversations"):
            if key not in r:
                raise InstructionFormatError(source, i, f"missing key {key!r}")
        conv = r["conversations"]
        if not isinstance(conv, list) or not conv or len(conv) % 2:
            raise InstructionFormatError(source, i, "conversations must be a non-empty list of human/gpt pairs")
        for j, turn in enumerate(conv):
            want = "human" if j % 2 == 0 else "gpt"
            if not isinstance(turn, dict) or turn.get("from") != want or not isinstance(turn.get("value"), str):
                raise InstructionFormatError(source, i, f"conversations[{j}] must be {{'from': '{want}', 'value': str}}")
    return records


def strip_placeholders(text: str, tokens: Iterable[str] = _PLACEHOLDERS + _POSE_TOKENS + (OBJECT_TOKEN,)) -> str:
    """Remove modality placeholders and the one newline that separates each from the text."""
    pattern = "|".join(re.escape(t) for t in tokens)
    # A placeholder run at the start ("<video>\n<skeleton>\n...") or at the end ("...\n<video><object>").
    text = re.sub(rf"^(?:(?:{pattern})\n?)+", "", text)
    text = re.sub(rf"\n?(?:{pattern})+$", "", text)
    return re.sub(pattern, "", text)


def add_placeholders(question: str, skeleton: bool) -> str:
    """The canonical first human turn: ``<video>\\n[<skeleton>\\n]question``."""
    return VIDEO_TOKEN + "\n" + (SKELETON_TOKEN + "\n" if skeleton else "") + question


def make_record(sample_id: str, qa: list[tuple[str, str]], video: str | None, skeleton: str | None = None,
                **extra: Any) -> dict:
    """One LLaVA record with the placeholders in the first human turn."""
    if not qa:
        raise ValueError(f"{sample_id}: no question/answer pairs")
    rec: dict[str, Any] = {"id": sample_id}
    if video is not None:
        rec["video"] = video
    if skeleton is not None:
        rec["skeleton"] = skeleton
    rec.update(extra)
    conv = []
    for k, (q, a) in enumerate(qa):
        human = add_placeholders(q, skeleton is not None) if k == 0 and video is not None else q
        conv += [{"from": "human", "value": human}, {"from": "gpt", "value": a}]
    rec["conversations"] = conv
    return rec


def qa_pairs(record: dict) -> list[tuple[str, str]]:
    """(question without placeholders, answer) per round of a LLaVA record."""
    conv = record["conversations"]
    return [(strip_placeholders(conv[j]["value"]), conv[j + 1]["value"]) for j in range(0, len(conv) - 1, 2)]


# ---------------------------------------------------------------------------------------------------
# Video-ChatGPT: [{"video_id", "q", "a"}], one QA per item

def from_videochatgpt(items: list[dict], video_template: str = "{id}.mp4", skeleton_template: str | None = None,
                      source: str = "<videochatgpt>") -> list[dict]:
    """One LLaVA record per QA item (``id`` = ``video_id``), in input order.

    ``video_template``/``skeleton_template`` turn the id into paths (relative to the output JSON's folder),
    e.g. ``videos/{id}.mp4``; extra keys of an item are kept.
    """
    if not isinstance(items, list):
        raise InstructionFormatError(source, None, "expected a JSON list of {video_id, q, a}")
    out = []
    for i, it in enumerate(items):
        if not isinstance(it, dict) or not all(isinstance(it.get(k), str) for k in ("video_id", "q", "a")):
            raise InstructionFormatError(source, i, "expected {'video_id': str, 'q': str, 'a': str}")
        vid = it["video_id"]
        extra = {k: v for k, v in it.items() if k not in ("video_id", "q", "a")}
        out.append(make_record(vid, [(it["q"], it["a"])], video_template.format(id=vid),
                               skeleton_template.format(id=vid) if skeleton_template else None, **extra))
    return out


def to_videochatgpt(records: list[dict], keep_extra: bool = True) -> list[dict]:
    """Each human/gpt round becomes one ``{video_id, q, a}`` item (placeholders removed)."""
    out = []
    for r in records:
        extra = {k: v for k, v in r.items() if k not in ("id", "video", "skeleton", "conversations")} if keep_extra else {}
        for q, a in qa_pairs(r):
            out.append({"video_id": r["id"], "q": q, "a": a, **extra})
    return out


# ---------------------------------------------------------------------------------------------------
# LLAVIDAL: {"id", "video", "pose", "object"?, "conversations"} with <video><object><human_pose>

def from_llavidal(records: list[dict], source: str = "<llavidal>") -> list[dict]:
    """Rename ``pose`` -> ``skeleton`` and ``<human_pose>``/``<pose>`` -> ``<skeleton>``; drop ``<object>``.

    The placeholder layout (before/after the question) is kept. When a record carried ``<object>`` in
    its text but no ``object`` key (SKI's converter does that), ``"object_placeholder": true`` is set so
    :func:`to_llavidal` restores it.
    """
    if not isinstance(records, list):
        raise InstructionFormatError(source, None, "expected a JSON list of LLAVIDAL records")
    out = []
    for i, r in enumerate(records):
        if not isinstance(r, dict) or "conversations" not in r or "id" not in r:
            raise InstructionFormatError(source, i, "expected {'id', 'video', 'conversations', ...}")
        rec: dict[str, Any] = {}
        had_object_token = False
        for k, v in r.items():
            if k == "pose":
                rec["skeleton"] = v
            elif k == "conversations":
                conv = []
                for turn in v:
                    if not isinstance(turn, dict) or "value" not in turn:
                        raise InstructionFormatError(source, i, "conversation turns must be {'from', 'value'}")
                    value = turn["value"]
                    had_object_token |= OBJECT_TOKEN in value
                    for t in _POSE_TOKENS:
                        value = value.replace(t, SKELETON_TOKEN)
                    conv.append({**turn, "value": value.replace(OBJECT_TOKEN, "")})
                rec["conversations"] = conv
            else:
                rec[k] = v
        if had_object_token and "object" not in r:
            rec["object_placeholder"] = True
        out.append(rec)
    return validate_llava(out, source)


def to_llavidal(records: list[dict], pose_token: str = LLAVIDAL_POSE_TOKEN) -> list[dict]:
    """Inverse of :func:`from_llavidal` (``pose_token`` = ``<human_pose>`` for LLAVIDAL, ``<pose>`` for SKI)."""
    out = []
    for r in records:
        with_object = "object" in r or r.get("object_placeholder", False)
        rec: dict[str, Any] = {}
        for k, v in r.items():
            if k == "skeleton":
                rec["pose"] = v
            elif k == "object_placeholder":
                continue
            elif k == "conversations":
                conv = []
                for turn in v:
                    value = turn["value"].replace(SKELETON_TOKEN, pose_token)
                    if with_object and turn.get("from") == "human":
                        value = value.replace(VIDEO_TOKEN, VIDEO_TOKEN + OBJECT_TOKEN)
                    conv.append({**turn, "value": value})
                rec["conversations"] = conv
            else:
                rec[k] = v
        out.append(rec)
    return out


# ---------------------------------------------------------------------------------------------------
# SKI annotation output: [[{"Q", "A"}, ..., {"id": vid}], ...]

def from_ski_qa(items: list, video_template: str = "{id}.mp4", skeleton_template: str | None = None,
                source: str = "<ski-qa>") -> list[dict]:
    """One multi-turn LLaVA record per video from SKI's list-of-lists QA output (§6.1)."""
    if not isinstance(items, list):
        raise InstructionFormatError(source, None, "expected a JSON list of [{Q, A}, ..., {id}] lists")
    out = []
    for i, group in enumerate(items):
        if not isinstance(group, list) or not group:
            raise InstructionFormatError(source, i, "expected a non-empty list [{Q, A}, ..., {id}]")
        ids = [g["id"] for g in group if isinstance(g, dict) and "id" in g and "Q" not in g]
        qa = [(g["Q"], g["A"]) for g in group if isinstance(g, dict) and "Q" in g and "A" in g]
        if len(ids) != 1 or len(qa) + 1 != len(group):
            raise InstructionFormatError(source, i, "each list needs {Q, A} items and exactly one {id} item")
        vid = str(ids[0])
        out.append(make_record(vid, qa, video_template.format(id=vid),
                               skeleton_template.format(id=vid) if skeleton_template else None))
    return out


def to_ski_qa(records: list[dict]) -> list[list[dict]]:
    """Inverse of :func:`from_ski_qa`: ``[[{"Q", "A"}, ..., {"id": id}], ...]``."""
    return [[{"Q": q, "A": a} for q, a in qa_pairs(r)] + [{"id": r["id"]}] for r in records]


def detect_format(data: Any) -> str:
    """Guess ``llava`` / ``llavidal`` / ``videochatgpt`` / ``ski-qa`` from a loaded JSON value."""
    if isinstance(data, list) and data:
        first = data[0]
        if isinstance(first, list):
            return "ski-qa"
        if isinstance(first, dict):
            if {"video_id", "q", "a"} <= first.keys():
                return "videochatgpt"
            if "conversations" in first:
                text = " ".join(t.get("value", "") for r in data[:50] for t in r.get("conversations", [])
                                if isinstance(t, dict))
                if "pose" in first or any(t in text for t in _POSE_TOKENS + (OBJECT_TOKEN,)):
                    return "llavidal"
                return "llava"
    raise InstructionFormatError("<input>", None, "cannot tell the format (expected a non-empty JSON list of "
                                 "Video-ChatGPT items, LLaVA/LLAVIDAL records or SKI [{Q,A},...,{id}] lists)")


def to_llava(data: Any, fmt: str = "auto", video_template: str = "{id}.mp4", skeleton_template: str | None = None,
             source: str = "<input>") -> list[dict]:
    """Any supported format -> toolkit LLaVA records."""
    fmt = detect_format(data) if fmt == "auto" else fmt
    if fmt == "videochatgpt":
        return from_videochatgpt(data, video_template, skeleton_template, source)
    if fmt == "ski-qa":
        return from_ski_qa(data, video_template, skeleton_template, source)
    if fmt == "llavidal":
        return from_llavidal(data, source)
    if fmt == "llava":
        return validate_llava(data, source)
    raise ValueError(f"unknown instruction format {fmt!r}")


def read_instruction_records(path: str | Path) -> list[dict]:
    """Read LLaVA / LLAVIDAL / SKI / Video-ChatGPT instruction JSON as LLaVA records with absolute paths.

    Each record gets ``id``, ``conversations`` and ``video_path`` / ``skeleton_path`` (absolute, resolved
    against the JSON's folder; ``None`` when absent). LLAVIDAL's ``pose`` key counts as the skeleton.
    Video-ChatGPT items become one single-turn record each (``video`` = ``<video_id>.mp4``).
    ``train lvlm`` reads through :mod:`ski_lvlm.data.instruction_sets`, which gives the same records.

    Raises:
        ValueError: invalid JSON (file and line) or a record that fits no format (names the record).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    records = to_llava(data, fmt=detect_format(data), source=str(path))
    root = path.resolve().parent

    def resolve(v: str | None) -> str | None:
        return os.path.normpath(v if os.path.isabs(v) else root / v) if v else None

    return [{**rec, "id": str(rec.get("id", i)), "video_path": resolve(rec.get("video")),
             "skeleton_path": resolve(rec.get("skeleton") or rec.get("pose"))} for i, rec in enumerate(records)]


# ---------------------------------------------------------------------------------------------------
# Deterministic template QA

@dataclass
class TemplateSample:
    """What we know about one video: its action labels (in temporal order) and captions."""

    video_id: str
    labels: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)
    """Extra ready-made (question, answer) pairs, e.g. Charades objects or scene."""


_ACTION_Q = ("What is the person doing in this video?", "What action does the person perform?",
             "Which activity is shown in the video?")
_ACTIONS_Q = ("Which actions does the person perform, in order?", "List the activities in the video in the "
              "order they happen.")
_DESCRIBE_Q = ("Describe what happens in the video.", "Describe the video in detail.",
               "Can you describe the person's activity in this video?")
_YESNO_Q = 'Is the person performing the action "{label}"?'


def _join_labels(labels: list[str]) -> str:
    quoted = [f'"{x}"' for x in labels]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def template_qa(samples: list[TemplateSample], seed: int = 0, per_video: int = 3,
                all_labels: list[str] | None = None) -> list[dict]:
    """Video-ChatGPT items ``[{video_id, q, a}]`` from labels and captions, deterministic in ``seed``.

    Candidates per video: an action question (one label), an ordered-actions question (several labels),
    a description question per caption, a yes/no question against a different label from
    ``all_labels`` (when given), and the sample's ready-made ``facts``. ``per_video`` of them are drawn
    with a generator seeded by ``(seed, video_id)``, so adding or reordering videos never changes the
    questions of the others.
    """
    out = []
    for s in samples:
        rng = random.Random(f"{seed}:{s.video_id}")
        cands: list[tuple[str, str]] = []
        uniq = list(dict.fromkeys(s.labels))
        if len(uniq) == 1:
            cands.append((rng.choice(_ACTION_Q), f"The person performs the action {_join_labels(uniq)}."))
        elif len(uniq) > 1:
            cands.append((rng.choice(_ACTIONS_Q), f"The person performs {_join_labels(s.labels)}, in this order."))
        for cap in s.captions:
            cands.append((rng.choice(_DESCRIBE_Q), cap))
        if uniq:
            cands.append((_YESNO_Q.format(label=uniq[0]), "Yes."))
            others = [x for x in (all_labels or []) if x not in uniq]
            if others:
                neg = rng.choice(others)
                cands.append((_YESNO_Q.format(label=neg), f"No. The person performs the action {_join_labels(uniq[:1])}."))
        cands.extend(s.facts)
        for q, a in rng.sample(cands, min(per_video, len(cands))):
            out.append({"video_id": s.video_id, "q": q, "a": a})
    return out


# ---------------------------------------------------------------------------------------------------
# QA writing through an OpenAI-compatible endpoint

@dataclass
class QAWriterConfig:
    """Settings of ``ski-lvlm data instructions llm-qa`` (any OpenAI-compatible chat endpoint)."""

    base_url: str = "http://127.0.0.1:11434/v1"
    """Endpoint root, e.g. a local ollama/vLLM server; the client posts to ``{base_url}/chat/completions``."""
    model: str = "llama3.1"
    """Model name sent to the endpoint."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key (may be unset for local servers)."""
    timeout: float = 60.0
    """Seconds per HTTP request."""
    max_retries: int = 2
    """Transport-level retries inside the client (connection errors, 5xx, 429)."""
    attempts: int = 3
    """Requests per item until a well-formed answer arrives; after that the item is reported as failed."""
    num_questions: int = 3
    """QA pairs asked for per video."""
    temperature: float = 0.2
    max_tokens: int = 1024
    seed: int = 0

    def validate(self) -> list[str]:
        problems = []
        if not self.base_url.startswith(("http://", "https://")):
            problems.append("base_url: must start with http:// or https://")
        if self.attempts < 1:
            problems.append("attempts: must be >= 1")
        if self.num_questions < 1:
            problems.append("num_questions: must be >= 1")
        if self.timeout <= 0:
            problems.append("timeout: must be > 0")
        return problems


QA_SYSTEM_PROMPT = (
    "You write question-answer pairs for training a video assistant on activities of daily living. "
    "Use only the information given about the video. Reply with a JSON list only, no prose: "
    '[{"Q": "question", "A": "answer"}, ...]'
)


class _Chat(Protocol):
    def chat(self, messages: list[dict], **gen: Any) -> str: ...


def _qa_prompt(s: TemplateSample, n: int) -> str:
    lines = [f"Video id: {s.video_id}"]
    if s.labels:
        lines.append("Actions (in order): " + "; ".join(s.labels))
    if s.captions:
        lines.append("Descriptions:\n" + "\n".join(f"- {c}" for c in s.captions))
    lines.append(f"Write {n} diverse question-answer pairs about what the person does in this video "
                 "(actions, their order, objects, body movements). Answers are full sentences.")
    return "\n".join(lines)


def parse_qa_answer(text: str, max_items: int | None = None) -> list[tuple[str, str]]:
    """Parse an LLM reply into (Q, A) pairs; raises ValueError saying what is wrong.

    Accepts a JSON (or Python-literal) list of objects with ``Q``/``A`` (or ``question``/``answer``) keys,
    optionally inside a Markdown code fence or surrounded by prose.
    """
    start, end = text.find("["), text.rfind("]")
    if start < 0 or end <= start:
        raise ValueError("no JSON list in the answer")
    body = text[start:end + 1]
    try:
        data = json.loads(body)
    except json.JSONDecodeError:
        try:
            data = ast.literal_eval(body)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            raise ValueError("the list in the answer is neither JSON nor a Python literal") from None
    if not isinstance(data, list) or not data:
        raise ValueError("the answer's list is empty")
    pairs = []
    for item in data:
        if not isinstance(item, dict):
            raise ValueError("list items must be objects with Q and A")
        low = {str(k).lower(): v for k, v in item.items()}
        q, a = low.get("q", low.get("question")), low.get("a", low.get("answer"))
        if not isinstance(q, str) or not isinstance(a, str) or not q.strip() or not a.strip():
            raise ValueError("an item lacks a non-empty string Q or A")
        pairs.append((q.strip(), a.strip()))
    return pairs[:max_items] if max_items else pairs


def write_qa_with_llm(samples: list[TemplateSample], client: _Chat, num_questions: int = 3, attempts: int = 3,
                      progress: bool = False, **gen: Any) -> tuple[list[dict], list[dict]]:
    """Ask ``client`` for QA pairs per video.

    Returns:
        (Video-ChatGPT items ``[{video_id, q, a}]``, failures ``[{video_id, attempts, error, last_answer}]``).
        An item fails after ``attempts`` malformed answers or transport errors; it never loops forever.
    """
    from tqdm import tqdm

    items, failures = [], []
    for s in tqdm(samples, desc="llm-qa", unit="video", disable=not progress):
        messages = [{"role": "system", "content": QA_SYSTEM_PROMPT},
                    {"role": "user", "content": _qa_prompt(s, num_questions)}]
        error, answer = "", ""
        for _ in range(attempts):
            try:
                answer = client.chat(messages, **gen)
                pairs = parse_qa_answer(answer, num_questions)
            except ValueError as e:
                error = f"malformed answer: {e}"
                continue
            except Exception as e:  # transport errors after the client's own retries
                error = f"request failed: {type(e).__name__}: {e}"
                continue
            items.extend({"video_id": s.video_id, "q": q, "a": a} for q, a in pairs)
            break
        else:
            failures.append({"video_id": s.video_id, "attempts": attempts, "error": error,
                             "last_answer": (answer or "")[:500]})
    return items, failures
