"""The synthetic ADL world: a small, deterministic activities-of-daily-living dataset in real formats.

Nothing can be downloaded on our machines, so every stage of the toolkit trains and evaluates on this
world first. :func:`generate_world` writes (see the README section "The synthetic ADL world" for the layout):

* NTU ``.skeleton`` text files of 20 everyday actions performed by parametric 3D skeletons
  (:mod:`ski_lvlm.synthetic.motions`) and the cross-subject ``skeletons.npz`` the loaders read;
* H.264 videos of the same motions rendered as person figures (:mod:`ski_lvlm.synthetic.render`), the same
  frame count as the skeleton;
* captions, Video-ChatGPT QA pairs, LLaVA instruction JSON, a Charades-format caption test CSV, and
  base/novel class splits plus ``video_path,skeleton_path,label`` manifests;
* ``class_phrases.json``: the words that identify each class, side and tempo in a caption
  (:func:`class_phrases`), so ``eval captions`` can tell a grounded caption from a generic one.

Class names are compositional ("wave left hand", "raise right hand", ...) so a text encoder can
recognise an unseen combination of seen words: the default novel classes (wave right hand, touch head
with left hand, kick with left leg, raise left hand) each recombine words of base classes.

Appearance (body size, clothes, room, camera) is drawn independently of the action, so only the motion
tells the classes apart; the subtle pairs (left vs right, sit down vs stand up, drink vs brush teeth)
differ only in how the body moves.

Determinism: every clip draws from its own ``numpy`` generator seeded with ``(seed, class, subject,
replication)``, so the same seed gives byte-identical skeleton files and annotation files whatever the
worker count (and a class subset gives the same clips as the full world). Videos are encoded
single-threaded. ``world.json`` records the generation time and is the only file that differs.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ski_lvlm.config import ConfigError, to_dict
from ski_lvlm.data.protocols import write_protocol_files

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_NOVEL",
    "ActionClass",
    "ACTIONS",
    "SyntheticConfig",
    "ClipSpec",
    "plan_clips",
    "make_clip",
    "generate_world",
    "sample_name",
    "camera_id",
    "held_out_subjects",
    "class_phrases",
    "QUESTIONS",
]

# ----------------------------------------------------------------------------------------------------------
# The classes


@dataclass(frozen=True)
class ActionClass:
    """One action: its motion and the words that describe it (captions, QA, Charades fields)."""

    name: str
    motion: str  # key into ski_lvlm.synthetic.motions.MOTIONS
    verb: str  # third person: "waves their left hand"
    gerund: str  # "waving their left hand"
    part: str  # the body part that moves most: "the left hand"
    limb: tuple[str, str] | None  # ("hand" | "leg", "left" | "right" | "both") for "which hand/leg" questions
    where: str = ""  # a short place phrase for captions: "above the shoulder"
    detail: str = ""  # a participle clause: "swinging it from side to side"
    objects: str = ""  # Charades ``objects`` field (';'-separated)


def _sided(side: str) -> dict[str, ActionClass]:
    return {
        f"wave {side} hand": ActionClass(
            f"wave {side} hand", f"wave_{side}", f"waves their {side} hand", f"waving their {side} hand",
            f"the {side} hand", ("hand", side), "above the shoulder", "swinging the forearm from side to side"),
        f"raise {side} hand": ActionClass(
            f"raise {side} hand", f"raise_{side}", f"raises their {side} hand", f"raising their {side} hand",
            f"the {side} arm", ("hand", side), "above the head", "lifting the straight arm up high"),
        f"touch head with {side} hand": ActionClass(
            f"touch head with {side} hand", f"touch_head_{side}", f"touches their head with their {side} hand",
            f"touching their head with their {side} hand", f"the {side} hand", ("hand", side), "",
            "resting the hand on top of the head with the elbow out"),
        f"kick with {side} leg": ActionClass(
            f"kick with {side} leg", f"kick_{side}", f"kicks with their {side} leg", f"kicking with their {side} leg",
            f"the {side} leg", ("leg", side), "into the air in front of them",
            "swinging the leg forward and snapping the knee straight"),
    }


_L, _R = _sided("left"), _sided("right")
ACTIONS: dict[str, ActionClass] = {a.name: a for a in [
    _L["wave left hand"], _R["wave right hand"], _L["raise left hand"], _R["raise right hand"],
    _L["touch head with left hand"], _R["touch head with right hand"],
    _L["kick with left leg"], _R["kick with right leg"],
    ActionClass("drink water", "drink", "drinks water with their right hand", "drinking water with their right hand",
                "the right hand", ("hand", "right"), "", "lifting the hand to the mouth and tilting the head back",
                "cup"),
    ActionClass("brush teeth", "brush_teeth", "brushes their teeth with their right hand",
                "brushing their teeth with their right hand", "the right hand", ("hand", "right"), "",
                "moving the hand quickly from side to side at the mouth", "toothbrush"),
    ActionClass("sit down", "sit_down", "sits down", "sitting down", "the legs", None, "",
                "bending the knees and lowering the hips as if onto a chair", "chair"),
    ActionClass("stand up", "stand_up", "stands up", "standing up", "the legs", None, "",
                "straightening the legs and rising from a seated position", "chair"),
    ActionClass("clap", "clap", "claps their hands", "clapping their hands", "both hands", ("hand", "both"),
                "in front of the chest", "bringing both hands together several times"),
    ActionClass("bow", "bow", "bows", "bowing", "the upper body", None, "from the hips",
                "bending the upper body forward and straightening up again"),
    ActionClass("cross arms", "cross_arms", "crosses their arms", "crossing their arms", "both arms",
                ("hand", "both"), "over the chest", "folding each hand onto the opposite upper arm"),
    ActionClass("squat", "squat", "squats down", "squatting down", "the legs", None, "",
                "bending both knees deeply with the arms held out in front"),
    ActionClass("jump", "jump", "jumps", "jumping", "the whole body", None, "on the spot",
                "swinging the arms up and pushing off with both legs"),
    ActionClass("point with right hand", "point_right", "points with their right hand",
                "pointing with their right hand", "the right arm", ("hand", "right"), "at something in front",
                "stretching the right arm out at shoulder height"),
    ActionClass("pick up", "pick_up", "picks something up with their right hand",
                "picking something up with their right hand", "the upper body and the right hand", ("hand", "right"),
                "from the floor", "bending down to reach the floor", "object"),
    ActionClass("throw", "throw", "throws something with their right hand", "throwing something with their right hand",
                "the right arm", ("hand", "right"), "over the shoulder",
                "swinging the arm back behind the head and then forward", "ball"),
]}

CLASS_NAMES: tuple[str, ...] = (
    "wave left hand", "wave right hand", "raise left hand", "raise right hand", "touch head with left hand",
    "touch head with right hand", "kick with left leg", "kick with right leg", "drink water", "brush teeth",
    "sit down", "stand up", "clap", "bow", "cross arms", "squat", "jump", "point with right hand", "pick up", "throw",
)
assert tuple(ACTIONS) == CLASS_NAMES

DEFAULT_NOVEL: tuple[str, ...] = (
    "wave right hand", "touch head with left hand", "kick with left leg", "raise left hand",
)

TEMPO_WORDS: dict[str, tuple[tuple[str, ...], str, str]] = {
    # tempo -> (adverb phrases, adjective, QA answer)
    "slow": (("slowly", "at a slow pace", "unhurriedly"), "slow", "Slowly."),
    "normal": (("at a normal pace", "at a steady pace", "steadily"), "steady", "At a normal pace."),
    "fast": (("quickly", "rapidly", "at a fast pace"), "fast", "Quickly."),
}
_SLOW_BELOW, _FAST_ABOVE = 0.9, 1.25  # speed factor thresholds (speed is drawn log-uniformly in 0.75..1.5)
_WHO = (("a person", "the person"), ("a person", "the person"), ("an individual", "the individual"),
        ("an adult", "the adult"))
_DESCRIBE = (
    "Describe what the person is doing in this video.",
    "What is happening in this video?",
    "Give a short description of the activity in the video.",
    "Explain the action performed by the person in the video.",
)
# nominal Kinect v2 intrinsics, for the 2D colour/depth pixel columns of the .skeleton files
_COLOR = (1081.37, 959.5, 539.5)
_DEPTH = (365.46, 255.5, 211.5)


def tempo_of(speed: float) -> str:
    return "slow" if speed < _SLOW_BELOW else "fast" if speed > _FAST_ABOVE else "normal"


def camera_id(azimuth: float) -> int:
    """NTU-style camera number from the azimuth bin: 1 = front (|az| < 20), 2 = person's left, 3 = right."""
    return 1 if abs(azimuth) < 20 else 2 if azimuth > 0 else 3


