"""Render camera-space NTU skeletons as person figures over simple indoor backgrounds (PIL + numpy).

The figure is built from the skeleton alone (thick limbs with outlines, a torso block, a head with
hair, hands, shoes), drawn far-to-near so the arm in front covers the body, with the far side shaded a
little darker. Backgrounds are a wall (gradient + stripes/tiles/noise, a few furniture blocks) over a
perspective floor. Colours come from :class:`Look` / :class:`Scene`, drawn independently of the action,
so a video shows *who* and *where* but only the motion tells *what*.

Frames are drawn at ``supersample`` times the output size and box-filtered down (cheap anti-aliasing).
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from ski_lvlm.synthetic.motions import Camera, J, project

__all__ = ["Look", "Scene", "SCENES", "sample_look", "sample_scene", "render_background", "render_frames",
           "focal_length"]

RGB = tuple[int, int, int]

SCENES = ("living room", "kitchen", "bedroom", "hallway")


def focal_length(size: int) -> float:
    """Pixels per (metre / metre of depth) for an output of ``size`` pixels (a 42 degree field of view)."""
    return 1.3 * size


def _hsv(h: float, s: float, v: float) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return int(r * 255), int(g * 255), int(b * 255)


def _scale(c: RGB, k: float) -> RGB:
    return tuple(min(255, max(0, int(v * k))) for v in c)  # type: ignore[return-value]


@dataclass(frozen=True)
class Look:
    """Clothing and skin colours of one person."""

    skin: RGB
    hair: RGB
    shirt: RGB
    pants: RGB
    shoes: RGB
    long_sleeves: bool


_SKIN = ((255, 224, 196), (241, 194, 160), (224, 172, 125), (198, 134, 92), (161, 102, 66), (112, 72, 48))
_HAIR = ((30, 24, 20), (70, 45, 30), (120, 85, 50), (200, 170, 110), (150, 150, 150), (90, 30, 20))


def sample_look(rng: np.random.Generator) -> Look:
    skin = _SKIN[int(rng.integers(len(_SKIN)))]
    hair = _HAIR[int(rng.integers(len(_HAIR)))]
    shirt = _hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.45, 0.95))
    pants = _hsv(rng.random(), rng.uniform(0.1, 0.7), rng.uniform(0.2, 0.6))
    shoes = _hsv(rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.1, 0.4))
    return Look(skin=skin, hair=hair, shirt=shirt, pants=pants, shoes=shoes, long_sleeves=bool(rng.random() < 0.5))


@dataclass(frozen=True)
class Scene:
    """A room: wall and floor colours, a wall texture, furniture blocks, light falloff, back-wall distance."""

    kind: int  # index into SCENES
    wall: RGB
    floor: RGB
    texture: str  # "plain" | "stripes" | "tiles" | "noise"
    period: float  # texture period in output pixels
    strength: float  # texture contrast
    light: float  # horizontal light gradient (-1..1)
    wall_gap: float  # metres from the actor to the back wall
    furniture: tuple[tuple[float, float, float, RGB], ...]  # (x centre [m], width [m], height [m], colour)
    noise_seed: int


def sample_scene(rng: np.random.Generator) -> Scene:
    kind = int(rng.integers(len(SCENES)))
    hue = rng.random()
    wall = _hsv(hue, rng.uniform(0.05, 0.45), rng.uniform(0.55, 0.95))
    floor = _hsv(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.25, 0.65))
    furniture = []
    for _ in range(int(rng.integers(0, 4))):
        x = float(rng.uniform(-2.6, 2.6))
        furniture.append((x, float(rng.uniform(0.4, 1.2)), float(rng.uniform(0.4, 1.9)),
                          _hsv(rng.random(), rng.uniform(0.2, 0.7), rng.uniform(0.25, 0.8))))
    return Scene(kind=kind, wall=wall, floor=floor,
                 texture=("plain", "stripes", "tiles", "noise")[int(rng.integers(4))],
                 period=float(rng.uniform(4, 14)), strength=float(rng.uniform(0.04, 0.14)),
                 light=float(rng.uniform(-1, 1)), wall_gap=float(rng.uniform(1.2, 2.5)),
                 furniture=tuple(furniture), noise_seed=int(rng.integers(2**31)))


def _world_px(camera: Camera, world: np.ndarray, focal: float, size: int) -> np.ndarray:
    """World points (x = sensor's left, y up, z depth from the sensor; floor at y = 0) -> pixels."""
    e = np.deg2rad(camera.elevation)
    cam_h = camera.aim_height + camera.distance * np.tan(e)
    y_rel = world[..., 1] - cam_h
    cam = np.stack([world[..., 0], y_rel * np.cos(e) + world[..., 2] * np.sin(e),
                    -y_rel * np.sin(e) + world[..., 2] * np.cos(e)], -1)
    return project(cam, focal, size / 2, size / 2)


def render_background(scene: Scene, camera: Camera, size: int, supersample: int = 2) -> Image.Image:
    """The empty room as an RGB image of ``size * supersample`` pixels."""
    big = size * supersample
    focal = focal_length(size) * supersample
    wall_z = camera.distance + scene.wall_gap
    # the floor line: where the floor meets the back wall
    horizon = float(_world_px(camera, np.array([0.0, 0.0, wall_z]), focal, big)[1])
    horizon = float(np.clip(horizon, 0.15 * big, 0.95 * big))
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32)
    wall = np.asarray(scene.wall, np.float32)
    floor = np.asarray(scene.floor, np.float32)
    shade = 1.0 + 0.18 * scene.light * (xx / big - 0.5) * 2 - 0.12 * (yy / big)
    tex = np.zeros((big, big), np.float32)
    period = scene.period * supersample
    if scene.texture == "stripes":
        tex = np.sign(np.sin(2 * np.pi * xx / period))
    elif scene.texture == "tiles":
        tex = np.sign(np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period))
    elif scene.texture == "noise":
        rng = np.random.default_rng(scene.noise_seed)
        n = int(big // period) + 2
        coarse = rng.standard_normal((n, n))
        tex = np.asarray(Image.fromarray(coarse.astype(np.float32), mode="F").resize((big, big), Image.BILINEAR))
        tex = np.clip(tex, -1.5, 1.5)
    img = wall[None, None] * (shade * (1.0 + scene.strength * tex))[..., None]
    # floor: darker towards the camera, with perspective board lines
    below = yy >= horizon
    depth_k = np.clip((yy - horizon) / max(big - horizon, 1.0), 0, 1)
    floor_img = floor[None, None] * (shade * (1.05 - 0.3 * depth_k))[..., None]
    img = np.where(below[..., None], floor_img, img)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(out)
    line = _scale(scene.floor, 0.8)
    for x in np.arange(-4.0, 4.01, 0.5):  # boards running away from the camera
        a = _world_px(camera, np.array([x, 0.0, 0.5]), focal, big)
        b = _world_px(camera, np.array([x, 0.0, wall_z]), focal, big)
        draw.line([tuple(a), tuple(b)], fill=line, width=max(1, supersample // 2))
    draw.line([(0, horizon), (big, horizon)], fill=_scale(scene.wall, 0.6), width=supersample)  # skirting
    for x, w, h, col in scene.furniture:  # blocks standing against the back wall
        p0 = _world_px(camera, np.array([x - w / 2, h, wall_z - 0.2]), focal, big)
        p1 = _world_px(camera, np.array([x + w / 2, 0.0, wall_z - 0.2]), focal, big)
        draw.rectangle([min(p0[0], p1[0]), p0[1], max(p0[0], p1[0]), p1[1]], fill=col, outline=_scale(col, 0.6),
                       width=supersample)
    return out


# ----------------------------------------------------------------------------------------------------------
# People

# (from, to, width in metres, colour slot); widths are multiplied by the body build
_LIMBS = (
    (J.HIP_L, J.KNEE_L, 0.14, "pants"), (J.KNEE_L, J.ANKLE_L, 0.11, "pants"), (J.ANKLE_L, J.FOOT_L, 0.08, "shoes"),
    (J.HIP_R, J.KNEE_R, 0.14, "pants"), (J.KNEE_R, J.ANKLE_R, 0.11, "pants"), (J.ANKLE_R, J.FOOT_R, 0.08, "shoes"),
    (J.SHOULDER_L, J.ELBOW_L, 0.10, "shirt"), (J.ELBOW_L, J.WRIST_L, 0.08, "sleeve"),
    (J.WRIST_L, J.HAND_TIP_L, 0.065, "skin"),
    (J.SHOULDER_R, J.ELBOW_R, 0.10, "shirt"), (J.ELBOW_R, J.WRIST_R, 0.08, "sleeve"),
    (J.WRIST_R, J.HAND_TIP_R, 0.065, "skin"),
    (J.SPINE_SHOULDER, J.NECK, 0.09, "skin"),
)


def _colour(look: Look, slot: str) -> RGB:
    if slot == "sleeve":
        return look.shirt if look.long_sleeves else look.skin
    return getattr(look, slot)


class _Part(NamedTuple):
    """One drawing primitive; parts are painted far to near (largest ``depth`` first)."""

    depth: float  # metres from the camera
    kind: str  # "limb" | "torso" | "head"
    points: Any  # limb: (p0, p1); torso: (quad, (spine_base, spine_shoulder)); head: centre
    size: float  # limb/torso width or head radius, pixels
    colour: RGB
    look: Look | None = None  # head only (hair and skin)


def _person_parts(uv: np.ndarray, z: np.ndarray, look: Look, build: float, focal: float) -> list[_Part]:
    """Drawing primitives of one person in one frame (``uv`` pixels ``[25, 2]``, ``z`` depths ``[25]``)."""
    parts = []
    torso_z = float(np.mean(z[[J.SHOULDER_L, J.SHOULDER_R, J.HIP_L, J.HIP_R]]))

    def shade(col: RGB, depth: float) -> RGB:
        return _scale(col, min(1.08, max(0.72, 1.0 - 1.6 * (depth - torso_z))))

    for a, b, w, slot in _LIMBS:
        depth = float(0.5 * (z[a] + z[b]))
        width = w * build * focal / depth
        parts.append(_Part(depth, "limb", (tuple(uv[a]), tuple(uv[b])), width, shade(_colour(look, slot), depth)))
    # torso: a quad over shoulders and hips plus a thick spine (keeps volume when seen from the side)
    quad = [tuple(uv[i]) for i in (J.SHOULDER_L, J.SHOULDER_R, J.HIP_R, J.HIP_L)]
    parts.append(_Part(torso_z + 0.02, "torso", (quad, (tuple(uv[J.SPINE_BASE]), tuple(uv[J.SPINE_SHOULDER]))),
                       0.24 * build * focal / torso_z, look.shirt))
    parts.append(_Part(torso_z + 0.015, "limb", (tuple(uv[J.HIP_L]), tuple(uv[J.HIP_R])),
                       0.16 * build * focal / torso_z, look.pants))
    head_z = float(z[J.HEAD])
    parts.append(_Part(head_z, "head", tuple(uv[J.HEAD]), 0.115 * focal / head_z, look.hair, look))
    return parts


def _draw_part(draw: ImageDraw.ImageDraw, part: _Part, outline_px: float) -> None:
    kind, pts, width, col = part.kind, part.points, part.size, part.colour
    if kind == "limb":
        (x0, y0), (x1, y1) = pts
        for w, c in ((width + 2 * outline_px, _scale(col, 0.55)), (width, col)):
            r = w / 2
            draw.line([(x0, y0), (x1, y1)], fill=c, width=max(1, int(round(w))))
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=c)
            draw.ellipse([x1 - r, y1 - r, x1 + r, y1 + r], fill=c)
    elif kind == "torso":
        quad, (a, b) = pts
        dark = _scale(col, 0.55)
        draw.polygon(quad, fill=col, outline=dark, width=max(1, int(round(outline_px))))
        r = width / 2
        draw.line([a, b], fill=col, width=max(1, int(round(width))))
        for x, y in (a, b):
            draw.ellipse([x - r, y - r, x + r, y + r], fill=col)
    elif kind == "head":
        (x, y), r, look = pts, width, part.look
        draw.ellipse([x - r - outline_px, y - r - outline_px, x + r + outline_px, y + r + outline_px],
                     fill=_scale(look.hair, 0.6))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=look.hair)
        fr = 0.82 * r
        draw.ellipse([x - fr, y - fr + 0.28 * r, x + fr, y + fr + 0.22 * r], fill=look.skin)


def render_frames(
    people: list[tuple[np.ndarray, Look, float]],
    background: Image.Image,
    size: int,
    camera: Camera,
    supersample: int = 2,
) -> np.ndarray:
    """Draw ``people`` (camera-space joints ``[T, 25, 3]``, look, build) over ``background``.

    Returns uint8 frames ``[T, size, size, 3]``.
    """
    big = size * supersample
    focal = focal_length(size) * supersample
    t_len = people[0][0].shape[0]
    out = np.empty((t_len, size, size, 3), np.uint8)
    projected = [(project(xyz, focal, big / 2, big / 2), xyz[..., 2]) for xyz, _, _ in people]
    shadow_col = tuple(int(v) for v in np.asarray(background.getpixel((big // 2, big - 2)), float) * 0.7)
    outline = 0.9 * supersample
    for t in range(t_len):
        img = background.copy()
        draw = ImageDraw.Draw(img)
        order = sorted(range(len(people)), key=lambda i: -float(people[i][0][t, J.SPINE_BASE, 2]))
        for i in order:
            xyz, look, build = people[i]
            uv, z = projected[i]
            # a contact shadow on the floor under the pelvis (stays on the floor during a jump)
            e = np.deg2rad(camera.elevation)
            bx, by, bz = xyz[t, J.SPINE_BASE]
            wz = by * np.sin(e) + bz * np.cos(e)
            ground = np.array([[bx - 0.3, 0.0, wz], [bx + 0.3, 0.0, wz]])
            g = _world_px(camera, ground, focal, big)
            gx, gy = float(g[:, 0].mean()), float(g[:, 1].mean())
            hw = abs(float(g[1, 0] - g[0, 0])) / 2
            draw.ellipse([gx - hw, gy - hw * 0.2, gx + hw, gy + hw * 0.2], fill=shadow_col)
            parts = _person_parts(uv[t], z[t], look, build, focal)
            for part in sorted(parts, key=lambda p: -p.depth):
                _draw_part(draw, part, outline)
        out[t] = np.asarray(img.reduce(supersample) if supersample > 1 else img)
    return out
