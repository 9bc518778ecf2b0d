"""Open-domain QA with the RAG model: concat vs RAG-Token vs RAG-Sequence, before and after a
short end-to-end fine-tuning run, on SQuAD part A (English) and CMRC 2018 part A (Chinese).

    .venv/bin/python bench/rag_qa.py --data squad --questions 60 --steps 60
    .venv/bin/python bench/rag_qa.py --data cmrc --questions 60 --steps 60 --ks 1,2,4,8

Each paragraph is indexed as one document (title = article); questions are split by article
into training and held-out parts, and every number is on held-out questions. All models see the
same dense top-k; answers are scored raw (no relevance gate, no support check), citation markers
removed, with SQuAD normalization (English) or character F1 (Chinese).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = {"squad": REPO.parent / "shared" / "data" / "squad" / "squad-dev-v1.1-part-a.json",
        "cmrc": REPO.parent / "shared" / "data" / "cmrc2018" / "cmrc2018-dev-part-a.json"}
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import peak_rss_mb, table  # noqa: E402


def evaluate(rag, examples, model: str, k: int, beams: int) -> dict[str, float]:
    from tqdm import tqdm

    from ragline.qa import exact_match, f1_score

    em = f1 = 0.0
    t0 = time.perf_counter()
    for ex in tqdm(examples, desc=f"{model} k={k}", unit="q", leave=False):
        a = rag.ask(ex.question, k=k, mode="dense", model=model, beams=beams)
        text = re.sub(r"\s*\[\d+\]", "", a.text).strip()
        em += exact_match(text, ex.answers)
        f1 += f1_score(text, ex.answers)
    n = len(examples)
    return {"em": 100 * em / n, "f1": 100 * f1 / n, "s": (time.perf_counter() - t0) / n}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", choices=sorted(DATA), default="squad")
    ap.add_argument("--questions", type=int, default=60)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--ks", default="", help="also evaluate these k before training, e.g. 1,2,4,8")
    ap.add_argument("--beams", type=int, default=1)
    ap.add_argument("--train-model", default="rag-sequence")
    ap.add_argument("--index", type=Path, default=None, help="reuse/keep the index here")
    args = ap.parse_args()

    from ragline import RAG
    from ragline.config import Config
    from ragline.eval.qa_data import read_qa, write_paragraphs_jsonl
    from ragline.model.train import TrainConfig
    from ragline.qa import split_by_group

    cfg = Config()
    cfg = replace(cfg, generation=replace(cfg.generation, min_relevance=None, min_support=0.0))
    tmp = tempfile.mkdtemp(prefix="ragline-qa-")
    index = args.index or Path(tmp) / "index"
    if not (index / "manifest.json").exists():
        corpus = write_paragraphs_jsonl(DATA[args.data], Path(tmp) / f"{args.data}-paragraphs.jsonl")
        t0 = time.perf_counter()
        RAG.build(index, [corpus], config=cfg, progress=True).close()
        print(f"indexed in {time.perf_counter() - t0:.0f} s", flush=True)
    rag = RAG.open(index, config=cfg)
    examples = read_qa(DATA[args.data])
    train_set, held_out = split_by_group(examples, 0.2)
    held = held_out[: args.questions]
    models = ["concat", "rag-token", "rag-sequence"]
    rows = []
    for k in sorted({args.k, *[int(x) for x in args.ks.split(",") if x]}):
        for m in models:
            r = evaluate(rag, held, m, k, args.beams)
            rows.append([args.data, "before", m, k, r["em"], r["f1"], r["s"]])
            print(rows[-1], flush=True)
    t0 = time.perf_counter()
    tc = TrainConfig(model=args.train_model, k=args.k, steps=args.steps, batch_size=2,
                     eval_every=10**9, save_every=args.steps, held_out=0.2)
    res = rag.train(train_set + held_out, tc, progress=True, restart=True)
    train_s = time.perf_counter() - t0
    print(f"trained {args.steps} steps in {train_s:.0f} s; loss first 10 "
          f"{sum(res.losses[:10]) / 10:.3f} → last 10 {sum(res.losses[-10:]) / 10:.3f}", flush=True)
    for m in models[1:]:
        r = evaluate(rag, held, m, args.k, args.beams)
        rows.append([args.data, f"after {args.steps} steps", m, args.k, r["em"], r["f1"], r["s"]])
        print(rows[-1], flush=True)
    table(f"QA on {args.data} held-out ({len(held)} questions; train {args.train_model}, "
          f"{train_s / args.steps:.1f} s/step)",
          ["data", "when", "model", "k", "EM", "F1", "s/answer"], rows)
    print(f"\npeak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
