"""Pre-alignment of the video projector to answer embeddings."""

import torch
import torch.nn.functional as F
from torch import nn

from ski_lvlm.models.lvlm.projector import SummaryProjector, build_projector
from ski_lvlm.training.prealign import answer_embeddings, answer_word_targets, prealign_projector


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


class _WordTok:
    """One token per word, id = position of the word in a fixed vocabulary."""

    eos_token_id = 0
    vocab = ["<eos>", "an", "adult", "waves", "kicks", "left", "right", "slowly", "quickly", "."]

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.vocab.index(w) for w in text.split()]}


def test_answer_word_targets_keep_the_distinctive_words_in_answer_order():
    tok, emb = _WordTok(), nn.Embedding(10, 3)
    texts = ["an adult waves left slowly .", "an adult kicks right quickly .", "an adult waves right slowly ."]
    out = answer_word_targets(texts, tok, emb, k=2)  # [3, 2, 3]
    # "an", "adult", "." are in every answer (idf 0); "left", "kicks", "quickly" are in one answer each
    v = tok.vocab.index
    torch.testing.assert_close(out[0], emb.weight[[v("left"), v("waves")]][[1, 0]])  # order of the answer
    torch.testing.assert_close(out[1], emb.weight[[v("kicks"), v("quickly")]])
    # third answer: waves/right/slowly share the idf (2 of 3 answers): the earliest two win
    torch.testing.assert_close(out[2], emb.weight[[v("waves"), v("right")]])
    short = answer_word_targets(["an adult waves", "an adult kicks"], tok, emb, k=3)
    torch.testing.assert_close(short[0], emb.weight[[v("an"), v("adult"), v("waves")]])  # every token, answer order
    torch.testing.assert_close(answer_word_targets(["waves"], tok, emb, k=3)[0],
                               emb.weight[[v("waves")] * 3])  # fewer tokens than k: cycled


def test_prealign_fits_one_word_per_summary_token():
    torch.manual_seed(0)
    n, n_v, d_v, d, k = 64, 4, 8, 16, 3
    labels = torch.arange(n) % 8
    features = torch.randn(8, n_v, d_v)[labels] + 0.1 * torch.randn(n, n_v, d_v)
    words = torch.randn(8, k, d)[labels]  # [n, k, d]: each class says its own k words
    proj = SummaryProjector(build_projector("std_mlp2x_gelu", d_v, d), n_v, k, d_v, d)
    proj.tokens[0].fit(features)
    losses = prealign_projector(proj, features, words, steps=200, lr=1e-2, batch_size=32)
    assert losses[-1] < 0.25 * losses[0]
    pred = proj(features)[:, -k:]  # [n, k, d]
    for slot in range(k):  # each summary token is nearest to its own word of its own answer
        sims = F.normalize(pred[:, slot], dim=-1) @ F.normalize(words[:8, slot], dim=-1).T  # [n, 8 classes]
        assert (sims.argmax(1) == labels).float().mean() == 1.0
