"""What the default answer costs and gets right, measured on SQuAD part A (English) and CMRC
2018 part A (Chinese), each split by article into a tuning half and a report half (the
numbers in docs/measured/answers.md are on the report half; prompts and the calibration were
chosen on the other one):

    .venv/bin/python bench/answers.py                      # every part below: the tables
    .venv/bin/python bench/answers.py --part budget        # the answer kept by the passage budget
    .venv/bin/python bench/answers.py --part readers       # prompt forms: EM, F1, answered, first token
    .venv/bin/python bench/answers.py --part calibrate --split tune   # fit the reader's calibration
    .venv/bin/python bench/answers.py --part faithfulness  # answered/refused over thresholds
    .venv/bin/python bench/answers.py --part models --llms qwen2.5-0.5b,gemma-270m
    .venv/bin/python bench/answers.py --part models --llms qwen2.5-0.5b --models per-passage \
        --backends llama-cpp,llama-cpp-python --questions 100   # the two llama.cpp runtimes

Retrieval is the default (weighted fusion), k = 5; each data set's index is built from its
paragraphs the way `ragline index` builds any folder (CMRC, mostly Chinese, gets the
multilingual encoder). Times are medians over the questions, retrieval included; run it on an
idle machine: the answer model uses every core.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA = {"squad": REPO.parent / "shared" / "data" / "squad" / "squad-dev-v1.1-part-a.json",
        "cmrc": REPO.parent / "shared" / "data" / "cmrc2018" / "cmrc2018-dev-part-a.json"}
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import table  # noqa: E402

PARTS = ("budget", "readers", "calibrate", "faithfulness", "models")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", default="budget,readers,faithfulness",
                    help=f"comma-separated, of {', '.join(PARTS)}")
    ap.add_argument("--data", default="squad,cmrc")
    ap.add_argument("--split", choices=("report", "tune"), default="report",
                    help="which half of each data set (default report; calibrate on tune)")
    ap.add_argument("--questions", type=int, default=300, help="spread over the half")
    ap.add_argument("--variants", default=",".join(VARIANTS),
                    help="the prompt forms --part readers compares")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--llms", default="qwen2.5-0.5b,gemma-270m,qwen2.5-1.5b",
                    help="--part models: answer models")
    ap.add_argument("--backends", default="llama-cpp",
                    help="--part models: generation backends (llama-cpp, llama-cpp-python)")
    ap.add_argument("--runtimes", default="auto",
                    help="--part models: where the RAG models decode (auto, llama-cpp, torch)")
    ap.add_argument("--models", default="per-passage,concat",
                    help="--part models: how the passages condition the generator")
    ap.add_argument("--index-dir", type=Path, help="keep (and reuse) the indexes here")
    ap.add_argument("--plot", type=Path, help="--part faithfulness: draw each curve here "
                                              "(a folder)")
    ap.add_argument("--out", type=Path, help="--part calibrate: write every reading here (jsonl)")
    args = ap.parse_args()

    from ragline.eval.qa_data import read_qa
    from ragline.qa import split_by_group, spread

    parts = [p.strip() for p in args.part.split(",") if p.strip()]
    with tempfile.TemporaryDirectory(prefix="ragline-answers-") as tmp:
        base = args.index_dir or Path(tmp)
        sets = {}
        for name in args.data.split(","):
            tune, report = split_by_group(read_qa(DATA[name]), held_out=0.5)
            sets[name] = (spread(tune if args.split == "tune" else report, args.questions),
                          build_index(name, base, Path(tmp)))
        for part in parts:
            if part not in PARTS:
                sys.exit(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
            globals()[f"part_{part}"](sets, args)


def build_index(name: str, base: Path, tmp: Path) -> Path:
    from ragline import RAG
    from ragline.eval.qa_data import write_paragraphs_jsonl

    index = base / f"{name}-index"
    if not index.exists():
        corpus = write_paragraphs_jsonl(DATA[name], tmp / f"{name}.jsonl")
        RAG.build(index, paths=[corpus], progress=True).close()
    return index


def open_rag(index: Path, **generation: Any) -> Any:
    from ragline import RAG
    from ragline.config import Config

    cfg = Config()
    return RAG.open(index, config=replace(cfg, generation=replace(cfg.generation, **generation)))


# ---------------------------------------------------------------- the passage budget

def part_budget(sets: dict[str, Any], args: argparse.Namespace) -> None:
    """How often the answer string is still in what the model reads: concat's prompt at each
    passage budget (sentences chosen by their overlap with the question), and the
    per-passage reader's passages at its cut (generation.passage_tokens each)."""
    from ragline.generate.llama import LlamaCppGenerator
    from ragline.generate.prompts import render_selection, select_sentences
    from ragline.qa import answer_in

    gen = LlamaCppGenerator()
    gen.load()
    empty = gen.count_tokens("")

    def cost(t: str) -> int:
        return gen.count_tokens(t) - empty

    budgets = (150, 200, 250, 300, 400, 100_000)
    rows = []
    for name, (examples, index) in sets.items():
        with open_rag(index) as rag:
            runs = rag.search_many([e.question for e in examples], k=args.k)
        kept = dict.fromkeys(budgets, 0)
        reader_kept = {1: 0, 3: 0}
        whole = {1: 0, 3: 0}
        for ex, hits in zip(examples, runs, strict=True):
            for b in budgets:
                chosen = select_sentences(ex.question, list(hits), cost, b)
                shown = " ".join(t for _, t in render_selection(list(hits), chosen))
                kept[b] += answer_in(shown, ex.answers)
            for reads in reader_kept:
                reader_kept[reads] += any(answer_in(gen.truncate(h.passage.text, 200), ex.answers)
                                          for h in hits[:reads])
                whole[reads] += any(answer_in(h.passage.text, ex.answers) for h in hits[:reads])
        n = len(examples)
        rows.append([name, n, *[f"{100 * kept[b] / n:.1f}" for b in budgets],
                     *[f"{100 * reader_kept[r] / n:.1f} / {100 * whole[r] / n:.1f}"
                       for r in reader_kept]])
    table("the answer string in what the model reads (% of questions)",
          ["data", "questions", *[f"concat {b}" if b < 100_000 else "all 5 whole" for b in budgets],
           "reader: top 1, cut / whole", "reader: top 3, cut / whole"], rows)