def sample_name(setup: int, camera: int, subject: int, replication: int, action: int) -> str:
    """NTU-style ``SsssCcccPpppRrrrAaaa`` (action = class id + 1)."""
    return f"S{setup:03d}C{camera:03d}P{subject:03d}R{replication:03d}A{action:03d}"


def held_out_subjects(n_subjects: int) -> list[int]:
    """Cross-subject split: every third subject (3, 6, 9, ...) is held out; the last one when fewer than 3."""
    held = [p for p in range(1, n_subjects + 1) if p % 3 == 0]
    return held or [n_subjects]


def validation_subjects(n_subjects: int) -> list[int]:
    """Every third *training* subject: ``train_val.csv``, for choosing settings without the test subjects."""
    held = set(held_out_subjects(n_subjects))
    train = [p for p in range(1, n_subjects + 1) if p not in held]
    return train[2::3] if len(train) >= 3 else []


# ----------------------------------------------------------------------------------------------------------
# Config


def _close(name: str, choices) -> str:
    m = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {m[0]!r}?)" if m else ""


def _probe_writable(out: Path) -> str | None:
    """Really try to create a folder where ``out`` would go (``os.access`` says yes to root on read-only places)."""
    parent = out.parent if not out.exists() else out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"out: {parent} is not a folder"
    try:
        probe = tempfile.mkdtemp(prefix=".ski-lvlm-probe-", dir=parent)
        os.rmdir(probe)
    except OSError as e:
        return f"out: cannot create folders in {parent} ({e.strerror or e})"
    return None


