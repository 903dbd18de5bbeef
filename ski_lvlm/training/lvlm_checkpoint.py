"""SKI-LVLM run artefacts: resumable training checkpoints and the final model folder.

Resume checkpoint ``RUN/checkpoints/step_00000040/`` (``RUN/checkpoints/latest`` names the newest):

* ``trainable.safetensors``: only the parameters that train (LoRA weights, projectors, or the whole LLM
  for ``llm_adapter: full``), so a 7B LoRA checkpoint is megabytes, not 14 GB;
* ``optimizer.pt``: optimizer state (the LR schedule is a pure function of the step);
* ``rng.pt``: python / numpy / torch (/ CUDA) RNG states;
* ``trainer_state.json``: epoch, optimizer step, micro-batches consumed in the epoch (data position);
* ``deepspeed/``: instead of the two files above under DeepSpeed (the engine's own sharded format).

Final model folder ``RUN/final/`` (:func:`save_final`, loaded by :func:`ski_lvlm.models.lvlm.load`):

* ``config.json`` (+ ``generation_config.json``): :class:`SkiLvlmConfig`; ``llm_name_or_path`` names
  the backbone's base weights;
* ``model.safetensors``: full weights with LoRA merged (``SkiLvlmForConditionalGeneration.from_pretrained``
  works) - written unless ``save_full=False`` (7B LoRA runs keep only the small files below);
* ``mm_modules.safetensors``: everything outside the LLM (projectors, frozen video tower);
* ``mm_projector.bin``: the projectors in the LLAVIDAL / Video-ChatGPT format;
* ``adapter/``: the PEFT LoRA adapter (``adapter_config.json``, ``adapter_model.safetensors``);
* tokenizer files + ``processor_config.json``; ``run_info.json`` (stage, steps, final loss).

Everything loads with safetensors or ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ski_lvlm.training.checkpoint import TrainState, latest_checkpoint
from ski_lvlm.utils.io import atomic_dir, atomic_write_json, atomic_write_text
from ski_lvlm.utils.runtime import rng_state, set_rng_state

__all__ = ["TrainState", "trainable_state_dict", "mm_modules_state_dict", "save_resume_checkpoint",
           "load_resume_checkpoint", "latest_resume_checkpoint", "save_final", "unwrap_llm"]


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters with ``requires_grad`` (names as in ``model.named_parameters()``), on CPU."""
    return {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}


def unwrap_llm(model: nn.Module) -> nn.Module:
    """The LVLM inside a DeepSpeed engine / DDP wrapper."""
    return getattr(model, "module", model)


