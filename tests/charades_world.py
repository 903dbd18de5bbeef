"""A tiny hand-made Charades-format world (5 videos, one broken, a QA file) and a tiny random LVLM for it:
shared by the caption-benchmark tests (library in tests/ski_lvlm/evaluation, recipe in tests/eval)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

CLASSES = {"c000": "wave left hand", "c001": "clap", "c002": "jump"}
# id, scene, main action (longest), descriptions
VIDEOS = [
    ("V001", "Kitchen", "c000 0.0 1.0;c001 0.1 0.3", "A person waves their left hand.;Someone waves slowly."),
    ("V002", "Kitchen", "c001 0.0 1.0", "A person claps.;Someone claps their hands twice."),
    ("V003", "Bedroom", "c002 0.0 1.0", "A person jumps.;The person jumps up and down."),
    ("V004", "Bedroom", "c002 0.0 1.0", "Someone jumps in place."),
    ("V005", "Hallway", "c000 0.0 1.0", "A person waves."),
]


def make_charades_world(root: Path) -> Path:
    """``root/Charades_v1_test.csv`` + ``videos/`` (V004 is not a video) + classes + ``qa.json``."""
    from ski_lvlm.data.video import write_video

    (root / "videos").mkdir()
    rng = np.random.default_rng(0)
    header = ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects", "descriptions",
              "actions", "length"]
    with open(root / "Charades_v1_test.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for vid, scene, actions, desc in VIDEOS:
            w.writerow([vid, "P1", scene, 7, 7, "Yes", desc.split(";")[0], "", desc, actions, 1.0])
            if vid == "V004":  # a broken video: recorded as an error, not a crash
                (root / "videos" / f"{vid}.mp4").write_bytes(b"not a video at all")
            else:
                write_video(root / "videos" / f"{vid}.mp4", rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), fps=10)
    (root / "Charades_v1_classes.txt").write_text("".join(f"{k} {v}\n" for k, v in CLASSES.items()))
    qa = [{"video_id": "V001", "q": "What is the person doing?", "a": "Waving the left hand."},
          {"video_id": "V001", "q": "Which hand?", "a": "The left hand."},
          {"video_id": "V002", "q": "What is the person doing?", "a": "Clapping."},
          {"video_id": "V003", "q": "Pick one.", "a": "B", "options": ["sitting", "jumping", "waving"]}]
    (root / "qa.json").write_text(json.dumps(qa))
    return root


def make_caption_model(d: Path) -> Path:
    """A tiny random LVLM with a video tower whose tokenizer knows the world's words, saved to ``d``."""
    from ski_lvlm.models.lvlm.presets import create_lvlm

    model, proc = create_lvlm("tiny-llama", video_encoder={"kind": "clip", "arch": "ski-tiny-ViT"}, num_frames=4,
                              max_frames=4, skeleton_feature_dim=16, num_skeleton_tokens=4, seed=0,
                              corpus=[v[3] for v in VIDEOS] + ["What is the person doing? Which hand?"])
    model.save_pretrained(d)
    proc.save_pretrained(d)
    return d
