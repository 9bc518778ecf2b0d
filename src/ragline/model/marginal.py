"""RAG's two marginalizations over retrieved passages, as pure functions of log-probabilities.

Shapes: B questions, k passages each, T answer tokens, V vocabulary.

    doc_lp = doc_log_prior(scores)                       # (B, k)   log p(z|x)
    seq = sequence_logprob(doc_lp, tok_lp, mask)         # (B,)     RAG-Sequence log p(y|x)
    tok = token_logprob(doc_lp, tok_lp, mask)            # (B,)     RAG-Token log p(y|x)

Everything stays in log space: products of per-token probabilities underflow in float32 after
a few dozen tokens, and logsumexp is exact where the naive sum of exponentials is not.
"""

from __future__ import annotations

import torch
from torch import Tensor


def doc_log_prior(scores: Tensor, temperature: float = 1.0) -> Tensor:
    """log p(z|x) = log softmax over the k retrieved passages of d(z)·q(x) / temperature.
    The softmax runs over the retrieved top-k only (not the corpus), as in Lewis et al. 2020."""
    return torch.log_softmax(scores / temperature, dim=-1)


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
