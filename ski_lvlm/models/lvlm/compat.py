"""Compatibility with Video-ChatGPT / LLAVIDAL / SKI-LVLM releases.

* ``mm_projector.bin``: their trainers save a partial state dict (``torch.save``) with keys such as
  ``model.mm_projector.weight`` / ``.bias`` (Linear 1024 -> 4096), LLAVIDAL's ``model.mm_projector_forpose.*``
  (216 -> 4096) and ``model.mm_projector_forobject.*``, and SKI's full ``model.embed_tokens.weight``
  (original-system.md §5.6). :func:`load_mm_projector` maps the projector keys onto this model's
  ``video_projector`` / ``skeleton_projector`` strictly (every shape must match; a clear error names the
  key, the file and both shapes) and reports what it ignored (object projector, token embeddings: this
  toolkit uses no start/end tokens, its placeholders are overwritten by the features).

Their instruction JSON is read by :func:`ski_lvlm.data.instructions.read_instruction_records`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["load_mm_projector", "save_mm_projector", "MM_PROJECTOR_KEYS"]

# their module name -> our attribute
MM_PROJECTOR_KEYS = {"mm_projector": "video_projector", "mm_projector_forpose": "skeleton_projector"}
_KEY_RE = re.compile(r"(?:^|\.)(mm_projector(?:_forpose|_forobject)?)\.(.+)$")


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"projector file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name
        raise ValueError(f"{path}: cannot read as a weights-only torch state dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


def load_mm_projector(model: nn.Module, path: str | Path, *, require_skeleton: bool = False) -> dict[str, Any]:
    """Load a Video-ChatGPT / LLAVIDAL / SKI ``mm_projector.bin`` into the model's projectors.

    Args:
        model: a :class:`SkiLvlmForConditionalGeneration` (or anything with ``video_projector`` /
            ``skeleton_projector``).
        path: the ``.bin`` (torch, loaded with ``weights_only=True``) or ``.safetensors`` file.
        require_skeleton: fail when the file has no pose projector.

    Returns:
        ``{"loaded": [our keys], "ignored": [their keys]}``.

    Raises:
        ValueError: no ``mm_projector`` keys, a missing/unexpected projector key, or a shape mismatch
            (the message names the key, the file and both shapes).
    """
    path = Path(path)
    state = _read_state(path)
    groups: dict[str, dict[str, torch.Tensor]] = {}
    ignored = []
    for key, value in state.items():
        m = _KEY_RE.search(key)
        if m and m.group(1) in MM_PROJECTOR_KEYS:
            groups.setdefault(MM_PROJECTOR_KEYS[m.group(1)], {})[m.group(2)] = value
        else:
            ignored.append(key)
    if "video_projector" not in groups:
        raise ValueError(f"{path}: no 'mm_projector.*' keys (found {sorted(state)[:6]}); not a projector file")
    if require_skeleton and "skeleton_projector" not in groups:
        raise ValueError(f"{path}: no 'mm_projector_forpose.*' keys but a skeleton projector was required")
    loaded = []
    for attr, sub in groups.items():
        module: nn.Module = getattr(model, attr)
        own = module.state_dict()
        problems = [f"missing {k}" for k in own if k not in sub] + [f"unexpected {k}" for k in sub if k not in own]
        problems += [f"{k}: file has {tuple(v.shape)}, model expects {tuple(own[k].shape)}"
                     for k, v in sub.items() if k in own and tuple(v.shape) != tuple(own[k].shape)]
        if problems:
            their = next(k for k, v in MM_PROJECTOR_KEYS.items() if v == attr)
            raise ValueError(f"{path}: {their} does not fit {attr} ({type(module).__name__}): " + "; ".join(problems)
                             + " (check projector_type and the feature / hidden sizes)")
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in sub.items()}, strict=True)
        loaded += [f"{attr}.{k}" for k in sub]
    return {"loaded": sorted(loaded), "ignored": sorted(ignored)}


def save_mm_projector(model: nn.Module, path: str | Path) -> None:
    """Write the projectors as ``model.mm_projector.*`` / ``model.mm_projector_forpose.*`` (torch.save)."""
    from ski_lvlm.utils.io import atomic_write_bytes
    import io

    state = {}
    for their, attr in MM_PROJECTOR_KEYS.items():
        for k, v in getattr(model, attr).state_dict().items():
            state[f"model.{their}.{k}"] = v.detach().to("cpu").clone()
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
