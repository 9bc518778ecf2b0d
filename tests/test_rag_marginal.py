"""RAG-Sequence and RAG-Token against brute-force enumeration, decoding against exhaustive
search, and padding across passages of different lengths."""

from __future__ import annotations

import itertools

import pytest
import torch

from ragline.model.decode import beam_search_each, rag_sequence_search, rag_token_search, score_under_each
from ragline.model.marginal import (
    answer_prior_mass,
    calibrate_scale,
    doc_log_prior,
    sequence_logprob,
    token_logprob,
    token_next,
)
from ragline.model.rag_model import DocPrior

from toymodels import abc_lm

V, T, K = 3, 3, 3


def _tables(seed: int) -> tuple[torch.Tensor, dict]:
    """p(z|x) and, for every passage and prefix, a next-token distribution over V tokens."""
    g = torch.Generator().manual_seed(seed)
    prior = torch.softmax(torch.randn(K, generator=g), 0)
    table = {}
    for z in range(K):
        for n in range(T):
            for prefix in itertools.product(range(V), repeat=n):
                table[z, prefix] = torch.softmax(2 * torch.randn(V, generator=g), 0)
    return prior, table


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_marginals_equal_brute_force_enumeration(seed: int) -> None:
    prior, table = _tables(seed)
    seqs = list(itertools.product(range(V), repeat=T))
    # tok_lp[y, z, i] = log p(y_i | x, z, y_<i)
    tok_lp = torch.stack([torch.stack([torch.stack([table[z, y[:i]][y[i]].log() for i in range(T)])
                                       for z in range(K)]) for y in seqs])  # (|Y|, K, T)
    doc_lp = prior.log().expand(len(seqs), K)
    mask = torch.ones(len(seqs), T)
    seq = sequence_logprob(doc_lp, tok_lp, mask).exp()
    tok = token_logprob(doc_lp, tok_lp, mask).exp()
    for j, y in enumerate(seqs):
        want_seq = sum(prior[z] * torch.prod(torch.stack([table[z, y[:i]][y[i]] for i in range(T)]))
                       for z in range(K))
        want_tok = torch.prod(torch.stack([sum(prior[z] * table[z, y[:i]][y[i]] for z in range(K))
                                           for i in range(T)]))
        assert seq[j].item() == pytest.approx(float(want_seq), rel=1e-5)
        assert tok[j].item() == pytest.approx(float(want_tok), rel=1e-5)
    # both are distributions over answers of length T: a wrong axis breaks this
    assert seq.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert tok.sum().item() == pytest.approx(1.0, abs=1e-5)
    # the two models differ in general (mixing per token is not mixing per sequence)
    assert not torch.allclose(seq, tok)


def test_token_next_is_the_prior_weighted_mixture() -> None:
    prior, table = _tables(3)
    nxt = torch.stack([table[z, ()] for z in range(K)]).log()[None]  # (1, K, V)
    mixed = token_next(prior.log()[None], nxt).exp()[0]
    want = sum(prior[z] * table[z, ()] for z in range(K))
    assert torch.allclose(mixed, want, atol=1e-6)
    assert mixed.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_masked_positions_do_not_count() -> None:
    doc_lp = torch.log_softmax(torch.randn(2, K), -1)
    tok_lp = -torch.rand(2, K, 4)
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])
    short = tok_lp[:1, :, :2]
    assert torch.allclose(sequence_logprob(doc_lp, tok_lp, mask)[0],
                          sequence_logprob(doc_lp[:1], short, torch.ones(1, 2))[0])
    assert torch.allclose(token_logprob(doc_lp, tok_lp, mask)[0],
                          token_logprob(doc_lp[:1], short, torch.ones(1, 2))[0])


# ---------------------------------------------------------------- with a real (tiny) transformer

def _contexts() -> list[list[int]]:
    lm = abc_lm()
    tok = lm.tokenizer
    return [[1] + tok.encode("abcab"), [1] + tok.encode("cc"), [1] + tok.encode("babcacbba")]


def test_padding_gives_each_passage_the_same_logprobs_as_alone() -> None:
    lm = abc_lm()
    ctx = _contexts()
    targets = [[3, 4], [5], [4, 4, 3]]
    with torch.no_grad():
        lp, mask = lm.target_logprobs(ctx, targets, end=True)
        assert lp.shape == mask.shape == (3, 4)  # longest target + the end column
        assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
        for r in range(3):
            alone, _ = lm.target_logprobs([ctx[r]], [targets[r]], end=True)
            n = len(targets[r]) + 1
            assert torch.allclose(lp[r, :n], alone[0, :n], atol=1e-5)
            assert (lp[r, n:] == 0).all()


def _all_answers(max_len: int) -> list[tuple[tuple[int, ...], bool]]:
    out = []
    for n in range(1, max_len + 1):
        for y in itertools.product((3, 4, 5), repeat=n):
            out.append((y, True))
            if n == max_len:
                out.append((y, False))  # cut by the length limit, no end event
    return out


