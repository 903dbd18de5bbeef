"""Parametric 3D motions of the NTU 25-joint skeleton: the actors of the synthetic ADL world.

A motion is a function of the action progress ``tau`` (one value in [0, 1] per frame) that fills a
:class:`Pose`: limb directions and trunk/head angles in the person's own frame. :func:`forward_kinematics`
turns a pose and a :class:`Body` (bone lengths of one subject) into joint positions, and :class:`Camera`
places the person in front of a Kinect-like sensor. Everything is vectorised over frames with numpy.

Frames used here:

* body frame ``(l, u, f)``: towards the person's left, up, the way the person faces; metres; the origin
  is on the floor under the resting pelvis.
* camera space, as Kinect v2 / NTU RGB+D: metres, right-handed, **x towards the sensor's left** (which is
  the right-hand side of the mirror-like image that Kinect streams and our videos show), **y up**,
  **z away from the sensor**. A person facing the camera therefore has the right shoulder at larger x.

Subtle pairs differ only by motion: left/right variants mirror the same function (``side`` = +1 left,
-1 right); ``stand up`` is ``sit down`` played backwards; ``drink water`` and ``brush teeth`` both bring
the right hand to the mouth, but drinking tilts the head back and lifts the hand while brushing
oscillates the hand quickly from side to side.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ski_lvlm.data.skeleton import NTU_JOINT_NAMES, NUM_JOINTS

__all__ = [
    "Body",
    "Pose",
    "Style",
    "Camera",
    "MOTIONS",
    "sample_body",
    "rest_pose",
    "forward_kinematics",
    "motion_joints",
    "idle_joints",
    "walk_joints",
    "J",
]

DEG = np.pi / 180.0


class _Joints:
    """0-based NTU joint indices by name (``J.HAND_R``); checked against ``NTU_JOINT_NAMES`` at import."""

    SPINE_BASE, SPINE_MID, NECK, HEAD = 0, 1, 2, 3
    SHOULDER_L, ELBOW_L, WRIST_L, HAND_L = 4, 5, 6, 7
    SHOULDER_R, ELBOW_R, WRIST_R, HAND_R = 8, 9, 10, 11
    HIP_L, KNEE_L, ANKLE_L, FOOT_L = 12, 13, 14, 15
    HIP_R, KNEE_R, ANKLE_R, FOOT_R = 16, 17, 18, 19
    SPINE_SHOULDER = 20
    HAND_TIP_L, THUMB_L, HAND_TIP_R, THUMB_R = 21, 22, 23, 24


J = _Joints
assert NTU_JOINT_NAMES[J.HAND_R] == "hand_right" and NTU_JOINT_NAMES[J.THUMB_L] == "thumb_left"
assert NTU_JOINT_NAMES[J.SPINE_SHOULDER] == "spine_shoulder" and NTU_JOINT_NAMES[J.FOOT_R] == "foot_right"

# per arm/leg index k: side sign s (+1 = left, -1 = right) and the joints of that limb
_ARM = ((+1.0, J.SHOULDER_L, J.ELBOW_L, J.WRIST_L, J.HAND_L, J.HAND_TIP_L, J.THUMB_L),
        (-1.0, J.SHOULDER_R, J.ELBOW_R, J.WRIST_R, J.HAND_R, J.HAND_TIP_R, J.THUMB_R))
_LEG = ((+1.0, J.HIP_L, J.KNEE_L, J.ANKLE_L, J.FOOT_L), (-1.0, J.HIP_R, J.KNEE_R, J.ANKLE_R, J.FOOT_R))


# ----------------------------------------------------------------------------------------------------------
# Subjects


@dataclass(frozen=True)
class Body:
    """Bone lengths of one subject (metres). ``build`` scales limb thickness in the renderer."""

    height: float
    spine: float  # spine base -> spine shoulder
    neck: float
    head: float  # neck -> head joint (centre of the head)
    shoulder_half: float
    shoulder_drop: float  # shoulders sit a little below the spine-shoulder joint
    upper_arm: float
    forearm: float
    hand: float  # wrist -> hand centre
    hand_tip: float  # hand centre -> finger tips
    hip_half: float
    hip_drop: float
    thigh: float
    shin: float
    ankle_height: float
    foot: float
    build: float = 1.0

    @property
    def pelvis_height(self) -> float:
        """Height of the spine-base joint above the floor when standing straight."""
        return self.hip_drop + self.thigh + self.shin + self.ankle_height

    @property
    def scale(self) -> float:
        return self.height / 1.7


def sample_body(rng: np.random.Generator) -> Body:
    """Draw one subject: height 1.45-1.95 m, each segment +-7 % around average proportions."""
    h = float(np.clip(rng.normal(1.70, 0.09), 1.45, 1.95))
    r = lambda: float(rng.uniform(0.93, 1.07))  # noqa: E731
    leg = r()
    return Body(
        height=h,
        spine=0.285 * h * r(),
        neck=0.045 * h,
        head=0.075 * h,
        shoulder_half=0.105 * h * r(),
        shoulder_drop=0.02 * h,
        upper_arm=0.172 * h * r(),
        forearm=0.150 * h * r(),
        hand=0.045 * h,
        hand_tip=0.045 * h,
        hip_half=0.058 * h * r(),
        hip_drop=0.03 * h,
        thigh=0.245 * h * leg,
        shin=0.240 * h * leg,
        ankle_height=0.04 * h,
        foot=0.11 * h,
        build=float(rng.uniform(0.85, 1.2)),
    )


# ----------------------------------------------------------------------------------------------------------
# Small vector helpers (all broadcast over leading frame axes)


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-9)


def _vec(s: float, l: float, u: float, f: float) -> np.ndarray:
    """A body-frame unit vector whose lateral component is mirrored by the side sign ``s``."""
    return unit([s * l, u, f])


def slerp(a: np.ndarray, b: np.ndarray, t) -> np.ndarray:
    """Spherical interpolation between unit vectors ``a`` and ``b`` (``[..., 3]``) at weight ``t``."""
    a, b = np.broadcast_arrays(unit(a), unit(b))
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.clip(np.sum(a * b, axis=-1, keepdims=True), -1.0, 1.0)
    omega = np.arccos(dot)
    so = np.sin(omega)
    small = so < 1e-6
    wa = np.where(small, 1.0 - t, np.sin((1.0 - t) * omega) / np.where(small, 1.0, so))
    wb = np.where(small, t, np.sin(t * omega) / np.where(small, 1.0, so))
    return unit(wa * a + wb * b)


def ease(x) -> np.ndarray:
    """Smoothstep on [0, 1] (zero velocity at both ends, as real limbs start and stop)."""
    x = np.clip(np.asarray(x, dtype=np.float64), 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def keys(tau: np.ndarray, times, values) -> np.ndarray:
    """Eased piecewise interpolation of scalar (``[K]``) or vector (``[K, d]``) keyframes at ``times``."""
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    tau = np.clip(np.asarray(tau, dtype=np.float64), times[0], times[-1])
    i = np.clip(np.searchsorted(times, tau, side="right") - 1, 0, len(times) - 2)
    span = np.maximum(times[i + 1] - times[i], 1e-9)
    w = ease((tau - times[i]) / span)
    if values.ndim > 1:
        w = w[..., None]
    return values[i] * (1.0 - w) + values[i + 1] * w


def dir_keys(tau: np.ndarray, times, dirs) -> np.ndarray:
    """Like :func:`keys` for directions: eased slerp between keyframe unit vectors (each ``[3]`` or ``[T, 3]``)."""
    times = np.asarray(times, dtype=np.float64)
    tau = np.clip(np.asarray(tau, dtype=np.float64), times[0], times[-1])
    i = np.clip(np.searchsorted(times, tau, side="right") - 1, 0, len(times) - 2)
    w = ease((tau - times[i]) / np.maximum(times[i + 1] - times[i], 1e-9))
    dirs = [np.broadcast_to(unit(d), tau.shape + (3,)) for d in dirs]
    out = np.zeros(tau.shape + (3,))
    for m in range(len(times) - 1):
        sel = i == m
        if np.any(sel):
            out[sel] = slerp(dirs[m][sel], dirs[m + 1][sel], w[sel])
    return out


def hold(tau: np.ndarray, rise: float = 0.25, fall: float = 0.25) -> np.ndarray:
    """0 -> 1 over the first ``rise`` of the action, 1 while it holds, 1 -> 0 over the last ``fall``."""
    return keys(tau, [0.0, rise, 1.0 - fall, 1.0], [0.0, 1.0, 1.0, 0.0])


def _rot(axis: str, angle) -> np.ndarray:
    """Rotation matrices ``[T, 3, 3]`` in the body frame. ``l``: + bends forward (pitch); ``f``: + leans to
    the left (roll); ``u``: + turns the front towards the left (twist/yaw)."""
    a = np.atleast_1d(np.asarray(angle, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    if axis == "l":
        m = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == "f":
        m = [[c, s, z], [-s, c, z], [z, z, o]]
    elif axis == "u":
        m = [[c, z, s], [z, o, z], [-s, z, c]]
    else:  # pragma: no cover
        raise ValueError(axis)
    return np.stack([np.stack(row, -1) for row in m], -2)


def _apply(r: np.ndarray, v) -> np.ndarray:
    return np.einsum("tij,tj->ti", r, np.broadcast_to(np.asarray(v, dtype=np.float64), (r.shape[0], 3)))


# ----------------------------------------------------------------------------------------------------------
# Pose and forward kinematics


@dataclass
class Pose:
    """Per-frame pose parameters; arrays have a leading frame axis ``T``. Limb index 0 = left, 1 = right."""

    root: np.ndarray  # [T, 3] pelvis offset from its standing position (l, u, f), metres
    yaw: np.ndarray  # [T] whole-body turn about the vertical, rad (+ = towards the person's left)
    trunk: np.ndarray  # [T, 3] pitch (+ bends forward), roll (+ leans left), twist (+ chest turns left), rad
    head: np.ndarray  # [T, 2] pitch (+ looks down, - tilts back), yaw (+ looks left), rad
    upper: np.ndarray  # [T, 2, 3] shoulder -> elbow unit vectors, body frame
    fore: np.ndarray  # [T, 2, 3] elbow -> wrist (the hand continues along it)
    thigh: np.ndarray  # [T, 2, 3] hip -> knee
    shin: np.ndarray  # [T, 2, 3] knee -> ankle
    foot: np.ndarray  # [T, 2, 3] ankle -> foot

    def copy(self) -> "Pose":
        return Pose(**{f.name: getattr(self, f.name).copy() for f in dataclasses.fields(self)})


_REST_UPPER = np.stack([_vec(+1, 0.10, -1, 0.02), _vec(-1, 0.10, -1, 0.02)])
_REST_FORE = np.stack([_vec(+1, 0.05, -1, 0.14), _vec(-1, 0.05, -1, 0.14)])
_REST_THIGH = np.stack([_vec(+1, 0.03, -1, 0.0), _vec(-1, 0.03, -1, 0.0)])
_FLAT_FOOT = np.stack([_vec(+1, 0.15, -0.3, 1.0), _vec(-1, 0.15, -0.3, 1.0)])


def rest_pose(t: int) -> Pose:
    """Standing upright, arms hanging slightly away from the body, feet flat."""
    rep = lambda a: np.repeat(a[None], t, axis=0).copy()  # noqa: E731
    return Pose(
        root=np.zeros((t, 3)), yaw=np.zeros(t), trunk=np.zeros((t, 3)), head=np.zeros((t, 2)),
        upper=rep(_REST_UPPER), fore=rep(_REST_FORE), thigh=rep(_REST_THIGH),
        shin=rep(np.array([[0.0, -1.0, 0.0], [0.0, -1.0, 0.0]])), foot=rep(_FLAT_FOOT),
    )


def _frames(pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Trunk and head rotation matrices ``[T, 3, 3]``."""
    rt = _rot("u", pose.trunk[:, 2]) @ _rot("l", pose.trunk[:, 0]) @ _rot("f", pose.trunk[:, 1])
    rh = rt @ _rot("u", pose.head[:, 1]) @ _rot("l", pose.head[:, 0])
    return rt, rh