def mm_modules_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights outside the language model: projectors and the (frozen) video tower."""
    return {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()
            if not k.startswith("language_model.")}


def _step_dir(root: Path, step: int) -> Path:
    return root / f"step_{step:08d}"


# Same run-folder convention as the phase-1/2 recipes: root/latest names the newest step_N folder.
latest_resume_checkpoint = latest_checkpoint


def save_resume_checkpoint(root: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                           state: TrainState, engine: Any = None, keep_last: int = 2, is_main: bool = True) -> Path:
    """Write ``root/step_N`` and point ``root/latest`` at it; keeps the newest ``keep_last`` folders.

    Without DeepSpeed the folder is written atomically. Under DeepSpeed every rank must call this (the
    engine writes its shards collectively); ``latest`` is only rewritten after the engine has finished,
    so a run killed while saving resumes from the previous checkpoint.
    """
    root = Path(root)
    path = _step_dir(root, state.step)
    if engine is not None:
        engine.save_checkpoint(str(path / "deepspeed"), tag="state")
        if is_main:
            torch.save(rng_state(), path / "rng.pt")
            atomic_write_json(path / "trainer_state.json", asdict(state))
    elif is_main:
        with atomic_dir(path, overwrite=True) as tmp:
            from safetensors.torch import save_file

            save_file(trainable_state_dict(model), str(tmp / "trainable.safetensors"))
            torch.save({"optimizer": optimizer.state_dict() if optimizer is not None else None}, tmp / "optimizer.pt")
            torch.save(rng_state(), tmp / "rng.pt")
            atomic_write_json(tmp / "trainer_state.json", asdict(state))
    if is_main:
        atomic_write_text(root / "latest", path.name + "\n")
        old = sorted(p for p in root.glob("step_*") if p.is_dir() and p != path)
        for p in old[: max(0, len(old) - (keep_last - 1))]:
            shutil.rmtree(p, ignore_errors=True)
    return path


def load_resume_checkpoint(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                           engine: Any = None, restore_rng: bool = True) -> TrainState:
    """Restore what :func:`save_resume_checkpoint` wrote; trainable weights load strictly by name."""
    path = Path(path)
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(f"{path}: not a resume checkpoint (no trainer_state.json)")
    if engine is not None:
        if not (path / "deepspeed").is_dir():
            raise FileNotFoundError(f"{path}: written without DeepSpeed (no deepspeed/); resume without it")
        engine.load_checkpoint(str(path / "deepspeed"), tag="state")
    else:
        if not (path / "trainable.safetensors").is_file():
            raise FileNotFoundError(f"{path}: written under DeepSpeed (no trainable.safetensors); resume with it")
        from safetensors.torch import load_file

        weights = load_file(str(path / "trainable.safetensors"))
        params = dict(model.named_parameters())
        want = {n for n, p in params.items() if p.requires_grad}
        missing, unexpected = sorted(want - set(weights)), sorted(set(weights) - want)
        if missing or unexpected:
            raise ValueError(f"{path}: checkpoint does not match the model's trainable parameters "
                             f"(missing {missing[:4]}, unexpected {unexpected[:4]}); same config and stage?")
        with torch.no_grad():
            for n, t in weights.items():
                if params[n].shape != t.shape:
                    raise ValueError(f"{path}: {n} has shape {tuple(t.shape)}, model has {tuple(params[n].shape)}")
                params[n].copy_(t)
        opt = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        if optimizer is not None and opt.get("optimizer") is not None:
            optimizer.load_state_dict(opt["optimizer"])
    if restore_rng and (path / "rng.pt").is_file():
        set_rng_state(torch.load(path / "rng.pt", map_location="cpu", weights_only=True))
    return TrainState(**json.loads((path / "trainer_state.json").read_text()))


def save_final(out: str | Path, model: nn.Module, processor: Any, *, run_info: dict | None = None,
               save_full: bool = True, overwrite: bool = True) -> Path:
    """Write the final model folder (see module docstring).

    ``model.language_model`` may be a PEFT model: its adapter is saved first; with ``save_full`` the
    LoRA weights are then merged into the backbone (``merge_and_unload``), so the model in memory is left
    merged - call this once, at the end of training.
    """
    from safetensors.torch import save_file

    from ski_lvlm.models.lvlm.compat import save_mm_projector

    out = Path(out)
    is_peft = hasattr(model.language_model, "peft_config")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        if is_peft:
            # The backbone's added placeholder rows are rebuilt on load (fit_vocab), not stored: without
            # this PEFT sees a resized vocabulary and writes the whole embedding matrix into the adapter.
            model.language_model.save_pretrained(tmp / "adapter", save_embedding_layers=False)
        if save_full:
            if is_peft:
                model.language_model = model.language_model.merge_and_unload()
            model.save_pretrained(tmp)
        else:
            model.config.save_pretrained(tmp)
            if getattr(model, "generation_config", None) is not None:
                model.generation_config.save_pretrained(tmp)
        save_file(mm_modules_state_dict(model), str(tmp / "mm_modules.safetensors"), metadata={"format": "pt"})
        save_mm_projector(model, tmp / "mm_projector.bin")
        processor.save_pretrained(tmp)
        atomic_write_json(tmp / "run_info.json", {**(run_info or {}), "full_weights": save_full,
                                                  "adapter": is_peft})
    return out
