"""The names inside a training run folder, shared by the three recipes and everything that reads runs.

Every recipe writes ``OUT/train_log.jsonl`` (one JSON line per logged step) and its final model to
``OUT/final/``. Before issue 14 the phase-1/2 recipes (SkeletonCLIP, SKI-VLM) wrote ``OUT/metrics.jsonl``
and ``OUT/model/`` instead; runs trained then still exist on users' disks, so readers accept the old
names as deprecated aliases: the new name wins, the old one is used with a :class:`FutureWarning` that
names old -> new, and nothing fails because a run is old.

:func:`resolve_model_dir` is the one place that turns "a run folder or its model folder" into the model
folder, so callers do not repeat ``run / "final" if ... else run / "model"``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ski_lvlm.utils.errors import SkiLvlmError

__all__ = ["TRAIN_LOG", "FINAL_DIR", "OLD_TRAIN_LOG", "OLD_FINAL_DIR", "ModelFolderError", "resolve_model_dir",
           "find_train_log", "start_train_log", "CONFIG_FILE", "config_header", "run_recipe"]

TRAIN_LOG = "train_log.jsonl"
FINAL_DIR = "final"
OLD_TRAIN_LOG = "metrics.jsonl"  # phase-1/2 runs before issue 14
OLD_FINAL_DIR = "model"  # phase-1/2 runs before issue 14
CONFIG_FILE = "config.yaml"  # the run's resolved settings; its first line is config_header()
_COMMAND = "ski-lvlm train "


def config_header(recipe: str, config: str | Path = CONFIG_FILE) -> str:
    """The command that reruns a run (``skeleton-clip``, ``ski-vlm`` or ``lvlm``), written as the first line of
    its ``config.yaml``; :func:`run_recipe` reads it back."""
    return f"{_COMMAND}{recipe} --config {config}"


def run_recipe(run: str | Path) -> str | None:
    """Which recipe wrote ``run`` (``skeleton-clip``, ``ski-vlm``, ``lvlm``), from its ``config.yaml``'s first
    line; None without one. Why: an unfinished run has no final/ yet to tell its kind by."""
    cfg = Path(run) / CONFIG_FILE
    if not cfg.is_file():
        return None
    with open(cfg, encoding="utf-8") as f:
        line = f.readline()
    return line[len("# " + _COMMAND):].split(" ", 1)[0] if line.startswith("# " + _COMMAND) else None


class ModelFolderError(SkiLvlmError, FileNotFoundError):
    """A path is neither a model folder nor a run folder holding one (a ``FileNotFoundError`` as before)."""


def _warn_old(old: Path, new: Path) -> None:
    warnings.warn(f"{old}: '{old.name}' is the old name of '{new.name}' (runs trained before issue 14); "
                  f"reading it, but rename {old} -> {new}", FutureWarning, stacklevel=3)


def resolve_model_dir(path: str | Path, marker: str = "model_config.json") -> Path:
    """The model folder (the one holding ``marker``) that ``path`` names.

    ``path`` may be the model folder itself, a run folder (its ``final/``, else its old ``model/``), or a
    run's model folder written with the other name (``RUN/model`` of a new run, ``RUN/final`` of an old
    one): a config or script written for one layout still loads a run of the other. ``marker`` is
    ``model_config.json`` for SkeletonCLIP / ViFi-CLIP / SKI-VLM folders and ``config.json`` for SKI-LVLM.

    Raises:
        ModelFolderError: none of these holds ``marker``; the message names the folder and what was looked for.
    """
    path = Path(path)
    if (path / marker).is_file():
        return path
    if (path / FINAL_DIR / marker).is_file():
        return path / FINAL_DIR
    if (path / OLD_FINAL_DIR / marker).is_file():
        _warn_old(path / OLD_FINAL_DIR, path / FINAL_DIR)
        return path / OLD_FINAL_DIR
    if not path.exists() and path.name in (FINAL_DIR, OLD_FINAL_DIR):
        other = path.parent / (OLD_FINAL_DIR if path.name == FINAL_DIR else FINAL_DIR)
        if (other / marker).is_file():
            if other.name == OLD_FINAL_DIR:
                _warn_old(other, path)
            else:
                _warn_old(path, other)
            return other
    raise ModelFolderError(f"{path}: not a model folder: no {marker} in it, in {path / FINAL_DIR} or in "
                           f"{path / OLD_FINAL_DIR} (the old name of {FINAL_DIR}/); did training finish?")


def find_train_log(run: str | Path) -> Path | None:
    """``RUN/train_log.jsonl``, else the old ``RUN/metrics.jsonl`` (with a warning), else None."""
    run = Path(run)
    if (run / TRAIN_LOG).is_file():
        return run / TRAIN_LOG
    if (run / OLD_TRAIN_LOG).is_file():
        _warn_old(run / OLD_TRAIN_LOG, run / TRAIN_LOG)
        return run / OLD_TRAIN_LOG
    return None


def start_train_log(run: str | Path, fresh: bool) -> Path:
    """Prepare ``RUN/train_log.jsonl`` for appending and return it.

    A fresh run starts a fresh log (the old-named one goes too, so a rerun into an old folder leaves one
    log). A resumed run keeps its log: one written under the old name is renamed, so the resumed steps
    continue the same file instead of starting a second one.
    """
    run = Path(run)
    new, old = run / TRAIN_LOG, run / OLD_TRAIN_LOG
    if fresh:
        new.unlink(missing_ok=True)
        old.unlink(missing_ok=True)
    elif old.is_file() and not new.exists():
        _warn_old(old, new)
        old.rename(new)
    return new
