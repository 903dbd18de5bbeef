"""The named LLM shapes (tiny presets for tests, 7B shapes for benchmarks), as plain data.

Why a module of its own: the model registry lists these names, and the builder in
:mod:`ski_lvlm.models.lvlm.presets` builds them; keeping the table here, importing nothing, lets both
read it without the registry importing the LVLM package (which would close an import cycle).
"""

from __future__ import annotations

__all__ = ["TEXT_PRESETS"]

# Architecture shapes only; vocab comes from the tokenizer for tiny presets.
TEXT_PRESETS: dict[str, dict] = {
    "tiny-llama": dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                       tie_word_embeddings=False),
    "tiny-qwen2": dict(model_type="qwen2", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                       tie_word_embeddings=True),
    # 7B shapes (random init; for benchmarks and memory planning, not for quality).
    "llama-7b": dict(model_type="llama", hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                     num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                     vocab_size=32000, rms_norm_eps=1e-6, tie_word_embeddings=False),
    "qwen2-7b": dict(model_type="qwen2", hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                     num_attention_heads=28, num_key_value_heads=4, max_position_embeddings=32768,
                     vocab_size=152064, rms_norm_eps=1e-6, tie_word_embeddings=False),
}