def _decord_problem(size: int) -> str | None:
    """decord 0.6 fails on some frame sizes (48 and 72 px among them); try a 2-frame video of ``size`` first."""
    try:
        import decord  # noqa: F401
    except ImportError:
        return None
    from ski_lvlm.data.video import VideoDecodeError, read_frames, write_video

    with tempfile.TemporaryDirectory(prefix="ski-lvlm-size-") as tmp:
        path = Path(tmp) / "probe.mp4"
        write_video(path, np.zeros((2, size, size, 3), np.uint8), 30.0)
        try:
            read_frames(path, 2, sampling="uniform", backend="decord", timeout=None)
        except VideoDecodeError:
            return (f"size: decord cannot decode {size}x{size} videos (a decord bug); "
                    "choose another size, e.g. 64 or 112")
    return None


@dataclass
class SyntheticConfig:
    """Settings of ``ski-lvlm data synthetic``. Default: 20 classes x 9 subjects x 2 replications = 360 clips."""

    out: str = ""
    """Output folder (the WORLD). Generated in a temporary sibling folder and renamed when complete."""
    seed: int = 0
    """Master seed; each clip draws from its own generator seeded with (seed, class, subject, replication)."""
    classes: list[str] = field(default_factory=list)
    """Subset of the 20 class names to generate (empty = all), in canonical order."""
    novel: list[str] | None = None
    """Unseen (zero-shot) classes; None = the default novel classes that are in ``classes``."""
    subjects: int = 9
    """Number of performers (body proportions are per subject); every third one is a test subject."""
    replications: int = 2
    """Clips per (class, subject)."""
    per_class: int = 0
    """Clips per class (0 = subjects x replications); clip k: subject 1 + k % subjects, rep 1 + k // subjects."""
    size: int = 112
    """Video frame size in pixels (square, even)."""
    fps: float = 30.0
    """Frames per second of skeletons and videos."""
    min_frames: int = 32
    """Shortest clip (fast performances)."""
    max_frames: int = 64
    """Longest clip (slow performances)."""
    second_person: float = 0.3
    """Probability that a second person (standing around or walking past) is in the clip."""
    videos: bool = True
    """Render the mp4 videos (False: skeletons and annotations only, much faster)."""
    workers: int = 2
    """Worker processes (the output does not depend on this)."""
    overwrite: bool = False
    """Replace an existing ``out`` (only after the new world is complete)."""

    def class_list(self) -> list[str]:
        chosen = set(self.classes) if self.classes else set(CLASS_NAMES)
        return [c for c in CLASS_NAMES if c in chosen]

    def novel_list(self) -> list[str]:
        classes = self.class_list()
        novel = set(DEFAULT_NOVEL if self.novel is None else self.novel)
        return [c for c in classes if c in novel]

    def clips_per_class(self) -> int:
        return self.per_class or self.subjects * self.replications

    def validate(self) -> list[str]:
        p: list[str] = []
        if not self.out:
            p.append("out: required (the folder to create, e.g. --out runs/world)")
        if self.seed < 0:
            p.append(f"seed: must be >= 0, got {self.seed}")
        if self.subjects < 2:
            p.append(f"subjects: must be >= 2 (at least one train and one test subject), got {self.subjects}")
        if self.replications < 1:
            p.append(f"replications: must be >= 1, got {self.replications}")
        if self.per_class < 0:
            p.append(f"per_class: must be >= 0 (0 = subjects x replications), got {self.per_class}")
        elif 0 < self.per_class < self.subjects and self.subjects >= 2:
            p.append(f"per_class: must be 0 or >= subjects ({self.subjects}) so every subject appears, "
                     f"got {self.per_class}")
        if self.size < 32 or self.size > 1024 or self.size % 2:
            p.append(f"size: must be an even number of pixels in 32..1024, got {self.size}")
        elif self.videos:
            problem = _decord_problem(self.size)
            if problem:
                p.append(problem)
        if not self.fps > 0:
            p.append(f"fps: must be > 0, got {self.fps}")
        if self.min_frames < 8:
            p.append(f"min_frames: must be >= 8, got {self.min_frames}")
        if self.max_frames < self.min_frames:
            p.append(f"max_frames: must be >= min_frames ({self.min_frames}), got {self.max_frames}")
        if not 0.0 <= self.second_person <= 1.0:
            p.append(f"second_person: must be a probability in [0, 1], got {self.second_person}")
        if self.workers < 1:
            p.append(f"workers: must be >= 1, got {self.workers}")
        unknown = [c for c in self.classes if c not in ACTIONS]
        for c in unknown:
            p.append(f"classes: unknown class {c!r}{_close(c, CLASS_NAMES)}; known: {', '.join(CLASS_NAMES)}")
        if len(set(self.classes)) != len(self.classes):
            p.append("classes: contains duplicates")
        for c in self.novel or []:
            if c not in ACTIONS:
                p.append(f"novel: unknown class {c!r}{_close(c, CLASS_NAMES)}")
            elif c not in self.class_list():
                p.append(f"novel: {c!r} is not one of the generated classes")
        if not unknown:
            n_cls, n_novel = len(self.class_list()), len(self.novel_list())
            if n_cls < 2:
                p.append(f"classes: need at least 2 classes, got {n_cls}")
            elif n_novel == 0:
                p.append("novel: no novel class among the generated classes; pass --novel NAME[,NAME]")
            elif n_novel >= n_cls:
                p.append("novel: at least one class must stay a base (seen) class")
        if self.out:
            out = Path(self.out)
            if out.exists() and not out.is_dir():
                p.append(f"out: {out} exists and is a file, not a folder")
            elif out.exists() and not self.overwrite:
                p.append(f"out: {out} already exists (pass --overwrite to replace it)")
            else:
                problem = _probe_writable(out)
                if problem:
                    p.append(problem)
        return p


