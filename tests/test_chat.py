"""`ragline chat` and `ragline ask --history`: the session's loop and commands over a scripted
model, conversation files (read, saved, refused with the line), and the real models answering
a follow-up in the terminal (marked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragline import RAG, Turn
from ragline.cli import main
from ragline.cli.chatting import ChatSession, read_history, save_turns
from ragline.errors import ConfigError

from conftest import CONCAT, REPO, ScriptedGenerator, write_docs

TOWERS = {"eiffel.txt": "The Eiffel Tower in Paris is 330 metres tall. It was completed in 1889.",
          "gate.txt": "The Brandenburg Gate in Berlin is 26 metres high. It was built in 1791."}


def _reply(prompt: str) -> str:
    if prompt.endswith('"it" means:'):
        return "the Eiffel Tower"
    if "Question: How tall is the Eiffel Tower?" in prompt:
        return "330 metres [1]"
    return "1889 [1]"


@pytest.fixture
def towers(tmp_path: Path) -> Iterator[RAG]:
    docs = write_docs(tmp_path / "docs", TOWERS)
    with RAG.build(tmp_path / "idx", paths=[docs], encoder="hash", config=CONCAT,
                   generator=ScriptedGenerator(_reply)) as rag:
        yield rag


def _lines(*typed: str) -> object:
    feed = iter(typed)

    def read(prompt: str) -> str:
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    return read


def test_a_conversation_in_the_terminal(towers: RAG, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "talk.jsonl"
    session = ChatSession(towers, _lines("When was the Eiffel Tower completed?", "How tall is it?",
                                         "/sources", "/bogus", "", "/new", "/sources", "/quit",
                                         "never read"), save=saved, k=1)
    assert session.run() == 0
    out = capsys.readouterr().out
    assert "1889 [1]" in out and "330 metres [1]" in out
    assert "(searched for: How tall is the Eiffel Tower?)" in out
    assert out.count("Sources:") == 2 and "eiffel.txt" in out
    assert "[1] (cited)" in out and "330 metres tall. It was completed" in out  # /sources
    assert "unknown command /bogus" in out and "(a new conversation)" in out
    assert "(no answer yet)" in out  # /new forgot the last answer too
    assert session.turns == []
    assert [t.role for t in read_history(saved)] == ["user", "assistant"] * 2
    # the saved conversation goes on where it stopped
    capsys.readouterr()
    again = ChatSession(towers, _lines("How tall is it?"), history=read_history(saved), k=1)
    again.run()
    assert "(going on from 2 earlier questions)" in capsys.readouterr().out


def test_an_error_ends_the_question_not_the_session(towers: RAG,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    session = ChatSession(towers, _lines("x" * 5000, "When was the Eiffel Tower completed?"), k=1)
    assert session.run() == 0
    out = capsys.readouterr().out
    assert "error: the question has 5,000 characters" in out and "1889 [1]" in out
    assert len(session.turns) == 2


def test_conversation_files_are_checked_line_by_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    save_turns(path, [Turn("system", "Be brief."), Turn("user", "长城有多长？")])
    assert read_history(path) == [Turn("system", "Be brief."), Turn("user", "长城有多长？")]
    for text, message in [('{"role": "user", "content": "a"}\n{oops\n', "line 2: not JSON"),
                          ('{"role": "robot", "content": "a"}\n', "role must be one of"),
                          ("\udcff", "not UTF-8")]:
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        with pytest.raises(ConfigError, match=message):
            read_history(path)
    with pytest.raises(ConfigError, match="no such conversation file"):
        read_history(tmp_path / "missing.jsonl")
    assert read_history(tmp_path / "missing.jsonl", missing_ok=True) == []


def test_ask_refuses_a_bad_history_before_loading_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"role": "user", "content": "a"}\nnot json\n')
    for argv, message in [(["--history", str(bad)], "line 2: not JSON"),
                          (["--save"], "--save appends to the conversation file"),
                          (["--history", str(tmp_path / "none.jsonl")], "no such conversation")]:
        code = main(["-q", "ask", str(tmp_path / "no-index"), "How tall is it?", *argv])
        err = capsys.readouterr().err
        assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.model
def test_a_followup_in_ragline_chat_with_the_real_models(tmp_path: Path) -> None:
    """As a user would: `ragline chat` over the examples, two questions typed, the second a
    follow-up, then Ctrl-D; and the same follow-up through `ask --history --json`."""
    idx = tmp_path / "idx"
    ragline = [sys.executable, "-m", "ragline.cli"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    subprocess.run([*ragline, "-q", "index", str(REPO / "examples" / "docs"), "--index", str(idx)],
                   check=True, capture_output=True, env=env)
    talk = tmp_path / "talk.jsonl"
    p = subprocess.run([*ragline, "-q", "chat", str(idx), "--history", str(talk)],
                       input="When was the Eiffel Tower completed?\nHow tall is it?\n",
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "1889" in p.stdout and "330" in p.stdout, p.stdout
    assert "(searched for:" in p.stdout and "Eiffel" in p.stdout.split("(searched for:")[1]
    assert [json.loads(line)["role"] for line in talk.read_text().splitlines()] == \
        ["user", "assistant", "user", "assistant"]
    history = tmp_path / "first.jsonl"
    history.write_text("\n".join(talk.read_text().splitlines()[:2]) + "\n")
    p = subprocess.run([*ragline, "-q", "ask", str(idx), "How tall is it?", "--history",
                        str(history), "--json"], capture_output=True, text=True, env=env,
                       timeout=600)
    out = json.loads(p.stdout)
    assert "Eiffel" in out["standalone_question"] and "330" in out["answer"], out