def forward_kinematics(pose: Pose, body: Body) -> np.ndarray:
    """Joint positions ``[T, 25, 3]`` in the body frame (NTU joint order)."""
    t = pose.root.shape[0]
    out = np.zeros((t, NUM_JOINTS, 3))
    rt, rh = _frames(pose)
    base = np.array([0.0, body.pelvis_height, 0.0]) + pose.root
    out[:, J.SPINE_BASE] = base
    out[:, J.SPINE_MID] = base + _apply(rt, [0.0, 0.5 * body.spine, -0.015 * body.scale])
    out[:, J.SPINE_SHOULDER] = base + _apply(rt, [0.0, body.spine, 0.0])
    out[:, J.NECK] = out[:, J.SPINE_SHOULDER] + _apply(rh, [0.0, body.neck, 0.005])
    out[:, J.HEAD] = out[:, J.NECK] + _apply(rh, [0.0, body.head, 0.015 * body.scale])
    for k, (s, sh, el, wr, hd, tip, th) in enumerate(_ARM):
        out[:, sh] = base + _apply(rt, [s * body.shoulder_half, body.spine - body.shoulder_drop, -0.01])
        out[:, el] = out[:, sh] + body.upper_arm * pose.upper[:, k]
        out[:, wr] = out[:, el] + body.forearm * pose.fore[:, k]
        out[:, hd] = out[:, wr] + body.hand * pose.fore[:, k]
        out[:, tip] = out[:, hd] + body.hand_tip * pose.fore[:, k]
        # the thumb sticks out of the hand towards the front and the body's midline
        d = pose.fore[:, k]
        side = unit(np.broadcast_to([-s * 0.4, 0.0, 1.0], d.shape))
        p = side - np.sum(side * d, -1, keepdims=True) * d
        alt = np.broadcast_to([0.0, 1.0, 0.0], d.shape)
        p = np.where(np.linalg.norm(p, axis=-1, keepdims=True) < 0.2, alt - np.sum(alt * d, -1, keepdims=True) * d, p)
        out[:, th] = out[:, wr] + 0.5 * body.hand * d + 0.035 * body.scale * unit(p)
    for k, (s, hip, knee, ankle, foot) in enumerate(_LEG):
        out[:, hip] = base + np.array([s * body.hip_half, -body.hip_drop, 0.0])
        out[:, knee] = out[:, hip] + body.thigh * pose.thigh[:, k]
        out[:, ankle] = out[:, knee] + body.shin * pose.shin[:, k]
        out[:, foot] = out[:, ankle] + body.foot * pose.foot[:, k]
    # whole-body turn about the vertical axis through the pelvis
    if np.any(pose.yaw != 0):
        ry = _rot("u", pose.yaw)
        centre = np.stack([base[:, 0], np.zeros(t), base[:, 2]], -1)[:, None]
        out = np.einsum("tij,tkj->tki", ry, out - centre) + centre
    return out


