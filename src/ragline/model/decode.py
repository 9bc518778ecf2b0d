"""Decoding for RAG-Token, RAG-Sequence (thorough and fast) and a single-context baseline.

All searches share one batched beam search over P independent problems, each holding R context
rows decoded in lock step (RAG-Token: the k passages of a question; RAG-Sequence: one passage per
problem). Scores are plain log-probabilities, never length-normalized, so a decoded candidate's
score equals what `CausalLM.target_logprobs(..., end=True)` gives it and the two can be compared.

An answer ends at any stop token (end of text or a line break); "the answer ends here" is one
event whose probability is the sum over stop tokens, both in search and in scoring. A text of
many lines (`multiline`) ends at the end of text only.

    cands = rag_token_search(lm, contexts, doc_lp, beams=4)
    cands = rag_sequence_search(lm, contexts, doc_lp, beams=4, thorough=True)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ragline.model.lm import LanguageModel
from ragline.model.marginal import token_next

NEG_INF = float("-inf")


@dataclass(frozen=True)
class Candidate:
    tokens: tuple[int, ...]
    score: float            # log p(y, end | x) under the model that produced it
    finished: bool = True   # False: cut at max_new_tokens, score has no end term
    # log p(y, end | x, z) under each passage, where the search computed it (thorough
    # RAG-Sequence), so the posterior p(z|x,y) needs no second pass
    per_passage: tuple[float, ...] | None = None


def _beam_search(lm: LanguageModel, contexts: Sequence[Sequence[int]], problems: int, rows: int,
                 combine: Callable[[Tensor], Tensor], beams: int,
                 max_new_tokens: int, multiline: bool = False) -> list[list[Candidate]]:
    """contexts: P*R token lists, problem-major. combine maps next-token log-probs of shape
    (P, b, R, V) to one distribution per beam (P, b, V). Returns up to `beams` candidates per
    problem, best first."""
    tok = lm.tokenizer
    stops = tok.end_ids if multiline else tok.stop_ids
    stop = torch.tensor(sorted(stops), device=lm.device)
    # padding and begin-of-text are never part of an answer
    banned = torch.tensor(sorted({tok.pad_id} | ({tok.bos_id} if tok.bos_id is not None else set())
                                 - stops), device=lm.device)
    state, lp = lm.prefill(contexts)  # lp (P*R, V)
    n_beams = 1
    # the problems still searching, in the order of lp's rows: a finished problem's rows leave
    # the batch, so one long answer does not keep every other problem decoding
    act = list(range(problems))
    scores = torch.zeros((problems, 1), device=lm.device)  # (A, b) alive beam scores
    seqs: list[list[tuple[int, ...]]] = [[()] for _ in range(problems)]
    finished: list[list[Candidate]] = [[] for _ in range(problems)]
    done = [False] * problems
    for t in range(max_new_tokens + 1):  # step t finishes answers of t tokens
        vocab = lp.shape[-1]
        comb = combine(lp.view(len(act), n_beams, rows, vocab))  # (A, b, V)
        total = scores[:, :, None] + comb
        end = torch.logsumexp(total.index_select(-1, stop), dim=-1)  # (A, b) answer ends here
        total = total.index_fill(-1, stop, NEG_INF)  # continuing needs a non-stop token
        total = total.index_fill(-1, banned, NEG_INF)
        width = min(beams, n_beams * vocab)
        top_s, top_i = total.view(len(act), -1).topk(width, dim=-1)  # (A, width)
        parents = top_i // vocab
        tokens = top_i % vocab
        end_l, top_l = end.tolist(), top_s.tolist()
        for i, p in enumerate(act):
            for b in range(n_beams):
                if seqs[p][b] and end_l[i][b] > NEG_INF:  # an empty answer is not an answer
                    finished[p].append(Candidate(seqs[p][b], end_l[i][b]))
            finished[p].sort(key=lambda c: -c.score)
            del finished[p][beams:]
            # log-probs only fall as an answer grows: once the best alive beam cannot beat the
            # worst kept finished one, this problem's search is exact and over
            if len(finished[p]) == beams and top_l[i][0] <= finished[p][-1].score:
                done[p] = True
        if all(done) or t == max_new_tokens:
            break
        keep = torch.tensor([i for i, p in enumerate(act) if not done[p]], device=lm.device)
        parents, tokens, scores = parents[keep], tokens[keep], top_s[keep]  # (A', width)
        act = [act[i] for i in keep.tolist()]
        par_l, tok_l = parents.tolist(), tokens.tolist()
        for i, p in enumerate(act):
            seqs[p] = [seqs[p][par_l[i][j]] + (tok_l[i][j],) for j in range(width)]
        # rows of the chosen parents, for every context row of the problem: (A', width, R)
        base = (keep[:, None] * n_beams + parents) * rows
        select = (base[:, :, None] + torch.arange(rows, device=lm.device)).reshape(-1)
        state.select(select)
        n_beams = width
        lp = lm.step(state, tokens[:, :, None].expand(len(act), width, rows).reshape(-1))
    out = []
    alive = {p: i for i, p in enumerate(act)}
    for p in range(problems):
        cands = list(finished[p])
        if not done[p]:  # cut by the length limit: keep the alive beams too, marked unfinished
            row = scores[alive[p]].tolist()
            cands += [Candidate(seqs[p][b], row[b], finished=False)
                      for b in range(n_beams) if seqs[p][b] and row[b] > NEG_INF]
        cands.sort(key=lambda c: -c.score)
        out.append(cands[:beams])
    return out


def rag_token_search(lm: LanguageModel, contexts: Sequence[Sequence[int]], doc_lp: Tensor,
                     beams: int = 1, max_new_tokens: int = 32,
                     multiline: bool = False) -> list[Candidate]:
    """RAG-Token: greedy (beams=1) or beam search on Σ_z p(z|x) p(y_i|x,z,y_<i); doc_lp (k,)."""
    k = len(contexts)
    prior = doc_lp.to(lm.device).float().view(1, k)

    def mix(lp: Tensor) -> Tensor:  # (1, b, k, V) → (1, b, V)
        return token_next(prior.expand(lp.shape[1], k), lp[0])[None]

    return _beam_search(lm, contexts, 1, k, mix, beams, max_new_tokens, multiline)[0]


def beam_search_each(lm: LanguageModel, contexts: Sequence[Sequence[int]], beams: int = 1,
                     max_new_tokens: int = 32, multiline: bool = False) -> list[list[Candidate]]:
    """An independent beam search per context, batched: scores are log p(y, end | context)."""
    return _beam_search(lm, contexts, len(contexts), 1, lambda lp: lp[:, :, 0, :], beams,
                        max_new_tokens, multiline)


def score_under_each(lm: LanguageModel, contexts: Sequence[Sequence[int]],
                     cands: Sequence[Candidate], batch_rows: int = 32,
                     known: dict[tuple[tuple[int, ...], int], float] | None = None,
                     end: bool = True) -> Tensor:
    """log p(y, end | x, z) of every candidate under every context: (C, k), teacher-forced
    (without the end term when not `end`). `known` maps (tokens, z) to a score already
    computed (a search's own candidates under the passage it searched), which is used instead
    of a forward pass."""
    known = known or {}
    out = torch.empty(len(cands), len(contexts))
    pairs = []
    for c, cand in enumerate(cands):
        for z in range(len(contexts)):
            if (cand.tokens, z) in known:
                out[c, z] = known[cand.tokens, z]
            else:
                pairs.append((c, z))
    with torch.no_grad():
        for s in range(0, len(pairs), batch_rows):
            chunk = pairs[s:s + batch_rows]
            lp, _ = lm.target_logprobs([contexts[z] for _, z in chunk],
                                       [cands[c].tokens for c, _ in chunk],
                                       end=[end and cands[c].finished for c, _ in chunk])
            for (c, z), v in zip(chunk, lp.sum(-1).cpu().tolist(), strict=True):
                out[c, z] = v
    return out


def rag_sequence_search(lm: LanguageModel, contexts: Sequence[Sequence[int]], doc_lp: Tensor,
                        beams: int = 4, max_new_tokens: int = 32,
                        thorough: bool = True, multiline: bool = False) -> list[Candidate]:
    """RAG-Sequence: beam search under each passage, pool the candidates, score each by
    log Σ_z p(z|x) p(y|x,z). Thorough decoding computes p(y|x,z) for every pooled candidate
    under every passage (one more forward pass per pair); fast decoding takes p(y|x,z) = 0
    where y did not come out of passage z's beam. A `multiline` text is rescored without the
    end term (teacher forcing counts a line break as an end), so search scores are not reused."""
    doc_lp = doc_lp.detach().cpu().float()
    per_passage = beam_search_each(lm, contexts, beams, max_new_tokens, multiline)
    pooled: dict[tuple[int, ...], Candidate] = {}
    fast: dict[tuple[int, ...], list[float]] = {}
    # a finished candidate's search score is already log p(y, end | x, z) under its passage.
    # The pooled candidate (the first seen) decides whether the end term is scored, so only a
    # finished one reuses search scores.
    known: dict[tuple[tuple[int, ...], int], float] = {}
    for z, cands in enumerate(per_passage):
        for c in cands:
            first = pooled.setdefault(c.tokens, c)
            fast.setdefault(c.tokens, []).append(float(doc_lp[z]) + c.score)
            if c.finished and first.finished and not multiline:
                known[c.tokens, z] = c.score
    if not pooled:
        return []
    cands = list(pooled.values())
    if thorough:
        seq_lp = score_under_each(lm, contexts, cands, known=known, end=not multiline)  # (C, k)
        totals = torch.logsumexp(doc_lp[None, :] + seq_lp, dim=-1).tolist()
        ranked = [Candidate(c.tokens, s, c.finished, tuple(row))
                  for c, s, row in zip(cands, totals, seq_lp.tolist(), strict=True)]
    else:
        ranked = [Candidate(c.tokens, float(torch.logsumexp(torch.tensor(fast[c.tokens]), 0)),
                            c.finished) for c in cands]
    ranked.sort(key=lambda c: -c.score)
    return ranked[:beams]


__all__ = ["Candidate", "beam_search_each", "rag_sequence_search", "rag_token_search",
           "score_under_each"]