# ---------------------------------------------------------------- prompt forms

# Worked examples of the completion forms (not from the evaluation data, not about the
# example documents): (passages, question, answer).
SHOTS = {
    "en": [([("Rhine", "The Rhine rises in the Swiss Alps and flows 1,230 km to the North Sea."),
             ("Eiffel Tower", "The tower was designed by the engineering firm of Gustave Eiffel "
                              "and completed in March 1889 for the World's Fair.")],
            "Whose firm designed the Eiffel Tower?", "Gustave Eiffel"),
           ([("Penicillin", "Alexander Fleming discovered penicillin in 1928 at St Mary's "
                            "Hospital in London.")],
            "In what year did Fleming discover penicillin?", "1928"),
           ([("Kilimanjaro", "Kilimanjaro is a dormant volcano in Tanzania. Its highest peak, "
                             "Uhuru, rises 5,895 metres above sea level."),
             ("Marie Curie", "Marie Curie shared the 1903 Nobel Prize in Physics with Pierre "
                             "Curie and Henri Becquerel for their work on radioactivity.")],
            "What were Curie and Becquerel awarded the prize for?", "their work on radioactivity")],
    "zh": [([("莱茵河", "莱茵河发源于瑞士阿尔卑斯山，全长1230公里，注入北海。"),
             ("埃菲尔铁塔", "这座塔由古斯塔夫·埃菲尔的工程公司设计，于1889年3月为世界博览会建成。")],
            "埃菲尔铁塔是由谁的公司设计的？", "古斯塔夫·埃菲尔"),
           ([("青霉素", "1928年，亚历山大·弗莱明在伦敦圣玛丽医院发现了青霉素。")],
            "弗莱明是在哪一年发现青霉素的？", "1928年"),
           ([("乞力马扎罗山", "乞力马扎罗山是坦桑尼亚的一座休眠火山，最高峰乌呼鲁峰海拔5895米。"),
             ("居里夫人", "居里夫人因对放射性的研究，与皮埃尔·居里和亨利·贝克勒尔"
                          "分享了1903年诺贝尔物理学奖。")],
            "居里夫人因为什么分享了诺贝尔奖？", "对放射性的研究")]}
