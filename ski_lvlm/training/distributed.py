"""DeepSpeed in one place: the only module of the toolkit that imports ``deepspeed``.

* :func:`load_deepspeed_config` reads a ZeRO JSON (``train/configs/deepspeed/*.json``) and fills its
  ``"auto"`` values from the recipe (batch size, accumulation, clipping, bf16), checking that explicit
  values agree with the recipe instead of silently preferring one of them.
* :func:`init_deepspeed` sets up the process group (single-process runs need no launcher) and wraps the
  model and the recipe's optimizer in a DeepSpeed engine.
* CPU without compilers: DeepSpeed JIT-compiles C++ ops on first use (``shm_comm`` for CPU collectives,
  ``fused_adam`` / ``cpu_adam`` for its optimizers: 16-50 s with g++). On CPU we pass the recipe's torch
  AdamW as a client optimizer (or force ``torch_adam: true`` when the JSON names an optimizer) and skip
  ``build_shm_op`` (gloo collectives are used instead), so tests and the quickstart compile nothing
  (environment.md §3).
* :func:`gathered_parameters` gathers ZeRO-3 shards around code that reads whole weights (saving).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import torch

__all__ = ["load_deepspeed_config", "init_distributed", "init_deepspeed", "gathered_parameters", "world_info", "destroy",
           "is_main_process", "barrier", "global_token_mean"]


def world_info() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from the launcher's environment (0, 0, 1 without one)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)))


def is_main_process() -> bool:
    return world_info()[0] == 0


def load_deepspeed_config(path: str | Path, *, micro_batch_size: int, grad_accum: int, grad_clip: float,
                          bf16: bool, world_size: int = 1) -> dict:
    """Read a DeepSpeed JSON and resolve ``"auto"``; ValueError listing every disagreement with the recipe."""
    path = Path(path)
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"DeepSpeed config not found: {path}") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    cfg = copy.deepcopy(cfg)
    want = {"train_micro_batch_size_per_gpu": micro_batch_size, "gradient_accumulation_steps": grad_accum,
            "gradient_clipping": grad_clip, "train_batch_size": micro_batch_size * grad_accum * world_size}
    problems = []
    for key, value in want.items():
        have = cfg.get(key, "auto")
        if have == "auto":
            cfg[key] = value
        elif have != value:
            problems.append(f"{key}: {path.name} says {have}, the recipe says {value}")
    for section, enabled in (("bf16", bf16), ("fp16", False)):
        sec = cfg.setdefault(section, {"enabled": "auto"})
        if sec.get("enabled", "auto") == "auto":
            sec["enabled"] = enabled
        elif section == "bf16" and bool(sec["enabled"]) != enabled:
            problems.append(f"bf16.enabled: {path.name} says {sec['enabled']}, the recipe's precision says {enabled}")
    if "stage" not in cfg.get("zero_optimization", {}):
        problems.append(f"zero_optimization.stage: missing in {path.name}")
    if problems:
        raise ValueError(f"DeepSpeed config {path} disagrees with the recipe: " + "; ".join(problems))
    return cfg


def _skip_cpu_jit(cfg: dict) -> None:
    """CPU: avoid every JIT build (shm_comm collectives, fused/cpu Adam)."""
    import deepspeed  # noqa: F401
    import deepspeed.comm.torch  # noqa: F401

    # `import deepspeed.comm.torch as m` would bind the torch package (the name is shadowed); go via sys.modules.
    sys.modules["deepspeed.comm.torch"].build_shm_op = lambda: None
    opt = cfg.get("optimizer")
    if opt is not None:
        opt.setdefault("params", {})["torch_adam"] = True
    offload = cfg.get("zero_optimization", {}).get("offload_optimizer")
    if offload and offload.get("device") == "cpu" and opt is not None:
        # DeepSpeedCPUAdam needs a compiled op; keep the offload but use torch's Adam
        opt["params"]["torch_adam"] = True


def init_distributed(device: torch.device) -> None:
    """Join the launcher's process group early (rank 0 prepares files the other ranks wait for)."""
    import deepspeed

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    if device.type == "cpu":
        _skip_cpu_jit({})
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo")


def init_deepspeed(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, config: dict,
                   device: torch.device) -> Any:
    """Initialise distributed (gloo on CPU, nccl on CUDA) and return a DeepSpeed engine.

    ``optimizer`` is used as DeepSpeed's client optimizer unless ``config`` has an ``optimizer``
    section. Works without a launcher (a single process sets its own rendezvous variables).
    """
    import deepspeed

    if device.type == "cpu":
        _skip_cpu_jit(config)
    init_distributed(device)
    kwargs: dict[str, Any] = {"model": model, "config": config}
    if "optimizer" in config or optimizer is None:
        kwargs["model_parameters"] = [p for p in model.parameters() if p.requires_grad]
    else:
        kwargs["optimizer"] = optimizer
    engine, *_ = deepspeed.initialize(**kwargs)
    return engine


@contextlib.contextmanager
def gathered_parameters(model: torch.nn.Module, engine: Any = None) -> Iterator[None]:
    """Full (un-sharded) parameters inside the block under ZeRO-3; a no-op otherwise."""
    if engine is None or getattr(engine, "zero_optimization_stage", lambda: 0)() < 3:
        yield
        return
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        yield


def global_token_mean(loss: torch.Tensor, num_tokens: torch.Tensor) -> torch.Tensor:
    """This rank's share of the mean over every rank's label tokens (a no-op in one process).

    ``loss`` is the mean over this rank's ``num_tokens`` label tokens. DeepSpeed averages gradients over
    ranks, and a plain average of rank means weights a token of a short-answer rank more than one of a
    long-answer rank. Scaling by ``world * num_tokens / total_tokens`` makes that average the mean over all
    label tokens of the global micro-batch: the loss (and gradient) one process holding the whole batch gets.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return loss
    world = torch.distributed.get_world_size()
    if world == 1:
        return loss
    n = num_tokens.detach().to(torch.float64).reshape(1)
    total = n.clone()
    torch.distributed.all_reduce(total)  # one scalar per micro-batch
    return loss * (n * world / total).to(loss.dtype).squeeze(0)


def barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def destroy() -> None:
    """Tear the process group down (avoids a rare abort at interpreter exit after DeepSpeed runs).

    DeepSpeed's own ``destroy_process_group`` also forgets the groups it cached, so a later run in the same
    process (tests, notebooks) can initialise again.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    ds_comm = sys.modules.get("deepspeed.comm.comm")  # the module that owns the live `cdb` global
    if ds_comm is not None and getattr(ds_comm, "cdb", None) is not None:
        ds_comm.destroy_process_group()
    else:
        torch.distributed.destroy_process_group()
