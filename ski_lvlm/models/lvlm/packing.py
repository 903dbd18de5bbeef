"""Padding-free packing: the samples of a micro-batch share one row, and attention stays inside each sample.

Why: real instruction data varies in length, so a padded batch spends compute on pad tokens. A packed
batch concatenates the samples (Hugging Face's ``DataCollatorWithFlattening`` layout, built by
:func:`ski_lvlm.data.lvlm_dataset.lvlm_pack_collate`)::

    input_ids, labels, position_ids   [1, N]    N = sum of the sample lengths, no padding
    cu_seq_lens_q = cu_seq_lens_k     [n + 1]   int32 sample boundaries (0, l_0, l_0 + l_1, ..., N)
    max_length_q = max_length_k       int       the longest sample

Position ids restart at 0 for every sample, and the first label of every sample is ignored, so nothing is
learnt across a boundary. Which attention code keeps the samples apart:

* ``sdpa_varlen`` (registered here; the packed-training default where the backbone uses ``sdpa``): one causal
  SDPA call per sample. No padding and no work on masked-out blocks; same numbers as unpacked SDPA.
* ``flash_attention_2`` / ``_3`` / ``_4``: Hugging Face's varlen flash kernel, fed ``cu_seq_lens_*`` (GPU).
* ``sdpa``, ``eager``, ``flex_attention``: Hugging Face builds a block-diagonal causal mask from the restarting
  position ids. Correct, but the masked blocks are still computed (cost grows with the square of N).
* anything else (paged / hub kernels / user-registered functions) may ignore the boundaries, so a packed
  batch is refused with :class:`PackingError`; it never attends across samples silently.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from ski_lvlm.utils.errors import SkiLvlmError

__all__ = ["PACKED_ATTENTION", "HONOURS_SAMPLE_BOUNDARIES", "PackingError", "varlen_sdpa_attention",
           "check_packed_attention", "use_packed_attention"]

PACKED_ATTENTION = "sdpa_varlen"
# attention implementations that keep packed samples apart (see the module docstring for how)
HONOURS_SAMPLE_BOUNDARIES = frozenset({PACKED_ATTENTION, "sdpa", "eager", "flex_attention", "flash_attention_2",
                                       "flash_attention_3", "flash_attention_4"})


class PackingError(SkiLvlmError, ValueError):
    """A packed batch met an attention implementation that cannot honour sample boundaries."""


def varlen_sdpa_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                          attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                          cu_seq_lens_q: torch.Tensor | None = None, cu_seq_lens_k: torch.Tensor | None = None,
                          **kwargs) -> tuple[torch.Tensor, None]:
    """Causal SDPA per packed sample; plain HF SDPA (with its mask) for unpacked inputs.

    ``query [1, h, N, d_h]``, ``key``/``value [1, h_kv, N, d_h]`` -> ``[1, N, h, d_h]`` (HF's layout). A
    Python loop over samples: a handful of calls per layer is cheap next to the projections, and each call
    runs SDPA's own causal kernel with no mask to build or read.
    """
    if cu_seq_lens_q is None:  # padded batches, generation: exactly HF's sdpa
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    if query.shape[0] != 1 or query.shape[2] != key.shape[2]:
        raise PackingError(f"packed attention needs one row and no cache, got query {tuple(query.shape)} and "
                           f"key {tuple(key.shape)}")
    if cu_seq_lens_k is not None and not torch.equal(cu_seq_lens_q, cu_seq_lens_k):
        raise PackingError("packed attention needs cu_seq_lens_k == cu_seq_lens_q (self-attention)")
    if kwargs.get("sliding_window") is not None or kwargs.get("softcap") is not None:
        raise PackingError(f"{PACKED_ATTENTION} has no sliding window / softcap; use flash_attention_2 or eager")
    lengths = cu_seq_lens_q.diff().tolist()  # CPU-GPU sync point on CUDA, once per layer
    gqa = query.shape[1] != key.shape[1]
    # split, not slicing: the backward of a split is one cat, that of n slices is n zero-filled [1, h, N, d_h]
    # gradients added up (on CPU that alone cost a third of a SmolLM2 step)
    outs = [F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling,
                                           enable_gqa=gqa)  # [1, h, l_i, d_h]
            for q, k, v in zip(*(x.split(lengths, dim=2) for x in (query, key, value)))]
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None  # [1, N, h, d_h]


AttentionInterface.register(PACKED_ATTENTION, varlen_sdpa_attention)
# Unpacked inputs get SDPA's usual mask; a packed row's mask is built but unused (cu_seq_lens decide).
AttentionMaskInterface.register(PACKED_ATTENTION, sdpa_mask)


def check_packed_attention(implementation: str | None) -> None:
    """Raise :class:`PackingError` unless ``implementation`` keeps packed samples apart."""
    if implementation not in HONOURS_SAMPLE_BOUNDARIES:
        raise PackingError(
            f"data.packing: attention implementation {implementation!r} cannot be trusted to keep packed samples "
            f"apart (it would attend across them); use one of {sorted(HONOURS_SAMPLE_BOUNDARIES)} or "
            "data.packing=false")


def use_packed_attention(language_model: torch.nn.Module, allow_flash: bool = False) -> str:
    """Pick the attention for packed rows; returns the implementation in use.

    A backbone on ``sdpa`` switches to ``flash_attention_2`` (HF's varlen kernel) when ``allow_flash`` (CUDA
    with bf16/fp16 compute: flash has no fp32) and flash-attn is installed, else to :data:`PACKED_ATTENTION`
    (same numbers as SDPA, no masked-out work). The other boundary-honouring implementations stay; the rest
    are refused with :class:`PackingError`.
    """
    from transformers.utils import is_flash_attn_2_available

    current = language_model.config._attn_implementation
    check_packed_attention(current)
    if current == "sdpa":
        flash = allow_flash and is_flash_attn_2_available()
        language_model.set_attn_implementation("flash_attention_2" if flash else PACKED_ATTENTION)
    return language_model.config._attn_implementation