LABELS = {"en": ("Passages:", "Question:", "Answer:", " "), "zh": ("段落：", "问题：", "答案：", "")}
INSTRUCTION = {"en": "Answer each question with the shortest span of the passages that answers it.",
               "zh": "根据段落回答问题，答案是段落中能回答问题的最短原文。"}
QUOTES = {"en": ('"', '"'), "zh": ("“", "”")}

# name → (description, passages read, how)
VARIANTS: dict[str, tuple[str, int, str]] = {
    "chat": ("concat, chat prompt (the previous default)", 5, "chat"),
    "completion-1": ("concat, completion, 1 worked example", 5, "completion:1"),
    "completion-3": ("concat, completion, 3 worked examples", 5, "completion:3"),
    "quoted-3": ("concat, completion, the answer in quotes, 3 examples", 5, "quoted:3"),
    "chat-top1": ("chat prompt, the top passage alone", 1, "chat"),
    "completion-top1": ("completion, 1 example, the top passage alone", 1, "completion:1"),
    "per-passage": ("the per-passage reader (the default), no threshold", 5, "reader"),
}


def completion_prompt(lang: str, shots: int, quoted: bool) -> Callable[[str, str], str]:
    P, Q, A, s = LABELS[lang]
    o, c = QUOTES[lang]

    def block(passages: str, question: str, answer: str | None) -> str:
        asked = f"{P}\n{passages}\n\n{Q}{s}{question}\n" + (f"{A}{s}{o}" if quoted else A)
        if answer is None:
            return asked
        return asked + (f"{answer}{c}" if quoted else f"{s}{answer}")

    head = INSTRUCTION[lang] + "\n\n\n" + "".join(
        block("\n\n".join(f"[{i}] {t}\n{x}" for i, (t, x) in enumerate(ps, 1)), q, a) + "\n\n\n"
        for ps, q, a in SHOTS[lang][:shots])
    return lambda passages, question: head + block(passages, question, None)


