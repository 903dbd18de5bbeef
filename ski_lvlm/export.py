"""Export a trained SKI-LVLM run as a self-describing folder that loads without the training config.

Two layouts, both written atomically (built in a hidden temporary sibling, renamed at the end):

* **adapter** (default for LoRA / QLoRA runs): the PEFT adapter at the top level
  (``adapter_config.json``, ``adapter_model.safetensors``: ``PeftModel.from_pretrained(llm, OUT)`` works),
  ``mm_modules.safetensors`` (projectors + frozen video tower), ``config.json`` (placeholder ids and
  counts, frame sampling, video-encoder reference) and the processor (tokenizer, chat template,
  ``processor_config.json``). The backbone stays a reference (``config.llm_name_or_path``) unless it was
  written by a training run (``RUN/base_llm``: random preset weights that exist nowhere else); then it is
  copied to ``OUT/base_llm`` and the reference becomes that relative folder, so the export is self-contained.
* **merged** (``merge=True``, and always for runs without an adapter): LoRA folded into the backbone,
  one standalone model in sharded safetensors (``model-0000i-of-0000n.safetensors`` +
  ``model.safetensors.index.json``); ``SkiLvlmForConditionalGeneration.from_pretrained(OUT)`` works.

Every export carries ``README.md`` (model card: base model, data, training settings, latest eval numbers)
and ``export_info.json`` (layout, dtype, base reference, reload-check numbers and a manifest of every file
with its size). The loader (:func:`ski_lvlm.models.lvlm.load`) checks the manifest first, so a missing or
truncated weight file is reported by name instead of surfacing as an obscure loader error.

The reload check: after writing, the export is loaded back and its logits on a few probe inputs (seeded
random frames or features + two prompts) are compared with the training-time model (the run's final
folder loaded with the adapter *unmerged*, as it trained). In fp32 the max abs difference must be
``<= 1e-5``; otherwise :class:`ExportCheckError` is raised and nothing is left at ``OUT``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ski_lvlm.models.lvlm.loading import INFO_FILE, CorruptExportError, ExportError, load, verify_manifest
from ski_lvlm.utils.io import atomic_dir, atomic_write_json, atomic_write_text
from ski_lvlm.utils.run_layout import ModelFolderError, resolve_model_dir
from ski_lvlm.utils.runtime import resolve_dtype

# ExportError, CorruptExportError and verify_manifest live with the loader (reading an export is loading);
# they are re-exported here because export users catch them as ski_lvlm.export.*.
__all__ = ["EXPORT_FORMAT", "ExportError", "ExportCheckError", "CorruptExportError", "ExportResult", "export_run",
           "verify_manifest", "resolve_final", "probe_logits", "base_reference"]

EXPORT_FORMAT = "ski-lvlm-export/1"
PROBE_PROMPTS = ("Describe the video.", "What is the person doing? Answer in one short sentence, please.")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


class ExportCheckError(ExportError):
    """The reloaded export does not reproduce the training-time model's logits."""


@dataclass
class ExportResult:
    out: Path
    layout: str
    dtype: str
    base_model: str | None
    base_copied: bool
    max_abs_diff: float
    files: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


# ---------------------------------------------------------------------------------------------- locating
def resolve_final(run: str | Path) -> Path:
    """``RUN`` or ``RUN/final`` -> the final model folder (the one with ``config.json``)."""
    run = Path(run)
    if not run.exists():
        raise ExportError(f"{run}: no such folder")
    with contextlib.suppress(ModelFolderError):
        final = resolve_model_dir(run, marker="processor_config.json")
        if (final / "config.json").is_file():
            return final
    raise ExportError(f"{run}: not a SKI-LVLM run (no final/config.json); did training finish? "
                      "(`ski-lvlm train lvlm ... train.output_dir=RUN` writes RUN/final)")


def base_reference(config_ref: str | None, run_dir: Path | None) -> tuple[str | None, bool]:
    """The backbone reference and whether it must be copied into an adapter export.

    Rule: a local folder named ``base_llm`` (written by ``ski-lvlm train lvlm`` because the backbone had
    no other source) or any local folder inside the run is copied; a hub id or a user's own local model
    folder stays a reference (pass ``copy_base="always"`` to :func:`export_run` to copy it anyway).
    """
    if not config_ref:
        return None, False
    p = Path(config_ref)
    if not p.is_dir():
        return config_ref, False
    inside_run = run_dir is not None and run_dir.resolve() in p.resolve().parents
    return str(p.resolve()), p.name == "base_llm" or inside_run


