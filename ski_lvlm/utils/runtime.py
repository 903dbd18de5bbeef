"""Seeds, devices and mixed precision in one place, so recipes never hard-code CUDA or fp16."""

from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch

from ski_lvlm.utils.errors import SkiLvlmError

__all__ = ["DeviceError", "seed_everything", "pick_device", "autocast", "resolve_dtype", "native_bf16", "resolve_precision", "rng_state",
           "set_rng_state"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


class DeviceError(SkiLvlmError, RuntimeError):
    """The device asked for is not there: an input error (``cli_entry`` reports it), still a RuntimeError."""


def pick_device(preference: str = "auto") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda``/``cpu``/``cuda:1`` are taken as given.

    Raises:
        DeviceError: CUDA asked for and not available.
    """
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(preference)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError("device=cuda requested but no CUDA device is available (use device=auto or cpu)")
    return dev


def resolve_dtype(name: str) -> torch.dtype:
    table = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16}
    if name not in table:
        raise ValueError(f"unknown dtype {name!r}; use one of fp32, bf16, fp16")
    return table[name]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matmuls in hardware: CUDA, or a CPU with AMX or AVX512-BF16.

    Elsewhere bf16 is emulated and slower than fp32, so settings that ask for bf16 only for speed fall back.
    """
    if device.type == "cuda":
        return True
    if device.type != "cpu":
        return False
    try:  # private but stable since torch 2.3; a torch without them just gets fp32
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """A training precision setting -> ``"fp32"`` or ``"bf16"``.

    ``auto`` = bf16 on CUDA, fp32 on CPU (CPU runs stay exact by default); ``bf16_native`` = bf16 where
    :func:`native_bf16` holds (CUDA, AMX / AVX512-BF16 CPUs), fp32 elsewhere.
    """
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision == "bf16_native":
        return "bf16" if native_bf16(device) else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision={precision!r}: use auto, bf16_native, fp32 or bf16")
    return precision


def autocast(device: torch.device, precision: str = "fp32"):
    """Autocast on CUDA for bf16/fp16, on CPU for bf16 only; a no-op for fp32 (the default on CPU, so CPU
    runs stay exact and comparable unless bf16 is asked for: CPUs with AMX / AVX512-bf16 run it faster)."""
    if precision in ("fp32", "float32") or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16) if precision in ("bf16", "bfloat16") \
            else contextlib.nullcontext()
    return torch.autocast("cuda", dtype=resolve_dtype(precision))


def rng_state() -> dict:
    """Python/numpy/torch(/CUDA) RNG states in a form ``torch.load(weights_only=True)`` accepts.

    numpy's key array is stored as a tensor (weights_only refuses ndarrays), so resumed runs draw the same
    random numbers as uninterrupted ones.
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(tuple(tuple(v) if isinstance(v, list) else v for v in state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
