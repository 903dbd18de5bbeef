"""Linear probes: how much of the action labels a frozen video encoder's features hold.

An LVLM cannot name an action that its video tokens do not carry, so the first question about a video
pathway is whether a linear classifier can read the class from its features. This module extracts
features from any video encoder the toolkit can load and fits one (standardised features, multinomial
logistic regression, fixed ``C``) on a train manifest, then reports top-1 on a test manifest.

Encoders (:func:`load_probe_encoder` specs):

* ``embedding:FOLDER``: the pooled video embedding ``[d]`` of a SKI-VLM / ViFi-CLIP / VideoCLIP model
  folder, exactly what zero-shot classification uses (mean over frames of the image tower's output,
  the folder's recorded frame count and frame input, resize + centre crop as in ``ActionDataset``).
* ``clip:ARCH[:WEIGHTS]`` / ``ski_vlm:FOLDER``: the LVLM's video pathway built from that encoder spec
  (the same strings as ``model.video_encoder`` of ``ski-lvlm train lvlm``): frames -> frozen tower
  (penultimate block's patch tokens) -> Video-ChatGPT pooling (:class:`ski_lvlm.models.lvlm.VideoTower`)
  -> ``[n_v, d_v]`` = ``t`` temporal tokens (+ zero padding to ``max_frames``) and ``n_patch`` spatial tokens.
* ``lvlm:FOLDER``: the same pathway with the tower weights and sampling settings of an LVLM run
  (``RUN``, ``RUN/final``) or an export folder, i.e. exactly the tokens that run's projector reads.
* ``cache:FOLDER``: the video features of a feature cache written by ``ski-lvlm data features``.

Token features (all but ``embedding``) are the pooled tokens flattened: ``tokens="all"`` gives the ``t``
real temporal rows and the ``n_patch`` spatial rows, concatenated (the zero padding rows carry nothing
and are dropped), ``"temporal"`` only the per-frame rows (they keep the frame order), ``"spatial"`` only
the per-patch rows (a mean over time).

Notation: ``n`` clips, ``t`` frames, ``n_v`` video tokens, ``d_v`` token width, ``D`` feature size.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ski_lvlm.utils.run_layout import ModelFolderError, resolve_model_dir

__all__ = ["ProbeEncoder", "EmbeddingEncoder", "TowerEncoder", "CacheEncoder", "load_probe_encoder", "fit_probe",
           "check_classes", "subject_of", "split_by_subject", "probe_key", "run_probe", "TOKEN_CHOICES", "DEFAULT_C"]

TOKEN_CHOICES = ("all", "temporal", "spatial")
DEFAULT_C = 1.0
"""Inverse L2 strength on standardised features; fixed (not tuned on the test set). 1.0 is sklearn's default."""


