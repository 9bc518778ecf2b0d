"""Answers by generator and answer model (concat, RAG-Token, RAG-Sequence): exact match, F1,
share answered, time to the first token and total seconds per question, on SQuAD part A
(English) and CMRC 2018 part A (Chinese).

    .venv/bin/python bench/answers.py                                  # the README's table
    .venv/bin/python bench/answers.py --llms qwen2.5-0.5b --questions 30 --data squad
    .venv/bin/python bench/answers.py --llms qwen2.5-0.5b --models concat,rag-token,rag-sequence

The RAG models decode through llama.cpp with the same GGUF as concat (model.runtime auto), so
their seconds per question compare with concat's directly.

The same as `ragline eval qa DIR --data … --limit N --llm NAME` for every pair, with one index
per data set, built from its paragraphs the way `ragline index` builds any folder (so CMRC,
mostly Chinese, gets the multilingual encoder). Hybrid retrieval, k = 5, default settings.
Time to first token is the median over the questions, retrieval included; run it on an idle
machine, since the generator uses every core.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = {"squad": REPO.parent / "shared" / "data" / "squad" / "squad-dev-v1.1-part-a.json",
        "cmrc": REPO.parent / "shared" / "data" / "cmrc2018" / "cmrc2018-dev-part-a.json"}
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import table  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--llms", default="qwen2.5-0.5b,gemma-270m,qwen2.5-1.5b")
    ap.add_argument("--data", default="squad,cmrc")
    ap.add_argument("--questions", type=int, default=200, help="spread over each file")
    ap.add_argument("-k", type=int, default=5)
    ap.add_argument("--models", default="concat", help="answer models, e.g. concat,rag-token")
    ap.add_argument("--beams", type=int, default=None, help="the RAG models' beams")
    ap.add_argument("--index-dir", type=Path, help="keep (and reuse) the indexes here")
    args = ap.parse_args()

    from dataclasses import replace

    from ragline import RAG
    from ragline.config import Config
    from ragline.errors import ModelUnavailableError
    from ragline.eval.qa import evaluate_qa
    from ragline.eval.qa_data import read_qa, write_paragraphs_jsonl
    from ragline.qa import spread

    rows = []
    with tempfile.TemporaryDirectory(prefix="ragline-answers-") as tmp:
        base = args.index_dir or Path(tmp)
        for name in args.data.split(","):
            examples = spread(read_qa(DATA[name]), args.questions)
            index = base / f"{name}-index"
            if not index.exists():
                corpus = write_paragraphs_jsonl(DATA[name], Path(tmp) / f"{name}.jsonl")
                RAG.build(index, paths=[corpus], progress=True).close()
            for llm, model in [(a, b) for a in args.llms.split(",")
                               for b in args.models.split(",")]:
                cfg = Config()
                beams = args.beams or cfg.model.beams
                cfg = replace(cfg, generation=replace(cfg.generation, model=llm),
                              model=replace(cfg.model, generator=llm, beams=beams))
                with RAG.open(index, config=cfg) as rag:
                    try:
                        r = evaluate_qa(rag, examples, k=args.k, hit_ks=(1, 5), progress=True,
                                        model=model)
                    except ModelUnavailableError as e:
                        print(f"skipped {llm}: {e}", file=sys.stderr)
                        continue
                    encoder = rag.index.folder.encoder_spec.id.rsplit("/", 1)[-1]
                rows.append([name, encoder, llm, model, len(examples), 100 * r.hit_at[5],
                             100 * (r.em or 0), 100 * (r.f1 or 0), 100 * (r.answered or 0),
                             r.first_token_s or 0.0, r.seconds_per_question or 0.0])
                print(rows[-1], flush=True)
    table(f"answers, k={args.k}",
          ["data", "encoder", "llm", "model", "questions", "hit@5", "EM", "F1", "answered %",
           "first token s (median)", "s/question"], rows)


if __name__ == "__main__":
    main()