def _head_point(pose: Pose, joints: np.ndarray, offset) -> np.ndarray:
    """A point fixed to the head (``offset`` in the head's own frame, metres) -> ``[T, 3]``."""
    _, rh = _frames(pose)
    return joints[:, J.HEAD] + _apply(rh, offset)


def two_bone_ik(root: np.ndarray, target: np.ndarray, a: float, b: float, pole) -> tuple[np.ndarray, np.ndarray]:
    """Directions (``[T, 3]`` each) of two bones of lengths ``a``, ``b`` from ``root`` towards ``target``.

    The middle joint bends towards ``pole``; out-of-reach targets give a straight limb pointing at them.
    """
    d_vec = target - root
    d = np.linalg.norm(d_vec, axis=-1, keepdims=True)
    n = d_vec / np.maximum(d, 1e-9)
    dc = np.clip(d, abs(a - b) + 1e-3, a + b - 1e-4)
    x = (a * a - b * b + dc * dc) / (2.0 * dc)
    h = np.sqrt(np.maximum(a * a - x * x, 0.0))
    pole = np.broadcast_to(np.asarray(pole, dtype=np.float64), n.shape)
    p = pole - np.sum(pole * n, -1, keepdims=True) * n
    p = unit(p)
    mid = root + x * n + h * p
    end = root + dc * n
    return unit(mid - root), unit(end - mid)


