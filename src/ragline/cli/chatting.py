"""`ragline chat`: a conversation with an index in the terminal, and the conversation files
of `ragline ask --history`.

    ragline chat my-index
    you> When was the Eiffel Tower completed?
    March 1889 [1]
    you> How tall is it?
    330 metres [1]
    (searched for: How tall is the Eiffel Tower?)  Sources: …

A conversation file is JSON Lines, one turn a line: {"role": "user" | "assistant" |
"system", "content": "…"} (the shape of OpenAI's messages).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ragline.cli import render
from ragline.cli.options import add_generator, add_index_arg, add_model, add_ray, add_retrieval
from ragline.config import Config
from ragline.errors import ConfigError, RaglineError
from ragline.generate.followup import turns_from
from ragline.types import Answer, Turn

log = logging.getLogger("ragline")

HELP = ("/sources  the last answer's passages in full · /new  a new conversation · "
        "/quit  leave (or Ctrl-D)")


def register(sub: Any) -> None:
    s = sub.add_parser("chat", help="a conversation with the index: follow-up questions, "
                                    "streamed answers, sources after each")
    add_index_arg(s)
    add_retrieval(s, "passages per answer (default 5)")
    add_model(s, "per-passage (default), concat, rag-token or rag-sequence")
    add_generator(s)
    s.add_argument("--history", type=Path, metavar="FILE.jsonl",
                   help="start from this saved conversation, and save the new turns to it")
    add_ray(s)
    s.set_defaults(run=cmd_chat)


# --------------------------------------------------------------- conversation files

def read_history(path: Path, missing_ok: bool = False) -> list[Turn]:
    """The turns of a conversation file; ConfigError naming the line for a bad one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise ConfigError(f"{path}: no such conversation file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    try:
        lines = raw.decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; a conversation file is JSON Lines") from None
    messages = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            messages.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}, line {n}: not JSON ({e.msg}); each line is "
                              '{"role": "user" | "assistant" | "system", "content": "…"}') from None
    return turns_from(messages, what=str(path))


def save_turns(path: Path, turns: list[Turn]) -> None:
    """Append turns to a conversation file (created if new)."""
    with path.open("a", encoding="utf-8") as f:
        for t in turns:
            f.write(json.dumps(t.to_dict(), ensure_ascii=False) + "\n")


# --------------------------------------------------------------- the session

class ChatSession:
    """The loop of `ragline chat`, over any RAG, printing on stdout; `read` gives the next
    line (EOFError ends). An error ends its question, not the session."""

    def __init__(self, rag: Any, read: Callable[[str], str],
                 history: list[Turn] | None = None, save: Path | None = None,
                 **ask: Any) -> None:
        self.rag = rag
        self.read = read
        self.turns = history or []
        self.save = save
        self.ask = ask
        self.last: Answer | None = None

    def say(self, text: str = "") -> None:
        render.out(text)
        sys.stdout.flush()

    def run(self) -> int:
        self.say(f"ragline chat · {HELP}")
        if self.turns:
            self.say(f"(going on from {sum(t.role == 'user' for t in self.turns)} earlier questions)")
        while True:
            try:
                line = self.read("you> ").strip()
            except EOFError:
                self.say()
                return 0
            except KeyboardInterrupt:
                self.say("\n(Ctrl-D or /quit to leave)")
                continue
            if not line:
                continue
            if line.startswith("/"):
                if not self.command(line):
                    return 0
                continue
            try:
                self.question(line)
            except KeyboardInterrupt:
                self.say("\n(stopped)")
            except RaglineError as e:
                self.say(f"error: {e}")

    def command(self, line: str) -> bool:
        """Run a /command; False to leave."""
        name = line.split()[0].lower()
        if name in ("/quit", "/exit", "/q"):
            return False
        if name == "/new":
            self.turns, self.last = [], None
            self.say("(a new conversation)")
        elif name == "/sources":
            if self.last is None:
                self.say("(no answer yet)")
            else:
                self.sources(self.last)
        elif name == "/help":
            self.say(HELP)
        else:
            self.say(f"unknown command {name}; {HELP}")
        return True

    def question(self, question: str) -> None:
        answerer = self.rag.answerer
        prepared = answerer.prepare(question, history=self.turns, **self.ask)
        answer = self.stream(answerer.answer(prepared))
        new = [Turn("user", question), Turn("assistant", answer.text)]
        self.turns += new
        self.last = answer
        if self.save is not None:
            save_turns(self.save, new)

    def stream(self, pieces: Iterator[str | Answer]) -> Answer:
        answer, streamed = None, ""
        for piece in pieces:
            if isinstance(piece, Answer):
                answer = piece
            else:
                streamed += piece
                sys.stdout.write(piece)
                sys.stdout.flush()
        if answer is None:
            raise RaglineError("the generation ended without an answer")
        render.answer_tail(answer, streamed)
        return answer

    def sources(self, answer: Answer) -> None:
        cited = {c.marker for c in answer.citations}
        for h in answer.hits:
            mark = " (cited)" if h.rank in cited else ""
            self.say(f"[{h.rank}]{mark} {render.where(h)}")
            self.say("    " + " ".join(h.passage.text.split()))


def _line_editing() -> Callable[[str], str]:
    """input() with line editing and a history kept across sessions, when on a terminal."""
    if not sys.stdin.isatty():
        return input
    try:
        import readline
    except ImportError:  # Windows without pyreadline
        return input
    path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ragline" / "chat_history"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            readline.read_history_file(path)
    except OSError:
        return input
    readline.set_history_length(1000)
    import atexit

    atexit.register(lambda: _save_line_history(readline, path))
    return input


def _save_line_history(readline: Any, path: Path) -> None:
    try:
        readline.write_history_file(path)
    except OSError:
        pass


def cmd_chat(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.rag import RAG

    history = read_history(args.history, missing_ok=True) if args.history else []
    with RAG.open(args.index, config=cfg) as rag:
        session = ChatSession(rag, _line_editing(), history, args.history,
                              k=args.k, mode=args.mode, model=args.model)
        return session.run()
