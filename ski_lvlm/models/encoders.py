"""Frozen encoders that turn videos and skeletons into LVLM input features (what a feature cache stores).

* :class:`VideoFeatureEncoder` / :func:`load_video_encoder`: Video-ChatGPT spatio-temporal features from an
  open_clip image tower (``clip:ARCH[:PRETRAINED]``) or the tower of a SKI-VLM folder (``ski_vlm:FOLDER``);
* :class:`SkeletonFeatureEncoder` / :func:`load_skeleton_encoder`: per-step features of a SkeletonCLIP
  skeleton encoder (``skeleton_clip:FOLDER`` or ``random:PRESET[:SEED]``).

Each encoder's ``identity()`` (config + :func:`state_dict_sha256` of its weights + sampling settings) is what
:mod:`ski_lvlm.data.feature_cache` records, so a cache made by other weights is refused as stale. These are
model code, kept apart from the cache (shards, manifest, extraction loop), which imports them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ski_lvlm.utils.run_layout import resolve_model_dir

__all__ = ["state_dict_sha256", "VideoFeatureEncoder", "SkeletonFeatureEncoder", "load_video_encoder",
           "load_skeleton_encoder"]


def state_dict_sha256(module: nn.Module | dict[str, torch.Tensor]) -> str:
    """sha256 over (name, dtype, shape, bytes) of every tensor, in sorted name order.

    Independent of device and of parameter registration order, so the same weights hash the same on CPU
    and GPU and after a save/load round trip.
    """
    state = module.state_dict() if isinstance(module, nn.Module) else module
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _parse_spec(spec: str, what: str) -> tuple[str, str, str | None]:
    parts = spec.split(":", 2)
    if len(parts) < 2 or not parts[1]:
        raise ValueError(f"{what} {spec!r}: expected KIND:NAME[:WEIGHTS]")
    return parts[0], parts[1], (parts[2] if len(parts) == 3 and parts[2] else None)


@dataclass
class VideoFeatureEncoder:
    """Video-ChatGPT spatio-temporal features from an open_clip image tower (``model.visual``).

    Use :func:`load_video_encoder` to build one from a spec. ``identity()`` is what the cache records.
    """

    visual: nn.Module
    config: dict
    frames: int = 100
    max_frames: int = 100
    sampling: str = "segment_middle"
    layer: int = -2
    resize: str = "bilinear"
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        if self.frames < 1 or self.max_frames < self.frames:
            raise ValueError(f"need 1 <= frames ({self.frames}) <= max_frames ({self.max_frames})")
        self.visual = self.visual.to(self.device).eval()
        size = self.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        mean = getattr(self.visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073)
        std = getattr(self.visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711)
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self._sha = state_dict_sha256(self.visual)
        # A SKI-VLM/ViFi-CLIP tower trained on median residuals must see them here too (model_config records it).
        self.frame_input = (self.config.get("model_config") or {}).get("frame_input", "rgb")

    def identity(self) -> dict:
        return {**self.config, "weights_sha256": self._sha, "frames": self.frames, "max_frames": self.max_frames,
                "sampling": self.sampling, "layer": self.layer, "image_size": self.image_size, "resize": self.resize}

    def load(self, path: str | Path, timeout: float | None = 60.0, backend: str | None = None) -> torch.Tensor:
        """Decode ``min(total, frames)`` frames and preprocess -> float ``[t, 3, S, S]`` (CPU)."""
        from ski_lvlm.data.video import read_frames

        frames, idx = read_frames(path, self.frames, sampling=self.sampling, backend=backend, timeout=timeout,
                                  return_indices=True)  # [frames, H, W, 3]
        # A video shorter than `frames` comes back with repeated indices; keeping each frame once gives
        # Video-ChatGPT's min(total, frames) frames (the temporal tokens are zero-padded later).
        _, first = np.unique(idx, return_index=True)
        if len(first) < len(idx):
            frames = frames[np.sort(first)]
        return self.preprocess(frames)

    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 ``[t, H, W, 3]`` -> CLIP-normalised float ``[t, 3, S, S]`` (square resize, as Video-ChatGPT)."""
        x = torch.as_tensor(np.asarray(frames)).permute(0, 3, 1, 2)  # [t, 3, H, W] uint8, channels-last in memory
        if x.shape[-2:] != (self.image_size, self.image_size):
            # Resizing uint8 is ~20x faster than float on CPU (torch's AVX2 path); the extra rounding is <= 1/255.
            kw = {"align_corners": False, "antialias": True} if self.resize in ("bilinear", "bicubic") else {}
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode=self.resize, **kw)
        x = x.float().div_(255.0)
        return ((x - self._mean) / self._std).contiguous()

    @torch.no_grad()
    def encode(self, videos: list[torch.Tensor], chunk: int = 256) -> list[torch.Tensor]:
        """Preprocessed videos ``[t_i, 3, S, S]`` -> features ``[max_frames + n_patch, width]`` each (fp32, CPU).

        All frames of the batch go through the tower together (in chunks of ``chunk`` frames), then are
        split back per video and pooled.
        """
        from ski_lvlm.models.clip_towers import apply_frame_input, frame_features
        from ski_lvlm.models.pooling import spatio_temporal_pool
        from ski_lvlm.utils.runtime import autocast

        videos = [apply_frame_input(v, self.frame_input) for v in videos]  # per video (its own median): [t_i, 3, S, S]
        flat = torch.cat(videos)  # [sum t, 3, S, S]
        tokens = []
        with autocast(self.device, "bf16" if self.device.type == "cuda" else "fp32"):
            for s in range(0, len(flat), chunk):
                tokens.append(frame_features(self.visual, flat[s:s + chunk].to(self.device), layer=self.layer)[1].float())
        tokens_all = torch.cat(tokens)  # [sum t, n_patch, width]
        out, s = [], 0
        for v in videos:
            t = len(v)
            out.append(spatio_temporal_pool(tokens_all[s:s + t], max_frames=self.max_frames).cpu())
            s += t
        return out