class ProbeEncoder(Protocol):
    description: str
    """What the features are, for probe.json and the report."""

    def identity(self) -> dict:
        """Weights hash and settings: two encoders with the same identity give the same features."""

    def features(self, manifest: Path, classes_csv: Path, progress: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``X [n, D]`` float32, ``y [n]`` labels and the clip names of a manifest."""


def _samples(manifest: Path, classes_csv: Path):
    from ski_lvlm.data.action_dataset import read_class_csv, read_manifest

    names = read_class_csv(classes_csv)
    return read_manifest(manifest, len(names), need_video=True, need_skeleton=False)


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="video", disable=not progress or None, leave=False, dynamic_ncols=True)


def _sha(module: torch.nn.Module) -> str:
    from ski_lvlm.models.encoders import state_dict_sha256

    return state_dict_sha256(module)


# --------------------------------------------------------------------------------------------------
# encoders
# --------------------------------------------------------------------------------------------------
class EmbeddingEncoder:
    """The pooled video embedding ``[d]`` of a SKI-VLM / ViFi-CLIP folder (the one zero-shot compares with text)."""

    def __init__(self, folder: str | Path, *, num_frames: int | None = None, device: str | torch.device = "cpu",
                 batch_size: int = 8):
        from ski_lvlm.models.clip_towers import clip_image_stats
        from ski_lvlm.models.ski_vlm import load_video_clip

        self.folder, self.device, self.batch_size = Path(folder), torch.device(device), batch_size
        self.model = load_video_clip(self.folder, self.device)
        inference = self.model.config.get("inference", {})
        self.num_frames = int(num_frames or inference.get("num_frames", 8))
        self.mean, self.std, self.size = clip_image_stats(self.model.clip)
        self.description = (f"pooled video embedding of {self.folder} (what zero-shot uses: mean over "
                            f"{self.num_frames} frames of the image tower's output, frame input "
                            f"{self.model.frame_input})")

    def identity(self) -> dict:
        return {"kind": "embedding", "weights_sha256": _sha(self.model.clip.visual), "num_frames": self.num_frames,
                "image_size": self.size, "frame_input": self.model.frame_input}

    @torch.no_grad()
    def features(self, manifest: Path, classes_csv: Path, progress: bool = True):
        from torch.utils.data import DataLoader

        from ski_lvlm.data.action_dataset import ActionDataset

        ds = ActionDataset(manifest, classes_csv, with_video=True, with_skeleton=False, num_frames=self.num_frames,
                           image_size=self.size, mean=self.mean, std=self.std, sampling="segment_middle")
        xs, ys, names = [], [], []
        bar = _bar(len(ds), f"probe features {Path(manifest).stem}", progress)
        for batch in DataLoader(ds, batch_size=self.batch_size):
            xs.append(self.model.encode_video(batch["video"].to(self.device)).float().cpu())  # [b, d]
            ys.append(batch["label"])
            names += list(batch["name"])
            bar.update(len(batch["label"]))
        bar.close()
        return torch.cat(xs).numpy(), torch.cat(ys).numpy(), names


def _select_rows(tokens: torch.Tensor, t: int, n_temporal: int, which: str) -> torch.Tensor:
    """``[b, n_v, d_v]`` -> ``[b, rows, d_v]``: the ``t`` real temporal rows and/or the spatial rows.

    ``n_v = n_temporal + n_patch``; rows ``t..n_temporal`` are the zero padding to ``max_frames``.
    """
    temporal, spatial = tokens[:, :t], tokens[:, n_temporal:]
    if which == "temporal":
        return temporal
    if which == "spatial":
        return spatial
    return torch.cat([temporal, spatial], dim=1)


class TowerEncoder:
    """The LVLM's video tokens: frames -> :class:`~ski_lvlm.models.lvlm.VideoTower` -> rows, flattened."""

    def __init__(self, tower, *, num_frames: int, sampling: str, tokens: str = "all", source: str,
                 device: str | torch.device = "cpu", batch_size: int = 8):
        if tokens not in TOKEN_CHOICES:
            raise ValueError(f"tokens must be one of {TOKEN_CHOICES}, got {tokens!r}")
        self.device = torch.device(device)
        self.tower, self.num_frames, self.sampling, self.tokens = tower.to(self.device).eval(), num_frames, sampling, tokens
        self.batch_size, self.source = batch_size, source
        n_t = tower.max_frames if tower.max_frames is not None else num_frames
        if num_frames > n_t:
            raise ValueError(f"{source}: {num_frames} frames > max_frames={n_t}")
        self.n_temporal = n_t
        rows = {"all": num_frames + tower.num_patches, "temporal": num_frames, "spatial": tower.num_patches}[tokens]
        self.description = (f"LVLM video tokens of {source}: {num_frames} frames ({sampling}) -> tower layer "
                            f"{tower.layer} patch tokens -> {num_frames} temporal + {tower.num_patches} spatial "
                            f"pooled tokens x {tower.width}; probe input: the {tokens} rows flattened "
                            f"({rows} x {tower.width} = {rows * tower.width})")

    def identity(self) -> dict:
        return {"kind": "tower", "weights_sha256": _sha(self.tower.visual), "layer": self.tower.layer,
                "frame_input": self.tower.frame_input, "num_frames": self.num_frames, "max_frames": self.n_temporal,
                "sampling": self.sampling, "image_size": self.tower.image_size, "tokens": self.tokens}

    @torch.no_grad()
    def _encode(self, frames: list[np.ndarray]) -> torch.Tensor:
        x = torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3).to(self.device)  # [b, t, 3, H, W] uint8
        tokens = self.tower(x)  # [b, n_v, d_v]
        rows = _select_rows(tokens, self.num_frames, self.n_temporal, self.tokens)  # [b, rows, d_v]
        return rows.flatten(1).float().cpu()  # [b, D]

    def features(self, manifest: Path, classes_csv: Path, progress: bool = True):
        from ski_lvlm.data.video import read_frames

        samples = _samples(manifest, classes_csv)
        xs, batch = [], []
        bar = _bar(len(samples), f"probe features {Path(manifest).stem}", progress)
        for s in samples:
            frames = read_frames(s.video, self.num_frames, sampling=self.sampling)  # [t, H, W, 3] uint8
            if batch and frames.shape != batch[0].shape:  # a batch holds one frame size (the tower resizes)
                xs.append(self._encode(batch))
                batch = []
            batch.append(frames)
            if len(batch) >= self.batch_size:
                xs.append(self._encode(batch))
                batch = []
            bar.update(1)
        if batch:
            xs.append(self._encode(batch))
        bar.close()
        return torch.cat(xs).numpy(), np.array([s.label for s in samples]), [s.name for s in samples]


