"""Follow-up questions: which questions need the conversation, the rewrite's prompt and its
bound, its fallbacks, and a follow-up answered through the RAG façade (hash encoder, scripted
model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragline import RAG, Turn
from ragline.errors import ConfigError
from ragline.generate.followup import Rewriter, context, plain, rewrite_prompt, stands_alone, turns_from

from conftest import CONCAT, ScriptedGenerator, write_docs

EIFFEL = [Turn("user", "When was the Eiffel Tower completed?"),
          Turn("assistant", "It was completed in March 1889 [1].")]


@pytest.mark.parametrize("question", [
    "When was the Eiffel Tower completed?", "Who designed the Brandenburg Gate?",
    "What is the name of the team that won the final?", "How many moons are there?",
    "长城大部分是哪个朝代修建的？", "北京是哪个国家的首都？"])
def test_a_question_that_points_back_at_nothing_stands_alone(question: str) -> None:
    assert stands_alone(question)


@pytest.mark.parametrize("question", [
    "How tall is it?", "Who designed them?", "When did he die?", "And Berlin?",
    "What about the gate?", "Why?", "Where was this built?",
    "它有多高？", "他是哪一年去世的？", "柏林呢？", "那德国的首都呢？", "为什么？", "这座塔是谁设计的？"])
def test_a_pronoun_or_an_elliptical_question_needs_the_conversation(question: str) -> None:
    assert not stands_alone(question)


def test_turns_are_checked_and_read_as_openai_messages() -> None:
    turns = turns_from([{"role": "developer", "content": "Be brief."},
                        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
                        {"role": "tool", "content": "{}"},
                        {"role": "assistant", "content": None}])
    assert turns == [Turn("system", "Be brief."), Turn("user", "Hi"), Turn("assistant", "")]
    for bad, message in [([{"role": "wizard", "content": "x"}], "role must be one of"),
                         (["hello"], "not an object"),
                         ([{"role": "user", "content": 3}], "content must be text"),
                         ([{"role": "user", "content": [{"type": "image_url"}]}], "only text"),
                         ([{"role": "user", "content": "x" * 100_001}], "characters"),
                         ([{"role": "user", "content": "x"}] * 1001, "more than 1000 turns")]:
        with pytest.raises(ConfigError, match=message):
            turns_from(bad)


def test_an_answer_loses_its_markers_and_notes_as_context() -> None:
    assert plain("It was completed in 1889 [1] and is 330 m tall [2, 3].") == \
        "It was completed in 1889 and is 330 m tall."
    assert plain("1889\n\n→ I could not find … (the draft above is not supported)") == "1889"


def test_a_long_conversation_costs_what_its_last_turns_do() -> None:
    count = ScriptedGenerator("x").count_tokens
    talk = [Turn("user" if i % 2 == 0 else "assistant", f"turn {i} " + "word " * 30)
            for i in range(200)]
    system = [Turn("system", "You answer questions about harbours.")]
    long = rewrite_prompt("How tall is it?", system + talk, count, "it")
    short = rewrite_prompt("How tall is it?", system + talk[-6:], count, "it")
    assert long == short
    assert "turn 199" in long and "turn 193" not in long and "harbours" in long
    # within the token budget, the newest turns are the ones kept
    ctx = context(system + talk, "en", count, budget=80)
    assert "turn 199" in ctx and "turn 196" not in ctx and ctx.startswith("Instructions:")


def _model(means: str = "the Eiffel Tower", whole: str = "When was the Brandenburg Gate built?"
           ) -> ScriptedGenerator:
    """A scripted model: what a pronoun means, or a whole follow-up on its own."""
    return ScriptedGenerator(lambda prompt: means if prompt.rstrip().endswith(
        ("means:", "指的是：")) else whole)


def test_a_pronoun_is_replaced_by_what_the_model_says_it_means() -> None:
    gen = _model()
    rewriter = Rewriter(gen)
    r = rewriter.rewrite("How tall is it?", EIFFEL)
    assert (r.question, r.rewritten) == ("How tall is the Eiffel Tower?", True)
    prompt = gen.prompts[-1]
    assert prompt.endswith('Follow-up question: How tall is it?\nIn the follow-up question, '
                           '"it" means:')
    assert "Eiffel Tower completed" in prompt and "[1]" not in prompt
    assert rewriter.rewrite("What is its height?", EIFFEL).question == \
        "What is the Eiffel Tower's height?"
    assert rewriter.rewrite("It was built by whom?", EIFFEL).question == \
        "The Eiffel Tower was built by whom?"


def test_the_model_is_asked_only_when_the_question_needs_the_conversation() -> None:
    gen = _model()
    rewriter = Rewriter(gen)
    assert rewriter.rewrite("Who designed the Brandenburg Gate?", EIFFEL).rewritten is False
    assert rewriter.rewrite("How tall is it?", [Turn("system", "Be brief.")]).rewritten is False
    assert rewriter.rewrite("How tall is it?", []).rewritten is False
    assert gen.prompts == []


def test_an_elliptical_followup_is_rewritten_whole() -> None:
    gen = _model()
    r = Rewriter(gen).rewrite("And the Brandenburg Gate?", EIFFEL)
    assert r.question == "When was the Brandenburg Gate built?"
    assert gen.prompts[-1].endswith("The follow-up question on its own:")
    labelled = _model(whole='Standalone question: "When was the Brandenburg Gate built?"')
    assert Rewriter(labelled).rewrite("And the gate?", EIFFEL).question == \
        "When was the Brandenburg Gate built?"


@pytest.mark.parametrize("question, word", [
    ("它有多高？", "它"), ("他们住在哪里？", "他们"), ("其高度是多少？", "其"),
    ("其他塔有多高？", None), ("其中最高的是哪座？", None), ("尤其是哪一年？", None),
    ("How tall is it?", "it"), ("What are their names?", "their"), ("Is this tall?", None)])
def test_the_pronoun_asked_about_is_a_pronoun_not_part_of_a_word(question: str,
                                                                 word: str | None) -> None:
    from ragline.generate.followup import pronoun

    m = pronoun(question)
    assert (m.group(0) if m else None) == word


def test_the_prompt_is_in_the_question_language() -> None:
    gen = _model(means="埃菲尔铁塔")
    history = [Turn("user", "埃菲尔铁塔是哪一年建成的？"), Turn("assistant", "1889年")]
    r = Rewriter(gen).rewrite("它有多高？", history)
    assert r.question == "埃菲尔铁塔有多高？"
    assert gen.prompts[-1].endswith("追问：它有多高？\n追问中的“它”指的是：")
    assert Rewriter(gen).rewrite("其高度是多少？", history).question == "埃菲尔铁塔的高度是多少？"


@pytest.mark.parametrize("means, whole", [
    ("", ""), ("it", "\n\n"), ("the tower " * 11, "The tower is 330 metres tall."),
    ("the Eiffel Tower", "How tall? " * 200)])
def test_a_botched_rewrite_falls_back_to_the_question_as_asked(means: str, whole: str) -> None:
    rewriter = Rewriter(_model(means, whole))
    for question in ("How tall is it?", "And the gate?"):
        if means == "the Eiffel Tower" and question == "How tall is it?":
            continue  # a good referent
        r = rewriter.rewrite(question, EIFFEL)
        assert r.question == question and r.rewritten


@pytest.fixture
def towers(tmp_path: Path) -> Path:
    return write_docs(tmp_path / "towers", {
        "eiffel.txt": "The Eiffel Tower in Paris is 330 metres tall. It was completed in 1889.",
        "gate.txt": "The Brandenburg Gate in Berlin is 26 metres high. It was built in 1791.",
        "it.txt": "How is it? It is what it is, people say of it."})


def test_a_followup_is_searched_and_answered_as_its_standalone_question(
        tmp_path: Path, towers: Path) -> None:
    def reply(prompt: str) -> str:
        if prompt.endswith('"it" means:'):
            return "the Eiffel Tower"
        return "330 metres [1]"

    gen = ScriptedGenerator(reply)
    with RAG.build(tmp_path / "idx", paths=[towers], encoder="hash", config=CONCAT,
                   generator=gen) as rag:
        alone = rag.search("How tall is it?", k=1)
        assert alone[0].passage.source.endswith("it.txt")  # what the words alone find
        answer = rag.ask("How tall is it?", history=EIFFEL, k=1)
        assert answer.question == "How tall is it?"
        assert answer.standalone_question == "How tall is the Eiffel Tower?"
        assert answer.hits[0].passage.source.endswith("eiffel.txt")
        assert answer.text.startswith("330 metres") and answer.answered
        assert "Question: How tall is the Eiffel Tower?" in gen.prompts[-1]
        assert answer.timings["rewrite_s"] >= 0 and answer.to_dict()["standalone_question"]
        # without a history nothing is rewritten, and the JSON says so
        plain_answer = rag.ask("How tall is the Eiffel Tower?", k=1)
        assert plain_answer.standalone_question is None
        assert "rewrite_s" not in plain_answer.timings
        with pytest.raises(ConfigError, match="question task takes no conversation"):
            rag.answerer.prepare("the tower", task="question", answer="1889", history=EIFFEL)