def load_video_encoder(spec: str, frames: int = 100, max_frames: int = 100, device: str | torch.device = "cpu",
                       sampling: str = "segment_middle", layer: int = -2, resize: str = "bilinear"
                       ) -> VideoFeatureEncoder:
    """``clip:ARCH[:PRETRAINED]`` (open_clip tower; PRETRAINED = tag or local file) or ``ski_vlm:FOLDER``
    (the image tower of a SKI-VLM / VideoCLIP model folder written by ``ski_lvlm.models.ski_vlm``, or the
    run folder holding it)."""
    device = torch.device(device)
    kind, name, weights = _parse_spec(spec, "video encoder")
    if kind == "clip":
        from ski_lvlm.models.clip_towers import create_clip

        config = {"kind": "clip", "arch": name, "pretrained": weights}
        if weights is None:
            # A randomly initialised tower (tests, quickstart) is seeded so the same command gives the same
            # weights, the same hash and therefore a resumable cache.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                visual = create_clip(name, None).visual
            config["seed"] = 0
        else:
            visual = create_clip(name, weights).visual
    elif kind == "ski_vlm":
        from ski_lvlm.models.ski_vlm import load_video_clip

        folder = name if weights is None else f"{name}:{weights}"
        model = load_video_clip(folder)
        visual = model.clip.visual
        config = {"kind": "ski_vlm", "model_config": model.config}
    else:
        raise ValueError(f"video encoder {spec!r}: kind must be 'clip' or 'ski_vlm'")
    return VideoFeatureEncoder(visual, config, frames=frames, max_frames=max_frames, sampling=sampling,
                               layer=layer, resize=resize, device=device)