def reach(pose: Pose, body: Body, k: int, target: np.ndarray, weight: np.ndarray, pole,
          bulge: float = 0.12) -> None:
    """Move hand ``k`` (0 left, 1 right) from where the pose has it towards ``target`` with ``weight`` in [0, 1].

    The hand travels along a slightly forward-bulging path (so it does not pass through the body), and the
    arm is solved with two-bone IK (upper arm; forearm + hand) bending the elbow towards ``pole``.
    """
    joints = forward_kinematics(pose, body)
    s, sh, hd = _ARM[k][0], _ARM[k][1], _ARM[k][4]
    start = joints[:, hd]
    w = np.asarray(weight, dtype=np.float64)[:, None]
    bulge_dir = unit([s * 0.3, 0.0, 1.0])
    path = start + (target - start) * w + bulge * body.scale * np.sin(np.pi * w) * bulge_dir
    upper, fore = two_bone_ik(joints[:, sh], path, body.upper_arm, body.forearm + body.hand, pole)
    active = w > 1e-6
    pose.upper[:, k] = np.where(active, upper, pose.upper[:, k])
    pose.fore[:, k] = np.where(active, fore, pose.fore[:, k])


def set_legs(pose: Pose, k: int, hip_angle, knee_bend, planted: bool = True) -> None:
    """Leg ``k`` in the sagittal plane: thigh flexed forward by ``hip_angle`` (rad, 0 = straight down),
    knee bent by ``knee_bend``. Planted feet stay flat on the floor."""
    s = _LEG[k][0]
    a = np.asarray(hip_angle, dtype=np.float64)
    c = a - np.asarray(knee_bend, dtype=np.float64)  # shin angle from vertical, + = ankle ahead of the knee
    pose.thigh[:, k] = unit(np.stack([np.full_like(a, s * 0.03), -np.cos(a), np.sin(a)], -1))
    pose.shin[:, k] = unit(np.stack([np.zeros_like(c), -np.cos(c), np.sin(c)], -1))
    if not planted:
        fa = c + 73 * DEG
        pose.foot[:, k] = unit(np.stack([np.full_like(fa, s * 0.15), -np.cos(fa), np.sin(fa)], -1))


def planted_root(body: Body, hip_angle, knee_bend) -> tuple[np.ndarray, np.ndarray]:
    """Pelvis (forward, up) offsets that keep the ankles where they are when both legs flex the same way."""
    a = np.asarray(hip_angle, dtype=np.float64)
    c = a - np.asarray(knee_bend, dtype=np.float64)
    fwd = -(body.thigh * np.sin(a) + body.shin * np.sin(c))
    up = body.thigh * (np.cos(a) - 1.0) + body.shin * (np.cos(c) - 1.0)
    return fwd, up


def _bend_both_legs(pose: Pose, body: Body, hip_angle, knee_bend) -> None:
    for k in (0, 1):
        set_legs(pose, k, hip_angle, knee_bend)
    fwd, up = planted_root(body, hip_angle, knee_bend)
    pose.root[:, 2] += fwd
    pose.root[:, 1] += up


# ----------------------------------------------------------------------------------------------------------
# The actions. Each takes progress tau [T], the body, a Style and (for sided actions) s = +1 left / -1 right.


@dataclass(frozen=True)
class Style:
    """How one clip performs its action (drawn per clip, independent of the class)."""

    amp: float = 1.0  # amplitude scale, 0.85..1.15
    reps: float = 0.5  # where in the class's repetition range this clip falls, 0..1
    phase: float = 0.0  # oscillation phase, rad
    aim: float = 0.5  # free direction parameter (pointing/throwing azimuth, object place), 0..1


def _k(s: float) -> int:
    return 0 if s > 0 else 1


def wave(tau, body, st, s):
    """Raise the forearm above the shoulder and sway it side to side 2-4 times."""
    p = rest_pose(len(tau))
    k = _k(s)
    e = hold(tau, 0.2, 0.2)
    n = 2.0 + 2.0 * st.reps
    ang = (28 * DEG) * st.amp * np.sin(2 * np.pi * n * tau + st.phase) * e
    fore_up = unit(np.stack([s * (0.12 + np.sin(ang)), np.cos(ang), np.full_like(ang, 0.25)], -1))
    p.upper[:, k] = dir_keys(e, [0, 0.5, 1], [_REST_UPPER[k], _vec(s, 0.9, -0.2, 0.5), _vec(s, 0.85, 0.35, 0.35)])
    p.fore[:, k] = dir_keys(e, [0, 0.5, 1], [_REST_FORE[k], _vec(s, 0.4, 0.1, 1.0), fore_up])
    return p


