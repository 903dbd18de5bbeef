"""A toy zero-shot world in the real formats, shared by the SkeletonCLIP / SKI-VLM / zero-shot tests."""

import json

import numpy as np

from ski_lvlm.data.skeleton import write_ntu_skeleton
from ski_lvlm.data.video import write_video

BASE = ["raise left hand", "raise right hand", "wave left hand", "clap"]
NOVEL = ["wave right hand", "kick"]


def make_world(root, per_class=3, frames=20, video=False):
    """A toy world in the real formats: class k moves joint group k (skeleton) and a blob (video)."""
    rng = np.random.default_rng(0)

    def clip(name, k):
        t = np.arange(frames) / frames
        xyz = np.zeros((3, frames, 25, 1), np.float32)
        xyz[1, :, :, 0] = np.linspace(0, 1.5, 25)[None] + rng.normal(0, 0.01, (frames, 25))
        xyz[0, :, 4 * k + 2: 4 * k + 6, 0] += 0.3 * np.sin(2 * np.pi * t)[:, None]
        write_ntu_skeleton(root / "skeletons" / f"{name}.skeleton", xyz)
        if video:
            img = np.full((frames, 64, 64, 3), 30, np.uint8)
            for i in range(frames):
                y = int(8 + 10 * k + 4 * np.sin(2 * np.pi * i / frames))
                img[i, y:y + 8, 8 + 8 * k: 20 + 8 * k] = 220
            write_video(root / "videos" / f"{name}.mp4", img, fps=10)
        return f"videos/{name}.mp4,skeletons/{name}.skeleton"

    def split(file, names, offset, subjects):
        rows = ["video_path,skeleton_path,label"]
        for label, _ in enumerate(names):
            for s in subjects:
                rows.append(f"{clip(f'S001C001P{s:03d}R001A{offset + label + 1:03d}', offset + label)},{label}")
        (root / file).write_text("\n".join(rows) + "\n")

    (root / "skeletons").mkdir(parents=True)
    for file, names in (("zsl_base_classes.csv", BASE), ("zsl_novel_classes.csv", NOVEL)):
        (root / file).write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    split("zsl_base_train.csv", BASE, 0, range(1, per_class + 1))
    split("zsl_base_val.csv", BASE, 0, [50])
    split("zsl_novel_test.csv", NOVEL, len(BASE), [60, 61])
    caps = {p.stem: [f"a person does motion {p.stem[-2:]}"] for p in (root / "skeletons").iterdir()}
    (root / "captions.json").write_text(json.dumps(caps))
    return root