def part_readers(sets: dict[str, Any], args: argparse.Namespace) -> None:
    """Each prompt form on the same questions and passages, no refusal gate: EM, F1, the
    share answered (not declined), the median time to the first token."""
    from ragline.generate.base import GenerateOptions
    from ragline.generate.prompts import rag_prompt, render_selection, select_sentences
    from ragline.generate.reader import choose
    from ragline.generate.tasks import lang_of
    from ragline.qa import exact_match, f1_score

    rows = []
    for name, (examples, index) in sets.items():
        with open_rag(index, min_confidence=0.0) as rag:
            runs = rag.search_many([e.question for e in examples], k=args.k)
            backend = rag.answerer.generator("concat")
            reader = rag.answerer.generator("per-passage")
            backend.load()
            chat = backend.chat_template()
            empty = backend.count_tokens("")

            def cost(t: str, backend: Any = backend, empty: int = empty) -> int:
                return int(backend.count_tokens(t)) - empty

            for variant in args.variants.split(","):
                what, reads, how = VARIANTS[variant]
                em = f1 = answered = 0.0
                first: list[float] = []
                for ex, hits in zip(examples, runs, strict=True):
                    hits = list(hits)[:reads]
                    t0 = time.perf_counter()
                    if how == "reader":
                        chosen = choose(reader.readings(ex.question, hits, GenerateOptions()), 0.0)
                        text = chosen.text if chosen else ""
                        first.append(time.perf_counter() - t0)
                    else:
                        if how == "chat":
                            prompt = rag_prompt(ex.question, hits, backend.count_tokens,
                                                budget=3000, passage_tokens=200, chat=chat)
                        else:
                            form, shots = how.split(":")
                            chosen_s = select_sentences(ex.question, hits, cost, 200)
                            body = "\n\n".join(f"[{n}] {hits[n - 1].passage.title}\n{t}"
                                               for n, t in render_selection(hits, chosen_s))
                            prompt = completion_prompt(lang_of(ex.question), int(shots),
                                                       form == "quoted")(body, ex.question)
                        stop = ("\n",) if how != "quoted:3" else ("\n", QUOTES[lang_of(ex.question)][1])
                        done = backend.complete(prompt, max_tokens=48, stop=stop)
                        first.append(time.perf_counter() - t0)  # ≈: a short answer's tail is
                        text = _clean(done.text)                 # a few tokens at 25/s
                    em += exact_match(text, ex.answers)
                    f1 += f1_score(text, ex.answers)
                    answered += bool(text) and not _declined(text)
                n = len(examples)
                rows.append([name, variant, what, n, f"{100 * em / n:.1f}", f"{100 * f1 / n:.1f}",
                             f"{100 * answered / n:.0f} %", f"{statistics.median(first):.2f}"])
                print(rows[-1], flush=True)
    table(f"answers by prompt form ({args.split} half, k={args.k}, no refusal gate)",
          ["data", "form", "what", "questions", "EM", "F1", "answered",
           "answer s (median)"], rows)


def _clean(text: str) -> str:
    text = re.sub(r"\s*\[\d+\]", "", text).strip().strip("\"'“”").strip()
    return text[:-1] if text.endswith((".", "。")) else text


def _declined(text: str) -> bool:
    from ragline.generate.citations import is_refusal

    return is_refusal(text)


# ---------------------------------------------------------------- the reader's calibration

def part_calibrate(sets: dict[str, Any], args: argparse.Namespace) -> None:
    """Fit the reader's logistic calibration per language on these questions (use --split
    tune): readings of the k passages (positive: an answer with F1 ≥ 0.5) and of the
    passages left when every one holding an answer is taken out (negative). Prints the
    CALIBRATION to put in ragline/generate/reader.py and the threshold that maximizes the
    mean of the answered and refused shares."""
    import numpy as np

    from ragline.eval.faithfulness import sweep, without_answers
    from ragline.generate.reader import FEATURES, Calibration
    from ragline.qa import answer_in, exact_match, f1_score

    fitted = {}
    for name, (examples, index) in sets.items():
        with open_rag(index, min_confidence=0.0) as rag:
            reader = rag.answerer.generator("per-passage")
            X, y = [], []
            kept: tuple[list[Any], list[Any]] = ([], [])
            found = []
            for i, ex in enumerate(examples):
                hits = rag.search(ex.question, k=4 * args.k)
                full, neg = hits[:args.k], without_answers(hits, ex)[:args.k]
                found.append(any(answer_in(h.passage.text, ex.answers) for h in full))
                for passages, bag, positive in ((full, kept[0], True), (neg, kept[1], False)):
                    readings = list(reader.readings(ex.question, passages))
                    bag.append(readings)
                    if args.out:
                        with args.out.open("a", encoding="utf-8") as f:
                            f.writelines(json.dumps({
                                "data": name, "id": ex.id, "answerable": positive, "hit": r.hit,
                                "text": r.text, "features": r.features,
                                "f1": f1_score(r.text, ex.answers) if r.text else 0.0,
                                "em": exact_match(r.text, ex.answers) if r.text else 0.0,
                                "holds_answer": answer_in(passages[r.hit].passage.text,
                                                          ex.answers)},
                                ensure_ascii=False) + "\n" for r in readings)
                    for r in readings:
                        if r.text:
                            X.append(r.features)
                            y.append(float(positive and f1_score(r.text, ex.answers) >= 0.5))
                if i % 25 == 24:
                    print(f"{name}: {i + 1} questions read", flush=True)
        Xa, ya = np.array(X), np.array(y)
        w, b = _logistic(Xa, ya)
        lang = "zh" if name == "cmrc" else "en"
        fitted[lang] = Calibration(tuple(round(float(v), 3) for v in w), round(float(b), 3))
        rescored = [[[replace(r, confidence=fitted[lang](r.features) if r.text else 0.0)
                      for r in rs] for rs in bag] for bag in kept]
        points = sweep(rescored[0], rescored[1], examples, found)
        best = max(points, key=lambda p: p.answered_answerable + p.refused_unanswerable)
        print(f"{name}: {len(y)} readings ({int(ya.sum())} right), features {FEATURES}")
        table(f"{name}, fitted on these questions", ["threshold", "answered", "refused", "EM",
                                                     "F1", "refused, answer in top k"],
              [[f"{p.threshold:.2f}{' *' if p is best else ''}",
                f"{100 * p.answered_answerable:.1f}", f"{100 * p.refused_unanswerable:.1f}",
                f"{100 * p.em:.1f}", f"{100 * p.f1:.1f}", f"{100 * p.refused_with_answer:.1f}"]
               for p in points])
    print("CALIBRATION = {" + ", ".join(f'"{lang}": Calibration({c.weights}, {c.bias})'
                                        for lang, c in fitted.items()) + "}")