def raise_hand(tau, body, st, s):
    """Lift the straight arm forward and up above the head, hold it, lower it."""
    p = rest_pose(len(tau))
    k = _k(s)
    e = hold(tau, 0.3, 0.3)
    tilt = 0.1 + 0.15 * st.aim
    up = _vec(s, tilt, 1.0, 0.12 * st.amp)
    p.upper[:, k] = dir_keys(e, [0, 0.5, 1], [_REST_UPPER[k], _vec(s, 0.3, 0.0, 1.0), up])
    p.fore[:, k] = dir_keys(e, [0, 0.5, 1], [_REST_FORE[k], _vec(s, 0.3, 0.05, 1.0), _vec(s, tilt, 1.0, 0.05)])
    return p


def touch_head(tau, body, st, s):
    """Put the hand on top of the head (elbow out to the side) and pat twice."""
    p = rest_pose(len(tau))
    k = _k(s)
    e = hold(tau, 0.28, 0.25)
    joints = forward_kinematics(p, body)
    pat = 0.015 * body.scale * np.sin(2 * np.pi * (2 + st.reps) * tau + st.phase) * e
    target = _head_point(p, joints, np.array([s * 0.05, 0.095, 0.01]) * body.scale)
    target[:, 1] += pat
    reach(p, body, k, target, e, pole=_vec(s, 1.0, 0.3, 0.2), bulge=0.15)
    return p


def kick(tau, body, st, s):
    """Wind the leg back, kick it forward and up (knee snaps straight), put it down; lean back for balance."""
    p = rest_pose(len(tau))
    k = _k(s)
    times = [0, 0.22, 0.4, 0.55, 0.7, 0.88, 1]
    hip = keys(tau, times, np.array([0, -8, 5, 75 * st.amp, 40, 0, 0]) * DEG)
    knee = keys(tau, times, np.array([0, 15, 75, 5, 35, 0, 0]) * DEG)
    set_legs(p, k, hip, knee, planted=False)
    shift = hold(tau, 0.2, 0.15)
    p.root[:, 0] += -s * 0.04 * body.scale * shift  # pelvis over the standing leg
    p.trunk[:, 0] = keys(tau, times, np.array([0, 0, -3, -12, -6, 0, 0]) * DEG)
    for kk in (0, 1):
        ss = _ARM[kk][0]
        p.upper[:, kk] = slerp(_REST_UPPER[kk], _vec(ss, 0.5, -1, 0.1), shift)
    return p


def drink(tau, body, st, s):
    """Bring the (right) hand to the mouth, tilt the head back while lifting the hand, lower it."""
    p = rest_pose(len(tau))
    k = _k(s)
    e = hold(tau, 0.28, 0.25)
    tilt = keys(tau, [0, 0.3, 0.42, 0.62, 0.75, 1], [0, 0, 1, 1, 0, 0])
    p.head[:, 0] = -24 * DEG * st.amp * tilt
    joints = forward_kinematics(p, body)
    target = _head_point(p, joints, np.array([s * 0.01, -0.075, 0.12]) * body.scale)
    target[:, 1] += 0.03 * body.scale * tilt
    pole = unit(slerp(_vec(s, 0.5, -1, 0.2), _vec(s, 0.4, -0.3, 0.8), tilt))
    reach(p, body, k, target, e, pole=pole)
    return p


def brush_teeth(tau, body, st, s):
    """Hold the (right) hand at the mouth, elbow out, and move it quickly from side to side."""
    p = rest_pose(len(tau))
    k = _k(s)
    e = hold(tau, 0.25, 0.22)
    p.head[:, 0] = 6 * DEG * e
    joints = forward_kinematics(p, body)
    target = _head_point(p, joints, np.array([s * 0.02, -0.08, 0.10]) * body.scale)
    n = 6.0 + 4.0 * st.reps
    target[:, 0] += 0.035 * body.scale * st.amp * np.sin(2 * np.pi * n * tau + st.phase) * hold(tau, 0.3, 0.27)
    reach(p, body, k, target, e, pole=_vec(s, 1.0, -0.45, 0.1))
    return p


def sit_down(tau, body, st, s=0.0):
    """Lower the hips back onto an (invisible) seat: thighs end horizontal, hands on the thighs."""
    p = rest_pose(len(tau))
    e = keys(tau, [0, 0.1, 0.85, 1], [0, 0, 1, 1])
    hip = 86 * DEG * e
    shin = -15 * DEG * np.sin(np.pi * e) + 3 * DEG * e  # knees travel forward over the feet mid-way
    _bend_both_legs(p, body, hip, hip - shin)
    p.trunk[:, 0] = (38 * DEG * st.amp) * np.sin(np.pi * e) + 8 * DEG * e
    for k in (0, 1):
        ss = _ARM[k][0]
        p.upper[:, k] = dir_keys(e, [0, 0.5, 1], [_REST_UPPER[k], _vec(ss, 0.1, -1, 0.55), _vec(ss, 0.15, -1, 0.3)])
        p.fore[:, k] = dir_keys(e, [0, 0.5, 1], [_REST_FORE[k], _vec(ss, 0.05, -0.5, 1), _vec(ss, 0.1, -0.35, 1)])
    return p


def stand_up(tau, body, st, s=0.0):
    """``sit_down`` played backwards."""
    return sit_down(1.0 - np.asarray(tau), body, st)


