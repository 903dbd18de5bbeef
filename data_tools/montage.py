"""Render a PNG montage of video frames from a synthetic world: one labelled strip of frames per class.

    ski-lvlm data montage runs/world --out docs/images/montage.png
    ski-lvlm data montage runs/world --out m.png --classes "drink water,brush teeth" --frames 8 --scale 2

Clips are taken from the world's manifests (``train.csv`` then ``test.csv``; the first clip of each
class), frames are decoded with :func:`ski_lvlm.data.video.read_frames` (PyAV, uniformly spaced over the clip).
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ski_lvlm.utils.errors import UserError, cli_entry

# the subtle pairs first: they show that only the motion differs
DEFAULT_CLASSES = ("wave left hand", "wave right hand", "drink water", "brush teeth", "sit down", "stand up",
                   "touch head with right hand", "kick with right leg", "jump", "throw", "pick up", "bow")


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise UserError(f"{path}: not found (is {path.parent} a world made by `ski-lvlm data synthetic`?)")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def pick_clips(world: Path, classes: list[str] | None, max_classes: int) -> list[tuple[str, Path]]:
    """(class name, video path) of the first clip of each requested class."""
    names = {int(r["id"]): r["name"] for r in _read_csv(world / "classes.csv")}
    if classes:
        unknown = [c for c in classes if c not in names.values()]
        if unknown:
            raise UserError(f"unknown class {unknown[0]!r}; {world / 'classes.csv'} has: {', '.join(names.values())}")
        wanted = classes
    else:
        present = [c for c in DEFAULT_CLASSES if c in names.values()]
        wanted = (present + [c for c in names.values() if c not in present])[:max_classes]
    first: dict[str, Path] = {}
    for manifest in ("train.csv", "test.csv"):
        path = world / manifest
        for row in _read_csv(path):
            name = names.get(int(row["label"]))
            if name in wanted and name not in first:
                first[name] = path.parent / row["video_path"]
    missing = [c for c in wanted if c not in first]
    if missing:
        raise UserError(f"no clip of class {missing[0]!r} in {world}/train.csv or test.csv")
    return [(c, first[c]) for c in wanted]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def make_montage(clips: list[tuple[str, Path]], frames: int, cols: int, scale: float) -> Image.Image:
    """Grid of ``cols`` columns; each cell is a class label over a strip of ``frames`` frames."""
    from ski_lvlm.data.video import read_frames

    strips = []
    for name, path in clips:
        fr = read_frames(path, frames, sampling="uniform", backend="pyav")  # [t, H, W, 3]; errors name the file
        strip = Image.fromarray(np.concatenate(list(fr), axis=1))
        if scale != 1:
            strip = strip.resize((round(strip.width * scale), round(strip.height * scale)), Image.BICUBIC)
        strips.append((name, strip))
    label_h = max(16, round(18 * max(scale, 1)))
    pad = 6
    cell_w = max(s.width for _, s in strips)
    cell_h = max(s.height for _, s in strips) + label_h
    rows = (len(strips) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cell_w + (cols + 1) * pad, rows * cell_h + (rows + 1) * pad), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    font = _font(label_h - 4)
    for i, (name, strip) in enumerate(strips):
        r, c = divmod(i, cols)
        x, y = pad + c * (cell_w + pad), pad + r * (cell_h + pad)
        draw.text((x + 2, y + 1), name, fill=(20, 20, 20), font=font)
        sheet.paste(strip, (x, y + label_h))
    return sheet


@cli_entry("ski-lvlm data montage")
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ski-lvlm data montage",
                                description="PNG grid of rendered frames from several classes of a synthetic world.")
    p.add_argument("world", help="folder made by `ski-lvlm data synthetic`")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--classes", help="comma-separated class names (default: subtle pairs first, up to --max-classes)")
    p.add_argument("--max-classes", type=int, default=12, help="classes shown when --classes is not given (12)")
    p.add_argument("--frames", type=int, default=5, help="frames per class, uniformly spaced (5)")
    p.add_argument("--cols", type=int, default=2, help="classes per row (2)")
    p.add_argument("--scale", type=float, default=1.0, help="frame magnification (1.0)")
    args = p.parse_args(argv)

    from ski_lvlm.utils.io import atomic_write_bytes, check_writable_parent

    world = Path(args.world)
    if not world.is_dir():
        raise UserError(f"{world}: not a folder")
    bad = [f"--{k.replace('_', '-')} must be >= 1" for k in ("frames", "cols", "max_classes") if getattr(args, k) < 1]
    if not 0.1 <= args.scale <= 8:
        bad.append("--scale must be in 0.1..8")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        bad.append(f"--out {out}: must end in .png")
    if out.is_dir():
        bad.append(f"--out {out}: is a folder")
    else:
        bad += [f"--out: {msg}" for msg in check_writable_parent(out.parent)]
    if bad:
        raise UserError("; ".join(bad))
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    clips = pick_clips(world, classes, args.max_classes)
    sheet = make_montage(clips, args.frames, args.cols, args.scale)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", optimize=True)
    atomic_write_bytes(out, buf.getvalue())
    print(f"montage of {len(clips)} classes x {args.frames} frames ({sheet.width}x{sheet.height}) -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
