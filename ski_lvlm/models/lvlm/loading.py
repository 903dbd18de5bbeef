"""The one way to load a trained SKI-LVLM: :func:`load` (re-exported as ``ski_lvlm.models.lvlm.load``).

Training, export, inference, the server, the demo and evaluation all call :func:`load`, so a model folder
means the same model everywhere. It reads three layouts, told apart by their files:

* **full weights** - a run's ``final/`` folder written with ``save_full=True`` (or any folder written by
  ``SkiLvlmForConditionalGeneration.save_pretrained`` + a processor): ``config.json`` +
  ``model.safetensors`` (or a sharded ``model.safetensors.index.json``); a merged export is one of these too;
* **adapter-only** - a ``final/`` folder written with ``save_full=False`` (QLoRA / large LoRA runs):
  ``config.json`` + ``mm_modules.safetensors`` (projectors, frozen video tower) + optional ``adapter/``
  (PEFT LoRA); the backbone is ``config.llm_name_or_path``;
* **export** - a folder written by ``ski-lvlm export`` (``export_info.json``): its manifest is checked first
  (:func:`verify_manifest`), so a missing or truncated file is named; an adapter export keeps the PEFT
  adapter at its top level and may carry its backbone as ``base_llm/`` (``llm_name_or_path`` relative to
  the folder).

Backbone + adapter + ``mm_modules`` are put together by one function, :func:`_assemble`, for both the
adapter-only and the adapter-export layouts. Everything loads with safetensors (no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from ski_lvlm.models.lvlm.configuration import SkiLvlmConfig
from ski_lvlm.models.lvlm.modeling import SkiLvlmForConditionalGeneration
from ski_lvlm.models.lvlm.processing import SkiLvlmProcessor
from ski_lvlm.utils.runtime import resolve_dtype
from ski_lvlm.utils.errors import SkiLvlmError

__all__ = ["load", "verify_manifest", "ExportError", "CorruptExportError", "INFO_FILE"]

INFO_FILE = "export_info.json"
MM_FILE = "mm_modules.safetensors"
_FULL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
LAYOUTS = ("a run's final/ folder (config.json + model.safetensors)",
           "an adapter-only final/ folder (config.json + mm_modules.safetensors [+ adapter/])",
           "a `ski-lvlm export` folder (export_info.json)")


class ExportError(SkiLvlmError):
    """The run cannot be exported, or an export cannot be read.

    Defined here rather than in :mod:`ski_lvlm.export` because reading an export is part of loading, and
    :class:`CorruptExportError` (raised here) must stay an ``ExportError`` for the export CLI.
    """


class CorruptExportError(ExportError):
    """A file of an export is missing, truncated or unreadable; ``path`` names it."""

    def __init__(self, path: str | Path, msg: str):
        self.path = str(path)
        super().__init__(f"{self.path}: {msg}")


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


def _guarded(fn: Callable[[], Any], file: Path | str) -> Any:
    """Run a loading step of an export; a failure becomes a :class:`CorruptExportError` naming ``file``."""
    try:
        return fn()
    except (OSError, ValueError, RuntimeError) as e:
        raise CorruptExportError(file, f"cannot be loaded ({type(e).__name__}: {e})") from None


def _unguarded(fn: Callable[[], Any], file: Path | str) -> Any:
    """Run a loading step of a run folder; its errors pass through unchanged."""
    return fn()


def _layout_error(path: Path) -> FileNotFoundError:
    """The error for a folder that is none of :data:`LAYOUTS`: it names the folder and what was expected."""
    hint = ""
    if (path / "trainer_state.json").is_file():
        hint = " (this is a resume checkpoint: it holds only the trainable weights; load RUN/final instead)"
    elif (path / "final" / "config.json").is_file():
        hint = f" (a run folder? its model is {path / 'final'})"
    return FileNotFoundError(f"{path}: not a SKI-LVLM model folder{hint}; expected one of: " + "; ".join(LAYOUTS))


def load(path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | str | None = None,
         merge_adapter: bool = True) -> tuple[SkiLvlmForConditionalGeneration, SkiLvlmProcessor]:
    """Load a model folder of any of the three layouts (module docstring) with its processor.

    Args:
        path: the folder.
        device: where the model goes.
        dtype: ``None`` keeps the stored dtype; a torch dtype or ``"fp32"`` / ``"bf16"`` / ``"fp16"``.
        merge_adapter: fold a LoRA adapter into the backbone. ``False`` keeps it as a PEFT model, the way it
            trained (the export's reference and reload check); a folder with both full weights and
            ``adapter/`` is then rebuilt from the backbone and the adapter instead of the merged weights.

    Returns:
        ``(model, processor)``, the model in eval mode on ``device``.

    Raises:
        FileNotFoundError: ``path`` is not a folder, or none of the three layouts (the message lists them).
        CorruptExportError: an export file is missing, truncated or unreadable (named).
        ValueError: ``mm_modules.safetensors`` does not match ``config.json``, or no backbone is named.
    """
    path = Path(path)
    if isinstance(dtype, str):
        dtype = resolve_dtype(dtype)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such model folder")
    # A top-level adapter_config.json is only ever written by `ski-lvlm export`: without its manifest the
    # export is incomplete, and reading it as a run folder would pass over a missing file.
    exported = (path / INFO_FILE).is_file() or (path / "adapter_config.json").is_file()
    if exported:
        verify_manifest(path)
    if not (path / "config.json").is_file():
        raise _layout_error(path)
    guard = _guarded if exported else _unguarded
    if (path / "adapter").is_dir():  # a run's final/ folder keeps the PEFT adapter in adapter/
        adapter = path / "adapter"
    elif (path / "adapter_config.json").is_file():  # an adapter export keeps it at its top level
        adapter = path
    else:
        adapter = None
    full = next((path / f for f in _FULL_WEIGHTS if (path / f).is_file()), None)
    kw = {"dtype": dtype} if dtype is not None else {}
    if full is not None and (merge_adapter or adapter is None):
        model = guard(lambda: SkiLvlmForConditionalGeneration.from_pretrained(path, **kw), full)
    elif (path / MM_FILE).is_file():
        config = SkiLvlmConfig.from_pretrained(path)
        model = _assemble(config, _backbone(path, config, exported), adapter, path / MM_FILE, dtype=dtype,
                          merge=merge_adapter, guard=guard)
    else:
        raise _layout_error(path)
    processor = SkiLvlmProcessor.from_pretrained(path)
    return model.to(device).eval(), processor


def _backbone(path: Path, config: SkiLvlmConfig, exported: bool) -> str:
    """The backbone's weights: ``config.llm_name_or_path``, relative to ``path`` when that folder exists there
    (an export's copied ``base_llm/``), else as written (an absolute folder or a hub id)."""
    ref = config.llm_name_or_path
    if not ref:
        if exported:
            raise CorruptExportError(path / "config.json", "adapter export without llm_name_or_path (no backbone)")
        raise ValueError(f"{path}: no full weights and config.llm_name_or_path is empty; cannot find the backbone")
    return str(path / ref) if (path / ref).is_dir() else ref


def _assemble(config: SkiLvlmConfig, base: str, adapter_dir: Path | None, mm_file: Path, *,
              dtype: torch.dtype | None, merge: bool, guard: Callable[[Callable[[], Any], Any], Any] = _unguarded
              ) -> SkiLvlmForConditionalGeneration:
    """Backbone + (LoRA adapter) + projectors/tower, built the way training built them.

    The adapter is attached to the backbone inside the wrapper: the wrapper first fits the backbone's
    vocabulary to the config (placeholder rows, :func:`~ski_lvlm.models.lvlm.modeling.fit_vocab`) on the
    plain model. ``post_init`` would not re-initialise adapter weights attached earlier either (the wrapper
    marks every backbone tensor as loaded), so the order is for ``fit_vocab``, not for correctness of LoRA.
    """
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    # An adapter is merged in the backbone's stored precision and the sum cast afterwards: merging into
    # weights already rounded to bf16 would round twice, and load(dtype=X) would differ from load().to(X).
    kw = {"dtype": dtype} if dtype is not None and (adapter_dir is None or not merge) else {}
    llm = guard(lambda: AutoModelForCausalLM.from_pretrained(base, **kw), base)
    model = SkiLvlmForConditionalGeneration(config, language_model=llm)
    if adapter_dir is not None:
        from peft import PeftModel

        peft = guard(lambda: PeftModel.from_pretrained(model.language_model, str(adapter_dir)),
                     adapter_dir / "adapter_model.safetensors")
        model.language_model = peft.merge_and_unload() if merge else peft
    mm = guard(lambda: load_file(str(mm_file)), mm_file)
    result = model.load_state_dict(mm, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("language_model.")]
    if missing or result.unexpected_keys:
        msg = f"does not match config.json: missing {missing[:4]}, unexpected {result.unexpected_keys[:4]}"
        raise CorruptExportError(mm_file, msg) if guard is _guarded else ValueError(f"{mm_file}: {msg}")
    if dtype is not None:
        model.to(dtype)
    return model