def _brute(lm, ctx, doc_lp, model: str) -> tuple[tuple[int, ...], float]:
    best: tuple[tuple[int, ...], float] = ((), float("-inf"))
    with torch.no_grad():
        for y, ended in _all_answers(3):
            lp, mask = lm.target_logprobs(ctx, [list(y)] * len(ctx), end=ended)
            fn = sequence_logprob if model == "rag-sequence" else token_logprob
            s = float(fn(doc_lp[None], lp[None], mask[:1])[0])
            if s > best[1]:
                best = (y, s)
    return best


@pytest.mark.parametrize("seed", [0, 1])
def test_exhaustive_beam_search_finds_the_brute_force_best(seed: int) -> None:
    lm = abc_lm(seed)
    ctx = _contexts()
    doc_lp = doc_log_prior(torch.tensor([0.2, -0.4, 0.9]))
    # 40 beams hold every answer of up to 3 tokens: the search is exhaustive
    tok = rag_token_search(lm, ctx, doc_lp, beams=40, max_new_tokens=3)[0]
    want = _brute(lm, ctx, doc_lp, "rag-token")
    assert tok.tokens == want[0] and tok.score == pytest.approx(want[1], abs=1e-4)
    seq = rag_sequence_search(lm, ctx, doc_lp, beams=40, max_new_tokens=3, thorough=True)[0]
    want = _brute(lm, ctx, doc_lp, "rag-sequence")
    assert seq.tokens == want[0] and seq.score == pytest.approx(want[1], abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_thorough_decoding_scores_at_least_fast_decoding(seed: int) -> None:
    lm = abc_lm(seed)
    ctx = _contexts()
    doc_lp = doc_log_prior(torch.tensor([0.5, 0.1, -0.3]))
    fast = rag_sequence_search(lm, ctx, doc_lp, beams=2, max_new_tokens=4, thorough=False)
    thorough = rag_sequence_search(lm, ctx, doc_lp, beams=2, max_new_tokens=4, thorough=True)
    assert thorough[0].score >= fast[0].score - 1e-4
    # the same candidate gets at least its fast score once every passage's share is added
    by_tokens = {c.tokens: c.score for c in thorough}
    for c in fast:
        if c.tokens in by_tokens:
            assert by_tokens[c.tokens] >= c.score - 1e-4


def test_decoded_scores_equal_teacher_forced_scores() -> None:
    lm = abc_lm(1)
    ctx = _contexts()
    doc_lp = doc_log_prior(torch.tensor([0.3, 0.0, -0.2]))
    for c in rag_token_search(lm, ctx, doc_lp, beams=3, max_new_tokens=5):
        with torch.no_grad():
            lp, mask = lm.target_logprobs(ctx, [list(c.tokens)] * 3, end=c.finished)
        assert c.score == pytest.approx(float(token_logprob(doc_lp[None], lp[None], mask[:1])),
                                        abs=1e-4)
    per = beam_search_each(lm, ctx, beams=2, max_new_tokens=5)
    for z, cands in enumerate(per):
        got = score_under_each(lm, ctx, cands)[:, z]
        assert torch.allclose(got, torch.tensor([c.score for c in cands]), atol=1e-4)


def test_with_one_passage_both_models_are_plain_conditional_generation() -> None:
    lm = abc_lm(2)
    ctx = _contexts()[:1]
    doc_lp = doc_log_prior(torch.tensor([0.7]))
    assert doc_lp.item() == pytest.approx(0.0)  # p(z|x) = 1
    plain = beam_search_each(lm, ctx, beams=3, max_new_tokens=4)[0]
    tok = rag_token_search(lm, ctx, doc_lp, beams=3, max_new_tokens=4)
    seq = rag_sequence_search(lm, ctx, doc_lp, beams=3, max_new_tokens=4)
    for other in (tok, seq):
        assert [c.tokens for c in other] == [c.tokens for c in plain]
        assert [c.score for c in other] == pytest.approx([c.score for c in plain], abs=1e-4)
    with torch.no_grad():
        lp, mask = lm.target_logprobs(ctx, [[3, 5, 4]], end=True)
    plain_lp = lp.sum()
    assert sequence_logprob(doc_lp[None], lp[None], mask).item() == pytest.approx(plain_lp.item(), abs=1e-5)
    assert token_logprob(doc_lp[None], lp[None], mask).item() == pytest.approx(plain_lp.item(), abs=1e-5)


# ---------------------------------------------------------------- the prior's scale


def test_prior_scale_is_an_inverse_temperature_and_marginals_hold_with_it() -> None:
    scores = torch.tensor([0.8, 0.55, 0.2])
    flat, sharp = doc_log_prior(scores, 1.0).exp(), doc_log_prior(scores, 20.0).exp()
    assert flat.max() < 0.45  # cosine scores at scale 1: nearly uniform
    assert sharp[0] > 0.99
    assert torch.allclose(sharp, torch.softmax(20.0 * scores, 0))
    # the learnable prior gives the same, and a gradient that reaches its scale
    prior = DocPrior(20.0)
    lp = prior(scores)
    assert torch.allclose(lp.exp(), sharp, atol=1e-6)
    lp[0].backward()
    assert prior.log_scale.grad is not None and float(prior.log_scale.grad) > 0
    # brute force: with the sharpened prior the marginals are still distributions over answers
    _, table = _tables(4)
    seqs = list(itertools.product(range(V), repeat=T))
    tok_lp = torch.stack([torch.stack([torch.stack([table[z, y[:i]][y[i]].log() for i in range(T)])
                                       for z in range(K)]) for y in seqs])
    doc_lp = doc_log_prior(scores, 7.5).expand(len(seqs), K)
    mask = torch.ones(len(seqs), T)
    assert sequence_logprob(doc_lp, tok_lp, mask).exp().sum().item() == pytest.approx(1.0, abs=1e-5)
    assert token_logprob(doc_lp, tok_lp, mask).exp().sum().item() == pytest.approx(1.0, abs=1e-5)


def _mean_log_mass(scale: float, scores: torch.Tensor, positive: torch.Tensor) -> float:
    lp = doc_log_prior(scores.double(), scale)
    return float(torch.logsumexp(lp.masked_fill(~positive, float("-inf")), -1).mean())


def test_calibration_maximizes_the_prior_mass_of_answer_passages() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(40, 5, generator=g) * 0.6 + 0.1
    positive = torch.zeros(40, 5, dtype=torch.bool)
    # the answer is mostly, not always, in the best-scored passage
    best = scores.argmax(-1)
    for i in range(40):
        positive[i, best[i] if i % 4 else (best[i] + 1) % 5] = True
    s = calibrate_scale(scores, positive)
    assert 1.0 < s < 50.0
    at = _mean_log_mass(s, scores, positive)
    # a maximum: both neighbours are worse, and far better than the flat prior at scale 1
    assert at >= _mean_log_mass(s * 1.1, scores, positive)
    assert at >= _mean_log_mass(s / 1.1, scores, positive)
    assert at > _mean_log_mass(1.0, scores, positive) + 0.3
    # when the answer is always in the top passage the sharpest prior on the grid wins
    always = torch.nn.functional.one_hot(best, 5).bool()
    assert calibrate_scale(scores, always) == pytest.approx(50.0, rel=1e-6)
    # rows without an answer passage do not count; none at all is an error
    mass = answer_prior_mass(doc_log_prior(scores, s), positive)
    assert mass.shape == (40,) and bool((mass > 0).all())
    with pytest.raises(ValueError, match="no question"):
        calibrate_scale(scores, torch.zeros_like(positive))


@pytest.mark.parametrize("seed", [0, 1])
def test_thorough_rescoring_reads_only_the_pairs_no_search_scored(seed: int) -> None:
    lm = abc_lm(seed)
    ctx = _contexts()
    doc_lp = doc_log_prior(torch.tensor([0.4, 0.0, -0.1]))
    per = beam_search_each(lm, ctx, beams=2, max_new_tokens=4)
    searched = {(c.tokens, z) for z, cands in enumerate(per) for c in cands if c.finished}
    rows: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    plain = lm.target_logprobs

    def counting(contexts, targets, end=False):  # type: ignore[no-untyped-def]
        rows.extend((tuple(c), tuple(t)) for c, t in zip(contexts, targets, strict=True))
        return plain(contexts, targets, end=end)

    lm.target_logprobs = counting  # type: ignore[method-assign]
    got = rag_sequence_search(lm, ctx, doc_lp, beams=2, max_new_tokens=4, thorough=True)
    pooled = {c.tokens for cands in per for c in cands}
    assert len(rows) == len(pooled) * len(ctx) - len(searched) > 0
    assert not {(tuple(ctx[z]), t) for t, z in searched} & set(rows)
    # and the ranking is the one every pair scored afresh gives
    lm.target_logprobs = plain  # type: ignore[method-assign]
    fresh = score_under_each(lm, ctx, [c for c in got])
    want = torch.logsumexp(doc_lp[None, :] + fresh, dim=-1)
    assert [c.score for c in got] == pytest.approx(want.tolist(), abs=1e-4)


@pytest.mark.parametrize("seed", [1, 7])
@pytest.mark.parametrize("beams,max_new", [(1, 6), (2, 5), (3, 4)])
def test_batched_searches_equal_searches_run_alone(seed: int, beams: int, max_new: int) -> None:
    """Problems leave the batch as they finish; what each finds must not depend on that."""
    lm = abc_lm(seed)
    ctx = _contexts()
    rows: list[int] = []
    plain = lm.step

    def counting(state, tokens):  # type: ignore[no-untyped-def]
        rows.append(len(tokens))
        return plain(state, tokens)

    lm.step = counting  # type: ignore[method-assign]
    together = beam_search_each(lm, ctx, beams=beams, max_new_tokens=max_new)
    if (seed, beams) in {(1, 1), (7, 2)}:  # these seeds finish some problems early
        assert rows[-1] < rows[0]
    for z, c in enumerate(ctx):
        alone = beam_search_each(lm, [c], beams=beams, max_new_tokens=max_new)[0]
        assert [(x.tokens, x.finished) for x in together[z]] == \
            [(x.tokens, x.finished) for x in alone]
        assert [x.score for x in together[z]] == pytest.approx([x.score for x in alone],
                                                                abs=1e-5)