# ---------------------------------------------------------------------------------------------- probes
def _probe_inputs(model: nn.Module, processor: Any, seed: int) -> dict[str, torch.Tensor]:
    """Two prompts (different lengths -> left padding) + seeded random frames (or features)."""
    g = torch.Generator().manual_seed(seed)
    inputs = processor(list(PROBE_PROMPTS))
    cfg = model.config
    b = inputs["input_ids"].shape[0]
    if getattr(model, "video_tower", None) is not None:
        size = model.video_tower.image_size
        # uint8 frames [b, t, 3, H, W]; an odd size so the tower's resize path runs too
        inputs["pixel_values_videos"] = torch.randint(0, 256, (b, cfg.num_frames, 3, size + 6, size + 6),
                                                      generator=g, dtype=torch.uint8)
    else:
        inputs["video_features"] = torch.randn(b, cfg.num_video_feature_tokens, cfg.video_feature_dim, generator=g)
    return inputs


@torch.no_grad()
def probe_logits(model: nn.Module, processor: Any, seeds: tuple[int, ...] = (0, 1)) -> list[torch.Tensor]:
    """fp32 logits at the real (non-padding) positions for each probe seed: ``[n_tokens, vocab]`` each."""
    device = next(model.parameters()).device
    out = []
    for seed in seeds:
        inputs = {k: v.to(device) for k, v in _probe_inputs(model, processor, seed).items()}
        logits = model(**inputs, use_cache=False).logits.float()  # [b, s, V]
        out.append(logits[inputs["attention_mask"].bool()].cpu())
    return out


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _round_params(model: nn.Module, dtype: torch.dtype, skip_base: bool = False) -> None:
    """Round floating parameters through ``dtype`` (the reference for low-precision exports).

    ``skip_base``: leave the backbone's own weights alone (an adapter export that only references them).
    """
    if dtype == torch.float32:
        return
    with torch.no_grad():
        for name, p in model.named_parameters():
            if skip_base and name.startswith("language_model.") and "lora_" not in name:
                continue
            if p.is_floating_point():
                p.copy_(p.to(dtype).float())


# ---------------------------------------------------------------------------------------------- manifest
def _manifest(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != INFO_FILE}


# ---------------------------------------------------------------------------------------------- model card
def _find_eval_results(run_dir: Path | None, limit: int = 40) -> list[tuple[str, dict[str, float]]]:
    """Newest ``results.json`` files under the run (``RUN/eval/...``), flattened to numeric scalars."""
    if run_dir is None or not run_dir.is_dir():
        return []
    files = [p for p in run_dir.rglob("*.json") if p.name in ("results.json", "metrics.json")
             and "checkpoints" not in p.parts and "features" not in p.parts]
    out = []
    for f in sorted(files, key=lambda p: p.stat().st_mtime, reverse=True)[:4]:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        flat: dict[str, float] = {}

        def walk(obj: Any, prefix: str) -> None:
            if len(flat) >= limit:
                return
            if isinstance(obj, bool):
                return
            if isinstance(obj, (int, float)):
                flat[prefix] = obj
            elif isinstance(obj, dict):
                for k, v in obj.items():
                    walk(v, f"{prefix}.{k}" if prefix else str(k))

        walk(data, "")
        if flat:
            out.append((str(f.relative_to(run_dir)), flat))
    return out


def _read_yaml(path: Path) -> dict:
    try:
        import yaml

        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except Exception:  # noqa: BLE001 - the card is best effort; a broken config.yaml only loses lines
        return {}


def _fmt(x: Any) -> str:
    return f"{x:.4f}" if isinstance(x, float) else str(x)


