"""The recipe for a fine-tuned default RAG model: LoRA on the default generator (Qwen2.5 0.5B)
(and the question encoder with --question-encoder), trained end to end on the article-split
training side of SQuAD part A + CMRC 2018 part A, evaluated on the held-out side against the
untrained model and concat; --ship puts the adapter into the package if it beats the untrained.

    make train-default                            # the shipped adapter's run (~80 min on 2 cores)
    .venv/bin/python bench/train_default.py --steps 300 --eval 100 --run runs/long --ship

Everything lives in the run folder (default runs/train-default): the index (with the
checkpoints `ragline train` keeps in it), the held-out questions, results.json. Run it again and
it resumes from the last checkpoint; a GPU, when present, is used (bf16). The data's licence is
CC BY-SA 4.0 (SQuAD 1.1, CMRC 2018): an adapter trained on it carries that licence.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rag_qa import DATA  # noqa: E402
from run import table  # noqa: E402


def evaluate(rag, examples, model: str) -> dict[str, float]:
    from ragline.eval.qa import evaluate_qa

    r = evaluate_qa(rag, examples, k=4, mode="dense", model=model, hit_ks=(1, 4), progress=True)
    return {"em": 100 * (r.em or 0), "f1": 100 * (r.f1 or 0),
            "answered": 100 * (r.answered or 0), "s": r.seconds_per_question or 0.0}


def prior_masses(rag, examples, scales) -> list[float]:
    """Mean p(z|x) of the passages holding the answer, at each scale, over the held-out
    questions that retrieve one."""
    import torch

    from ragline.model.marginal import answer_prior_mass, doc_log_prior
    from ragline.qa import answer_in

    runs = rag.search_many([e.question for e in examples], k=4, mode="dense")
    scores = torch.tensor([[h.dense_score for h in hits] for hits in runs])
    positive = torch.tensor([[answer_in(h.passage.text, e.answers) for h in hits]
                             for e, hits in zip(examples, runs, strict=True)])
    rows = positive.any(-1)
    return [float(answer_prior_mass(doc_log_prior(scores, s), positive)[rows].mean())
            for s in scales]


def ship(index: Path, results: dict, args: argparse.Namespace) -> Path:
    """The run's adapter, in fp16 (half the bytes; answers use it merged or in llama.cpp), into
    ragline's package with its provenance: base, data, licence, command, steps, metrics."""
    import shutil

    from safetensors.torch import load_file, save_file

    from ragline.model.adapters import ADAPTER_FILE, PACKAGED_ADAPTER

    trained = json.loads((index / "manifest.json").read_text())["trained"]
    src = index / trained["generator"]["path"]
    tmp = PACKAGED_ADAPTER.with_name(PACKAGED_ADAPTER.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.half() for k, v in load_file(str(src / ADAPTER_FILE)).items()},
              str(tmp / ADAPTER_FILE))
    config = json.loads((src / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = trained["generator"]["base"]  # not this machine's cache
    (tmp / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    provenance = {
        "base": trained["generator"]["base"],
        "model": trained["model"],
        "steps": trained["step"],
        "data": "the article-split training side (80 %) of SQuAD 1.1 dev part A and CMRC 2018 "
                "dev part A (../shared/data); evaluated on the held-out articles",
        "licence": "CC BY-SA 4.0 (the training data's: SQuAD 1.1, CMRC 2018)",
        "command": "bench/train_default.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k not in ("run", "ship", "question_encoder")) + " --ship",
        "metrics": {k: v for k, v in results.items() if "/" in k},
    }
    (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2, ensure_ascii=False))
    shutil.rmtree(PACKAGED_ADAPTER, ignore_errors=True)
    tmp.replace(PACKAGED_ADAPTER)
    return PACKAGED_ADAPTER


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=Path("runs/train-default"))
    # the defaults are the run that made the shipped adapter (docs/measured/rag-model.md)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--lora", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--grad-accum", type=int, default=2)
    ap.add_argument("--eval", type=int, default=30, help="held-out questions per data set")
    ap.add_argument("--passage-tokens", type=int, default=96)
    ap.add_argument("--ship", action="store_true",
                    help="if the trained model beats the untrained one on both held-out sets, "
                         "put its adapter (fp16) and provenance into the package")
    ap.add_argument("--question-encoder", action="store_true",
                    help="train the question encoder too (it stays in the run's index: only "
                         "the generator's adapter can ship, so the default leaves it frozen)")
    args = ap.parse_args()

    from ragline import RAG
    from ragline.config import Config
    from ragline.eval.qa_data import read_qa, write_paragraphs_jsonl
    from ragline.model.train import TrainConfig
    from ragline.qa import split_by_group, spread

    args.run.mkdir(parents=True, exist_ok=True)
    index = args.run / "index"
    cfg = Config()
    # the baselines are the bare generator, never an adapter shipped by an earlier run
    cfg = replace(cfg, generation=replace(cfg.generation, min_relevance=None, min_support=0.0),
                  model=replace(cfg.model, max_passage_tokens=args.passage_tokens,
                                adapter="none"))
    if not (index / "manifest.json").exists():
        corpora = [write_paragraphs_jsonl(DATA[name], args.run / f"{name}.jsonl")
                   for name in ("squad", "cmrc")]
        RAG.build(index, corpora, encoder="minilm", config=cfg, progress=True).close()
    train, held = [], {}
    for name in ("squad", "cmrc"):
        tr, te = split_by_group(read_qa(DATA[name]), 0.2)
        train += tr
        held[name] = spread(te, args.eval)
    results: dict[str, dict] = {"config": vars(args) | {"run": str(args.run)}}
    rows = []
    with RAG.open(index, config=cfg) as rag:
        if rag.index.manifest.trained is None:  # the untrained baselines, once
            for name, examples in held.items():
                for model in ("concat", "rag-sequence"):
                    r = evaluate(rag, examples, model)
                    results[f"{name}/{model}/untrained"] = r
                    print(name, model, "untrained", r, flush=True)
            (args.run / "baseline.json").write_text(json.dumps(results, indent=2))
        tc = TrainConfig(model="rag-sequence", k=4, steps=args.steps, batch_size=args.batch,
                         grad_accum=args.grad_accum, lora_rank=args.lora, lr=args.lr,
                         held_out=0.0, save_every=10, eval_every=10**9,
                         train_question_encoder=args.question_encoder)
        t0 = time.perf_counter()
        # held-out articles never reach training: `train` holds the training side only
        res = rag.train(train, tc, progress=True)
        results["train"] = {"steps": res.step, "seconds": time.perf_counter() - t0,
                            "loss_first": res.losses[:5], "loss_last": res.losses[-5:]}
    baseline = json.loads((args.run / "baseline.json").read_text())
    with RAG.open(index, config=cfg) as rag:
        learned = rag.searcher.prior_scale
        for name, examples in held.items():
            one, default, trained = prior_masses(rag, examples, (1.0, 20.0, learned))
            results[f"{name}/prior_mass"] = {"scale 1": one, "scale 20": default,
                                             f"learned {learned:.1f}": trained}
            r = evaluate(rag, examples, "rag-sequence")
            results[f"{name}/rag-sequence/trained"] = r
            for label, row in (("concat", baseline[f"{name}/concat/untrained"]),
                               ("rag-sequence untrained",
                                baseline[f"{name}/rag-sequence/untrained"]),
                               (f"rag-sequence trained ({res.step} steps)", r)):
                rows.append([name, label, len(examples), row["em"], row["f1"],
                             row["answered"], row["s"]])
            rows.append([name, f"p(z|x) of answer passages: scale 1 {one:.2f}, 20 {default:.2f}, "
                         f"learned {learned:.1f} {trained:.2f}", "", "", "", "", ""])
    (args.run / "results.json").write_text(json.dumps(results | baseline, indent=2))
    better = all(results[f"{n}/rag-sequence/trained"]["f1"]
                 > baseline[f"{n}/rag-sequence/untrained"]["f1"] for n in held)
    if args.ship and better:
        print(f"shipped: {ship(index, results | baseline, args)}")
    elif args.ship:
        print("not shipped: the trained model does not beat the untrained one on both sets")
    table("the default RAG model, held-out side (dense, k = 4)",
          ["data", "model", "questions", "EM", "F1", "answered %", "s/question"], rows)


if __name__ == "__main__":
    main()
