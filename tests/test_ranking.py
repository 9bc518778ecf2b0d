"""Ranking metrics (trec_eval conventions), BEIR readers and `ragline eval retrieval`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ragline.cli import main
from ragline.errors import ConfigError
from ragline.eval.beir import BeirData, read_qrels, read_queries
from ragline.eval.ranking import dedupe, evaluate_run, mrr_at_k, ndcg_at_k, parse_metric, recall_at_k


def test_ndcg_by_hand_with_graded_relevance() -> None:
    rels = {"a": 2, "b": 1, "z": 0}
    # ranking b, x, a: DCG = 1/log2(2) + 2/log2(4); ideal a, b: 2/log2(2) + 1/log2(3)
    want = (1 + 2 / 2) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(["b", "x", "a"], rels, 10) == pytest.approx(want)
    assert ndcg_at_k(["a", "b"], rels, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["b", "x", "a"], rels, 2) == pytest.approx(1 / (2 + 1 / math.log2(3)))
    assert ndcg_at_k(["z"], rels, 10) == 0.0  # grade 0 is not relevant


def test_recall_and_mrr_cutoffs() -> None:
    rels = {"a": 1, "b": 1}
    assert recall_at_k(["x", "a", "y", "b"], rels, 1) == 0.0
    assert recall_at_k(["x", "a", "y", "b"], rels, 2) == 0.5
    assert recall_at_k(["x", "a", "y", "b"], rels, 4) == 1.0
    assert mrr_at_k(["x", "y", "b"], rels, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "y", "b"], rels, 2) == 0.0


def test_evaluate_run_averages_judged_queries_and_counts_missing_runs_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}}  # q3 has nothing relevant: skipped
    run = {"q1": ["a"], "q3": ["c"]}                          # q2 returned nothing
    out = evaluate_run(run, qrels, ["recall@1", "ndcg@10", "mrr@10"])
    assert out == {"recall@1": 0.5, "ndcg@10": 0.5, "mrr@10": 0.5}


def test_metric_names_and_dedupe() -> None:
    assert parse_metric("nDCG@10") == ("ndcg", 10)
    for bad in ("map@10", "ndcg", "recall@0", "mrr@x"):
        with pytest.raises(ValueError, match="unknown metric"):
            parse_metric(bad)
    assert dedupe(["d1", "d2", "d1", "d3"]) == ["d1", "d2", "d3"]


def _beir(folder: Path, docs: dict[str, tuple[str, str]], queries: dict[str, str],
          qrels: list[tuple[str, str, int]]) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, (t, x) in docs.items()))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries.items()))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels))
    return folder


DOCS = {
    "d-paris": ("Paris", "Paris is the capital of France and home of the Eiffel Tower."),
    "d-berlin": ("Berlin", "Berlin is the capital of Germany; the Brandenburg Gate is there."),
    "d-beijing": ("北京", "北京是中国的首都，故宫位于北京市中心。"),
    "d-tea": ("Tea", "Green tea is brewed from the leaves of Camellia sinensis."),
}
QUERIES = {"q1": "Eiffel Tower capital France", "q2": "Brandenburg Gate Germany",
           "q3": "故宫在哪里", "q4": "unjudged query"}
QRELS = [("q1", "d-paris", 1), ("q2", "d-berlin", 1), ("q3", "d-beijing", 2)]


def test_beir_readers(tmp_path: Path) -> None:
    folder = _beir(tmp_path / "b", DOCS, QUERIES, QRELS)
    assert read_queries(folder / "queries.jsonl")["q3"] == "故宫在哪里"
    assert read_qrels(folder / "qrels" / "test.tsv")["q3"] == {"d-beijing": 2}
    data = BeirData.from_folder(folder)
    assert set(data.queries) == {"q1", "q2", "q3"}  # only judged queries are evaluated
    two = data.spread(2)
    assert list(two.queries) == ["q1", "q2"] and set(two.qrels) == {"q1", "q2"}
    assert data.spread(10) is data
    trec = tmp_path / "qrels.trec"
    trec.write_text("q1 0 d-paris 1\n")
    assert read_qrels(trec) == {"q1": {"d-paris": 1}}


def test_beir_reader_errors(tmp_path: Path) -> None:
    folder = _beir(tmp_path / "b", DOCS, QUERIES, QRELS + [("q9", "d-tea", 1)])
    with pytest.raises(ConfigError, match="not in"):
        BeirData.from_folder(folder)
    with pytest.raises(ConfigError, match="splits here: test"):
        BeirData.from_folder(folder, split="dev")
    bad = tmp_path / "bad.tsv"
    bad.write_text("query-id\tcorpus-id\tscore\nq1\td1\n")
    with pytest.raises(ConfigError, match="line 2"):
        read_qrels(bad)
    (tmp_path / "q.jsonl").write_text('{"text": "no id"}\n')
    with pytest.raises(ConfigError, match='"_id"'):
        read_queries(tmp_path / "q.jsonl")


def test_cli_eval_retrieval_builds_from_the_corpus_and_scores_each_mode(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _beir(tmp_path / "b", DOCS, QUERIES, QRELS)
    idx = tmp_path / "idx"
    (tmp_path / "ragline.toml").write_text('[index]\nencoder = "hash"\n')
    argv = ["--config", str(tmp_path / "ragline.toml"), "-q", "eval", "retrieval", str(idx),
            "--beir", str(folder), "--modes", "bm25,dense,hybrid", "--json"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["queries"] == 3
    by_mode = {r["name"]: r for r in out["results"]}
    assert set(by_mode) == {"bm25", "dense", "hybrid"}
    # each query names words of exactly its document: BM25 (jieba for the Chinese one) is perfect
    assert by_mode["bm25"]["ndcg@10"] == pytest.approx(1.0)
    assert by_mode["bm25"]["recall@1"] == pytest.approx(1.0)
    for r in out["results"]:
        assert 0.0 <= r["ndcg@10"] <= 1.0 and r["recall@100"] == pytest.approx(1.0)
    # the index keeps the corpus' own ids, which is what the qrels name
    from ragline import RAG

    with RAG.open(idx) as rag:
        assert {d.id for d in rag.documents()} == set(DOCS)
    # a second run reuses the index; the table form prints every mode
    assert main(argv[:-1]) == 0
    table = capsys.readouterr().out
    assert "ndcg@10" in table and "hybrid" in table


def test_cli_eval_retrieval_errors(tmp_path: Path, hash_rag, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _beir(tmp_path / "b", DOCS, QUERIES, QRELS)
    idx = str(hash_rag.index.folder.path)
    # the index holds other documents: every metric would be a silent 0
    assert main(["eval", "retrieval", idx, "--beir", str(folder)]) == 2
    assert "none of the 3 judged documents" in capsys.readouterr().err
    assert main(["eval", "retrieval", idx]) == 2
    assert "--beir FOLDER" in capsys.readouterr().err
    assert main(["eval", "retrieval", idx, "--beir", str(folder), "--metrics", "map@5"]) == 2
    assert "unknown metric" in capsys.readouterr().err
    assert main(["eval", "retrieval", idx, "--beir", str(folder), "--modes", "magic"]) == 2


def test_passage_depth_covers_the_documents_but_never_exceeds_max_k(tmp_path: Path) -> None:
    from ragline import RAG
    from ragline.eval.retrieval import passage_depth
    from ragline.retrieve.searcher import MAX_K

    rows = "".join(json.dumps({"_id": f"d{i}", "text": "word " * 500}) + "\n" for i in range(4))
    (tmp_path / "c.jsonl").write_text(rows)
    with RAG.build(tmp_path / "i", paths=[tmp_path / "c.jsonl"], encoder="hash") as rag:
        assert rag.index.folder.store.counts()["passages"] == 20  # 5 passages a document
        assert passage_depth(rag, 10) == 75  # 10 documents × 5 passages × 1.5
        assert passage_depth(rag, 1000) == MAX_K


def test_bad_modes_or_metrics_fail_before_an_index_is_built(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _beir(tmp_path / "b", DOCS, QUERIES, QRELS)
    idx = tmp_path / "idx"
    for flag, value, message in (("--modes", "magic", "unknown retrieval mode"),
                                 ("--metrics", "map@5", "unknown metric")):
        assert main(["-q", "eval", "retrieval", str(idx), "--beir", str(folder),
                     flag, value]) == 2
        assert message in capsys.readouterr().err
        assert not idx.exists()  # nothing was indexed for a run that could not happen