# ----------------------------------------------------------------------------------------------------------
# Clips


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


def plan_clips(cfg: SyntheticConfig) -> list[ClipSpec]:
    """All clips in world order: class by class, then replication, then subject."""
    specs = []
    for label, name in enumerate(cfg.class_list()):
        for k in range(cfg.clips_per_class()):
            subject, rep = 1 + k % cfg.subjects, 1 + k // cfg.subjects
            specs.append(ClipSpec(len(specs), label, CLASS_NAMES.index(name), subject, rep, cfg.seed, cfg.size,
                                  cfg.fps, cfg.min_frames, cfg.max_frames, cfg.second_person, cfg.videos))
    return specs


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


def make_clip(spec: ClipSpec, out_dir: str | Path | None) -> dict[str, Any]:
    """Simulate, write (when ``out_dir`` is given) and describe one clip.

    Returns the sample name, label, frame count, the skeleton exactly as ``read_ntu_skeleton`` will read
    it back (float32 ``[3, T, 25, 2]``) and the facts captions are written from.
    """
    from ski_lvlm.synthetic.motions import Camera, Style, idle_joints, motion_joints, sample_body, walk_joints
    from ski_lvlm.synthetic.render import SCENES, render_background, render_frames, sample_look, sample_scene

    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, spec.canonical, spec.subject, spec.replication]))
    body, habit = _subject(spec.seed, spec.subject)
    action = ACTIONS[CLASS_NAMES[spec.canonical]]

    # timing: faster performances are shorter; a little idle time before and after the action
    speed = float(np.exp(rng.uniform(np.log(0.75), np.log(1.5)) + habit))
    speed = float(np.clip(speed, 0.7, 1.6))
    t_len = int(np.clip(round(1.6 * spec.fps / speed), spec.min_frames, spec.max_frames))
    lead, tail = rng.uniform(0.0, 0.08, size=2)
    start, end = lead * (t_len - 1), (1.0 - tail) * (t_len - 1)
    frames = np.arange(t_len, dtype=np.float64)
    tau = np.clip((frames - start) / max(end - start, 1.0), 0.0, 1.0)
    t_sec = frames / spec.fps
    style = Style(amp=float(rng.uniform(0.85, 1.15)), reps=float(rng.random()),
                  phase=float(rng.uniform(0, 2 * np.pi)), aim=float(rng.random()))
    joints = motion_joints(action.motion, tau, t_sec, body, style, rng)  # [T, 25, 3] body frame

    camera = Camera(azimuth=float(rng.uniform(-60, 60)), elevation=float(rng.uniform(0, 25)),
                    distance=float(rng.uniform(2.7, 3.6)),
                    aim_height=float(0.55 * body.height + rng.uniform(-0.05, 0.05)))
    actor_x = float(rng.uniform(-0.3, 0.3))
    people = [camera.to_camera(joints, offset=(actor_x, 0.0))]
    jitter = float(rng.uniform(0.002, 0.01))
    bystander, builds = "none", [body.build]
    if rng.random() < spec.second_person:
        other = sample_body(rng)
        builds.append(other.build)
        side = 1.0 if rng.random() < 0.5 else -1.0
        lateral, depth = actor_x + side * float(rng.uniform(0.9, 1.4)), float(rng.uniform(0.3, 1.4))
        if rng.random() < 0.5:
            bystander = "standing"
            bj = camera.to_camera(idle_joints(t_sec, other, rng), offset=(0.0, depth),
                                  azimuth=float(rng.uniform(-70, 70)))
        else:
            bystander = "walking"
            walk_az = (1.0 if rng.random() < 0.5 else -1.0) * float(rng.uniform(75, 105))
            bj = camera.to_camera(walk_joints(t_sec, other, rng, float(rng.uniform(0.5, 1.0))), offset=(0.0, depth),
                                  azimuth=walk_az)
        bj[..., 0] += lateral - bj[:, 0, 0].mean()  # centre its path on the chosen spot
        people.append(bj)
    xyz = np.zeros((3, t_len, 25, 2), np.float32)
    for m, p in enumerate(people):
        noisy = p + rng.normal(0.0, jitter, size=p.shape)
        xyz[..., m] = noisy.transpose(2, 0, 1).astype(np.float32)
    scene = sample_scene(rng)
    looks = [sample_look(rng) for _ in people]
    body_ids = [72057594037927936 + int(rng.integers(1, 10**6)) for _ in range(2)]

    name = sample_name(scene.kind + 1, camera_id(camera.azimuth), spec.subject, spec.replication, spec.label + 1)
    if out_dir is not None:
        from ski_lvlm.data.skeleton import write_ntu_skeleton
        from ski_lvlm.data.video import write_video

        out_dir = Path(out_dir)
        z = np.maximum(xyz[2], 1e-3)
        present = np.any(xyz != 0, axis=0, keepdims=True)
        color = np.where(present, np.stack([_COLOR[1] + _COLOR[0] * xyz[0] / z, _COLOR[2] - _COLOR[0] * xyz[1] / z]), 0)
        depth = np.where(present, np.stack([_DEPTH[1] + _DEPTH[0] * xyz[0] / z, _DEPTH[2] - _DEPTH[0] * xyz[1] / z]), 0)
        write_ntu_skeleton(out_dir / "skeletons" / f"{name}.skeleton", xyz, color_xy=color.astype(np.float32),
                           depth_xy=depth.astype(np.float32), body_ids=body_ids)
        if spec.videos:
            background = render_background(scene, camera, spec.size)
            video = render_frames([(xyz[..., m].transpose(1, 2, 0).astype(np.float64), looks[m], builds[m])
                                   for m in range(len(people))], background, spec.size, camera)
            write_video(out_dir / "videos" / f"{name}.mp4", video, spec.fps)
    return {
        "name": name, "label": spec.label, "class": action.name, "subject": spec.subject,
        "replication": spec.replication, "frames": t_len, "xyz": _order_bodies(xyz),
        "speed": round(speed, 4), "tempo": tempo_of(speed), "scene": SCENES[scene.kind],
        "azimuth": round(camera.azimuth, 2), "elevation": round(camera.elevation, 2),
        "distance": round(camera.distance, 3), "height": round(body.height, 3), "bystander": bystander,
        "action_start": round(start / spec.fps, 2), "action_end": round(end / spec.fps, 2),
        "length": round(t_len / spec.fps, 2),
    }


