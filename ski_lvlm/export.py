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
with its size). :func:`load_exported` checks the manifest first, so a missing or truncated weight file is
reported by name instead of surfacing as an obscure loader error.

The reload check: after writing, the export is loaded back and its logits on a few probe inputs (seeded
random frames or features + two prompts) are compared with the training-time model (the run's final
folder loaded with the adapter *unmerged*, as it trained). In fp32 the max abs difference must be
``<= 1e-5``; otherwise :class:`ExportCheckError` is raised and nothing is left at ``OUT``.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ski_lvlm.utils.io import atomic_dir, atomic_write_json, atomic_write_text
from ski_lvlm.utils.runtime import resolve_dtype

__all__ = ["EXPORT_FORMAT", "ExportError", "ExportCheckError", "CorruptExportError", "ExportResult", "export_run",
           "load_exported", "verify_manifest", "resolve_final", "probe_logits", "base_reference"]

EXPORT_FORMAT = "ski-lvlm-export/1"
INFO_FILE = "export_info.json"
PROBE_PROMPTS = ("Describe the video.", "What is the person doing? Answer in one short sentence, please.")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


class ExportError(Exception):
    """The run cannot be exported (missing final folder, unknown layout, unreadable files)."""


class ExportCheckError(ExportError):
    """The reloaded export does not reproduce the training-time model's logits."""


