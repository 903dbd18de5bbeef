"""Pre-alignment of the video projector to answer embeddings."""

import torch
import torch.nn.functional as F
from torch import nn

from ski_lvlm.models.lvlm.projector import SummaryProjector, build_projector
from ski_lvlm.training.prealign import answer_embeddings, prealign_projector


def test_prealign_learns_a_discriminative_map_to_the_answer_embeddings():
    torch.manual_seed(0)
    n, n_v, d_v, d = 64, 4, 8, 16
    labels = torch.arange(n) % 8
    features = torch.randn(8, n_v, d_v)[labels] + 0.1 * torch.randn(n, n_v, d_v)  # 8 classes of clips
    targets = torch.randn(8, d)[labels]  # each class has its own answer embedding
    proj = SummaryProjector(build_projector("std_mlp2x_gelu", d_v, d), n_v, 2, d_v, d)
    proj.tokens[0].fit(features)
    losses = prealign_projector(proj, features, targets, steps=150, lr=1e-2, batch_size=32)
    assert losses[-1] < 0.25 * losses[0]
    pred = proj(features)[:, -2:].mean(1)  # the summary rows are what is fitted
    nearest = (F.normalize(pred, dim=-1) @ F.normalize(targets, dim=-1).T).argmax(1)  # [n] closest answer
    assert (labels[nearest] == labels).float().mean() == 1.0


def test_answer_embeddings_average_the_token_rows():
    class Tok:
        eos_token_id = 0

        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [len(w) for w in text.split()]}

    emb = nn.Embedding(10, 3)
    out = answer_embeddings(["ab abc", ""], Tok(), emb)
    torch.testing.assert_close(out[0], emb.weight[[2, 3]].mean(0))
    torch.testing.assert_close(out[1], emb.weight[0])  # an empty answer falls back to EOS
