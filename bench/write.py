"""Grounded writing, measured.

1. Question generation (the RAG paper's Jeopardy task, here on SQuAD part A): for a question's
   gold answer and its article's title, `write --task question` retrieves 5 passages and writes
   a question; BLEU-4 (sacrebleu) and ROUGE-L F1 against the gold question, concat vs RAG-Token.
2. Faithfulness of `write`: 50 instructions written for this benchmark, 25 about the bundled
   example documents and 25 about the SciFact corpus. For every sentence of every text: is it
   supported by the passages it cites (ragline.generate.citations.supports, the faithfulness
   judge)? Reported for what the user gets and for the model's own sentences before the
   SentenceGate left out the unsupported ones. 10 off-topic instructions per corpus measure
   refusals.

    .venv/bin/python bench/write.py                                    # the documentation's tables
    .venv/bin/python bench/write.py --questions 20 --skip-faithfulness
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import table  # noqa: E402

EXAMPLES = [
    "Explain how the Eiffel Tower was built",
    "Describe the Eiffel Tower",
    "Summarize what the documents say about the Eiffel Tower's height",
    "Explain why the Eiffel Tower was criticized",
    "Describe the visitor levels of the Eiffel Tower",
    "Summarize what the documents say about photosynthesis",
    "Explain where photosynthesis takes place in a plant",
    "Describe the light-dependent reactions and the Calvin cycle",
    "Explain what the overall equation of photosynthesis says",
    "Write a short history of coffee",
    "Describe the main species of coffee",
    "Summarize which countries produce the most coffee",
    "Describe the Pacific Ocean",
    "Explain what the Challenger Deep is",
    "Summarize what the documents say about coral reefs",
    "Describe how the Solar System formed",
    "Describe the planets of the Solar System",
    "Explain why Pluto is no longer a planet",
    "Summarize what the documents say about Jupiter",
    "Write about Johannes Gutenberg",
    "Summarize the inventions listed in the documents",
    "Write about the invention of the telephone",
    "介绍一下长城",
    "长城是什么时候修建的？请写一段介绍",
    "介绍明朝修建的长城",
]
SCIFACT = [
    "Summarize what is known about cancer stem cells",
    "Explain how the Nlrp3 inflammasome is activated by Candida albicans",
    "Describe the role of CD28 in immunity against Salmonella",
    "Explain how reactive oxygen species cause DNA damage",
    "Summarize the link between breast cancer and obesity",
    "Describe how sleep and circadian function affect glucose metabolism",
    "Explain what fluconazole prophylaxis does in neonatal intensive care",
    "Summarize the economic impact of glaucoma",
    "Describe the mitochondrial fission proteins MiD49 and MiD51",
    "Explain the role of PTPMT1 in hematopoietic stem cells",
    "Summarize what is known about microRNA expression and aging",
    "Describe the effects of aging on circadian clocks",
    "Explain how hydrogen sulfide interacts with nitric oxide in the heart",
    "Compare ticagrelor and clopidogrel in acute coronary syndromes",
    "Describe how interleukin-17 relates to multiple sclerosis",
    "Summarize how T-bet regulates intestinal inflammation",
    "Explain how SOD1 represses respiration",
    "Describe the impact of hydroxyethyl starches in cardiac surgery",
    "Summarize the treatment of tuberculosis in HIV-infected patients",
    "Explain how p16 is inactivated in head and neck cancer",
    "Describe what the global burden of disease study measured",
    "Summarize how CTG repeats are repaired",
    "Explain the function of the spindle matrix protein Megator",
    "Describe the role of KLF3 and KLF8 in mice",
    "Summarize what is known about statins and cardiovascular risk",
]
OFF_TOPIC = [
    "Explain how to bake sourdough bread", "Describe the rules of cricket",
    "Write a short history of the Roman Empire", "Explain how a jet engine works",
    "Summarize the plot of Hamlet", "Describe how to change a car tyre",
    "Explain the offside rule in football", "Describe the music of Johann Sebastian Bach",
    "Write about the history of the bicycle", "Explain how to knit a scarf",
]


def rouge_l(hyp: str, ref: str) -> float:
    """ROUGE-L F1: the longest common subsequence of lower-cased word tokens."""
    h, r = hyp.lower().split(), ref.lower().split()
    if not h or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for a in h:
        cur = [0]
        for j, b in enumerate(r):
            cur.append(prev[j] + 1 if a == b else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(h), lcs / len(r)
    return 2 * p * rec / (p + rec)


def question_generation(rag, n: int, models: list[str]) -> None:
    import re

    import sacrebleu

    from ragline.eval.qa_data import read_qa
    from ragline.qa import spread

    examples = spread(read_qa(DATA / "squad" / "squad-dev-v1.1-part-a.json"), n)
    rows = []
    for model in models:
        hyps, refs, refused, t0 = [], [], 0, time.perf_counter()
        for ex in examples:
            topic = ex.group.replace("_", " ")
            a = rag.write(topic, task="question", answer=ex.answers[0], k=5, model=model)
            refused += a.refused
            hyps.append(re.sub(r"\s*\[\d+\]", "", a.text) if a.answered else "")
            refs.append(ex.question)
        secs = (time.perf_counter() - t0) / len(examples)
        bleu = sacrebleu.corpus_bleu(hyps, [refs]).score
        rl = 100 * sum(rouge_l(h, r) for h, r in zip(hyps, refs, strict=True)) / len(refs)
        rows.append([model, len(examples), f"{bleu:.1f}", f"{rl:.1f}", refused, f"{secs:.1f}"])
        print(rows[-1], "e.g.", list(zip(hyps[:3], refs[:3], strict=True)), flush=True)
    table("Question generation, SQuAD part A (answer + title → question), k = 5",
          ["model", "questions", "BLEU-4", "ROUGE-L", "refused", "s/question"], rows)


def faithfulness(corpora: dict[str, tuple[object, list[str]]], model: str,
                 limit: int | None) -> None:
    from ragline.eval.faithfulness import cited_sentences
    from ragline.generate.citations import supports

    rows = []
    for name, (rag, instructions) in corpora.items():
        instructions = instructions[:limit] if limit else instructions
        kept = supported = dropped = answered = 0
        t0 = time.perf_counter()
        for instruction in instructions:
            a = rag.write(instruction, model=model)
            if a.refused:
                print(f"  refused ({a.reason}): {instruction}", flush=True)
                continue
            answered += 1
            cited = {c.marker: c.passage.embed_text for c in a.citations}
            for sentence, marks in cited_sentences(a.text):
                kept += 1
                supported += bool(marks) and supports(
                    "\n".join(cited[m] for m in marks if m in cited), sentence)
            dropped += len(a.dropped)
        secs = (time.perf_counter() - t0) / len(instructions)
        off = [rag.write(i, model=model).refused for i in OFF_TOPIC]
        rows.append([name, model, len(instructions), answered, kept,
                     f"{supported / max(1, kept):.0%}",
                     f"{kept / max(1, kept + dropped):.0%}", f"{sum(off)}/{len(off)}",
                     f"{secs:.1f}"])
        print(rows[-1], flush=True)
    table("write: sentences whose cited passages support them",
          ["corpus", "model", "instructions", "written", "sentences", "supported (as given)",
           "model's own sentences supported", "off-topic refused", "s/text"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--qg-models", default="concat,rag-token")
    ap.add_argument("--write-models", default="concat")
    ap.add_argument("--limit", type=int, help="instructions per corpus (default: all 25)")
    ap.add_argument("--skip-qg", action="store_true")
    ap.add_argument("--skip-faithfulness", action="store_true")
    ap.add_argument("--index-dir", type=Path, help="keep (and reuse) the indexes here")
    args = ap.parse_args()

    from ragline import RAG
    from ragline.eval.qa_data import write_paragraphs_jsonl

    with tempfile.TemporaryDirectory(prefix="ragline-write-") as tmp:
        base = args.index_dir or Path(tmp)

        def index(name: str, paths: list[Path]) -> RAG:
            path = base / name
            if path.exists():
                return RAG.open(path)
            return RAG.build(path, paths=paths, progress=True)

        if not args.skip_qg:
            corpus = write_paragraphs_jsonl(DATA / "squad" / "squad-dev-v1.1-part-a.json",
                                            Path(tmp) / "squad.jsonl")
            with index("squad-index", [corpus]) as rag:
                question_generation(rag, args.questions, args.qg_models.split(","))
        if not args.skip_faithfulness:
            with index("examples-index", [REPO / "examples" / "docs"]) as ex, \
                    index("scifact-index", [DATA / "scifact" / "corpus.jsonl"]) as sf:
                for model in args.write_models.split(","):
                    faithfulness({"example documents": (ex, EXAMPLES),
                                  "SciFact": (sf, SCIFACT)}, model, args.limit)


if __name__ == "__main__":
    main()