def model_card(*, config: Any, processor: Any, info: dict, run_dir: Path | None, run_info: dict) -> str:
    """Markdown model card for the export's README.md (facts only: nothing here is estimated)."""
    rc = _read_yaml(run_dir / "config.yaml") if run_dir else {}
    tr, lo, data, md = rc.get("train", {}), rc.get("lora", {}), rc.get("data", {}), rc.get("model", {})
    ve = config.video_encoder or {}
    lines = [
        f"# SKI-LVLM export ({info['layout']})", "",
        "Video captioning / chat model (SKI-LVLM: frozen CLIP video tower -> projector -> causal LM).", "",
        "## Load", "", "```python",
        "from ski_lvlm.inference import Captioner",
        "cap = Captioner.from_pretrained(\"PATH\")",
        "print(cap.caption([\"video.mp4\"]))",
        "```", "",
        "or `ski-lvlm caption video.mp4 --model PATH`, `ski-lvlm demo --model PATH`.", "",
        "## Model", "",
        f"- base model: `{info.get('base_model') or 'random-init preset (weights included)'}`"
        + (" (copied to `base_llm/`)" if info.get("base_copied") else ""),
        f"- backbone: {config.text_config.model_type}, hidden {config.text_config.hidden_size}, "
        f"{config.text_config.num_hidden_layers} layers, vocab {config.text_config.vocab_size}",
        f"- layout: {info['layout']}" + (" (PEFT LoRA adapter + projectors)" if info["layout"] == "adapter"
                                         else " (LoRA merged, sharded safetensors)"),
        f"- dtype: {info['dtype']}",
        f"- video encoder: {ve.get('kind')} `{ve.get('arch')}` (pretrained: {ve.get('pretrained')}, "
        f"layer {ve.get('layer', -2)}), {config.num_frames} frames, sampling `{config.frame_sampling}`, "
        f"max_frames {config.max_frames}",
        f"- video tokens: {config.num_video_tokens} x `{processor.video_token}`; projector `{config.projector_type}`",
        f"- chat template: `{processor.chat_template}`",
        "",
        "## Training", "",
    ]
    if rc:
        p_inject = run_info.get("p_inject", data.get("p_inject"))
        adapter = run_info.get("llm_adapter", tr.get("llm_adapter"))
        lines += [
            f"- data: `{data.get('train_json', '?')}` ({run_info.get('samples', '?')} samples, "
            f"{run_info.get('skipped', 0)} skipped), skeleton injection p={p_inject}",
            f"- stage `{run_info.get('stage', tr.get('stage'))}`, llm_adapter `{adapter}`"
            + (f", LoRA r={lo.get('r')} alpha={lo.get('alpha')} dropout={lo.get('dropout')} "
               f"targets={lo.get('target_modules')}" if run_info.get("llm_adapter") in ("lora", "qlora") else ""),
            f"- steps {run_info.get('steps', '?')}, final loss {_fmt(run_info.get('final_loss'))}, lr {tr.get('lr')}, "
            f"batch {tr.get('batch_size')} x accum {tr.get('grad_accum', 1)}, precision {tr.get('precision')}, "
            f"seed {tr.get('seed')}",
            f"- init_from: `{md.get('init_from')}`" if md.get("init_from") else None,
            f"- command: `{run_info.get('command', '?')}`",
        ]
    elif run_info:
        lines += [f"- {k}: `{v}`" for k, v in run_info.items() if k not in ("full_weights", "adapter")]
    else:
        lines.append("- (no run_info.json / config.yaml found next to the model)")
    lines += ["", "## Evaluation", ""]
    evals = _find_eval_results(run_dir)
    if evals:
        for name, flat in evals:
            lines += [f"`{name}`:", "", "| metric | value |", "|---|---|"]
            lines += [f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in flat.items()]
            lines.append("")
    else:
        lines.append("No evaluation results found in the run folder (run `ski-lvlm eval ...` before exporting "
                     "to list them here).")
    chk = info.get("reload_check", {})
    lines += ["", "## Export check", "",
              f"Reloaded export vs training-time model, logits on {chk.get('probes', '?')} probe inputs: "
              f"max abs diff {chk.get('max_abs_diff', float('nan')):.3g} (limit {chk.get('atol')}, "
              f"compared in fp32 against the {chk.get('reference', '?')}).",
              f"Exported {info.get('created')} from `{info.get('source')}`.", ""]
    return "\n".join(x for x in lines if x is not None) + "\n"


# ---------------------------------------------------------------------------------------------- export
def _cast_safetensors(src: Path, dst: Path, dtype: torch.dtype) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(src))
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(dst), metadata={"format": "pt"})


