"""Follow-up questions: the second turn of a conversation answered (a) alone, (b) with
ragline's rewrite into a standalone question, (c) with the gold standalone question.

    .venv/bin/python bench/followup.py                       # docs/guides/asking.md's table
    .venv/bin/python bench/followup.py --split tune --part rewrite   # what the prompt was chosen on

The conversations are built from SQuAD part A (English) and CMRC 2018 part A (Chinese), split
by article into the tuning half and the report half of bench/answers.py. A conversation is
two questions about one article that both name its subject (the title: "Super Bowl 50",
"Warsaw", "战国无双3"): the first is asked and answered with its gold answer; in the second,
the subject is replaced by a pronoun ("When did Tesla die?" → "When did he die?", "《战国无双3》
是哪一年发行的？" → "它是哪一年发行的？"): in English he or she for a biography (its first sentence
gives a span of years), they for a plural title, else it; in Chinese the one of 他, 她, 它 the
article's first paragraph uses most. The original second question is the gold standalone
question. At most 150 conversations per data set,
spread over its articles.

Reported: hit@5 (an answer string in the top 5 passages) and the answers' exact match and F1
of the second turn, the share of rewrites that name the subject again, how often a question
is left without a rewrite (no model call) among follow-ups and among standalone questions,
and the seconds the rewrite adds (median).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from answers import DATA, build_index, open_rag  # noqa: E402
from run import table  # noqa: E402

PER_ARTICLE = 15  # follow-ups from one article at most, so that no article dominates


@dataclass(frozen=True)
class Conversation:
    article: str
    subject: str
    first: str            # the first question, answered with its gold answer
    first_answer: str
    followup: str         # the second question, its subject a pronoun
    gold: str             # the second question as written: the standalone question
    answers: tuple[str, ...]


# ---------------------------------------------------------------- building the conversations

_PREPOSITIONS = set("of to for with by about from at on in into over under after before "
                    "against between during through than as like".split())
_AUXILIARIES = set("did does do was is were are has have had can could will would should "
                   "may might must".split())
_FORMS = {"it": ("it", "it", "its"), "he": ("he", "him", "his"), "she": ("she", "her", "her"),
          "they": ("they", "them", "their")}


# a biography's first sentence: "(… 10 November 1483 – 18 February 1546)"
_BIOGRAPHY = re.compile(r"\b\d{3,4}\s*[–—-]\s*(?:\d{1,2} [A-Z][a-z]+ )?\d{3,4}\)")


def _en_class(title: str, text: str) -> str:
    """The pronoun for an article's subject: he or she for a biography (its first sentence
    gives a span of years, "Nikola Tesla (… 10 July 1856 – 7 January 1943)"; the one of the
    two the article uses more), they for a plural title, else it."""
    if _BIOGRAPHY.search(text[:300]):
        words = Counter(re.findall(r"[a-z]+", text.lower()))
        return "she" if words["she"] + words["her"] > words["he"] + words["his"] else "he"
    return "they" if title.rstrip(")").endswith("s") and not title.endswith("ss") else "it"


def _en_subjects(title: str, cls: str) -> list[str]:
    name = re.sub(r"\(.*?\)", "", title.replace("_", " ")).split(",")[0].strip()
    names = [name]
    if cls in ("he", "she") and " " in name:
        names.append(name.split()[-1])  # "Tesla" for Nikola Tesla
    return names


def _en_pattern(subject: str) -> re.Pattern[str]:
    return re.compile(rf"\b(the\s+)?{re.escape(subject)}(s)?(['’]s)?\b", re.IGNORECASE)


def _en_replace(question: str, subjects: list[str], cls: str) -> str | None:
    for s in subjects:
        m = _en_pattern(s).search(question)
        if m is None:
            continue
        plural = cls == "they" or bool(m.group(2))
        forms = _FORMS["they" if plural else cls]
        before = question[:m.start()].split()
        prev = before[-1].lower() if before else ""
        rest = question[m.end():].strip()
        # kept only where a pronoun reads naturally: the question's subject (first, or after
        # an auxiliary), its last word, or a possessive; elsewhere the name is often a
        # modifier ("Sky Travel", "adult Ctenophora") that a pronoun cannot replace
        if prev in ("a", "an") or not (m.group(3) or not before or prev in _AUXILIARIES
                                       or rest in ("?", "")):
            return None
        if m.group(3):
            word = forms[2]
        elif not before or prev in _AUXILIARIES:
            word = forms[0]
        else:
            word = forms[1]
        out = question[:m.start()] + word + question[m.end():]
        return out[0].upper() + out[1:] if not before else out
    return None


def _zh_subject(title: str) -> str:
    return re.sub(r"[（(].*?[)）]", "", title).strip()


def _zh_pronoun(text: str) -> str:
    """他, 她 or 它: the one the article's first paragraph uses most (他们 and the like left
    out); 它 when it uses none. CMRC strips a biography's dates, so English's rule cannot
    serve; by counting, a few come out wrong (a fish as 他), which the rewrite must see past."""
    text = re.sub(r"[他她它]们", "", text)
    counts = Counter(ch for ch in text if ch in "他她它")
    return max("它他她", key=lambda ch: (counts[ch], ch == "它"))


def _zh_replace(question: str, subject: str, pronoun: str) -> str | None:
    for s in (f"《{subject}》", f"“{subject}”", subject):
        if s in question:
            return question.replace(s, pronoun)
    return None


def conversations(name: str, split: str) -> list[Conversation]:
    from ragline.eval.qa_data import read_qa
    from ragline.qa import split_by_group

    data = json.loads(DATA[name].read_text("utf-8"))
    tune, report = split_by_group(read_qa(DATA[name]), held_out=0.5)
    keep = {e.group for e in (tune if split == "tune" else report)}
    out = []
    for article in data["data"]:
        title = article.get("title", "")
        if title not in keep:
            continue
        first_para = article["paragraphs"][0]["context"]
        qas = [(qa["question"].strip(), tuple(dict.fromkeys(a["text"].strip()
                                                           for a in qa["answers"])))
               for p in article["paragraphs"] for qa in p["qas"]]
        made: list[tuple[str, str, tuple[str, ...]]] = []  # (followup, gold, answers)
        if name == "cmrc":
            subject, pronoun = _zh_subject(title), _zh_pronoun(first_para)
            named = [(q, a) for q, a in qas if subject and subject in q]
            for q, a in named[1:]:
                f = _zh_replace(q, subject, pronoun)
                if f and f != q:
                    made.append((f, q, a))
        else:
            cls = _en_class(title, first_para)
            subjects = _en_subjects(title, cls)
            named = [(q, a) for q, a in qas if any(_en_pattern(s).search(q) for s in subjects)]
            for q, a in named[1:]:
                f = _en_replace(q, subjects, cls)
                if f and f != q:
                    made.append((f, q, a))
            subject = subjects[0]
        if not named:
            continue
        first, first_answers = named[0]
        for followup, gold, answers in made[:PER_ARTICLE]:
            out.append(Conversation(title, subject, first, first_answers[0], followup, gold,
                                    answers))
    return out


# ---------------------------------------------------------------- measuring

def _history(c: Conversation) -> list[Any]:
    from ragline import Turn

    return [Turn("user", c.first), Turn("assistant", c.first_answer)]


def part_rewrite(convs: dict[str, list[Conversation]], args: argparse.Namespace) -> None:
    """The rewrite alone: how often it is skipped, names the subject again, equals the gold."""
    from ragline.generate.followup import stands_alone
    from ragline.qa import exact_match

    rows = []
    for name, cs in convs.items():
        with open_rag(build_index(name, args.base, args.tmp)) as rag:
            named = same = 0
            seconds = []
            for c in cs:
                r = rag.answerer.rewrite(c.followup, _history(c))
                seconds.append(r.seconds)
                named += c.subject.lower() in r.question.lower()
                same += exact_match(r.question, [c.gold]) > 0
                if args.show:
                    print(f"{c.followup}  →  {r.question}   (gold: {c.gold})")
        n = len(cs)
        rows.append([name, n, f"{100 * sum(not stands_alone(c.followup) for c in cs) / n:.0f}",
                     f"{100 * sum(stands_alone(c.gold) for c in cs) / n:.0f}",
                     f"{100 * named / n:.0f}", f"{100 * same / n:.0f}",
                     f"{statistics.median(seconds):.2f}"])
    table("the rewrite of the second question (%)",
          ["data", "conversations", "follow-ups sent to the model",
           "standalone questions left alone (no model call)", "rewrite names the subject",
           "rewrite = gold question", "rewrite s (median)"], rows)


def part_answers(convs: dict[str, list[Conversation]], args: argparse.Namespace) -> None:
    """The second turn answered three ways: hit@5, EM, F1, seconds."""
    from ragline.generate.followup import plain
    from ragline.qa import answer_in, exact_match, f1_score

    rows = []
    for name, cs in convs.items():
        with open_rag(build_index(name, args.base, args.tmp)) as rag:
            for how in ("alone", "rewrite", "gold"):
                hit = em = f1 = 0.0
                times, rewrites = [], []
                for c in cs:
                    t0 = time.perf_counter()
                    if how == "alone":
                        a = rag.ask(c.followup, k=args.k)
                    elif how == "rewrite":
                        a = rag.ask(c.followup, k=args.k, history=_history(c))
                        rewrites.append(a.timings.get("rewrite_s", 0.0))
                    else:
                        a = rag.ask(c.gold, k=args.k)
                    times.append(time.perf_counter() - t0)
                    hit += any(answer_in(h.passage.text, c.answers) for h in a.hits[:5])
                    text = plain(a.text)  # without its [n] markers, as ragline eval scores
                    em += exact_match(text, c.answers) if a.answered else 0.0
                    f1 += f1_score(text, c.answers) if a.answered else 0.0
                n = len(cs)
                rows.append([name, how, n, f"{100 * hit / n:.1f}", f"{100 * em / n:.1f}",
                             f"{100 * f1 / n:.1f}", f"{statistics.median(times):.2f}",
                             f"{statistics.median(rewrites):.2f}" if rewrites else "–"])
                print(rows[-1], flush=True)
    table("the second turn, answered (hit@5, EM, F1 in %)",
          ["data", "second question", "n", "hit@5", "EM", "F1", "s/question (median)",
           "rewrite s (median)"], rows)


def main() -> None:
    from ragline.qa import spread

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", default="rewrite,answers")
    ap.add_argument("--data", default="squad,cmrc")
    ap.add_argument("--split", choices=("report", "tune"), default="report")
    ap.add_argument("--limit", type=int, default=150,
                    help="conversations per data set, spread over them (0: all)")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--index-dir", type=Path, help="keep (and reuse) the indexes here")
    ap.add_argument("--show", action="store_true", help="print every rewrite")
    ap.add_argument("--dump", type=Path, help="write the conversations here (jsonl) and stop")
    args = ap.parse_args()
    convs = {}
    for name in args.data.split(","):
        cs = conversations(name, args.split)
        convs[name] = spread(cs, args.limit) if args.limit else cs
        print(f"{name}: {len(convs[name])} conversations ({args.split} half)", flush=True)
    if args.dump:
        with args.dump.open("w") as f:
            for cs in convs.values():
                for c in cs:
                    f.write(json.dumps(c.__dict__, ensure_ascii=False) + "\n")
        return
    with tempfile.TemporaryDirectory(prefix="ragline-followup-") as tmp:
        args.tmp = Path(tmp)
        args.base = args.index_dir or args.tmp
        for part in args.part.split(","):
            globals()[f"part_{part}"](convs, args)


if __name__ == "__main__":
    main()
