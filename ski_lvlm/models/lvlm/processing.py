"""``SkiLvlmProcessor``: chat template, placeholder expansion and exact assistant-only labels.

One object turns a conversation into model inputs for training *and* inference, so both use the same
template (the original SKI code trained with ``vicuna_v1_1`` and inferred with another system prompt).

* Template: the backbone tokenizer's own chat template through ``apply_chat_template`` when it has one
  (``chat_template="tokenizer"``; e.g. ChatML for Qwen2), or the built-in Vicuna v1.1 format used by
  LLaVA / Video-ChatGPT / LLAVIDAL checkpoints (``"vicuna_v1_1"``). ``"auto"`` picks the former when
  the tokenizer has a template.
* Placeholders: ``<video>`` and ``<skeleton>`` become exactly ``num_video_tokens`` /
  ``num_skeleton_tokens`` copies of an added special token; the model only checks counts.
* Labels: the conversation is rendered once, the character spans of assistant turns are known, and
  the text is tokenised turn by turn (prefix by prefix). Every prefix must tokenise to a prefix of the
  full sequence, so each label boundary is exact; if not, the sample raises :class:`LabelError`
  instead of being silently masked (the FastChat "tokenization mismatch" failure mode).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AddedToken, AutoTokenizer, PreTrainedTokenizerBase

from ski_lvlm.utils.io import atomic_write_json
from ski_lvlm.utils.errors import SkiLvlmError

__all__ = [
    "IGNORE_INDEX", "VICUNA_V1_1_SYSTEM", "LabelError", "Example", "SkiLvlmProcessor", "normalize_conversation",
]

IGNORE_INDEX = -100
VICUNA_V1_1_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
                      "helpful, detailed, and polite answers to the user's questions.")
TEMPLATES = ("auto", "vicuna_v1_1", "tokenizer")
# Pose placeholders of the LLaVA-lineage JSON files; all mean "skeleton tokens go here".
LEGACY_SKELETON_PLACEHOLDERS = ("<human_pose>", "<pose>")
LEGACY_DROPPED_PLACEHOLDERS = ("<object>",)  # LLAVIDAL object tokens: not a modality here
_ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


class LabelError(SkiLvlmError, ValueError):
    """A sample whose inputs/labels cannot be built exactly (never silently masked)."""


@dataclass
class Example:
    """One tokenised training sample."""

    input_ids: list[int]
    labels: list[int]
    has_video: bool
    has_skeleton: bool

    @property
    def num_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def normalize_conversation(conversation: list[dict]) -> list[dict[str, str]]:
    """LLaVA ``{"from", "value"}`` or OpenAI ``{"role", "content"}`` turns -> ``[{"role", "content"}]``.

    Raises:
        LabelError: unknown roles, a non-string value, or turns that do not alternate user/assistant.
    """
    if not isinstance(conversation, list) or not conversation:
        raise LabelError("conversation must be a non-empty list of turns")
    out = []
    for i, turn in enumerate(conversation):
        if not isinstance(turn, dict):
            raise LabelError(f"turn {i}: expected an object, got {turn!r}")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role not in _ROLE_MAP:
            raise LabelError(f"turn {i}: unknown role {role!r} (use human/gpt or user/assistant)")
        if not isinstance(content, str):
            raise LabelError(f"turn {i}: text must be a string, got {type(content).__name__}")
        out.append({"role": _ROLE_MAP[role], "content": content})
    body = out[1:] if out[0]["role"] == "system" else out
    for i, turn in enumerate(body):
        want = "user" if i % 2 == 0 else "assistant"
        if turn["role"] != want:
            raise LabelError(f"turns must alternate user/assistant starting with user; turn {i} is {turn['role']}")
    return out


class SkiLvlmProcessor:
    """Tokenizer + chat template + placeholder expansion + label builder.

    Args:
        tokenizer: the backbone's tokenizer; ``<video>`` / ``<skeleton>`` are added as special tokens
            when missing (``create_lvlm`` grows the backbone's embeddings to match; their rows are
            overwritten by the projected features).
        chat_template: ``auto`` | ``vicuna_v1_1`` | ``tokenizer``.
        num_video_tokens: placeholders per video (must equal the model's ``num_video_tokens``).
        num_skeleton_tokens: placeholders per skeleton sequence.
        system_prompt: system message; ``None`` = Vicuna v1.1's for that template, the tokenizer
            template's own default otherwise.
        max_length: samples longer than this raise :class:`LabelError` (truncation would cut
            placeholders or answers).
    """

    config_name = "processor_config.json"

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        chat_template: str = "auto",
        num_video_tokens: int = 356,
        num_skeleton_tokens: int = 75,
        video_token: str = "<video>",
        skeleton_token: str = "<skeleton>",
        system_prompt: str | None = None,
        max_length: int = 2048,
    ):
        if chat_template not in TEMPLATES:
            raise ValueError(f"chat_template must be one of {TEMPLATES}, got {chat_template!r}")
        if chat_template == "auto":
            chat_template = "tokenizer" if getattr(tokenizer, "chat_template", None) else "vicuna_v1_1"
        if chat_template == "tokenizer" and not getattr(tokenizer, "chat_template", None):
            raise ValueError("chat_template='tokenizer' but the tokenizer has no chat template")
        if chat_template == "vicuna_v1_1" and tokenizer.eos_token is None:
            raise ValueError("the Vicuna v1.1 template needs a tokenizer with an eos_token")
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.num_video_tokens = int(num_video_tokens)
        self.num_skeleton_tokens = int(num_skeleton_tokens)
        self.video_token = video_token
        self.skeleton_token = skeleton_token
        self.system_prompt = system_prompt
        self.max_length = int(max_length)
        missing = [t for t in (video_token, skeleton_token) if t not in tokenizer.get_vocab()]
        if missing:
            tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in missing], special_tokens=True)
        self.video_token_id = tokenizer.convert_tokens_to_ids(video_token)
        self.skeleton_token_id = tokenizer.convert_tokens_to_ids(skeleton_token)
        if tokenizer.pad_token_id is None:
            # Padding positions are masked out by attention_mask and labels; any id works.
            tokenizer.pad_token = tokenizer.eos_token

    # ------------------------------------------------------------------ messages
    def prepare_messages(self, conversation: list[dict], *, has_video: bool = True,
                         use_skeleton: bool = False) -> list[dict[str, str]]:
        """Normalise turns, place one ``<video>`` (and ``<skeleton>`` when asked), expand them.

        * A sample with video but no ``<video>`` in its text gets ``<video>\\n`` before the first question.
        * ``use_skeleton`` puts ``<skeleton>`` right after ``<video>`` (or first) unless already there;
          without it every skeleton placeholder is removed (inference never needs skeletons).
        * LLAVIDAL/SKI ``<pose>`` / ``<human_pose>`` mean ``<skeleton>``; ``<object>`` is dropped.

        Raises:
            LabelError: more than one ``<video>``/``<skeleton>``, ``<video>`` in a sample without video,
                or a placeholder inside an assistant turn.
        """
        messages = normalize_conversation(conversation)
        vt, st = self.video_token, self.skeleton_token
        for m in messages:
            text = m["content"]
            for legacy in LEGACY_SKELETON_PLACEHOLDERS:
                text = text.replace(legacy, st)
            for legacy in LEGACY_DROPPED_PLACEHOLDERS:
                text = text.replace(legacy, "")
            m["content"] = text
        for i, m in enumerate(messages):
            if m["role"] == "assistant" and (vt in m["content"] or st in m["content"]):
                raise LabelError(f"turn {i}: placeholder {vt} or {st} inside an assistant answer")
            if m["role"] == "assistant" and not m["content"].strip():
                raise LabelError(f"turn {i}: empty assistant answer (no assistant tokens to train on)")
        n_video = sum(m["content"].count(vt) for m in messages)
        n_skel = sum(m["content"].count(st) for m in messages)
        if n_video > 1 or n_skel > 1:
            raise LabelError(f"one video and one skeleton per sample: found {n_video} {vt} and {n_skel} {st}")
        first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
        if has_video and n_video == 0:
            messages[first_user]["content"] = f"{vt}\n" + messages[first_user]["content"]
        elif not has_video and n_video:
            raise LabelError(f"the text has {vt} but the sample has no video")
        if use_skeleton and n_skel == 0:
            if has_video:
                for m in messages:
                    if vt in m["content"]:
                        m["content"] = m["content"].replace(vt, vt + st, 1)
            else:
                messages[first_user]["content"] = f"{st}\n" + messages[first_user]["content"]
        elif not use_skeleton and n_skel:
            for m in messages:
                m["content"] = re.sub(re.escape(st) + r"\n?", "", m["content"])
        for m in messages:
            m["content"] = (m["content"].replace(vt, vt * self.num_video_tokens)
                            .replace(st, st * self.num_skeleton_tokens))
        return messages

    # ------------------------------------------------------------------ rendering
    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = False
               ) -> tuple[str, list[tuple[int, int]], bool]:
        """Template text, the character spans of assistant turns, and whether to prepend BOS."""
        if self.chat_template == "vicuna_v1_1":
            return self._render_vicuna(messages, add_generation_prompt)
        return self._render_tokenizer(messages, add_generation_prompt)

    def _render_vicuna(self, messages, add_generation_prompt):
        # FastChat vicuna_v1_1: system + " " + "USER: q ASSISTANT: a</s>USER: q2 ASSISTANT:"
        system = self.system_prompt if self.system_prompt is not None else VICUNA_V1_1_SYSTEM
        if messages and messages[0]["role"] == "system":
            system, messages = messages[0]["content"], messages[1:]
        eos = self.tokenizer.eos_token
        text, spans = system + " ", []
        for m in messages:
            if m["role"] == "user":
                text += "USER: " + m["content"] + " "
            else:
                text += "ASSISTANT:"
                start = len(text)
                text += " " + m["content"] + eos  # trained: the answer and the stop token
                spans.append((start, len(text)))
        if add_generation_prompt:
            text += "ASSISTANT:"
        return text, spans, self.tokenizer.bos_token_id is not None

    def _apply(self, messages, add_generation_prompt):
        msgs = list(messages)
        if self.system_prompt is not None and (not msgs or msgs[0]["role"] != "system"):
            msgs = [{"role": "system", "content": self.system_prompt}] + msgs
        return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)

    def _render_tokenizer(self, messages, add_generation_prompt):
        full = self._apply(messages, add_generation_prompt)
        spans = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = self._apply(messages[:i], True)  # ... up to the assistant header
            after = self._apply(messages[: i + 1], False)  # ... through this answer and its end token
            if not (after.startswith(before) and full.startswith(after)):
                raise LabelError(f"the tokenizer's chat template is not prefix-stable at turn {i} (it rewrites "
                                 "earlier turns), so assistant spans cannot be located exactly")
            # Trained: the answer and its end token. What the template puts after the end token (ChatML's
            # "\n") is never generated (decoding stops at the end token), so it is not trained either.
            spans.append((len(before), max(len(before), len(after.rstrip()))))
        return full, spans, False

    # ------------------------------------------------------------------ tokenising
    def _encode(self, text: str, bos: bool) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ([self.tokenizer.bos_token_id] if bos else []) + list(ids)

    def _boundary(self, text: str, pos: int, full_ids: list[int], bos: bool) -> int:
        """Token index of character ``pos``; raises when ``text[:pos]`` does not tokenise to a prefix."""
        if pos >= len(text):
            return len(full_ids)
        prefix = self._encode(text[:pos], bos)
        if full_ids[: len(prefix)] != prefix:
            raise LabelError(f"tokenisation is not prefix-stable at character {pos} "
                             f"({text[max(0, pos - 20):pos]!r} | {text[pos:pos + 20]!r}); labels would be misaligned")
        return len(prefix)

    def _check_counts(self, ids: list[int], use_video: bool, use_skeleton: bool) -> None:
        n_v, n_s = ids.count(self.video_token_id), ids.count(self.skeleton_token_id)
        want_v = self.num_video_tokens if use_video else 0
        want_s = self.num_skeleton_tokens if use_skeleton else 0
        if n_v != want_v or n_s != want_s:
            raise LabelError(f"placeholder count after tokenisation: {n_v} video (want {want_v}), "
                             f"{n_s} skeleton (want {want_s})")

    def build_example(self, conversation: list[dict], *, has_video: bool = True, use_skeleton: bool = False
                      ) -> Example:
        """Tokenise a training conversation; labels are the ids on assistant turns, -100 elsewhere.

        Raises:
            LabelError: malformed turns, placeholder problems, a non-prefix-stable tokenisation, no
                assistant tokens, or more than ``max_length`` tokens.
        """
        messages = self.prepare_messages(conversation, has_video=has_video, use_skeleton=use_skeleton)
        if messages[-1]["role"] != "assistant":
            raise LabelError("the last turn must be an assistant answer (nothing to train on after it)")
        text, spans, bos = self.render(messages)
        ids = self._encode(text, bos)
        labels = [IGNORE_INDEX] * len(ids)
        for start, end in spans:
            a, b = self._boundary(text, start, ids, bos), self._boundary(text, end, ids, bos)
            labels[a:b] = ids[a:b]
        self._check_counts(ids, has_video, use_skeleton)
        if all(x == IGNORE_INDEX for x in labels):
            raise LabelError("no assistant tokens to train on")
        if len(ids) > self.max_length:
            raise LabelError(f"{len(ids)} tokens > max_length={self.max_length} (truncating would cut the sample)")
        return Example(ids, labels, has_video, use_skeleton)

    def build_prompt(self, question: str | list[dict], *, has_video: bool = True) -> list[int]:
        """Token ids of an inference prompt (ends with the assistant header), same template as training.

        ``question`` is a string (one user turn) or a conversation whose last turn is the user's.
        """
        conv = [{"role": "user", "content": question}] if isinstance(question, str) else question
        messages = self.prepare_messages(conv, has_video=has_video, use_skeleton=False)
        if messages[-1]["role"] != "user":
            raise ValueError("the last turn of a prompt must be the user's")
        text, _, bos = self.render(messages, add_generation_prompt=True)
        ids = self._encode(text, bos)
        self._check_counts(ids, has_video, False)
        return ids

    def __call__(self, questions: str | list[str] | list[list[dict]], *, has_video: bool | list[bool] = True,
                 return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        """Batch of inference prompts (strings or conversations), left-padded for ``generate``.

        ``has_video`` per row lets text-only and video chats share one batch (the one padding
        implementation: :class:`~ski_lvlm.inference.Captioner` calls this).
        """
        if isinstance(questions, str):
            questions = [questions]
        flags = has_video if isinstance(has_video, (list, tuple)) else [has_video] * len(questions)
        rows = [self.build_prompt(q, has_video=h) for q, h in zip(questions, flags, strict=True)]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, width - len(r):] = torch.tensor(r)
            attention_mask[i, width - len(r):] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens).strip()

    def batch_decode(self, ids, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(row, skip_special_tokens) for row in ids]

    @property
    def stop_token_ids(self) -> list[int]:
        """Ids that end an assistant turn (eos; ``<|im_end|>`` for ChatML tokenizers)."""
        ids = {self.tokenizer.eos_token_id}
        for tok in ("<|im_end|>", "<|eot_id|>", "<|end|>"):
            tid = self.tokenizer.get_vocab().get(tok)
            if tid is not None:
                ids.add(tid)
        return sorted(i for i in ids if i is not None)

    # ------------------------------------------------------------------ save / load
    def to_dict(self) -> dict[str, Any]:
        return {"chat_template": self.chat_template, "num_video_tokens": self.num_video_tokens,
                "num_skeleton_tokens": self.num_skeleton_tokens, "video_token": self.video_token,
                "skeleton_token": self.skeleton_token, "system_prompt": self.system_prompt,
                "max_length": self.max_length, "processor_class": type(self).__name__}

    def save_pretrained(self, out_dir: str | Path) -> None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(out_dir)
        atomic_write_json(out_dir / self.config_name, self.to_dict())

    @classmethod
    def from_pretrained(cls, path: str | Path, **overrides: Any) -> "SkiLvlmProcessor":
        path = Path(path)
        cfg_file = path / cls.config_name
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{cfg_file}: not a SKI-LVLM processor folder (missing {cls.config_name})")
        cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        cfg.pop("processor_class", None)
        cfg.update(overrides)
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(tokenizer, **cfg)
