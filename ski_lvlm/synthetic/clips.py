"""One clip of the synthetic world: simulate the performance, write its ``.skeleton`` file and video, describe it.

Every clip draws from its own ``numpy`` generator seeded with ``(seed, class, subject, replication)``, so a
clip is the same whatever the worker count or class subset. The draws happen in a fixed order (timing,
style, camera, bystander, noise, scene, looks, body ids): changing that order changes every clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ski_lvlm.synthetic.actions import ACTIONS, CLASS_NAMES, tempo_of

__all__ = ["ClipSpec", "camera_id", "sample_name", "make_clip"]

# nominal Kinect v2 intrinsics, for the 2D colour/depth pixel columns of the .skeleton files
_COLOR = (1081.37, 959.5, 539.5)
_DEPTH = (365.46, 255.5, 211.5)


def camera_id(azimuth: float) -> int:
    """NTU-style camera number from the azimuth bin: 1 = front (|az| < 20), 2 = person's left, 3 = right."""
    return 1 if abs(azimuth) < 20 else 2 if azimuth > 0 else 3


def sample_name(setup: int, camera: int, subject: int, replication: int, action: int) -> str:
    """NTU-style ``SsssCcccPpppRrrrAaaa`` (action = class id + 1)."""
    return f"S{setup:03d}C{camera:03d}P{subject:03d}R{replication:03d}A{action:03d}"


@dataclass(frozen=True)
class ClipSpec:
    """What one worker needs to make one clip."""

    index: int  # position in the world (clip order)
    label: int  # classes.csv id
    canonical: int  # index in CLASS_NAMES (seeds the clip, so class subsets reproduce the same clips)
    subject: int
    replication: int
    seed: int
    size: int
    fps: float
    min_frames: int
    max_frames: int
    second_person: float
    videos: bool


def _subject(seed: int, subject: int):
    """Body proportions and tempo habit of one performer (the same in all their clips)."""
    from ski_lvlm.synthetic.motions import sample_body

    rng = np.random.default_rng(np.random.SeedSequence([seed, 7_000_003, subject]))
    return sample_body(rng), float(rng.uniform(-0.1, 0.1))


def _order_bodies(xyz: np.ndarray) -> np.ndarray:
    """Put bodies in the order ``read_ntu_skeleton`` returns them: most motion first, ties in file order."""
    from ski_lvlm.data.skeleton import body_motion

    motions = []
    for m in range(xyz.shape[-1]):
        present = np.any(xyz[..., m] != 0, axis=(0, 2))
        motions.append(body_motion(xyz[..., m][:, present].transpose(1, 2, 0)) if present.any() else -1.0)
    order = sorted(range(xyz.shape[-1]), key=lambda m: -motions[m])
    return xyz[..., order]


def _timing(spec: ClipSpec, habit: float, rng: np.random.Generator):
    """How fast and how long the performance is: faster performances are shorter, with a little idle time
    before and after the action.

    Returns ``(speed, t_len, start, end, tau, t_sec)``: the speed factor, the frame count, the (fractional)
    frames where the action starts and ends, the action's progress per frame ``tau`` [T] in 0..1 and the
    time of each frame in seconds ``t_sec`` [T].
    """
    speed = float(np.exp(rng.uniform(np.log(0.75), np.log(1.5)) + habit))
    speed = float(np.clip(speed, 0.7, 1.6))
    t_len = int(np.clip(round(1.6 * spec.fps / speed), spec.min_frames, spec.max_frames))
    lead, tail = rng.uniform(0.0, 0.08, size=2)
    start, end = lead * (t_len - 1), (1.0 - tail) * (t_len - 1)
    frames = np.arange(t_len, dtype=np.float64)
    tau = np.clip((frames - start) / max(end - start, 1.0), 0.0, 1.0)
    t_sec = frames / spec.fps
    return speed, t_len, start, end, tau, t_sec


def _bystander(camera, actor_x: float, t_sec: np.ndarray, probability: float, rng: np.random.Generator):
    """Maybe a second person beside the actor, standing around or walking past.

    Returns ``(kind, joints, body)``: kind "none" | "standing" | "walking", camera-space joints [T, 25, 3]
    and the bystander's body (both None when there is no one).
    """
    from ski_lvlm.synthetic.motions import idle_joints, sample_body, walk_joints

    if not rng.random() < probability:
        return "none", None, None
    other = sample_body(rng)
    side = 1.0 if rng.random() < 0.5 else -1.0
    lateral, depth = actor_x + side * float(rng.uniform(0.9, 1.4)), float(rng.uniform(0.3, 1.4))
    if rng.random() < 0.5:
        kind = "standing"
        bj = camera.to_camera(idle_joints(t_sec, other, rng), offset=(0.0, depth),
                              azimuth=float(rng.uniform(-70, 70)))
    else:
        kind = "walking"
        walk_az = (1.0 if rng.random() < 0.5 else -1.0) * float(rng.uniform(75, 105))
        bj = camera.to_camera(walk_joints(t_sec, other, rng, float(rng.uniform(0.5, 1.0))), offset=(0.0, depth),
                              azimuth=walk_az)
    bj[..., 0] += lateral - bj[:, 0, 0].mean()  # centre its path on the chosen spot
    return kind, bj, other