class CacheEncoder:
    """Video features ``[max_frames + n_patch, d_v]`` read from a ``ski-lvlm data features`` cache (ids = video stems)."""

    def __init__(self, folder: str | Path, *, tokens: str = "all"):
        from ski_lvlm.data.feature_cache import FeatureCache

        if tokens not in TOKEN_CHOICES:
            raise ValueError(f"tokens must be one of {TOKEN_CHOICES}, got {tokens!r}")
        self.cache, self.tokens = FeatureCache(folder), tokens
        video = self.cache.identity.get("video") or {}
        self.frames, self.max_frames = int(video.get("frames", 0)), int(video.get("max_frames", 0))
        self.description = (f"feature cache {folder} (frames {self.frames}, max_frames {self.max_frames}, layer "
                            f"{video.get('layer')}); probe input: the {tokens} rows flattened")

    def identity(self) -> dict:
        from ski_lvlm.data.feature_cache import essential_identity

        return {"kind": "cache", "video": essential_identity(self.cache.identity).get("video"), "tokens": self.tokens}

    def features(self, manifest: Path, classes_csv: Path, progress: bool = True):
        samples = _samples(manifest, classes_csv)
        xs = []
        bar = _bar(len(samples), f"probe features {Path(manifest).stem}", progress)
        for s in samples:
            if s.name not in self.cache:
                raise ValueError(f"{manifest}: clip {s.name!r} is not in the feature cache {self.cache.path}; make "
                                 f"it with `ski-lvlm data features --manifest {manifest} ...`")
            v = self.cache.get(s.name)["video"].float()[None]  # [1, max_frames + n_patch, d_v]
            xs.append(_select_rows(v, self.frames, self.max_frames, self.tokens).flatten(1))  # [1, D]
            bar.update(1)
        bar.close()
        return torch.cat(xs).numpy(), np.array([s.label for s in samples]), [s.name for s in samples]


