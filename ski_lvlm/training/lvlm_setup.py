"""Model preparation for LVLM training: which parameters train, in which dtype, and their optimizer groups.

The recipe (``train/lvlm.py``) decides *what* to train from its config; these functions do it, each one
job, so the recipe's setup reads as a list of steps and other entry points (benchmarks, tests) can
prepare a model the same way.
"""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from ski_lvlm.models.lvlm.modeling import fit_vocab
from ski_lvlm.models.lvlm.packing import use_packed_attention
from ski_lvlm.utils.errors import UserError

__all__ = ["quantize_llm", "attach_lora", "enable_packing", "enable_gradient_checkpointing", "cast_frozen_to_bf16",
           "param_groups"]


def quantize_llm(model: torch.nn.Module, *, compute_dtype: torch.dtype, device: torch.device,
                 gradient_checkpointing: bool) -> None:
    """Reload ``model.language_model`` in 4-bit NF4 (QLoRA) from the base its config names, frozen.

    The base is read again from ``config.llm_name_or_path`` because bitsandbytes quantises while loading;
    every rank must see that folder (call a barrier first when rank 0 writes it).
    """
    from peft import prepare_model_for_kbit_training  # lazy: QLoRA only (bitsandbytes is an optional extra)

    qcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute_dtype,
                              bnb_4bit_use_double_quant=True)
    device_map = {"": device.index or 0} if device.type == "cuda" else "cpu"
    llm = AutoModelForCausalLM.from_pretrained(model.config.llm_name_or_path, quantization_config=qcfg,
                                               device_map=device_map)
    fit_vocab(llm, model.config.text_config.vocab_size)  # the placeholder rows, as create_lvlm made them
    model.language_model = prepare_model_for_kbit_training(llm, use_gradient_checkpointing=gradient_checkpointing)
    model.language_model.requires_grad_(False)


def attach_lora(model: torch.nn.Module, *, r: int, alpha: int, dropout: float, target_modules: list[str],
                modules_to_save: list[str]) -> None:
    """Wrap ``model.language_model`` in a PEFT LoRA model (its LoRA weights train, the base stays frozen)."""
    from peft import LoraConfig, get_peft_model  # lazy: seconds of import that align runs never need

    targets = "all-linear" if list(target_modules) == ["all-linear"] else list(target_modules)
    tied = bool(getattr(model.config.text_config, "tie_word_embeddings", False))
    # a tied LM head trained in full next to LoRA must stay tied to the embeddings it shares
    lcfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets,
                      modules_to_save=list(modules_to_save) or None,
                      ensure_weight_tying=tied and bool(modules_to_save), task_type="CAUSAL_LM")
    try:
        model.language_model = get_peft_model(model.language_model, lcfg)
    except ValueError as e:
        raise UserError(f"lora.target_modules={target_modules}: {e}") from None


def enable_packing(model: torch.nn.Module, *, allow_flash: bool) -> str:
    """Per-sample attention inside one unpadded row; returns the attention implementation used.

    Raises PackingError (a SkiLvlmError) when the attention cannot keep packed samples apart.
    """
    return use_packed_attention(model.language_model, allow_flash=allow_flash)


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Recompute activations in backward (non-reentrant: works with frozen inputs and LoRA)."""
    enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x name
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False


def cast_frozen_to_bf16(model: torch.nn.Module) -> None:
    """Frozen weights in bf16 (half the memory and bandwidth); trainable ones stay fp32 for AdamW, and
    autocast computes in bf16."""
    for p in model.parameters():
        if not p.requires_grad:
            p.data = p.data.to(torch.bfloat16)


def param_groups(model: torch.nn.Module, *, lr: float, projector_lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups of the trainable parameters: projectors at ``projector_lr``, the rest at ``lr``; no
    weight decay on biases and norms.

    Each group's peak rate is also its ``lr_scale``: the recipe schedules in units of 1 and
    :func:`ski_lvlm.training.schedule.set_lr` multiplies by it.
    """
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_proj = name.startswith(("video_projector.", "skeleton_projector."))
        decay = 0.0 if (p.ndim < 2 or "norm" in name) else weight_decay
        groups.setdefault((projector_lr if is_proj else lr, decay), []).append(p)
    return [{"params": ps, "lr": group_lr, "lr_scale": group_lr, "weight_decay": wd}
            for (group_lr, wd), ps in groups.items()]
