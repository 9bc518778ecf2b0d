"""Everything the CLI prints on stdout, in one place: hits, answers, reports, tables.

    render.hits(rag.search("capital"))
    render.table(["metric", "value"], [["hit@5", "94.5"]])
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from ragline.ingest.loaders import TABLE_SUFFIXES
from ragline.types import REFUSAL_REASONS, Answer, Hit


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def error(text: str) -> None:
    """One error line on stderr (the command goes on, or ends with its own status)."""
    print(f"error: {text}", file=sys.stderr)


def shorten(path: str) -> str:
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else path
    except ValueError:
        return path


def where(hit_or_passage: Any) -> str:
    p = getattr(hit_or_passage, "passage", hit_or_passage)
    place = shorten(p.source)
    if Path(p.source).suffix.lower() in TABLE_SUFFIXES:
        place += f" · doc {p.doc_id}"  # a table of documents: the row's id says which
    place += f" · passage {p.position + 1}"
    if p.location:
        return place + f" · {p.location}"
    return place + (f" · page {p.page}" if p.page else "")


def hits(found: list[Hit]) -> None:
    if not found:
        out("no passages match")
    for h in found:
        p = h.passage
        extra = f"  p(z|x)={h.prob:.2f}" if h.prob is not None else ""
        out(f"[{h.rank}] {h.score:.4f}{extra}  {where(h)}")
        if p.title:
            out(f"    {p.title}")
        snippet = " ".join(p.text.split())
        out(textwrap.indent(textwrap.fill(snippet[:400] + ("…" if len(snippet) > 400 else ""),
                                          width=96), "    "))


def answer_tail(answer: Answer, streamed: str) -> None:
    """What follows the streamed answer: what a follow-up was searched as, its sources, or
    why it was not given."""
    out()
    if answer.standalone_question and answer.standalone_question != answer.question:
        out(f"(searched for: {answer.standalone_question})")
    if not answer.answered:
        why = REFUSAL_REASONS.get(answer.reason or "", "")
        if streamed.strip() != answer.text:
            # the model's draft was a refusal or is not backed by the passages
            out(f"\n→ {answer.text} ({why or 'the draft above is not supported'})")
        elif why:
            out(f"({why})")
        out("Closest passages:")
        for h in answer.hits[:3]:
            out(f"  [{h.rank}] {where(h)}")
        return
    out("\nSources:")
    # a RAG model's answer cites by p(z|x,y); a text's sentences and everything else by p(z|x)
    what = ("p(z|x,y)" if answer.model in ("rag-token", "rag-sequence") and answer.task == "answer"
            else "p(z|x)")
    for c in answer.citations:
        prob = f"  {what}={c.prob:.2f}" if c.prob is not None else ""
        out(f"  [{c.marker}] {where(c.passage)}{prob}")
        quote = " ".join(c.quote.split())
        out(textwrap.indent(textwrap.fill(f"“{quote[:300]}”", width=96), "      "))
    if answer.dropped:
        n = len(answer.dropped)
        out(f"\n({n} sentence{'s' if n > 1 else ''} left out: no passage supports "
            f"{'them' if n > 1 else 'it'}; --json lists them)")


def table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, ["-" * w for w in widths], *rows]:
        out("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                      for i, (c, w) in enumerate(zip(r, widths, strict=True))))