def _lvlm_tower(folder: Path):
    """(VideoTower with the run's weights, its config) from an LVLM run, final/ or export folder."""
    from safetensors import safe_open

    from ski_lvlm.models.lvlm import VideoTower

    try:
        final = resolve_model_dir(folder, marker="config.json")
    except ModelFolderError as e:
        raise ModelFolderError(f"not an LVLM run, final/ or export folder: {e}") from None
    cfg = json.loads((final / "config.json").read_text(encoding="utf-8"))
    if not cfg.get("video_encoder"):
        raise ValueError(f"{final}/config.json: the model has no video tower (video_encoder is empty)")
    tower = VideoTower(cfg["video_encoder"], cfg.get("max_frames"))
    weights = next((final / f for f in ("mm_modules.safetensors", "model.safetensors") if (final / f).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{final}: no mm_modules.safetensors or model.safetensors with the tower weights")
    prefix = "video_tower."
    with safe_open(str(weights), framework="pt") as f:  # only the tower's tensors, never the LLM's
        state = {k[len(prefix):]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)}
    result = tower.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{weights}: video tower weights do not match {final}/config.json (missing "
                         f"{result.missing_keys[:4]}, unexpected {result.unexpected_keys[:4]})")
    return tower, cfg, final


def load_probe_encoder(spec: str, *, tokens: str = "all", num_frames: int | None = None,
                       max_frames: int | None = None, sampling: str | None = None, layer: int = -2,
                       device: str | torch.device = "cpu", batch_size: int = 8) -> ProbeEncoder:
    """An encoder from a spec (see the module docstring); ``ValueError`` / ``FileNotFoundError`` on bad input.

    ``num_frames`` / ``max_frames`` / ``sampling`` default to the LVLM recipe's defaults (8, 8,
    ``segment_middle``) for encoder specs, to the run's own settings for ``lvlm:``, and to the folder's
    training frame count for ``embedding:``.
    """
    kind, _, rest = spec.partition(":")
    if not rest:
        raise ValueError(f"encoder {spec!r}: expected embedding:FOLDER, clip:ARCH[:WEIGHTS], ski_vlm:FOLDER, "
                         "lvlm:FOLDER or cache:FOLDER")
    if kind == "embedding":
        return EmbeddingEncoder(rest, num_frames=num_frames, device=device, batch_size=batch_size)
    if kind == "cache":
        return CacheEncoder(rest, tokens=tokens)
    if kind == "lvlm":
        tower, cfg, final = _lvlm_tower(Path(rest))
        if num_frames and num_frames != cfg.get("num_frames"):
            raise ValueError(f"{spec}: the run reads {cfg.get('num_frames')} frames; --frames cannot change that")
        return TowerEncoder(tower, num_frames=int(cfg.get("num_frames", 8)), tokens=tokens, device=device,
                            sampling=sampling or cfg.get("frame_sampling") or "segment_middle",
                            source=f"{final} (encoder {cfg['video_encoder'].get('kind')})", batch_size=batch_size)
    if kind in ("clip", "ski_vlm"):
        from ski_lvlm.models.encoders import load_video_encoder
        from ski_lvlm.models.lvlm import VideoTower

        num_frames, sampling = num_frames or 8, sampling or "segment_middle"
        max_frames = max_frames or num_frames
        # The same construction as `ski-lvlm train lvlm` (a seeded random tower for clip:ARCH without weights).
        enc = load_video_encoder(spec, frames=num_frames, max_frames=max_frames, sampling=sampling, layer=layer)
        tower = VideoTower({**enc.config, "layer": layer}, max_frames)
        tower.visual.load_state_dict(enc.visual.state_dict())
        return TowerEncoder(tower, num_frames=num_frames, sampling=sampling, tokens=tokens, source=spec,
                            device=device, batch_size=batch_size)
    raise ValueError(f"encoder {spec!r}: unknown kind {kind!r} (embedding, clip, ski_vlm, lvlm or cache)")


# --------------------------------------------------------------------------------------------------
# splits and the probe itself
# --------------------------------------------------------------------------------------------------
def subject_of(name: str) -> int | None:
    """The performer of an NTU-style clip name (``S001C002P003R001A004`` -> 3), or None."""
    m = re.search(r"P(\d{3})", name)
    return int(m.group(1)) if m else None


def split_by_subject(names: list[str]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Hold out every third subject (in sorted order) of a training manifest as validation.

    The same rule the synthetic world uses for its test subjects, applied to the training subjects, so
    settings can be chosen without looking at the test subjects. Returns (train indices, validation
    indices, validation subjects).
    """
    subjects = [subject_of(n) for n in names]
    unknown = [n for n, s in zip(names, subjects) if s is None]
    if unknown:
        raise ValueError(f"cannot split by subject: clip names without a subject (PNNN) such as {unknown[0]!r}")
    distinct = sorted(set(subjects))
    if len(distinct) < 2:
        raise ValueError(f"cannot split by subject: the training manifest has only subject(s) {distinct}")
    held = distinct[2::3] or distinct[-1:]
    is_val = np.array([s in held for s in subjects])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val), held


def check_classes(y_train: np.ndarray, y_test: np.ndarray, class_names: list[str]) -> set[int]:
    """The training classes; ``ValueError`` naming every test class the training set lacks."""
    seen = set(np.unique(y_train).tolist())
    missing = sorted(set(np.unique(y_test).tolist()) - seen)
    if missing:
        named = ", ".join(f"{class_names[i]!r} (id {i})" for i in missing)
        raise ValueError(f"the test set has {len(missing)} class(es) the training set lacks: {named}; a probe "
                         "cannot predict a class it never saw")
    if len(seen) < 2:
        raise ValueError(f"the training set has {len(seen)} class; a probe needs at least 2")
    return seen


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
              class_names: list[str], *, C: float = DEFAULT_C, max_iter: int = 5000) -> dict[str, Any]:
    """Standardise, fit multinomial logistic regression on the train features, score the test features.

    Args:
        x_train: ``[n_train, D]``; y_train ``[n_train]`` in ``0..len(class_names)-1``; likewise the test set.

    Returns:
        ``accuracy`` (top-1), ``per_class`` (test accuracy per class name; None for a class without test
        clips), ``mean_class_accuracy``, ``train_accuracy``, ``n_train``, ``n_test``, ``dim``, ``chance``
        (1 / classes seen in training), ``converged``.

    Raises:
        ValueError: a test class the training set lacks (named), fewer than two training classes, or
            feature sizes that differ.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"train features are {x_train.shape[1]}-d but test features {x_test.shape[1]}-d")
    seen = check_classes(y_train, y_test, class_names)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x_train.astype(np.float64), y_train)
    pred = clf.predict(x_test.astype(np.float64))
    per_class = {}
    for i, name in enumerate(class_names):
        mask = y_test == i
        per_class[name] = float((pred[mask] == i).mean()) if mask.any() else None
    scored = [v for v in per_class.values() if v is not None]
    return {"accuracy": float((pred == y_test).mean()), "per_class": per_class,
            "mean_class_accuracy": float(np.mean(scored)), "train_accuracy": float(clf.score(x_train, y_train)),
            "n_train": int(len(y_train)), "n_test": int(len(y_test)), "dim": int(x_train.shape[1]),
            "chance": 1.0 / len(seen), "C": C,
            "converged": not any(issubclass(w.category, ConvergenceWarning) for w in caught)}