# ----------------------------------------------------------------------------------------------------------
# Language: captions, QA, instructions


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def captions_for(clip: dict[str, Any], rng: np.random.Generator) -> list[str]:
    """3-5 captions of one clip; each names the action (with its body side/part) and most name the tempo."""
    a = ACTIONS[clip["class"]]
    adverbs, adj, _ = TEMPO_WORDS[clip["tempo"]]
    adv = lambda: adverbs[int(rng.integers(len(adverbs)))]  # noqa: E731
    a_who, the_who = _WHO[int(rng.integers(len(_WHO)))]
    pool = [
        f"{a_who} {a.verb} {adv()}.",
        f"Someone is {a.gerund}, moving {adv()}.",
        f"{the_who} {a.verb} {adv()}, {a.detail}.",
        f"In a {clip['scene']}, {a_who} {a.verb} {adv()}.",
        f"{a_who} {a.verb}, {a.detail}, and the movement is {adj}.",
    ]
    part = a.part.replace("the ", "their ")
    if a.part.replace("the ", "") not in a.verb:  # name the body part where the verb does not
        pool.append(f"{a_who} {a.verb} {adv()}, mostly moving {part}.")
    if a.where:
        pool.insert(0, f"{a_who} {a.verb} {adv()} {a.where}.")
    first = pool[0]
    rest = pool[1:]
    picks = rng.choice(len(rest), size=int(rng.integers(2, 5)), replace=False)
    caps = [first] + [rest[int(i)] for i in sorted(picks)]
    if clip["bystander"] != "none":
        verb = "walks past" if clip["bystander"] == "walking" else "stands nearby"
        k = int(rng.integers(len(caps)))
        caps[k] = caps[k][:-1] + f" while another person {verb} in the background."
    return [_cap(c) for c in caps]


