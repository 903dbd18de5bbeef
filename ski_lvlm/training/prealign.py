"""Pre-align the video projector to the LLM's word embeddings, before instruction tuning.

Why: instruction tuning teaches the LLM to read the video tokens and the projector to write them at the
same time, through the whole LLM, a few hundred samples at a time. On CPU that is a few dozen optimizer
steps, and the quickstart's SmolLM2 runs settled on a handful of captions for all videos even though a
linear probe reads the action from the same tokens 77 % of the time. This step gives the projector a
head start for the price of a linear probe: it fits the mean projected video token of each training
video to the mean input embedding of that video's reference answer (its first assistant turn), with no
LLM forward pass. Video tokens then start out near the words that describe their video, where the LLM
already knows how to read them. An InfoNCE term over the batch makes the fit discriminative (it must
tell this video's answer from the others'), an MSE term gives the tokens the scale of word embeddings.

Two targets (``train.prealign_target``):

* ``mean``: the summary tokens' mean is fitted to the mean embedding of the whole answer. Most of an
  answer's tokens are the template every answer shares ("An adult ... their ... ."), so the target of one
  video differs from another's only in a small part.
* ``words``: summary token ``i`` is fitted to the ``i``-th most distinctive token of the answer, in answer
  order. Distinctive = highest inverse document frequency over the training answers, so the template
  drops out and what is left is what tells answers apart (the verb, the side, the tempo word). Each
  summary token then starts out as one word the answer will say, which a pretrained LLM can copy from
  its context. No class list is needed: the weights come from the answers alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["answer_embeddings", "answer_word_targets", "prealign_projector"]


@torch.no_grad()
def answer_embeddings(texts: list[str], tokenizer, embedding: nn.Embedding) -> torch.Tensor:
    """Mean input embedding of each text's tokens (no special tokens): ``[n, d]``."""
    out = []
    for ids in _answer_ids(texts, tokenizer):
        out.append(embedding.weight[torch.tensor(ids, device=embedding.weight.device)].float().mean(0))
    return torch.stack(out)


def _answer_ids(texts: list[str], tokenizer) -> list[list[int]]:
    return [tokenizer(t, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id] for t in texts]


@torch.no_grad()
def answer_word_targets(texts: list[str], tokenizer, embedding: nn.Embedding, k: int) -> torch.Tensor:
    """Embeddings of each answer's ``k`` most distinctive tokens, in answer order: ``[n, k, d]``.

    Distinctive = highest ``log(n / document frequency)`` over ``texts`` (ties: earlier first); an
    answer with fewer than ``k`` distinct tokens repeats its list cyclically.
    """
    ids = _answer_ids(texts, tokenizer)
    df: dict[int, int] = {}
    for row in ids:
        for t in set(row):
            df[t] = df.get(t, 0) + 1
    weight = embedding.weight
    out = []
    for row in ids:
        first = {}
        for pos, t in enumerate(row):
            first.setdefault(t, pos)
        ranked = sorted(first, key=lambda t: (df[t], first[t]))[:k]  # highest idf = lowest df
        chosen = sorted(ranked, key=first.__getitem__)  # back into answer order
        chosen = [chosen[i % len(chosen)] for i in range(k)]
        out.append(weight[torch.tensor(chosen, device=weight.device)].float())  # [k, d]
    return torch.stack(out)


def prealign_projector(projector: nn.Module, features: torch.Tensor, targets: torch.Tensor, *, steps: int = 300,
                       lr: float = 2e-3, batch_size: int = 64, temperature: float = 0.05, seed: int = 0
                       ) -> list[float]:
    """Fit ``mean_tokens(projector(features))`` to ``targets``; returns the loss of every step.

    Args:
        projector: the video projector ``[..., d_v] -> [..., d]`` (trained in place).
        features: ``[n, n_v, d_v]`` video tokens of the training videos.
        targets: ``[n, d]`` answer embeddings (:func:`answer_embeddings`), fitted by the mean summary
            token; or ``[n, k, d]`` word targets (:func:`answer_word_targets`), one per summary token.
        steps, lr, batch_size: AdamW on the projector only.
        temperature: of the InfoNCE term (cosine similarities between projected videos and answers).
    """
    param = next(projector.parameters())
    features, targets = features.to(param), targets.to(param)
    opt = torch.optim.AdamW([p for p in projector.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    scale = targets.pow(2).mean()  # MSE relative to the embeddings' own size
    k = getattr(projector, "num_summary", 0)
    losses = []
    for _ in range(steps):
        idx = torch.randperm(len(features), generator=gen)[:batch_size]
        out = projector(features[idx])  # [b, n (+ k), d]
        pred = out[:, -k:] if k else out  # [b, k, d]: the summary tokens when there are some
        tgt = targets[idx]  # [b, d] or [b, k, d]
        if tgt.dim() == 2:
            pred = pred.mean(dim=1)  # [b, d]
            logits = F.normalize(pred, dim=-1) @ F.normalize(tgt, dim=-1).T / temperature  # [b, b]
        else:  # slot by slot; the InfoNCE compares whole answers (all slots at once)
            sim = torch.einsum("ikd,jkd->ij", F.normalize(pred, dim=-1), F.normalize(tgt, dim=-1))  # [b, b]
            logits = sim / (pred.shape[1] * temperature)
        nce = F.cross_entropy(logits, torch.arange(len(idx), device=logits.device))
        loss = nce + F.mse_loss(pred, tgt) / scale
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
