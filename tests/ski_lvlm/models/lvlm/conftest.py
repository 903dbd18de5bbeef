"""Tiny SKI-LVLM fixtures: 2-layer backbones (hidden 64), 512-token BPE, 5 video + 3 skeleton tokens."""

import pytest
import torch

from ski_lvlm.models.lvlm.presets import create_lvlm

D_V, D_S, N_V, N_S = 32, 16, 5, 3


@pytest.fixture(autouse=True, scope="package")
def _one_thread():
    # tiny models: one thread avoids oversubscription on a shared 2-core machine (several times faster)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def make_tiny(preset: str = "tiny-llama", **kw):
    kw = {"video_feature_dim": D_V, "skeleton_feature_dim": D_S, "num_video_tokens": N_V, "num_skeleton_tokens": N_S,
          "seed": 0, **kw}
    model, proc = create_lvlm(preset, **kw)
    return model.eval(), proc


@pytest.fixture(scope="module", params=["tiny-llama", "tiny-qwen2"])
def tiny(request):
    return make_tiny(request.param)


@pytest.fixture
def conv():
    return [{"from": "human", "value": "<video>\nDescribe the video."},
            {"from": "gpt", "value": "A person waves."},
            {"from": "human", "value": "What happens next?"},
            {"from": "gpt", "value": "The person sits down."}]


def batch_of(proc, conversations, skeleton_flags):
    """Right-padded batch + features for a list of conversations (video always, skeleton per flag)."""
    exs = [proc.build_example(c, use_skeleton=s) for c, s in zip(conversations, skeleton_flags)]
    width = max(len(e.input_ids) for e in exs)
    ids = torch.full((len(exs), width), proc.tokenizer.pad_token_id)
    labels = torch.full((len(exs), width), -100)
    mask = torch.zeros((len(exs), width), dtype=torch.long)
    for i, e in enumerate(exs):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[i, : len(e.labels)] = torch.tensor(e.labels)
        mask[i, : len(e.input_ids)] = 1
    return ids, labels, mask
