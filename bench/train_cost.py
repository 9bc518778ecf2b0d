"""What a RAG training step costs on this machine: seconds per step and peak memory, for each
generator, full fine-tuning vs LoRA, fp32 vs bf16.

    .venv/bin/python bench/train_cost.py                       # gemma-270m and qwen2.5-0.5b
    .venv/bin/python bench/train_cost.py --lms gemma-270m --steps 3 --modes full,lora

Each configuration runs in its own process (peak RSS is per process) over one index of the
SQuAD part A paragraphs, at batch 2 and k 4 (8 passage contexts a step). The first step is a
warm-up and not timed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rag_qa import DATA  # noqa: E402
from run import peak_rss_mb, table  # noqa: E402


def one(index: Path, lm_name: str, mode: str, precision: str, steps: int, batch: int,
        k: int) -> dict[str, float]:
    from ragline import RAG
    from ragline.eval.qa_data import read_qa
    from ragline.model.lm import CausalLM
    from ragline.model.qencoder import QuestionEncoder
    from ragline.model.train import TrainConfig, Trainer

    rag = RAG.open(index)
    lm = CausalLM.load(lm_name)
    cfg = TrainConfig(k=k, batch_size=batch, lora_rank=16 if mode == "lora" else 0,
                      precision=precision)
    trainer = Trainer(rag.searcher, lm, QuestionEncoder.from_encoder(rag.index.encoder), cfg)
    examples = read_qa(DATA["squad"])
    batches = [examples[i * batch:(i + 1) * batch] for i in range(steps + 1)]
    trainer.train_step(batches[0])  # warm-up: first-call allocations
    t0 = time.perf_counter()
    losses = [trainer.train_step(b) for b in batches[1:]]
    return {"s_per_step": (time.perf_counter() - t0) / steps, "peak_mb": peak_rss_mb(),
            "trainable_m": trainer.trainable_parameters / 1e6, "loss": losses[-1]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lms", default="gemma-270m,qwen2.5-0.5b")
    ap.add_argument("--modes", default="full,lora")
    ap.add_argument("--precisions", default="fp32")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("-k", type=int, default=4)
    ap.add_argument("--index", type=Path, default=None, help="reuse/keep the index here")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # lm,mode,precision (child)
    args = ap.parse_args()

    if args.one:
        lm_name, mode, precision = args.one.split(",")
        print(json.dumps(one(args.index, lm_name, mode, precision, args.steps, args.batch,
                             args.k)))
        return

    from ragline import RAG
    from ragline.eval.qa_data import write_paragraphs_jsonl

    index = args.index or Path(tempfile.mkdtemp(prefix="ragline-train-cost-")) / "index"
    if not (index / "manifest.json").exists():
        corpus = write_paragraphs_jsonl(DATA["squad"], index.parent / "squad-paragraphs.jsonl")
        RAG.build(index, [corpus], encoder="minilm", progress=True).close()
    rows = []
    for lm_name in args.lms.split(","):
        for mode in args.modes.split(","):
            for precision in args.precisions.split(","):
                cmd = [sys.executable, __file__, "--index", str(index), "--steps",
                       str(args.steps), "--batch", str(args.batch), "-k", str(args.k),
                       "--one", f"{lm_name},{mode},{precision}"]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    print(out.stderr[-2000:], file=sys.stderr)
                    rows.append([lm_name, mode, precision, "failed", "", "", ""])
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append([lm_name, mode, precision, r["trainable_m"], r["s_per_step"],
                             r["peak_mb"] / 1024, r["loss"]])
                print(rows[-1], flush=True)
    table(f"one training step (batch {args.batch}, k {args.k}, {args.steps} timed steps)",
          ["generator", "weights", "precision", "trainable M", "s/step", "peak RSS GB",
           "loss"], rows)


if __name__ == "__main__":
    main()
