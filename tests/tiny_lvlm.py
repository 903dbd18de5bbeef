"""A tiny trained-looking SKI-LVLM run folder and small videos, shared by the export / inference / demo tests."""

from pathlib import Path

import numpy as np
import torch


def make_run(root: Path, *, lora: bool = True, seed: int = 0) -> Path:
    """A run folder laid out like `ski-lvlm train lvlm` writes it: tiny Llama + tiny CLIP tower, LoRA with
    non-zero B (so merging matters), RUN/base_llm, RUN/config.yaml and RUN/final."""
    from ski_lvlm.models.lvlm.presets import create_lvlm
    from ski_lvlm.training.lvlm_checkpoint import save_final

    model, proc = create_lvlm("tiny-llama", video_encoder={"kind": "clip", "arch": "ski-tiny-ViT", "layer": -2},
                              num_frames=4, max_frames=4, skeleton_feature_dim=16, num_skeleton_tokens=4,
                              tokenizer_vocab_size=300, seed=seed)
    base = (root / "base_llm").resolve()
    model.language_model.save_pretrained(base)
    proc.tokenizer.save_pretrained(base)
    model.config.llm_name_or_path = str(base)
    if lora:
        from peft import LoraConfig, get_peft_model

        model.language_model = get_peft_model(model.language_model, LoraConfig(
            r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"))
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.normal_(0, 0.05, generator=torch.Generator().manual_seed(seed + len(n)))
    (root / "config.yaml").write_text("# ski-lvlm train lvlm --config config.yaml\n"
                                      "data:\n  train_json: /data/world/instructions_train.json\n  p_inject: 0.5\n"
                                      "train:\n  stage: instruct\n  llm_adapter: lora\n  lr: 0.002\n  batch_size: 4\n"
                                      "  seed: 0\nlora:\n  r: 4\n  alpha: 8\n  dropout: 0.0\n")
    save_final(root / "final", model, proc, run_info={
        "stage": "instruct", "llm_adapter": "lora" if lora else "none", "steps": 3, "final_loss": 1.25,
        "p_inject": 0.5, "samples": 8, "skipped": 0, "command": "ski-lvlm train lvlm --config config.yaml"})
    return root


def make_videos(folder: Path, n: int = 3) -> list[Path]:
    """Small distinct H.264 clips (different sizes, so batching must group by frame size)."""
    from ski_lvlm.data.video import write_video

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        frames = rng.integers(0, 255, (6, 48 + 16 * (i % 2), 64, 3), dtype=np.uint8)
        write_video(folder / f"clip{i}.mp4", frames, fps=6)
        out.append(folder / f"clip{i}.mp4")
    return out
