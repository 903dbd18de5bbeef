"""Resumable training checkpoints and a SIGTERM handler that stops a run cleanly.

A checkpoint is one folder ``ROOT/step_00000123/`` written atomically (temporary folder + rename):

* ``model.safetensors`` + ``model_config.json``: the weights (same layout as an inference model folder,
  so any checkpoint can be evaluated directly);
* ``optimizer.pt``: optimizer, LR scheduler (when it has state) and AMP grad-scaler states;
* ``rng.pt``: python / numpy / torch (/ CUDA) RNG states;
* ``trainer_state.json``: epoch, optimizer step, the data position inside the epoch (micro-batches
  consumed) and any extra fields (best metric, loss history length...).

``ROOT/latest`` names the newest complete checkpoint; it is rewritten only after the folder exists, so a
run killed while saving resumes from the previous checkpoint. Everything loads with
``torch.load(weights_only=True)``.

With the data order a pure function of (seed, epoch) and the position saved, a resumed CPU run
reproduces the uninterrupted run's losses exactly.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ski_lvlm.utils.io import atomic_dir, atomic_write_text
from ski_lvlm.utils.runtime import rng_state, set_rng_state

__all__ = ["TrainState", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "GracefulStop",
           "EXIT_INTERRUPTED"]


@dataclass
class TrainState:
    """Where a run is. ``batch_in_epoch`` micro-batches of epoch ``epoch`` are already consumed."""

    epoch: int = 0
    step: int = 0
    batch_in_epoch: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(root: str | Path, *, model: nn.Module, state: TrainState,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None, scaler: Any = None,
                    keep: int = 2) -> Path:
    """Write ``root/step_<step>/`` atomically, point ``root/latest`` at it, keep the newest ``keep``.

    ``model`` must be the unwrapped module (not DDP); its ``config`` dict (if any) is saved beside it.
    """
    from safetensors.torch import save_file

    root = Path(root)
    name = f"step_{state.step:08d}"
    with atomic_dir(root / name, overwrite=True) as tmp:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / "model.safetensors"))
        if getattr(model, "config", None) is not None:
            (tmp / "model_config.json").write_text(json.dumps(model.config, indent=2))
        opt = {"optimizer": optimizer.state_dict() if optimizer is not None else None,
               "scheduler": scheduler.state_dict() if hasattr(scheduler, "state_dict") else None,
               "scaler": scaler.state_dict() if scaler is not None and hasattr(scaler, "state_dict") else None}
        torch.save(opt, tmp / "optimizer.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(dataclasses.asdict(state), indent=2))
    atomic_write_text(root / "latest", name + "\n")
    old = sorted(p for p in root.glob("step_*") if p.is_dir() and p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return root / name


def latest_checkpoint(root: str | Path) -> Path | None:
    """The folder ``root/latest`` points to (or ``root`` itself if it is a checkpoint); None when absent."""
    root = Path(root)
    if (root / "trainer_state.json").is_file():
        return root
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / "trainer_state.json").is_file() else None


def load_checkpoint(path: str | Path, *, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any = None, scaler: Any = None, restore_rng: bool = True,
                    map_location: str | torch.device = "cpu") -> TrainState:
    """Restore everything :func:`save_checkpoint` wrote; weights load strictly (any key mismatch raises)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "trainer_state.json").is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint folder (no trainer_state.json)")
    weights = load_file(str(path / "model.safetensors"))
    result = model.load_state_dict(weights, strict=False)
    bad = [f"missing {k}" for k in result.missing_keys] + [f"unexpected {k}" for k in result.unexpected_keys]
    if bad:
        raise ValueError(f"{path}: checkpoint does not match the model: {', '.join(bad[:8])}"
                         + (f" (+{len(bad) - 8} more)" if len(bad) > 8 else ""))
    opt = torch.load(path / "optimizer.pt", map_location=map_location, weights_only=True)
    if optimizer is not None and opt.get("optimizer") is not None:
        optimizer.load_state_dict(opt["optimizer"])
    if scheduler is not None and opt.get("scheduler") is not None:
        scheduler.load_state_dict(opt["scheduler"])
    if scaler is not None and opt.get("scaler") is not None:
        scaler.load_state_dict(opt["scaler"])
    if restore_rng and (path / "rng.pt").is_file():
        set_rng_state(torch.load(path / "rng.pt", map_location="cpu", weights_only=True))
    return TrainState(**json.loads((path / "trainer_state.json").read_text()))


EXIT_INTERRUPTED = 143
"""Exit code of a training recipe stopped by a signal after saving (128 + SIGTERM): "stopped early, resumable"."""


class GracefulStop:
    """Context manager: SIGTERM (and SIGINT, SIGUSR1) set ``requested`` instead of killing the process.

    The training loop checks ``requested`` after each optimizer step, saves a checkpoint and returns,
    so a preempted job (SLURM sends SIGTERM) loses at most one step. A second SIGINT still interrupts
    (Ctrl-C twice). Outside the main thread (where handlers cannot be installed) it does nothing.
    """

    SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1")

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()

