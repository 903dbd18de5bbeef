"""SkiLvlmProcessor: exact assistant-only labels under two templates (+ the real Llama SentencePiece model)."""

import json
import shutil
from pathlib import Path

import pytest

from ski_lvlm.models.lvlm import IGNORE_INDEX, LabelError, SkiLvlmProcessor
from ski_lvlm.models.lvlm.presets import train_tokenizer

from .conftest import N_S, N_V

ANSWERS = ["A person waves their hand.", "Then the person sits down.", "Yes, twice!"]


def three_turns():
    return [{"from": "human", "value": "<video>\nDescribe the video."}, {"from": "gpt", "value": ANSWERS[0]},
            {"from": "human", "value": "What happens next?"}, {"from": "gpt", "value": ANSWERS[1]},
            {"from": "human", "value": "Did they wave more than once?"}, {"from": "gpt", "value": ANSWERS[2]}]


def runs(labels):
    """Contiguous (start, end) runs of trained positions."""
    out, start = [], None
    for i, x in enumerate(labels + [IGNORE_INDEX]):
        if x != IGNORE_INDEX and start is None:
            start = i
        elif x == IGNORE_INDEX and start is not None:
            out.append((start, i))
            start = None
    return out


def check_labels(proc, ex, turn_end: str, skeleton: bool = False):
    tok = proc.tokenizer
    assert len(ex.labels) == len(ex.input_ids)
    spans = runs(ex.labels)
    assert len(spans) == len(ANSWERS)
    for (a, b), answer in zip(spans, ANSWERS):
        assert ex.labels[a:b] == ex.input_ids[a:b]
        assert tok.decode(ex.input_ids[a:b]).strip() == answer + turn_end
    # everything else (system, user turns, role headers, placeholders) is masked
    assert all(ex.labels[i] == IGNORE_INDEX for i, t in enumerate(ex.input_ids)
               if t in (proc.video_token_id, proc.skeleton_token_id))
    assert ex.input_ids.count(proc.video_token_id) == N_V
    # the training prefix before the first answer is exactly the inference prompt
    first = spans[0][0]
    prompt = proc.build_prompt([{"from": "human", "value": "<video>\nDescribe the video."}])
    if not skeleton:
        assert ex.input_ids[:first] == prompt
    else:  # identical except for the injected skeleton tokens
        assert [t for t in ex.input_ids[:first] if t != proc.skeleton_token_id] == prompt


def test_vicuna_v1_1_multi_turn_labels():
    proc = SkiLvlmProcessor(train_tokenizer(style="llama"), chat_template="vicuna_v1_1", num_video_tokens=N_V,
                            num_skeleton_tokens=N_S)
    ex = proc.build_example(three_turns())
    check_labels(proc, ex, "</s>")
    text = proc.tokenizer.decode(ex.input_ids)
    assert text.startswith("<s>A chat between a curious user") and " ASSISTANT:" in text
    assert ex.input_ids[0] == proc.tokenizer.bos_token_id and ex.labels[0] == IGNORE_INDEX


def test_chatml_template_from_qwen2_like_tokenizer():
    tok = train_tokenizer(style="qwen2")
    proc = SkiLvlmProcessor(tok, num_video_tokens=N_V, num_skeleton_tokens=N_S)  # auto -> tokenizer's template
    assert proc.chat_template == "tokenizer"
    ex = proc.build_example(three_turns())
    check_labels(proc, ex, "<|im_end|>")
    assert proc.tokenizer.decode(ex.input_ids).startswith("<|im_start|>system\n")
    assert proc.stop_token_ids == [tok.convert_tokens_to_ids("<|im_end|>")]


def test_real_llama_sentencepiece_tokenizer(tmp_path):
    mistral_common = pytest.importorskip("mistral_common")
    src = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    if not src.is_file():
        pytest.skip("mistral-common without tokenizer.model.v1")
    pytest.importorskip("sentencepiece")
    shutil.copy(src, tmp_path / "tokenizer.model")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == 32000
    proc = SkiLvlmProcessor(tok, chat_template="vicuna_v1_1", num_video_tokens=N_V, num_skeleton_tokens=N_S)
    assert (proc.video_token_id, proc.skeleton_token_id) == (32000, 32001)  # added beyond the vocabulary
    ex = proc.build_example(three_turns(), use_skeleton=True)
    check_labels(proc, ex, "</s>", skeleton=True)
    assert ex.input_ids.count(proc.skeleton_token_id) == N_S


