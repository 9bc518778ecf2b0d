"""BM25 in two languages: Chinese needs word segmentation (no spaces), English needs stemming
and stopwords. Each test is a small corpus where only the right tokenization finds the passage."""

from __future__ import annotations

from pathlib import Path

from ragline import RAG
from ragline.text import tokenize

from conftest import write_docs

ZH = {
    "changcheng.txt": "长城是中国古代修建的军事防御工程，今天看到的大部分城墙修建于明朝。",
    "gugong.txt": "故宫位于北京市中心，是明清两代的皇家宫殿，旧称紫禁城。",
    "xihu.txt": "西湖位于浙江省杭州市西部，是中国著名的风景名胜区。",
    "cha.txt": "绿茶是不发酵的茶，用茶树的嫩叶经杀青、揉捻、干燥等工艺制成。",
    "dazha.txt": "大闸蟹是中华绒螯蟹的俗称，阳澄湖出产的大闸蟹最为有名。",
}

EN = {
    "cats.txt": "The cat was running across the garden while the dogs slept.",
    "runs.txt": "A runner's guide: the first race of the season.",
    "stop.txt": "It is what it is, and that is that; the the the.",
}


def test_chinese_query_finds_its_passage_with_bm25(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "zh", ZH)
    with RAG.build(tmp_path / "idx", paths=[docs], encoder="hash") as rag:
        for query, want in [("紫禁城在哪个城市？", "gugong.txt"),
                            ("杭州有什么著名的风景区", "xihu.txt"),
                            ("绿茶是怎么制成的", "cha.txt"),
                            ("阳澄湖的螃蟹", "dazha.txt")]:
            hits = rag.search(query, k=1, mode="bm25")
            assert hits and hits[0].passage.source.endswith(want), query
    # segmentation yields words, not single characters or one unbroken run
    toks = tokenize("紫禁城在哪个城市")
    assert "紫禁城" in toks and "城市" in toks


def test_english_bm25_stems_and_ignores_stopwords(tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "en", EN)
    with RAG.build(tmp_path / "idx", paths=[docs], encoder="hash") as rag:
        # "cats" and "run" meet "cat" and "running" only through the stemmer
        hits = rag.search("cats run", k=3, mode="bm25")
        assert hits[0].passage.source.endswith("cats.txt")
        # a query of stopwords only matches nothing, rather than every passage
        assert rag.search("it is the that", k=3, mode="bm25") == []