def _write_clip(out_dir: Path, name: str, spec: ClipSpec, xyz: np.ndarray, body_ids: list[int], scene, camera,
                figures: list[tuple]) -> None:
    """Write ``skeletons/<name>.skeleton`` (with Kinect-like 2D colour/depth columns) and, when asked,
    ``videos/<name>.mp4`` rendered from ``figures``, one ``(look, build)`` per person."""
    from ski_lvlm.data.skeleton import write_ntu_skeleton
    from ski_lvlm.data.video import write_video
    from ski_lvlm.synthetic.render import render_background, render_frames

    z = np.maximum(xyz[2], 1e-3)
    present = np.any(xyz != 0, axis=0, keepdims=True)
    color = np.where(present, np.stack([_COLOR[1] + _COLOR[0] * xyz[0] / z, _COLOR[2] - _COLOR[0] * xyz[1] / z]), 0)
    depth = np.where(present, np.stack([_DEPTH[1] + _DEPTH[0] * xyz[0] / z, _DEPTH[2] - _DEPTH[0] * xyz[1] / z]), 0)
    write_ntu_skeleton(out_dir / "skeletons" / f"{name}.skeleton", xyz, color_xy=color.astype(np.float32),
                       depth_xy=depth.astype(np.float32), body_ids=body_ids)
    if spec.videos:
        background = render_background(scene, camera, spec.size)
        video = render_frames([(xyz[..., m].transpose(1, 2, 0).astype(np.float64), look, build)
                               for m, (look, build) in enumerate(figures)], background, spec.size, camera)
        write_video(out_dir / "videos" / f"{name}.mp4", video, spec.fps)


def make_clip(spec: ClipSpec, out_dir: str | Path | None) -> dict[str, Any]:
    """Simulate, write (when ``out_dir`` is given) and describe one clip.

    Returns the sample name, label, frame count, the skeleton exactly as ``read_ntu_skeleton`` will read
    it back (float32 ``[3, T, 25, 2]``) and the facts captions are written from.
    """
    from ski_lvlm.synthetic.motions import Camera, Style, motion_joints
    from ski_lvlm.synthetic.render import SCENES, sample_look, sample_scene

    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, spec.canonical, spec.subject, spec.replication]))
    body, habit = _subject(spec.seed, spec.subject)
    action = ACTIONS[CLASS_NAMES[spec.canonical]]

    speed, t_len, start, end, tau, t_sec = _timing(spec, habit, rng)
    style = Style(amp=float(rng.uniform(0.85, 1.15)), reps=float(rng.random()),
                  phase=float(rng.uniform(0, 2 * np.pi)), aim=float(rng.random()))
    joints = motion_joints(action.motion, tau, t_sec, body, style, rng)  # [T, 25, 3] body frame

    camera = Camera(azimuth=float(rng.uniform(-60, 60)), elevation=float(rng.uniform(0, 25)),
                    distance=float(rng.uniform(2.7, 3.6)),
                    aim_height=float(0.55 * body.height + rng.uniform(-0.05, 0.05)))
    actor_x = float(rng.uniform(-0.3, 0.3))
    people = [camera.to_camera(joints, offset=(actor_x, 0.0))]  # each [T, 25, 3] camera space
    jitter = float(rng.uniform(0.002, 0.01))
    bystander, other_joints, other_body = _bystander(camera, actor_x, t_sec, spec.second_person, rng)
    builds = [body.build]
    if other_joints is not None:
        people.append(other_joints)
        builds.append(other_body.build)
    xyz = np.zeros((3, t_len, 25, 2), np.float32)
    for m, p in enumerate(people):  # sensor noise
        noisy = p + rng.normal(0.0, jitter, size=p.shape)
        xyz[..., m] = noisy.transpose(2, 0, 1).astype(np.float32)
    scene = sample_scene(rng)
    looks = [sample_look(rng) for _ in people]
    body_ids = [72057594037927936 + int(rng.integers(1, 10**6)) for _ in range(2)]

    name = sample_name(scene.kind + 1, camera_id(camera.azimuth), spec.subject, spec.replication, spec.label + 1)
    if out_dir is not None:
        _write_clip(Path(out_dir), name, spec, xyz, body_ids, scene, camera, list(zip(looks, builds)))
    return {
        "name": name, "label": spec.label, "class": action.name, "subject": spec.subject,
        "replication": spec.replication, "frames": t_len, "xyz": _order_bodies(xyz),
        "speed": round(speed, 4), "tempo": tempo_of(speed), "scene": SCENES[scene.kind],
        "azimuth": round(camera.azimuth, 2), "elevation": round(camera.elevation, 2),
        "distance": round(camera.distance, 3), "height": round(body.height, 3), "bystander": bystander,
        "action_start": round(start / spec.fps, 2), "action_end": round(end / spec.fps, 2),
        "length": round(t_len / spec.fps, 2),
    }