def _logistic(X: Any, y: Any, l2: float = 1.0, steps: int = 5000) -> tuple[Any, float]:
    """L2-regularized logistic regression by gradient descent (three features, a few
    thousand rows: no library needed)."""
    import numpy as np

    w, b = np.zeros(X.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(X @ w + b)))
        w -= 0.3 * (X.T @ (p - y) / len(y) + l2 * w / len(y))
        b -= 0.3 * float((p - y).mean())
    return w, b


# ---------------------------------------------------------------- faithfulness

def part_faithfulness(sets: dict[str, Any], args: argparse.Namespace) -> None:
    """`ragline eval faithfulness` with the defaults: the table at the setting and the
    trade-off over thresholds; then the default's time to the first token on 100 of the
    questions (`ragline eval qa`)."""
    from ragline.eval.faithfulness import evaluate_faithfulness
    from ragline.eval.qa import evaluate_qa
    from ragline.generate.reader import PassageReader
    from ragline.qa import spread

    for name, (examples, index) in sets.items():
        with open_rag(index) as rag:
            r = evaluate_faithfulness(rag, examples, k=args.k, progress=True)
            backend = rag.answerer.generator("concat")
            spent = _timed(backend, ("complete", "log_odds", "span_logprob"))
            reader = rag.answerer.generator()
            if isinstance(reader, PassageReader):
                reader.forget()  # time readings, not what faithfulness remembered
            qa = evaluate_qa(rag, spread(examples, 100), k=args.k, hit_ks=(5,), progress=True)
        judge = [a + b for a, b in zip(spent["log_odds"], spent["span_logprob"], strict=True)]
        print(f"{name}: the judge (verdict and question PMI) per question, median "
              f"{statistics.median(judge):.2f} s; the answers themselves "
              f"{statistics.median(spent['complete']):.2f} s")
        print(f"\n{name}: {r.questions} questions; at min_confidence {r.min_confidence}: "
              f"answered {100 * r.answered_answerable:.1f} %, refused {100 * r.refused_unanswerable:.1f} %, "
              f"EM {100 * r.em:.1f}, F1 {100 * r.f1:.1f}, citation precision "
              f"{100 * (r.citation_precision or 0):.1f}, recall {100 * (r.citation_recall or 0):.1f}, "
              f"reasons {r.refusal_reasons}")
        print(f"{name}: time to the first token, median of {qa.questions}: "
              f"{qa.first_token_s or 0:.2f} s; s/question {qa.seconds_per_question or 0:.2f}; "
              f"EM {100 * (qa.em or 0):.1f}, F1 {100 * (qa.f1 or 0):.1f}")
        table(f"{name}: the trade-off over generation.min_confidence ({args.split} half)",
              ["threshold", "answerable answered", "unanswerable refused", "EM", "F1",
               "refused, answer in top k"],
              [[f"{p.threshold:.2f}{' *' if p.threshold == r.min_confidence else ''}",
                f"{100 * p.answered_answerable:.1f}", f"{100 * p.refused_unanswerable:.1f}",
                f"{100 * p.em:.1f}", f"{100 * p.f1:.1f}", f"{100 * p.refused_with_answer:.1f}"]
               for p in r.sweep or []])
        if args.plot:
            from ragline.eval.plot import plot_tradeoff

            args.plot.mkdir(parents=True, exist_ok=True)
            plot_tradeoff(r, args.plot / f"tradeoff-{name}.png")