def clap(tau, body, st, s=0.0):
    """Bring both hands in front of the chest and clap 3-6 times."""
    p = rest_pose(len(tau))
    e = hold(tau, 0.22, 0.2)
    joints = forward_kinematics(p, body)
    centre = joints[:, J.SPINE_SHOULDER] + np.array([0.0, -0.12, 0.32]) * body.scale
    n = 3.0 + 3.0 * st.reps
    gap = (0.03 + 0.10 * st.amp * (0.5 + 0.5 * np.cos(2 * np.pi * n * tau + st.phase))) * body.scale
    for k in (0, 1):
        ss = _ARM[k][0]
        target = centre + np.stack([ss * gap, np.zeros_like(gap), np.zeros_like(gap)], -1)
        reach(p, body, k, target, e, pole=_vec(ss, 1.0, -0.6, -0.2), bulge=0.08)
    return p


def bow(tau, body, st, s=0.0):
    """Bend the upper body forward about 50 degrees, hold, straighten up."""
    p = rest_pose(len(tau))
    e = keys(tau, [0, 0.15, 0.45, 0.6, 0.9, 1], [0, 0, 1, 1, 0, 0])
    p.trunk[:, 0] = 50 * DEG * st.amp * e
    p.head[:, 0] = 15 * DEG * e
    p.root[:, 2] -= 0.06 * body.scale * e
    return p


def cross_arms(tau, body, st, s=0.0):
    """Fold the arms across the chest: each hand goes to the opposite upper arm."""
    p = rest_pose(len(tau))
    e = hold(tau, 0.3, 0.25)
    joints = forward_kinematics(p, body)
    centre = joints[:, J.SPINE_SHOULDER] + np.array([0.0, -0.17, 0.16]) * body.scale
    reach(p, body, 0, centre + np.array([-0.13, 0.0, 0.0]) * body.scale, e, pole=_vec(+1, 1, -0.8, -0.1))
    reach(p, body, 1, centre + np.array([0.13, -0.05, 0.04]) * body.scale, e, pole=_vec(-1, 1, -0.8, -0.1))
    return p


def squat(tau, body, st, s=0.0):
    """Bend the knees deeply with the arms stretched forward for balance, then stand back up."""
    p = rest_pose(len(tau))
    e = keys(tau, [0, 0.12, 0.45, 0.6, 0.9, 1], [0, 0, 1, 1, 0, 0])
    hip = 80 * DEG * st.amp * e
    shin = -35 * DEG * e
    _bend_both_legs(p, body, hip, hip - shin)
    p.trunk[:, 0] = 30 * DEG * e
    for k in (0, 1):
        ss = _ARM[k][0]
        p.upper[:, k] = slerp(_REST_UPPER[k], _vec(ss, 0.15, 0.05, 1), e)
        p.fore[:, k] = slerp(_REST_FORE[k], _vec(ss, 0.12, 0.08, 1), e)
    return p


def jump(tau, body, st, s=0.0):
    """Crouch with the arms swung back, take off swinging them up, land softly, stand up."""
    p = rest_pose(len(tau))
    crouch = keys(tau, [0, 0.15, 0.33, 0.42, 0.6, 0.68, 0.82, 1], [0, 0, 1, 0.1, 0, 0.8, 0, 0])
    hip = 50 * DEG * crouch
    _bend_both_legs(p, body, hip, hip + 45 * DEG * crouch)
    u = np.clip((np.asarray(tau) - 0.42) / 0.2, 0.0, 1.0)
    air = 4.0 * u * (1.0 - u)  # parabola: 0 at take-off and landing
    p.root[:, 1] += 0.22 * st.amp * body.scale * air
    for k in (0, 1):
        set_legs(p, k, hip + 20 * DEG * air, hip + 45 * DEG * crouch + 40 * DEG * air, planted=False)
        p.foot[:, k] = slerp(_FLAT_FOOT[k], p.foot[:, k], air)
    p.trunk[:, 0] = 30 * DEG * crouch
    ang = keys(tau, [0, 0.15, 0.33, 0.45, 0.55, 0.7, 0.85, 1], np.array([0, 0, -40, 150, 150, 20, 0, 0]) * DEG)
    for k in (0, 1):
        ss = _ARM[k][0]
        d = unit(np.stack([np.full_like(ang, ss * 0.15), -np.cos(ang), np.sin(ang)], -1))
        p.upper[:, k] = d
        p.fore[:, k] = unit(d + np.array([0.0, 0.0, 0.15]))
    return p


def point(tau, body, st, s):
    """Stretch the arm out in front at shoulder height towards something, look at it, lower the arm."""
    p = rest_pose(len(tau))
    k = _k(s)
    e = hold(tau, 0.25, 0.25)
    az = (10 + 30 * st.aim) * DEG
    target = _vec(s, np.sin(az), 0.12, np.cos(az))
    p.upper[:, k] = dir_keys(e, [0, 0.5, 1], [_REST_UPPER[k], _vec(s, 0.25, -0.4, 1.0), target])
    p.fore[:, k] = dir_keys(e, [0, 0.5, 1], [_REST_FORE[k], _vec(s, 0.25, -0.2, 1.0), unit(target + [0, 0.03, 0])])
    p.head[:, 1] = s * az * 0.7 * e
    return p


