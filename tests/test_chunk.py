import pytest

from ragline.errors import ConfigError
from ragline.ingest.chunk import chunk_document, chunk_spans
from ragline.text import count_words
from ragline.types import Document


def test_chunks_are_exact_spans_on_sentence_boundaries() -> None:
    text = " ".join(f"Sentence number {i} has exactly seven words." for i in range(40))
    doc = Document.from_text(text, source="x.txt")
    passages = chunk_document(doc, words=30)
    assert len(passages) > 5
    for p in passages:
        assert doc.text[p.start:p.end] == p.text
        assert p.text.startswith("Sentence") and p.text.endswith(".")
        assert count_words(p.text) <= 30 + 30 / 5  # the target, plus a merged short tail
    assert [p.position for p in passages] == list(range(len(passages)))
    assert len({p.id for p in passages}) == len(passages)


def test_long_sentence_is_cut_between_words() -> None:
    text = "word " * 250
    spans = chunk_spans(text.strip(), words=100)
    assert [count_words(text[s:e]) for s, e in spans] == [100, 100, 50]


def test_chinese_is_chunked_by_characters_not_spaces() -> None:
    text = "北京是中国的首都。" * 40  # no spaces at all; 4 words (8 chars) per sentence
    spans = chunk_spans(text, words=20)
    assert len(spans) == 8
    assert all(text[s:e].endswith("。") for s, e in spans)


def test_tiny_tail_joins_previous_chunk() -> None:
    text = "One two three four five six seven eight nine ten. Eleven."
    assert len(chunk_spans(text, words=10)) == 1


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="≥ 1"):
        chunk_spans("text", words=0)


def test_pdf_pages_travel_to_passages() -> None:
    doc = Document.from_text("Page one text.\n\nPage two text.", source="a.pdf",
                             meta={"page_starts": [0, 16]})
    assert [p.page for p in chunk_document(doc, words=3)] == [1, 2]