# The world's closed questions by type (class_phrases.json maps each to its type for `eval captions`).
QUESTIONS: dict[str, str] = {
    "action": "What is the person doing in the video?",
    "side": "Which {kind} does the person use?",
    "part": "Which body part moves the most?",
    "tempo": "How fast does the person move?",
    "anyone_else": "Is there anyone else in the video?",
    "scene": "Where does this take place?",
}


def qa_for(clip: dict[str, Any]) -> list[tuple[str, str]]:
    """Question/answer pairs about the action, the hand or leg, the body part, the tempo and the scene."""
    a = ACTIONS[clip["class"]]
    qa = [(QUESTIONS["action"], f"The person is {a.gerund}.")]
    if a.limb is not None:
        kind, side = a.limb
        ans = f"Both {kind}s." if side == "both" else f"The {side} {kind}."
        qa.append((QUESTIONS["side"].format(kind=kind), ans))
    qa.append((QUESTIONS["part"], _cap(a.part) + "."))
    qa.append((QUESTIONS["tempo"], TEMPO_WORDS[clip["tempo"]][2]))
    other = {"none": "No, the person is alone.", "standing": "Yes, another person stands in the background.",
             "walking": "Yes, another person walks past in the background."}[clip["bystander"]]
    qa.append((QUESTIONS["anyone_else"], other))
    qa.append((QUESTIONS["scene"], f"In a {clip['scene']}."))
    return qa


def class_phrases(classes: list[str]) -> dict[str, Any]:
    """What identifies each class, side and tempo in a caption: the contents of ``class_phrases.json``.

    ``ski_lvlm.metrics.grounding`` reads it to tell a caption that names the clip's action from a generic
    one. Per class: ``verbs``, the head verb's forms (third person, gerund, base: "waves", "waving",
    "wave"; with the particle when the class name has it, "sits down", so that "another person stands
    nearby" is not "stand up"); ``side`` (left/right/both, or null) and ``part``. The head verbs differ
    between classes, so the verb and, for classes that share a verb (wave left/right hand), the side
    identify the class. ``tempo`` lists each tempo's words; ``tempo_ignore`` the motion descriptions
    that use a tempo word for something else ("moving the hand quickly from side to side" is how
    brushing looks at any tempo).
    """
    from ski_lvlm.synthetic.render import SCENES

    tempo_words = {w for advs, adj, _ in TEMPO_WORDS.values() for w in (*advs, adj)}
    out: dict[str, Any] = {}
    for name in classes:
        a = ACTIONS[name]
        forms = [a.verb.split()[0], a.gerund.split()[0], name.split()[0]]
        particle = name.split()[1] if len(name.split()) > 1 and name.split()[1] in ("up", "down") else None
        if particle and a.verb.split()[1] == particle:
            forms = [f"{f} {particle}" for f in forms]
        out[name] = {"verbs": forms, "side": a.limb[1] if a.limb else None, "part": a.part}
    ignore = []
    for a in ACTIONS.values():
        words = a.detail.split()
        hits = [i for i, w in enumerate(words) if w in tempo_words]
        if hits:
            ignore.append(" ".join(words[hits[0]:]))
    questions = {QUESTIONS["side"].format(kind=k): "side" for k in ("hand", "leg")}
    questions.update({q: t for t, q in QUESTIONS.items() if t != "side"})
    return {"format": "ski-lvlm-class-phrases/1", "classes": out,
            "sides": {"left": ["left"], "right": ["right"], "both": ["both"]},
            "tempo": {t: [*advs, adj] for t, (advs, adj, _) in TEMPO_WORDS.items()},
            "tempo_ignore": ignore, "scenes": list(SCENES), "questions": questions}