def _file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def probe_key(identity: dict, train: Path, test: Path | None, classes_csv: Path, *, C: float,
              val_from_train: bool) -> dict:
    """Everything a probe result depends on (``identity`` = the encoder's): reuse an earlier probe.json
    only when its ``key`` equals this."""
    return {"encoder": identity, "train": _file_sha(train), "test": None if val_from_train else _file_sha(test),
            "classes": _file_sha(classes_csv), "C": C, "val_from_train": val_from_train}


def run_probe(encoder: ProbeEncoder, train: str | Path, test: str | Path | None, classes_csv: str | Path, *,
              C: float = DEFAULT_C, val_from_train: bool = False, progress: bool = True) -> dict[str, Any]:
    """Extract features, fit and score: the content of ``probe.json``.

    With ``val_from_train`` the test manifest is not read: the probe trains on two thirds of the training
    subjects and is scored on the others (:func:`split_by_subject`).
    """
    from ski_lvlm.data.action_dataset import read_class_csv

    train, classes_csv = Path(train), Path(classes_csv)
    class_names = read_class_csv(classes_csv)
    # Check the splits from the manifests alone, before a single video is decoded.
    train_samples = _samples(train, classes_csv)
    labels = np.array([s.label for s in train_samples])
    if val_from_train:
        tr, va, held = split_by_subject([s.name for s in train_samples])
        check_classes(labels[tr], labels[va], class_names)
    elif test is None:
        raise ValueError("give a test manifest, or use val_from_train")
    else:
        check_classes(labels, np.array([s.label for s in _samples(Path(test), classes_csv)]), class_names)
    tic = time.time()
    x_tr, y_tr, _ = encoder.features(train, classes_csv, progress)  # [n_train, D]
    if val_from_train:
        x_te, y_te = x_tr[va], y_tr[va]
        x_tr, y_tr = x_tr[tr], y_tr[tr]
        split = f"validation: subjects {held} of {train} (the probe trains on the other subjects)"
    else:
        x_te, y_te, _ = encoder.features(Path(test), classes_csv, progress)
        split = f"test: {test}"
    seconds_features = time.time() - tic
    res = fit_probe(x_tr, y_tr, x_te, y_te, class_names, C=C)
    res.update(features=encoder.description, train=str(train), test=None if val_from_train else str(test),
               split=split, classes=class_names,
               key=probe_key(encoder.identity(), train, None if val_from_train else Path(test), classes_csv, C=C,
                             val_from_train=val_from_train),
               seconds={"features": round(seconds_features, 2), "total": round(time.time() - tic, 2)})
    return res