def _check_options(out: Path, final: Path, *, overwrite: bool, copy_base: str, dtype: str) -> tuple[torch.dtype, str]:
    """Refuse bad options before anything is loaded; returns the weights' dtype and its short name."""
    if out.resolve() == final.resolve() or final.resolve() in out.resolve().parents:
        raise ExportError(f"--out {out} must not be inside the run's final folder {final}")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists (pass overwrite / --overwrite to replace it)")
    if copy_base not in ("auto", "always", "never"):
        raise ExportError(f"copy_base must be auto, always or never, got {copy_base!r}")
    try:
        wdtype = resolve_dtype(dtype)
    except ValueError as e:
        raise ExportError(str(e)) from None
    return wdtype, {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[wdtype]


def _check_reference(reference: nn.Module, merged: nn.Module | None, *, wdtype: torch.dtype, dtype_name: str,
                     skip_base: bool) -> tuple[nn.Module, str]:
    """The model the reloaded export must reproduce, and its name in the check's report.

    fp32: the training-time model. Lower precision: an adapter export compares with the training-time model
    whose weights are rounded here to ``wdtype`` (in place; ``skip_base`` leaves a referenced backbone alone),
    a merged export with its own fp32 merge, already rounded (``merged``).
    """
    if wdtype == torch.float32:
        return reference, "training-time model (adapter unmerged, fp32)"
    if merged is None:
        _round_params(reference, wdtype, skip_base=skip_base)
        return reference, f"training-time model with weights rounded to {dtype_name}"
    return merged, f"fp32 merge rounded to {dtype_name}"


def _write_adapter_layout(tmp: Path, final: Path, reference: nn.Module, *, base_ref: str | None, copy: bool,
                          wdtype: torch.dtype, dtype_name: str, max_shard_size: str | int,
                          log: Callable[[str], None]) -> None:
    """PEFT adapter + ``mm_modules`` + config into ``tmp``; the backbone is referenced, or copied to ``base_llm/``."""
    from safetensors.torch import save_file

    from ski_lvlm.models.lvlm import SkiLvlmConfig
    from ski_lvlm.training.lvlm_checkpoint import mm_modules_state_dict

    cfg = SkiLvlmConfig.from_pretrained(final)
    cfg.llm_name_or_path = "base_llm" if copy else base_ref
    cfg.save_pretrained(tmp)
    if (final / "generation_config.json").is_file():
        shutil.copy2(final / "generation_config.json", tmp / "generation_config.json")
    acfg = json.loads((final / "adapter" / "adapter_config.json").read_text())
    acfg["base_model_name_or_path"] = cfg.llm_name_or_path
    atomic_write_json(tmp / "adapter_config.json", acfg)
    src = final / "adapter" / "adapter_model.safetensors"
    if not src.is_file():
        raise ExportError(f"{src}: missing (the adapter folder is incomplete)")
    _cast_safetensors(src, tmp / "adapter_model.safetensors", wdtype)
    mm = {k: (v.to(wdtype) if v.is_floating_point() else v).contiguous()
          for k, v in mm_modules_state_dict(reference).items()}
    save_file(mm, str(tmp / "mm_modules.safetensors"), metadata={"format": "pt"})
    if copy:
        from transformers import AutoModelForCausalLM

        log(f"[export] copying the backbone {base_ref} -> base_llm/ ({dtype_name})")
        base = AutoModelForCausalLM.from_pretrained(base_ref, dtype=wdtype)
        base.save_pretrained(tmp / "base_llm", max_shard_size=max_shard_size)
        del base


def _write_merged_layout(tmp: Path, final: Path, reference: nn.Module, *, has_adapter: bool, wdtype: torch.dtype,
                         max_shard_size: str | int, log: Callable[[str], None]) -> nn.Module:
    """One standalone sharded model into ``tmp``; returns it with its weights rounded to ``wdtype`` (exactly
    the weights written: the reference for a low-precision export's reload check)."""
    log("[export] merging LoRA into the backbone" if has_adapter else "[export] writing full weights")
    if has_adapter:  # merge in fp32 from the same pieces training used (not final/'s merged weights)
        merged = load(final, dtype=torch.float32, merge_adapter=False)[0]
        merged.language_model = merged.language_model.merge_and_unload()
    else:
        merged = reference
    saved_ref = merged.config.llm_name_or_path
    merged.config.llm_name_or_path = None  # standalone: no backbone reference needed
    state = {k: (v.to(wdtype) if v.is_floating_point() else v) for k, v in merged.state_dict().items()}
    merged.save_pretrained(tmp, state_dict=state, max_shard_size=max_shard_size)
    merged.config.llm_name_or_path = saved_ref
    del state
    _round_params(merged, wdtype)
    return merged


def _export_info(*, layout: str, dtype_name: str, final: Path, base_ref: str | None, copy: bool, has_adapter: bool,
                 run_info: dict, config: Any, processor: Any, run_dir: Path | None) -> dict[str, Any]:
    """``export_info.json`` without the manifest and the reload-check numbers (added once known)."""
    info: dict[str, Any] = {
        "format": EXPORT_FORMAT, "layout": layout, "dtype": dtype_name, "source": str(final.resolve()),
        "base_model": base_ref, "base_copied": bool(copy), "adapter": has_adapter and layout == "adapter",
        "run_info": run_info, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "num_frames": config.num_frames, "frame_sampling": config.frame_sampling,
        "video_encoder": config.video_encoder, "num_video_tokens": config.num_video_tokens,
        "chat_template": processor.chat_template,
    }
    if run_dir is not None and (run_dir / "config.yaml").is_file():
        train_json = _read_yaml(run_dir / "config.yaml").get("data", {}).get("train_json")
        if train_json:
            info["train_json"] = str(Path(train_json).resolve())
    return info


def _reload_check(tmp: Path, info: dict, processor: Any, ref_model: nn.Module,
                  probe_seeds: tuple[int, ...]) -> tuple[float, bool]:
    """Write the manifest, load ``tmp`` back as a user would and compare its probe logits with ``ref_model``.

    Returns:
        ``(max abs logit difference, whether the exported processor tokenises the probe prompts the same)``.
    """
    want = probe_logits(ref_model, processor, probe_seeds)
    info["files"] = _manifest(tmp)  # README.md size fixed after the card is written
    atomic_write_json(tmp / INFO_FILE, info)
    # Loaded in fp32 (stored low-precision weights upcast exactly) and unmerged: a low-precision merge
    # or bf16 RoPE / normalisation buffers would add rounding that is not in the files checked here.
    reloaded, reproc = load(tmp, dtype=torch.float32, merge_adapter=False)
    got = probe_logits(reloaded.float(), reproc, probe_seeds)
    same_ids = reproc(list(PROBE_PROMPTS))["input_ids"].equal(processor(list(PROBE_PROMPTS))["input_ids"])
    return _max_diff(want, got), same_ids


def _verify_export(tmp: Path, info: dict, processor: Any, reference: Any, merged: Any, *, wdtype: torch.dtype,
                   dtype_name: str, skip_base: bool, atol: float, probe_seeds: tuple[int, ...], out: Path) -> float:
    """The reload check: the export in ``tmp`` as a user would load it, in the export dtype, against the
    training-time model (``merged`` in the merged layout), compared in fp32.

    Records the outcome in ``info["reload_check"]`` and returns the max abs logit difference.

    Raises:
        ExportCheckError: the processor tokenises the probes differently, or the difference exceeds ``atol``.
    """
    ref_model, ref_name = _check_reference(reference, merged, wdtype=wdtype, dtype_name=dtype_name,
                                           skip_base=skip_base)
    diff, same_ids = _reload_check(tmp, info, processor, ref_model, probe_seeds)
    info["reload_check"] = {"max_abs_diff": diff, "atol": atol, "probes": len(probe_seeds) * len(PROBE_PROMPTS),
                            "reference": ref_name, "same_prompt_ids": same_ids, "passed": diff <= atol and same_ids}
    if not same_ids:
        raise ExportCheckError("reload check failed: the exported processor tokenises the probe prompts "
                               "differently from the training-time processor")
    if not diff <= atol:  # also catches NaN
        raise ExportCheckError(f"reload check failed: max abs logit difference {diff:.3g} > {atol:g} between "
                               f"the reloaded export and the {ref_name}; nothing was written to {out}")
    return diff


def export_run(
    run: str | Path,
    out: str | Path,
    *,
    merge: bool = False,
    dtype: str = "fp32",
    overwrite: bool = False,
    copy_base: str = "auto",
    max_shard_size: str | int = "2GB",
    atol: float = 1e-5,
    probe_seeds: tuple[int, ...] = (0, 1),
    log: Callable[[str], None] = print,
    _before_commit: Callable[[Path], None] | None = None,
) -> ExportResult:
    """Export ``run`` (a run folder or its ``final/``) to ``out``; see the module docstring.

    Args:
        merge: fold LoRA into the backbone and write one standalone sharded model.
        dtype: ``fp32`` | ``bf16`` | ``fp16`` for the written weights.
        copy_base: ``auto`` (rule in :func:`base_reference`), ``always`` or ``never`` (adapter layout).
        max_shard_size: safetensors shard size for merged models and copied backbones.
        atol: reload-check limit (max abs logit difference, compared in fp32).

    Raises:
        ExportError / ExportCheckError; ``out`` is untouched unless the whole export succeeded.
    """
    from ski_lvlm.models.lvlm import SkiLvlmConfig

    t0 = time.perf_counter()
    out = Path(out)
    final = resolve_final(run)
    run_dir = final.parent if final.name == "final" else None
    wdtype, dtype_name = _check_options(out, final, overwrite=overwrite, copy_base=copy_base, dtype=dtype)
    run_info = json.loads((final / "run_info.json").read_text()) if (final / "run_info.json").is_file() else {}
    config = SkiLvlmConfig.from_pretrained(final)
    has_adapter = (final / "adapter" / "adapter_config.json").is_file()
    layout = "adapter" if has_adapter and not merge else "merged"
    if not has_adapter and not merge:
        log(f"[export] {final} has no LoRA adapter (llm_adapter={run_info.get('llm_adapter', '?')}): "
            "writing the full model (merged layout)")
    base_ref, auto_copy = base_reference(config.llm_name_or_path, run_dir)
    copy = layout == "adapter" and base_ref is not None and (
        copy_base == "always" and Path(base_ref).is_dir() or copy_base == "auto" and auto_copy)

    log(f"[export] loading the training-time model from {final}" + (" (adapter unmerged)" if has_adapter else ""))
    try:  # as it trained: backbone + LoRA adapter unmerged in fp32, or the full weights as stored
        reference, processor = load(final, dtype=torch.float32 if has_adapter else None, merge_adapter=False)
    except (OSError, ValueError, CorruptExportError) as e:
        raise ExportError(f"{final}: cannot load the trained model: {e}") from None
    reference.float()

    with atomic_dir(out, overwrite=overwrite) as tmp:
        merged = None  # the merged layout's model (the reload check's reference)
        if layout == "adapter":
            _write_adapter_layout(tmp, final, reference, base_ref=base_ref, copy=copy, wdtype=wdtype,
                                  dtype_name=dtype_name, max_shard_size=max_shard_size, log=log)
        else:
            merged = _write_merged_layout(tmp, final, reference, has_adapter=has_adapter, wdtype=wdtype,
                                          max_shard_size=max_shard_size, log=log)
        processor.save_pretrained(tmp)
        info = _export_info(layout=layout, dtype_name=dtype_name, final=final, base_ref=base_ref, copy=copy,
                            has_adapter=has_adapter, run_info=run_info, config=config, processor=processor,
                            run_dir=run_dir)
        card_stub = "# SKI-LVLM export\n"  # replaced below; listed in the manifest with its final size
        atomic_write_text(tmp / "README.md", card_stub)

        log("[export] reload check")
        diff = _verify_export(tmp, info, processor, reference, merged, wdtype=wdtype, dtype_name=dtype_name,
                              skip_base=not copy, atol=atol, probe_seeds=probe_seeds, out=out)
        atomic_write_text(tmp / "README.md", model_card(config=config, processor=processor, info=info,
                                                        run_dir=run_dir, run_info=run_info))
        info["files"] = _manifest(tmp)
        atomic_write_json(tmp / INFO_FILE, info)
        if _before_commit is not None:  # tests: simulate an interruption before the rename
            _before_commit(tmp)
        files = dict(info["files"])
    log(f"[export] reload check passed (max abs diff {diff:.2e} <= {atol:g}); wrote {out} ({layout}, {dtype_name})")
    return ExportResult(out=out, layout=layout, dtype=dtype_name, base_model=base_ref, base_copied=bool(copy),
                        max_abs_diff=diff, files=files, seconds=time.perf_counter() - t0)