def _csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8", newline="\n")


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=1, ensure_ascii=False) + "\n"


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def write_annotations(root: Path, cfg: SyntheticConfig, clips: list[dict[str, Any]]) -> dict[str, Any]:
    """Write every index/annotation file of the world from the clip facts; return the split counts."""
    classes, novel = cfg.class_list(), cfg.novel_list()
    base = [c for c in classes if c not in novel]
    held = set(held_out_subjects(cfg.subjects))
    _write(root / "classes.csv", _csv_text(["id", "name"], [[i, c] for i, c in enumerate(classes)]))
    _write(root / "zsl_base_classes.csv", _csv_text(["id", "name"], [[i, c] for i, c in enumerate(base)]))
    _write(root / "zsl_novel_classes.csv", _csv_text(["id", "name"], [[i, c] for i, c in enumerate(novel)]))
    _write(root / "Charades_v1_classes.txt", "".join(f"c{i:03d} {c}\n" for i, c in enumerate(classes)))

    def row(c: dict[str, Any], label: int) -> list[Any]:
        return [f"videos/{c['name']}.mp4", f"skeletons/{c['name']}.skeleton", label]

    header = ["video_path", "skeleton_path", "label"]
    train = [c for c in clips if c["subject"] not in held]
    test = [c for c in clips if c["subject"] in held]
    val_subjects = set(validation_subjects(cfg.subjects))
    splits = {
        "train": [row(c, c["label"]) for c in train],
        "test": [row(c, c["label"]) for c in test],
        "train_fit": [row(c, c["label"]) for c in train if c["subject"] not in val_subjects],
        "train_val": [row(c, c["label"]) for c in train if c["subject"] in val_subjects],
        "zsl_base_train": [row(c, base.index(c["class"])) for c in train if c["class"] in base],
        "zsl_base_val": [row(c, base.index(c["class"])) for c in test if c["class"] in base],
        "zsl_novel_test": [row(c, novel.index(c["class"])) for c in clips if c["class"] in novel],
    }
    for split, rows in splits.items():
        _write(root / f"{split}.csv", _csv_text(header, rows))

    facts = ["name", "class", "label", "subject", "replication", "frames", "length", "speed", "tempo", "scene",
             "azimuth", "elevation", "distance", "height", "bystander", "action_start", "action_end"]
    _write(root / "clips.csv", _csv_text(facts, [[c[k] for k in facts] for c in clips]))
    # cross-view and zero-shot validation manifests (ski_lvlm.data.protocols); new files only, so the
    # default protocol's files and counts stay what they were
    write_protocol_files(root, clips, classes, novel, held)

    captions, qa, instr_train, instr_test, charades = {}, [], [], [], []
    # the validation subjects' share of the training set, as caption/QA eval sets, for choosing settings
    # without looking at the test subjects (train on instructions_train_fit.json, score Charades_v1_val.csv)
    qa_val, instr_fit, charades_val = [], [], []

    def charades_row(c: dict[str, Any], caps: list[str]) -> list[Any]:
        return [c["name"], f"P{c['subject']:03d}", _cap(c["scene"]), 7, 7, "Yes", caps[0], ACTIONS[c["class"]].objects,
                ";".join(caps), f"c{c['label']:03d} {c['action_start']:.2f} {c['action_end']:.2f}", f"{c['length']:.2f}"]

    for c in clips:
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, CLASS_NAMES.index(c["class"]), c["subject"],
                                                            c["replication"], 1]))
        caps = captions_for(c, rng)
        captions[c["name"]] = caps
        pairs = qa_for(c)
        turns = [{"from": "human", "value": "<video>\n" + _DESCRIBE[int(rng.integers(len(_DESCRIBE)))]},
                 {"from": "gpt", "value": caps[0]}]
        for i in sorted(rng.choice(len(pairs), size=2, replace=False)):
            q, ans = pairs[int(i)]
            turns += [{"from": "human", "value": q}, {"from": "gpt", "value": ans}]
        item = {"id": c["name"], "video": f"videos/{c['name']}.mp4", "skeleton": f"skeletons/{c['name']}.skeleton",
                "conversations": turns}
        if c["subject"] in held:
            instr_test.append(item)
            qa += [{"video_id": c["name"], "q": q, "a": ans} for q, ans in pairs]
            charades.append(charades_row(c, caps))
        else:
            instr_train.append(item)
            if c["subject"] in val_subjects:
                qa_val += [{"video_id": c["name"], "q": q, "a": ans} for q, ans in pairs]
                charades_val.append(charades_row(c, caps))
            else:
                instr_fit.append(item)
    _write(root / "captions.json", _json(captions))
    _write(root / "class_phrases.json", _json(class_phrases(classes)))
    _write(root / "qa.json", _json(qa))
    _write(root / "instructions_train.json", _json(instr_train))
    _write(root / "instructions_test.json", _json(instr_test))
    header = ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects", "descriptions",
              "actions", "length"]
    _write(root / "Charades_v1_test.csv", _csv_text(header, charades))
    _write(root / "Charades_v1_val.csv", _csv_text(header, charades_val))
    _write(root / "qa_val.json", _json(qa_val))
    _write(root / "instructions_train_fit.json", _json(instr_fit))
    counts = {k: len(v) for k, v in splits.items()}
    counts.update(clips=len(clips), captions=sum(len(v) for v in captions.values()), qa=len(qa),
                  instructions_train=len(instr_train), instructions_test=len(instr_test))
    return counts


