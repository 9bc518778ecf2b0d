import pytest

from ragline.generate.citations import CitationStream, is_refusal, support
from ragline.types import Hit, Passage


def _hits(*texts: str) -> list[Hit]:
    return [Hit(Passage(f"p{i}", f"d{i}", t, "", 0, len(t), 0, source=f"s{i}.txt"), 1.0, i + 1,
                prob=1 / len(texts)) for i, t in enumerate(texts)]


HITS = _hits("The Eiffel Tower was completed in 1889 for the World's Fair.",
             "Berlin is the capital of Germany. It has a famous gate.")


def _run(reply: str, hits: list[Hit] = HITS, chunked: bool = True) -> tuple[str, CitationStream]:
    cs = CitationStream(hits)
    pieces = list(reply) if chunked else [reply]
    return "".join(cs.feed(p) for p in pieces) + cs.finish(), cs


def test_valid_marker_kept_with_supporting_span() -> None:
    out, cs = _run("It was completed in 1889 [1].")
    assert out == "It was completed in 1889 [1]."
    c = cs.citations[1]
    assert c.passage.id == "p0" and c.quote.startswith("The Eiffel Tower was completed")


def test_marker_for_a_missing_passage_is_dropped_and_replaced_by_attribution() -> None:
    out, cs = _run("Berlin is the capital of Germany [7].")
    assert out == "Berlin is the capital of Germany. [2]"
    assert set(cs.citations) == {2}


def test_a_marker_on_a_passage_that_does_not_support_the_sentence_moves_to_one_that_does() -> None:
    out, cs = _run("Completed in 1889 [2].")
    assert out == "Completed in 1889 [1]." and set(cs.citations) == {1}
    out, cs = _run("The capital is Paris [2].")  # no passage supports it: kept as written
    assert out == "The capital is Paris [2]."


def test_sentences_without_markers_are_attributed_each_to_its_passage() -> None:
    out, cs = _run("The tower was completed in 1889. Berlin is the capital of Germany.")
    assert out == "The tower was completed in 1889. [1] Berlin is the capital of Germany. [2]"
    assert sorted(cs.citations) == [1, 2]


def test_marker_after_the_period_belongs_to_that_sentence() -> None:
    out, cs = _run("Completed in 1889. [1] Berlin is the capital. [2]")
    assert out == "Completed in 1889. [1] Berlin is the capital. [2]"


def test_unsupported_sentence_gets_no_citation() -> None:
    out, cs = _run("Bananas are yellow fruit.")
    assert out == "Bananas are yellow fruit." and cs.citations == {}


def test_streaming_char_by_char_equals_whole_text() -> None:
    reply = "In 1889 [1]. Also 3.5 things [2, 1], e.g. Berlin is the capital of Germany."
    assert _run(reply, chunked=True)[0] == _run(reply, chunked=False)[0]


@pytest.mark.parametrize("text,expected", [
    ("I don't know.", True), ("The passages do not contain the answer.", True),
    ("不知道", True), ("1889", False), ("Paris is the capital.", False)])
def test_refusals(text: str, expected: bool) -> None:
    assert is_refusal(text) is expected


def test_support_measures_answer_words_in_passages() -> None:
    assert support("completed in 1889 [1]", HITS) == 1.0
    assert support("The United States of America", HITS) == 0.0


def test_rag_answers_cite_only_passages_that_support_them() -> None:
    from ragline.generate.citations import posterior_citations

    hits = _hits("The Eiffel Tower was completed in March 1889.",
                 "Thomas Edison developed a long-lasting light bulb.",
                 "The tower was finished in 1889 for the World's Fair.")
    # a flat posterior gives the unrelated passage 0.29: it holds none of the answer's words
    cites = posterior_citations("In 1889", hits, [0.41, 0.29, 0.30], min_support=0.5)
    assert [c.marker for c in cites] == [1, 3]
    # when no probable passage supports the answer, the one that supports it best is cited
    cites = posterior_citations("1889", hits, [0.05, 0.9, 0.05], min_support=0.5)
    assert [c.marker for c in cites] == [1]