def pick_up(tau, body, st, s):
    """Hinge at the hips and knees, reach the (right) hand to the floor, come up holding the object."""
    p = rest_pose(len(tau))
    k = _k(s)
    e = keys(tau, [0, 0.1, 0.4, 0.55, 0.85, 1], [0, 0, 1, 1, 0, 0])
    hip = 75 * DEG * e
    _bend_both_legs(p, body, hip, hip + 20 * DEG * e)
    p.trunk[:, 0] = 72 * DEG * st.amp * e
    p.head[:, 0] = -20 * DEG * e  # keep looking at the object
    start_hand = forward_kinematics(rest_pose(len(tau)), body)[:, _ARM[k][4]]
    obj = np.array([s * (0.08 + 0.1 * st.aim), 0.06, 0.32]) * body.scale
    carry = np.array([s * 0.12 * body.scale, body.pelvis_height + 0.05 * body.scale, 0.28 * body.scale])
    down = keys(tau, [0, 0.1, 0.4, 1], [0, 0, 1, 1])
    up = keys(tau, [0, 0.55, 0.85, 1], [0, 0, 1, 1])
    target = start_hand + (obj - start_hand) * down[:, None]
    target = target + (carry - target) * up[:, None]
    reach(p, body, k, target, np.ones(len(tau)), pole=_vec(s, 0.6, -0.2, -1.0), bulge=0.0)
    return p


def throw(tau, body, st, s):
    """Wind the (right) arm back behind the head, whip it forward over the shoulder, follow through."""
    p = rest_pose(len(tau))
    k = _k(s)
    times = [0, 0.12, 0.4, 0.52, 0.64, 0.9, 1]
    lift = 0.45 + 0.25 * st.aim
    p.upper[:, k] = dir_keys(tau, times, [_REST_UPPER[k], _REST_UPPER[k], _vec(s, 0.6, 0.45, -0.65),
                                          _vec(s, 0.25, lift, 1.0), _vec(-s, 0.15, -0.6, 0.8), _REST_UPPER[k],
                                          _REST_UPPER[k]])
    p.fore[:, k] = dir_keys(tau, times, [_REST_FORE[k], _REST_FORE[k], _vec(s, 0.1, 1.0, -0.5),
                                         _vec(s, 0.1, lift + 0.1, 1.0), _vec(-s, 0.2, -0.7, 0.7), _REST_FORE[k],
                                         _REST_FORE[k]])
    p.trunk[:, 2] = keys(tau, times, np.array([0, 0, s * 25, -s * 8, -s * 22, 0, 0]) * DEG * st.amp)
    p.trunk[:, 0] = keys(tau, times, np.array([0, 0, -5, 6, 15, 0, 0]) * DEG)
    p.root[:, 2] += keys(tau, times, np.array([0, 0, -0.05, 0.03, 0.08, 0, 0]) * body.scale)
    other = 1 - k
    p.upper[:, other] = dir_keys(tau, times, [_REST_UPPER[other], _REST_UPPER[other], _vec(-s, 0.3, -0.2, 1.0),
                                              _vec(-s, 0.3, -0.5, 0.6), _REST_UPPER[other], _REST_UPPER[other],
                                              _REST_UPPER[other]])
    return p


MotionFn = Callable[[np.ndarray, Body, Style, float], Pose]

# motion key -> (function, side sign). Class definitions (names, captions) live in ``synthetic.py``.
MOTIONS: dict[str, tuple[MotionFn, float]] = {
    "wave_left": (wave, +1.0), "wave_right": (wave, -1.0),
    "raise_left": (raise_hand, +1.0), "raise_right": (raise_hand, -1.0),
    "touch_head_left": (touch_head, +1.0), "touch_head_right": (touch_head, -1.0),
    "kick_left": (kick, +1.0), "kick_right": (kick, -1.0),
    "drink": (drink, -1.0), "brush_teeth": (brush_teeth, -1.0),
    "sit_down": (sit_down, 0.0), "stand_up": (stand_up, 0.0),
    "clap": (clap, 0.0), "bow": (bow, 0.0), "cross_arms": (cross_arms, 0.0), "squat": (squat, 0.0),
    "jump": (jump, 0.0), "point_right": (point, -1.0), "pick_up": (pick_up, -1.0), "throw": (throw, -1.0),
}


def _personal(pose: Pose, t_sec: np.ndarray, rng: np.random.Generator, scale: float) -> None:
    """Add what makes a clip look performed by a person: posture, slow sway, a little breathing."""
    pose.trunk[:, 0] += rng.uniform(-3, 6) * DEG
    pose.trunk[:, 1] += rng.uniform(-2, 2) * DEG
    pose.head[:, 0] += rng.uniform(-6, 8) * DEG
    pose.head[:, 1] += rng.uniform(-8, 8) * DEG
    f1, f2 = rng.uniform(0.2, 0.5, size=2)
    ph = rng.uniform(0, 2 * np.pi, size=3)
    pose.root[:, 0] += 0.012 * scale * np.sin(2 * np.pi * f1 * t_sec + ph[0])
    pose.root[:, 2] += 0.01 * scale * np.sin(2 * np.pi * f2 * t_sec + ph[1])
    pose.trunk[:, 0] += 1.0 * DEG * np.sin(2 * np.pi * 0.3 * t_sec + ph[2])


