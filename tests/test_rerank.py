"""Rerankers: the retriever's reordering contract, the query-likelihood reranker against a
hand computation, and a cross-encoder loaded from a folder (a tiny random one made here)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from ragline import RAG
from ragline.errors import ConfigError, ModelUnavailableError
from ragline.retrieve.rerank import (
    CrossEncoderReranker,
    QueryLikelihoodReranker,
    load_reranker,
)
from ragline.types import Passage

from toymodels import abc_lm


class WordReranker:
    """Scores a passage by whether it contains a word: a reranker with a known answer."""

    name = "word"

    def __init__(self, word: str) -> None:
        self.word = word
        self.seen: list[int] = []

    def score(self, query: str, passages: Sequence[Passage]) -> np.ndarray:
        self.seen.append(len(passages))
        return np.array([float(self.word in p.text) for p in passages])


def test_retriever_reorders_the_head_and_keeps_the_tail(hash_rag: RAG) -> None:
    plain = hash_rag.search("capital", k=3, mode="hybrid", rerank=False)
    assert plain[0].passage.source.endswith(("france.txt", "germany.txt"))
    r = hash_rag.searcher
    r.reranker, r.rerank_depth = WordReranker("Brandenburg"), 3
    hits = hash_rag.search("capital", k=2, mode="hybrid")
    assert hits[0].passage.source.endswith("germany.txt") and hits[0].score == 1.0
    assert [h.rank for h in hits] == [1, 2]
    assert sum(h.prob for h in hits) == pytest.approx(1.0)  # p(z|x) over the returned hits
    # depth 1: only the head is rescored; the tail keeps first-stage order and scores
    r.reranker, r.rerank_depth = WordReranker("Brandenburg"), 1
    hits = hash_rag.search("capital", k=2, mode="hybrid")
    assert r.reranker.seen == [1]
    assert [h.passage.id for h in hits] == [h.passage.id for h in plain[:2]]
    assert hits[1].score == pytest.approx(plain[1].score)
    unranked = hash_rag.search("capital", k=3, mode="hybrid", rerank=False)
    assert [h.passage.id for h in unranked] == [h.passage.id for h in plain]


def _passage(text: str) -> Passage:
    return Passage(id=text, doc_id=text, text=text, title="", start=0, end=len(text), position=0)


def test_query_likelihood_is_the_sum_of_the_query_token_logprobs() -> None:
    lm = abc_lm(seed=3)
    rr = QueryLikelihoodReranker(lm, batch_size=2)
    passages = [_passage(t) for t in ("aab", "ccc", "abcabc")]
    scores = rr.score("ba", passages)
    assert scores.shape == (3,)
    for p, s in zip(passages, scores, strict=True):
        ctx = rr._context(p, "en")  # bos + prompt; ABCTokenizer keeps only a, b and c
        with torch.no_grad():
            lp, _ = lm.target_logprobs([ctx], [lm.tokenizer.encode(" ba")])
        assert s == pytest.approx(float(lp.sum()), abs=1e-4)
    # batching must not change the scores (padding is masked)
    one = QueryLikelihoodReranker(lm, batch_size=1).score("ba", passages)
    assert np.allclose(one, scores, atol=1e-4)
    assert QueryLikelihoodReranker(lm).score("ba", []).shape == (0,)


def _tiny_cross_encoder(path: Path) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = "paris france capital berlin germany tea green leaves".split()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    path.mkdir()
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                     num_attention_heads=2, intermediate_size=32, num_labels=1)
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_cross_encoder_reranker_scores_pairs_with_the_model(tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = _tiny_cross_encoder(tmp_path / "ce")
    rr = load_reranker(f"cross-encoder:{path}")
    assert isinstance(rr, CrossEncoderReranker)
    passages = [_passage(t) for t in ("paris france capital", "green tea leaves", "berlin")]
    scores = rr.score("capital of france", passages)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        enc = tok(["capital of france"] * 3, [p.text for p in passages], padding=True,
                  return_tensors="pt")
        logits = model(**enc).logits[:, 0]
    # sentence-transformers applies a sigmoid to one-label heads: the order is the logits'
    assert np.argsort(-scores).tolist() == torch.argsort(-logits).tolist()


def test_reranker_names_and_errors(tmp_path: Path) -> None:
    assert isinstance(load_reranker("ql"), QueryLikelihoodReranker)
    with pytest.raises(ConfigError, match="unknown reranker"):
        load_reranker("ms-marco")
    missing = CrossEncoderReranker(tmp_path / "nope")
    with pytest.raises(ModelUnavailableError, match="not found"):
        missing.score("q", [_passage("x")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailableError, match="not a loadable"):
        CrossEncoderReranker(tmp_path / "empty").score("q", [_passage("x")])


@pytest.mark.model
def test_query_likelihood_with_the_bundled_generator_prefers_the_answering_passage() -> None:
    rr = QueryLikelihoodReranker()
    passages = [_passage("Green tea is made from the leaves of Camellia sinensis."),
                _passage("Hamlet is a tragedy written by William Shakespeare around 1600."),
                _passage("The Brandenburg Gate is a monument in Berlin.")]
    scores = rr.score("Who wrote the play Hamlet?", passages)
    assert int(np.argmax(scores)) == 1
    zh = [_passage("长城是中国古代的军事防御工程。"), _passage("绿茶是用茶树的叶子制成的。")]
    assert int(np.argmax(rr.score("绿茶是用什么做的？", zh))) == 1
