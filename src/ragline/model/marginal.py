"""RAG's two marginalizations over retrieved passages, as pure functions of log-probabilities.

Shapes: B questions, k passages each, T answer tokens, V vocabulary.

    doc_lp = doc_log_prior(scores, scale)                # (B, k)   log p(z|x)
    seq = sequence_logprob(doc_lp, tok_lp, mask)         # (B,)     RAG-Sequence log p(y|x)
    tok = token_logprob(doc_lp, tok_lp, mask)            # (B,)     RAG-Token log p(y|x)

Everything stays in log space: products of per-token probabilities underflow in float32 after
a few dozen tokens, and logsumexp is exact where the naive sum of exponentials is not.
"""

from __future__ import annotations

import torch
from torch import Tensor


def doc_log_prior(scores: Tensor, scale: float | Tensor = 1.0) -> Tensor:
    """log p(z|x) = log softmax over the k retrieved passages of scale · d(z)·q(x).
    The softmax runs over the retrieved top-k only (not the corpus), as in Lewis et al. 2020.
    `scale` is an inverse temperature: with L2-normalized vectors d(z)·q(x) ∈ [-1, 1], and at
    scale 1 the prior is nearly uniform whatever the scores say."""
    return torch.log_softmax(scores * scale, dim=-1)


def answer_prior_mass(doc_lp: Tensor, positive: Tensor) -> Tensor:
    """Σ p(z|x) over the passages that hold the answer: doc_lp (N, k), positive (N, k) bool →
    (N,). Rows without such a passage give 0."""
    return (doc_lp.exp() * positive).sum(-1)


def calibrate_scale(scores: Tensor, positive: Tensor, low: float = 1.0,
                    high: float = 50.0, steps: int = 200) -> float:
    """The inverse temperature that maximizes the mean log prior mass of the answer-bearing
    passages, log Σ_{z holds y} p(z|x): scores and positive (N, k), over the rows that have at
    least one such passage. A grid in log space: the objective is one-dimensional and cheap,
    and a grid cannot diverge the way a gradient step from a bad start can. The grid stops at
    50: cosine gaps of 0.1 then already weigh e^5 ≈ 150 : 1, and a prior much sharper than that
    leaves no gradient for the question encoder and turns RAG into top-1 retrieval."""
    rows = positive.any(-1)
    if not bool(rows.any()):
        raise ValueError("no question has a retrieved passage that holds its answer")
    s, pos = scores[rows].double(), positive[rows]
    grid = torch.logspace(torch.log10(torch.tensor(low)), torch.log10(torch.tensor(high)),
                          steps, dtype=torch.float64)  # (G,)
    doc_lp = torch.log_softmax(grid[:, None, None] * s[None], dim=-1)  # (G, N, k)
    mass = torch.logsumexp(doc_lp.masked_fill(~pos[None], float("-inf")), dim=-1)  # (G, N)
    return float(grid[mass.mean(-1).argmax()])


def sequence_logprob(doc_lp: Tensor, tok_lp: Tensor, mask: Tensor) -> Tensor:
    """RAG-Sequence: log Σ_z p(z|x) Π_i p(y_i|x,z,y_<i).

    doc_lp (B, k); tok_lp (B, k, T) log p(y_i|x,z,y_<i); mask (B, T), 0 on padded answer tokens.
    """
    # sum over tokens first: one passage explains the whole answer
    seq_lp = (tok_lp * mask[:, None, :]).sum(-1)  # (B, k)
    return torch.logsumexp(doc_lp + seq_lp, dim=-1)  # (B,)


def token_logprob(doc_lp: Tensor, tok_lp: Tensor, mask: Tensor) -> Tensor:
    """RAG-Token: Σ_i log Σ_z p(z|x) p(y_i|x,z,y_<i). Same shapes as `sequence_logprob`."""
    # mix passages at every token: logsumexp over the passage axis (dim 1), then sum over tokens
    per_token = torch.logsumexp(doc_lp[:, :, None] + tok_lp, dim=1)  # (B, T)
    return (per_token * mask).sum(-1)  # (B,)


def token_next(doc_lp: Tensor, next_lp: Tensor) -> Tensor:
    """RAG-Token's next-token distribution log Σ_z p(z|x) p(w|x,z,y_<i).

    doc_lp (B, k); next_lp (B, k, V) → (B, V). The prior p(z|x) is fixed for the whole answer:
    RAG-Token mixes with the retrieval prior, not a posterior updated by earlier tokens."""
    return torch.logsumexp(doc_lp[:, :, None] + next_lp, dim=1)


def doc_posterior(doc_lp: Tensor, seq_lp: Tensor) -> Tensor:
    """p(z|x,y) ∝ p(z|x) p(y|x,z): which passage explains a finished answer; (B, k) → (B, k).
    This is what a RAG answer cites."""
    return torch.softmax(doc_lp + seq_lp, dim=-1)