def motion_joints(key: str, tau: np.ndarray, t_sec: np.ndarray, body: Body, style: Style,
                  rng: np.random.Generator) -> np.ndarray:
    """Body-frame joints ``[T, 25, 3]`` of action ``key`` at progress ``tau`` (``t_sec`` = frame times)."""
    fn, side = MOTIONS[key]
    pose = fn(np.asarray(tau, dtype=np.float64), body, style, side)
    _personal(pose, t_sec, rng, body.scale)
    return forward_kinematics(pose, body)


def idle_joints(t_sec: np.ndarray, body: Body, rng: np.random.Generator) -> np.ndarray:
    """A bystander standing around: weight shifts, looking about, arms hanging or on the hips."""
    t = len(t_sec)
    pose = rest_pose(t)
    if rng.random() < 0.35:  # hands on the hips
        for k in (0, 1):
            s = _ARM[k][0]
            pose.upper[:, k] = _vec(s, 0.7, -1, -0.25)
            pose.fore[:, k] = _vec(-s, 0.8, -0.5, 0.5)
    f = rng.uniform(0.1, 0.3)
    pose.root[:, 0] += 0.03 * body.scale * np.sin(2 * np.pi * f * t_sec + rng.uniform(0, 6.3))
    look_amp, look_f, look_ph = rng.uniform(20, 45) * DEG, rng.uniform(0.1, 0.3), rng.uniform(0, 6.3)
    pose.head[:, 1] = look_amp * np.sin(2 * np.pi * look_f * t_sec + look_ph)
    _personal(pose, t_sec, rng, body.scale)
    return forward_kinematics(pose, body)


def walk_joints(t_sec: np.ndarray, body: Body, rng: np.random.Generator, speed: float) -> np.ndarray:
    """A bystander walking straight ahead at ``speed`` m/s (legs swing, arms counter-swing, pelvis bobs)."""
    t = len(t_sec)
    pose = rest_pose(t)
    cadence = speed / (0.75 * body.thigh / 0.42 * 0.7)  # strides per second
    w = 2 * np.pi * cadence * t_sec + rng.uniform(0, 2 * np.pi)
    for k in (0, 1):
        sgn = 1.0 if k == 0 else -1.0
        sw = sgn * np.sin(w)
        swing_phase = np.maximum(0.0, sgn * np.cos(w))
        set_legs(pose, k, 22 * DEG * sw, 45 * DEG * swing_phase, planted=False)
        ang = -18 * DEG * sw
        pose.upper[:, k] = unit(np.stack([np.full(t, _ARM[k][0] * 0.1), -np.cos(ang), np.sin(ang)], -1))
        pose.fore[:, k] = unit(pose.upper[:, k] + np.array([0.0, 0.0, 0.25]))
    pose.root[:, 1] += 0.02 * body.scale * (np.abs(np.cos(w)) - 0.5)
    pose.root[:, 2] += speed * t_sec
    _personal(pose, t_sec, rng, body.scale)
    return forward_kinematics(pose, body)


# ----------------------------------------------------------------------------------------------------------
# Camera


@dataclass(frozen=True)
class Camera:
    """A Kinect-like sensor looking at a person standing ``distance`` metres in front of it.

    ``azimuth`` is where the camera stands around the person (degrees, 0 = in front, + = on the person's
    left side); ``elevation`` tilts the camera down at the person's torso from above (degrees).
    """

    azimuth: float = 0.0
    elevation: float = 10.0
    distance: float = 3.0
    aim_height: float = 0.95  # metres above the floor the camera looks at

    def _rotation(self, yaw_deg: float) -> np.ndarray:
        """Body frame (l, u, f) -> world (x = sensor's left, y up, z away from the sensor), ``[3, 3]``."""
        base = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])  # columns: l, u, f facing the camera
        a = -np.deg2rad(yaw_deg)
        ry = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
        return ry @ base

    def to_camera(self, joints: np.ndarray, offset=(0.0, 0.0), azimuth: float | None = None) -> np.ndarray:
        """Body-frame joints ``[..., 3]`` -> camera space.

        ``offset`` = (x, z) of the person's floor point relative to the actor's spot (metres, world axes);
        ``azimuth`` = where the camera is around *this* person (default: the actor's ``self.azimuth``).
        """
        r = self._rotation(self.azimuth if azimuth is None else azimuth)
        world = np.asarray(joints, dtype=np.float64) @ r.T
        world = world + np.array([offset[0], 0.0, self.distance + offset[1]])
        e = np.deg2rad(self.elevation)
        cam_h = self.aim_height + self.distance * np.tan(e)
        y_rel = world[..., 1] - cam_h
        x = world[..., 0]
        y = y_rel * np.cos(e) + world[..., 2] * np.sin(e)
        z = -y_rel * np.sin(e) + world[..., 2] * np.cos(e)
        return np.stack([x, y, z], -1)


def project(xyz: np.ndarray, focal: float, cx: float, cy: float) -> np.ndarray:
    """Camera space ``[..., 3]`` -> pixels ``[..., 2]`` (u to the right, v down; the Kinect mirror view)."""
    z = np.maximum(xyz[..., 2], 1e-3)
    return np.stack([cx + focal * xyz[..., 0] / z, cy - focal * xyz[..., 1] / z], -1)