class CorruptExportError(ExportError):
    """A file of an export is missing, truncated or unreadable; ``path`` names it."""

    def __init__(self, path: str | Path, msg: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {msg}")


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
    for cand in (run / "final", run):
        if (cand / "config.json").is_file() and (cand / "processor_config.json").is_file():
            return cand
    if not run.exists():
        raise ExportError(f"{run}: no such folder")
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


def verify_manifest(path: str | Path) -> dict[str, Any]:
    """Check an export against its ``export_info.json``; returns the info.

    Raises:
        CorruptExportError: naming the first missing, truncated or unreadable file.
    """
    path = Path(path)
    info_file = path / INFO_FILE
    if not info_file.is_file():
        raise CorruptExportError(info_file, "missing (not a complete `ski-lvlm export` folder)")
    try:
        info = json.loads(info_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CorruptExportError(info_file, f"not valid JSON ({e})") from None
    for rel, size in info.get("files", {}).items():
        f = path / rel
        if not f.is_file():
            raise CorruptExportError(f, "missing (listed in export_info.json; re-export or copy it again)")
        actual = f.stat().st_size
        if actual != size:
            raise CorruptExportError(f, f"truncated or modified: {actual} bytes, export wrote {size}")
        if f.suffix == ".safetensors":
            from safetensors import safe_open

            try:
                with safe_open(str(f), framework="pt") as h:
                    h.keys()
            except Exception as e:  # noqa: BLE001 - any header failure means the file is unusable
                raise CorruptExportError(f, f"unreadable safetensors file ({e})") from None
    return info


# ---------------------------------------------------------------------------------------------- loading
def _guarded(fn: Callable[[], Any], file: Path | str) -> Any:
    try:
        return fn()
    except (OSError, ValueError, RuntimeError) as e:
        raise CorruptExportError(file, f"cannot be loaded ({type(e).__name__}: {e})") from None


def _assemble(config: Any, base_id: str, adapter_dir: Path | None, mm_file: Path, *, dtype: torch.dtype | None,
              merge: bool) -> nn.Module:
    """Backbone + (LoRA adapter) + projectors/tower, built the way training built it.

    The adapter is attached *after* the wrapper is constructed: ``post_init`` initialises every module
    that from_pretrained did not mark as loaded, which would re-randomise LoRA weights attached earlier.
    """
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from ski_lvlm.models.lvlm import SkiLvlmForConditionalGeneration

    kw = {"dtype": dtype} if dtype is not None else {}
    llm = _guarded(lambda: AutoModelForCausalLM.from_pretrained(base_id, **kw), base_id)
    model = SkiLvlmForConditionalGeneration(config, language_model=llm)
    if adapter_dir is not None:
        from peft import PeftModel

        peft = _guarded(lambda: PeftModel.from_pretrained(model.language_model, str(adapter_dir)),
                        adapter_dir / "adapter_model.safetensors")
        model.language_model = peft.merge_and_unload() if merge else peft
    mm = _guarded(lambda: load_file(str(mm_file)), mm_file)
    result = model.load_state_dict(mm, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("language_model.")]
    if missing or result.unexpected_keys:
        raise CorruptExportError(mm_file, f"does not match config.json: missing {missing[:4]}, "
                                          f"unexpected {result.unexpected_keys[:4]}")
    if dtype is not None:
        model.to(dtype)
    return model


def load_training_model(final: str | Path) -> tuple[nn.Module, Any]:
    """A run's final folder as it trained: backbone + LoRA adapter *unmerged* (fp32), or the full weights."""
    from ski_lvlm.models.lvlm import SkiLvlmConfig, SkiLvlmProcessor
    from ski_lvlm.training.lvlm_checkpoint import load_lvlm

    final = Path(final)
    if not (final / "adapter" / "adapter_config.json").is_file():
        return load_lvlm(final)
    config = SkiLvlmConfig.from_pretrained(final)
    if not config.llm_name_or_path:
        raise ExportError(f"{final}/config.json: llm_name_or_path is empty; cannot find the adapter's backbone")
    model = _assemble(config, config.llm_name_or_path, final / "adapter", final / "mm_modules.safetensors",
                      dtype=torch.float32, merge=False)
    return model.eval(), SkiLvlmProcessor.from_pretrained(final)


def load_exported(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None,
                  merge_adapter: bool = True) -> tuple[nn.Module, Any]:
    """Rebuild the full model + processor from an export (or a run's ``final/`` folder).

    Returns:
        ``(model, processor)`` in eval mode on ``device``.

    Raises:
        CorruptExportError: a missing / truncated / unreadable file (named).
    """
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from ski_lvlm.models.lvlm import SkiLvlmConfig, SkiLvlmForConditionalGeneration, SkiLvlmProcessor

    path = Path(path)
    if isinstance(dtype, str):
        dtype = resolve_dtype(dtype)
    if not (path / INFO_FILE).is_file() and (path / "run_info.json").is_file():
        from ski_lvlm.training.lvlm_checkpoint import load_lvlm  # a run's final folder

        return load_lvlm(path, device=device, dtype=dtype, merge_adapter=merge_adapter)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such model folder")
    info = verify_manifest(path)
    kw = {"dtype": dtype} if dtype is not None else {}

    if info.get("layout") == "merged":
        model = _guarded(lambda: SkiLvlmForConditionalGeneration.from_pretrained(path, **kw),
                        path / "model.safetensors.index.json")
    else:
        config = SkiLvlmConfig.from_pretrained(path)
        ref = config.llm_name_or_path
        if not ref:
            raise CorruptExportError(path / "config.json", "adapter export without llm_name_or_path (no backbone)")
        base = path / ref if (path / ref).is_dir() else Path(ref)
        adapter = path if (path / "adapter_config.json").is_file() else None
        model = _assemble(config, str(base) if base.is_dir() else ref, adapter, path / "mm_modules.safetensors",
                          dtype=dtype, merge=merge_adapter)
    processor = SkiLvlmProcessor.from_pretrained(path)
    return model.to(device).eval(), processor


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
    from safetensors.torch import save_file

    from ski_lvlm.models.lvlm import SkiLvlmConfig
    from ski_lvlm.training.lvlm_checkpoint import mm_modules_state_dict

    t0 = time.perf_counter()
    out = Path(out)
    final = resolve_final(run)
    run_dir = final.parent if final.name == "final" else None
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
    dtype_name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[wdtype]
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
    try:
        reference, processor = load_training_model(final)
    except (OSError, ValueError, CorruptExportError) as e:
        raise ExportError(f"{final}: cannot load the trained model: {e}") from None
    reference.float()

    with atomic_dir(out, overwrite=overwrite) as tmp:
        if layout == "adapter":
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
        else:
            log("[export] merging LoRA into the backbone" if has_adapter else "[export] writing full weights")
            if has_adapter:  # merge in fp32 from the same pieces training used
                merged = _assemble(config, base_ref, final / "adapter", final / "mm_modules.safetensors",
                                   dtype=torch.float32, merge=True).eval()
            else:
                merged = reference
            saved_ref = merged.config.llm_name_or_path
            merged.config.llm_name_or_path = None  # standalone: no backbone reference needed
            state = {k: (v.to(wdtype) if v.is_floating_point() else v) for k, v in merged.state_dict().items()}
            merged.save_pretrained(tmp, state_dict=state, max_shard_size=max_shard_size)
            merged.config.llm_name_or_path = saved_ref
            del state
            _round_params(merged, wdtype)  # the low-precision reference: exactly the weights written
        processor.save_pretrained(tmp)
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
        card_stub = "# SKI-LVLM export\n"  # replaced below; listed in the manifest with its final size
        atomic_write_text(tmp / "README.md", card_stub)

        # --- reload check (the export as a user would load it, in the export dtype, compared in fp32)
        log("[export] reload check")
        if wdtype == torch.float32:
            ref_model, ref_name = reference, "training-time model (adapter unmerged, fp32)"
        elif layout == "adapter":
            _round_params(reference, wdtype, skip_base=not copy)
            ref_model, ref_name = reference, f"training-time model with weights rounded to {dtype_name}"
        else:
            ref_model = merged  # noqa: F821 - set in the merged branch above
            ref_name = f"fp32 merge rounded to {dtype_name}"
        want = probe_logits(ref_model, processor, probe_seeds)
        info["files"] = _manifest(tmp)  # README.md size fixed after the card is written
        atomic_write_json(tmp / INFO_FILE, info)
        # Loaded in fp32 (stored low-precision weights upcast exactly) and unmerged: a low-precision merge
        # or bf16 RoPE / normalisation buffers would add rounding that is not in the files checked here.
        reloaded, reproc = load_exported(tmp, dtype=torch.float32, merge_adapter=False)
        got = probe_logits(reloaded.float(), reproc, probe_seeds)
        diff = _max_diff(want, got)
        same_ids = reproc(list(PROBE_PROMPTS))["input_ids"].equal(processor(list(PROBE_PROMPTS))["input_ids"])
        info["reload_check"] = {"max_abs_diff": diff, "atol": atol, "probes": len(probe_seeds) * len(PROBE_PROMPTS),
                                "reference": ref_name, "same_prompt_ids": same_ids, "passed": diff <= atol and same_ids}
        del reloaded
        if not same_ids:
            raise ExportCheckError("reload check failed: the exported processor tokenises the probe prompts "
                                   "differently from the training-time processor")
        if not diff <= atol:  # also catches NaN
            raise ExportCheckError(f"reload check failed: max abs logit difference {diff:.3g} > {atol:g} between "
                                   f"the reloaded export and the {ref_name}; nothing was written to {out}")
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