def test_placeholder_rules():
    proc = SkiLvlmProcessor(train_tokenizer(style="llama"), num_video_tokens=N_V, num_skeleton_tokens=N_S)
    conv = [{"from": "human", "value": "Describe the video."}, {"from": "gpt", "value": "A wave."}]
    msgs = proc.prepare_messages(conv, use_skeleton=True)  # <video> added, <skeleton> right after it
    assert msgs[0]["content"] == "<video>" * N_V + "<skeleton>" * N_S + "\nDescribe the video."
    legacy = [{"from": "human", "value": "Q?\n<video><object><human_pose>"}, {"from": "gpt", "value": "A."}]
    assert proc.prepare_messages(legacy, use_skeleton=True)[0]["content"] == \
        "Q?\n" + "<video>" * N_V + "<skeleton>" * N_S
    # no injection: skeleton placeholders vanish (inference never needs skeletons)
    assert proc.prepare_messages(legacy, use_skeleton=False)[0]["content"] == "Q?\n" + "<video>" * N_V
    pose = [{"from": "human", "value": "<video>\n<pose>\nQ?"}, {"from": "gpt", "value": "A."}]
    assert proc.prepare_messages(pose)[0]["content"] == "<video>" * N_V + "\nQ?"


@pytest.mark.parametrize("conv, match", [
    ([{"from": "human", "value": "<video><video> Q"}, {"from": "gpt", "value": "A"}], "one video"),
    ([{"from": "human", "value": "Q"}, {"from": "gpt", "value": "see <video>"}], "inside an assistant"),
    ([{"from": "gpt", "value": "A"}], "alternate"),
    ([{"from": "human", "value": "Q"}, {"from": "robot", "value": "A"}], "unknown role"),
    ([{"from": "human", "value": "Q"}, {"from": "gpt", "value": ""}], "no assistant tokens"),
    ([{"from": "human", "value": "Q"}], "last turn"),
])
def test_bad_samples_raise(conv, match):
    proc = SkiLvlmProcessor(train_tokenizer(style="qwen2"), num_video_tokens=N_V, num_skeleton_tokens=N_S)
    with pytest.raises(LabelError, match=match):
        proc.build_example(conv)


def test_too_long_and_video_without_video_raise():
    proc = SkiLvlmProcessor(train_tokenizer(style="llama"), num_video_tokens=N_V, num_skeleton_tokens=N_S,
                            max_length=40)
    with pytest.raises(LabelError, match="max_length=40"):
        proc.build_example(three_turns())
    with pytest.raises(LabelError, match="has no video"):
        proc.build_example(three_turns(), has_video=False)


def test_non_prefix_stable_tokenisation_is_an_error_not_a_mask():
    # "assistant:" followed by an answer that starts with ":" -> BPE merges "::" across the boundary
    tok = train_tokenizer(corpus=["a :: b :: c ::) d ::"] * 50, style="qwen2")
    tok.chat_template = ("{% for m in messages %}{{ m['role'] }}:{{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}")
    assert "::" in tok.get_vocab() or "Ġ::" in tok.get_vocab()
    proc = SkiLvlmProcessor(tok, num_video_tokens=N_V, num_skeleton_tokens=N_S)
    conv = [{"from": "human", "value": "<video> Q"}, {"from": "gpt", "value": ":) yes"}]
    with pytest.raises(LabelError, match="not prefix-stable"):
        proc.build_example(conv)


def test_save_load_and_batched_prompts(tmp_path):
    proc = SkiLvlmProcessor(train_tokenizer(style="qwen2"), num_video_tokens=N_V, num_skeleton_tokens=N_S,
                            system_prompt="You describe videos.")
    proc.save_pretrained(tmp_path)
    again = SkiLvlmProcessor.from_pretrained(tmp_path)
    assert again.to_dict() == proc.to_dict()
    assert again.build_example(three_turns()).input_ids == proc.build_example(three_turns()).input_ids
    batch = again(["Describe.", "What is the person doing in the video?"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.shape == mask.shape and mask[0, 0] == 0 and mask[:, -1].all()  # left padding
    assert (ids == again.video_token_id).sum() == 2 * N_V