def _timed(obj: Any, names: tuple[str, ...]) -> dict[str, list[float]]:
    """Wrap methods of `obj` to add up their seconds per question (a question starts when
    the empty-passage question is scored, once per question)."""
    from ragline.generate.reader import PROMPTS

    spent: dict[str, list[float]] = {n: [] for n in names}
    unread = tuple(p.before_question("") for p in PROMPTS.values())  # the question alone

    def wrap(n: str, f: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            if n == "span_logprob" and a and a[0].endswith(unread):
                for bag in spent.values():
                    bag.append(0.0)  # a new question
            t0 = time.perf_counter()
            try:
                return f(*a, **kw)
            finally:
                if spent[n]:
                    spent[n][-1] += time.perf_counter() - t0
        return timed

    for n in names:
        setattr(obj, n, wrap(n, getattr(obj, n)))
    return spent


# ---------------------------------------------------------------- answer models

def part_models(sets: dict[str, Any], args: argparse.Namespace) -> None:
    """`ragline eval qa` for every (answer model, model) pair, the defaults otherwise."""
    from ragline import RAG
    from ragline.config import Config
    from ragline.errors import ModelUnavailableError
    from ragline.eval.qa import evaluate_qa

    rows = []
    for name, (examples, index) in sets.items():
        for llm, model, backend, runtime in [(a, b, c, d) for a in args.llms.split(",")
                                             for b in args.models.split(",")
                                             for c in args.backends.split(",")
                                             for d in args.runtimes.split(",")]:
            cfg = Config()
            cfg = replace(cfg, generation=replace(cfg.generation, model=llm, backend=backend),
                          model=replace(cfg.model, generator=llm, runtime=runtime))
            with RAG.open(index, config=cfg) as rag:
                try:
                    r = evaluate_qa(rag, examples, k=args.k, hit_ks=(1, 5), progress=True,
                                    model=model)
                except ModelUnavailableError as e:
                    print(f"skipped {llm} / {model}: {e}", file=sys.stderr)
                    continue
            rows.append([name, llm, model, backend, runtime, len(examples),
                         f"{100 * r.hit_at[5]:.1f}",
                         f"{100 * (r.em or 0):.1f}", f"{100 * (r.f1 or 0):.1f}",
                         f"{100 * (r.answered or 0):.0f} %", f"{r.first_token_s or 0:.2f}",
                         f"{r.seconds_per_question or 0:.2f}"])
            print(rows[-1], flush=True)
    table(f"answers by model ({args.split} half, k={args.k})",
          ["data", "llm", "model", "backend", "runtime", "questions", "hit@5", "EM", "F1",
           "answered",
           "first token s (median)", "s/question"], rows)


if __name__ == "__main__":
    main()