@dataclass
class SkeletonFeatureEncoder:
    """Per-step features ``[T', width]`` of a SkeletonCLIP skeleton encoder (``forward -> (pooled, per_step)``).

    Skeletons are prepared exactly as for SkeletonCLIP/SKI-VLM training
    (:func:`ski_lvlm.data.action_dataset.fit_skeleton`: optional spine centring, then ``pad`` to / crop at
    ``num_frames`` or linearly ``resize`` the frames with a body to ``num_frames``), so the cached features
    are the ones the encoder learned on.
    """

    encoder: nn.Module
    config: dict
    num_frames: int = 300
    mode: str = "pad"
    center: bool = True
    device: torch.device = torch.device("cpu")

    def __post_init__(self) -> None:
        if self.mode not in ("pad", "resize"):
            raise ValueError(f"skeleton mode must be 'pad' or 'resize', got {self.mode!r}")
        self.encoder = self.encoder.to(self.device).eval()
        self._sha = state_dict_sha256(self.encoder)

    def identity(self) -> dict:
        return {**self.config, "weights_sha256": self._sha, "skeleton_frames": self.num_frames,
                "skeleton_mode": self.mode, "center": self.center}

    def load(self, path: str | Path) -> torch.Tensor:
        """Read an NTU ``.skeleton`` (or ``.npy`` ``[3, T, 25, M]``) file -> float ``[3, num_frames, 25, M]``."""
        from ski_lvlm.data.action_dataset import fit_skeleton, load_skeleton_array

        m = int(getattr(self.encoder, "num_persons", 2))
        x = load_skeleton_array(Path(path), max_persons=m)  # [3, T, 25, M]
        return torch.from_numpy(fit_skeleton(x, self.num_frames, mode=self.mode, center=self.center))

    @torch.no_grad()
    def encode(self, skeletons: list[torch.Tensor]) -> list[torch.Tensor]:
        x = torch.stack(skeletons).to(self.device)  # [b, 3, T, 25, M]
        _, per_step = self.encoder(x)  # [b, T', width]
        return list(per_step.float().cpu())


def load_skeleton_encoder(spec: str, num_frames: int | None = None, center: bool | None = None,
                          device: str | torch.device = "cpu", mode: str | None = None) -> SkeletonFeatureEncoder:
    """``skeleton_clip:FOLDER`` (a SkeletonCLIP or SKI-VLM model or run folder; its skeleton encoder) or
    ``random:PRESET[:SEED]`` (a randomly initialised preset, e.g. ``random:tiny``; for tests and smoke runs).

    ``num_frames`` / ``mode`` / ``center`` left as None come from the checkpoint's recorded training
    settings (``model_config.json["inference"]``) when it has them, else 300 / ``pad`` / True (SKI).
    """
    device = torch.device(device)
    kind, name, rest = _parse_spec(spec, "skeleton encoder")
    recorded: dict = {}
    if kind in ("skeleton_clip", "ski_vlm"):
        from ski_lvlm.models.ski_vlm import load_skeleton_clip

        folder = resolve_model_dir(name if rest is None else f"{name}:{rest}")
        model = load_skeleton_clip(folder)
        encoder, config = model.encoder, {"kind": "skeleton_clip", "model_config": model.config}
        # The training settings live in the folder's model_config.json (the rebuilt model does not keep them).
        saved = json.loads((folder / "model_config.json").read_text(encoding="utf-8"))
        if saved.get("kind") == "ski_vlm":
            saved = saved.get("skeleton") or {}
        recorded = dict(saved.get("inference") or {})
    elif kind == "random":
        from ski_lvlm.models.skeleton_encoder import create_skeleton_encoder

        seed = int(rest) if rest else 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            encoder = create_skeleton_encoder(name)
        config = {"kind": "random", "preset": name, "seed": seed}
    else:
        raise ValueError(f"skeleton encoder {spec!r}: kind must be 'skeleton_clip' or 'random'")
    return SkeletonFeatureEncoder(
        encoder, config, device=device,
        num_frames=int(num_frames if num_frames is not None else recorded.get("skeleton_frames", 300)),
        mode=mode if mode is not None else recorded.get("skeleton_mode", "pad"),
        center=bool(center if center is not None else recorded.get("center", True)))
