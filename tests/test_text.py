from ragline.text import count_words, has_cjk, sentence_spans, tokenize


def _sentences(text: str) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text)]


def test_sentences_respect_abbreviations_and_decimals() -> None:
    text = "Dr. Smith paid 3.5 dollars in the U.S. yesterday. Then he left!  Really?"
    assert _sentences(text) == ["Dr. Smith paid 3.5 dollars in the U.S. yesterday.",
                                "Then he left!", "Really?"]


def test_chinese_sentences_split_without_spaces() -> None:
    assert _sentences("北京是中国的首都。长城很长\uff01你去过吗\uff1f好!再见") == [
        "北京是中国的首都。", "长城很长\uff01", "你去过吗\uff1f", "好!", "再见"]


def test_blank_line_ends_a_sentence() -> None:
    assert _sentences("A heading\n\nBody text here") == ["A heading", "Body text here"]


def test_count_words_counts_cjk_as_half_and_ignores_punctuation() -> None:
    assert count_words("hello world.") == 2
    assert count_words("北京大学") == 2
    assert count_words("。!,") == 0


def test_tokenize_english_stems_and_drops_stopwords() -> None:
    assert tokenize("The cats were running") == ["cat", "were", "run"] or \
        tokenize("The cats were running") == ["cat", "run"]
    assert "the" not in tokenize("the the the")


def test_tokenize_segments_chinese_words() -> None:
    toks = tokenize("北京是中国的首都")
    assert "北京" in toks and "首都" in toks and "中国" in toks
    assert "的" not in toks  # stopword


def test_has_cjk() -> None:
    assert has_cjk("abc 中") and not has_cjk("abc")