def _write_npz(root: Path, cfg: SyntheticConfig, clips: list[dict[str, Any]]) -> None:
    """``skeletons.npz``: x float32 [N, 3, T_max, 25, 2] (zero-padded), y int64, files = sample names."""
    held = set(held_out_subjects(cfg.subjects))
    t_max = max(c["frames"] for c in clips)
    arrays = {}
    for split, keep in (("train", lambda s: s not in held), ("test", lambda s: s in held)):
        sel = [c for c in clips if keep(c["subject"])]
        x = np.zeros((len(sel), 3, t_max, 25, 2), np.float32)
        for i, c in enumerate(sel):
            x[i, :, : c["frames"]] = c["xyz"]
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = np.array([c["label"] for c in sel], np.int64)
        arrays[f"files_{split}"] = np.array([c["name"] for c in sel], dtype="<U20")
    np.savez_compressed(root / "skeletons.npz", **arrays)


def _run_clip(args: tuple[ClipSpec, str]) -> dict[str, Any]:
    spec, out = args
    return make_clip(spec, out)


def generate_world(cfg: SyntheticConfig, progress: bool = True) -> dict[str, Any]:
    """Validate ``cfg``, generate the world into a temporary folder and rename it to ``cfg.out``.

    Returns the ``world.json`` record. Raises :class:`ConfigError` (before writing anything) for bad settings.
    """
    from tqdm import tqdm

    from ski_lvlm.utils.io import atomic_dir

    problems = cfg.validate()
    if problems:
        raise ConfigError(problems)
    t0 = time.perf_counter()
    specs = plan_clips(cfg)
    out = Path(cfg.out)
    with atomic_dir(out, overwrite=cfg.overwrite) as tmp:
        (tmp / "skeletons").mkdir()
        if cfg.videos:
            (tmp / "videos").mkdir()
        jobs = [(s, str(tmp)) for s in specs]
        bar = tqdm(total=len(jobs), desc="synthetic world", unit="clip", disable=not progress, dynamic_ncols=True)
        clips: list[dict[str, Any]] = []
        if cfg.workers == 1:
            results = map(_run_clip, jobs)
            for r in results:
                clips.append(r)
                bar.update()
        else:
            import multiprocessing as mp

            with mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn").Pool(cfg.workers) as pool:
                for r in pool.imap(_run_clip, jobs, chunksize=2):
                    clips.append(r)
                    bar.update()
        bar.close()
        names = [c["name"] for c in clips]
        if len(set(names)) != len(names):  # pragma: no cover - names are unique by construction
            raise RuntimeError("duplicate sample names")
        counts = write_annotations(tmp, cfg, clips)
        _write_npz(tmp, cfg, clips)
        frames = np.array([c["frames"] for c in clips])
        record = {
            "generator": "ski-lvlm data synthetic",
            "format_version": 1,
            "seed": cfg.seed,
            "settings": {k: v for k, v in to_dict(cfg).items() if k not in ("out", "overwrite")},
            "classes": cfg.class_list(),
            "base_classes": [c for c in cfg.class_list() if c not in cfg.novel_list()],
            "novel_classes": cfg.novel_list(),
            "subjects": {"train": [p for p in range(1, cfg.subjects + 1) if p not in held_out_subjects(cfg.subjects)],
                         "test": held_out_subjects(cfg.subjects)},
            "counts": counts,
            "frames": {"min": int(frames.min()), "max": int(frames.max()), "mean": round(float(frames.mean()), 2),
                       "total": int(frames.sum())},
            "video": ({"size": [cfg.size, cfg.size], "fps": cfg.fps, "codec": "H.264 yuv420p mp4"}
                      if cfg.videos else None),
            "coordinates": "camera space as Kinect v2 / NTU: metres, x towards the sensor's left (image right), y up, "
                           "z away from the sensor; skeletons.npz holds the same raw values as the .skeleton files "
                           "(no centring), bodies ordered most-motion first like read_ntu_skeleton",
            "tempo_thresholds": {"slow_below": _SLOW_BELOW, "fast_above": _FAST_ABOVE},
        }
        record["bytes"] = _du(tmp)
        record["generation_seconds"] = round(time.perf_counter() - t0, 2)
        record["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        _write(tmp / "world.json", _json(record))
    return record
