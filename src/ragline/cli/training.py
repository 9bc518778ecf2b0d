"""`ragline train`: fine-tune the question encoder and the generator end to end."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ragline.cli import render
from ragline.cli.options import add_index_arg, add_ray, positive_int
from ragline.config import PRECISIONS, Config
from ragline.registry import LLMS


def register(sub: Any) -> None:
    s = sub.add_parser("train", help="fine-tune the question encoder and the generator end to end")
    add_index_arg(s)
    s.add_argument("--data", required=True, type=Path,
                   help='jsonl rows {"question": ..., "answers": [...]} or SQuAD-format JSON')
    s.add_argument("--model", default="rag-sequence",
                   choices=["rag-sequence", "rag-token"])  # the RAG models train
    s.add_argument("--rag-lm", metavar="NAME|FOLDER",
                   help=f"the generator to start from: {', '.join(LLMS.names)} (default "
                        f"{LLMS.names[0]}) or a transformers causal-LM folder")
    s.add_argument("--lora", type=positive_int, metavar="RANK",
                   help="train LoRA adapters of this rank instead of every weight (saved in "
                        "the checkpoint; llama.cpp answers with them)")
    s.add_argument("--grad-accum", type=positive_int, default=1, metavar="N",
                   help="batches summed into one optimizer step (default 1)")
    s.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto: bf16 on a GPU that has it, else fp32")
    s.add_argument("--steps", type=positive_int, default=100, help="total optimizer steps")
    s.add_argument("-k", type=positive_int, default=4, help="passages per question")
    s.add_argument("--batch-size", type=positive_int, default=2)
    s.add_argument("--lr", type=float, default=2e-5, help="generator learning rate")
    s.add_argument("--lr-question-encoder", type=float, default=1e-5)
    s.add_argument("--held-out", type=float, default=0.2,
                   help="share of articles kept out for evaluation (default 0.2)")
    s.add_argument("--eval-every", type=positive_int, default=50)
    s.add_argument("--eval-questions", type=positive_int, default=50)
    s.add_argument("--save-every", type=positive_int, default=50)
    s.add_argument("--freeze-question-encoder", action="store_true",
                   help="train the generator only")
    s.add_argument("--restart", action="store_true",
                   help="start from the base models instead of resuming the last checkpoint")
    add_ray(s, searches=False, workers="data-parallel training workers with --ray (default 2)")
    s.set_defaults(run=cmd_train)


def cmd_train(args: argparse.Namespace, cfg: Config) -> int:
    from ragline.eval.qa_data import read_qa
    from ragline.index.index import Index
    from ragline.model.train import TrainConfig
    from ragline.rag import RAG

    tc = TrainConfig(model=args.model, k=args.k, steps=args.steps, batch_size=args.batch_size,
                     lr=args.lr, lr_question_encoder=args.lr_question_encoder,
                     held_out=args.held_out, eval_every=args.eval_every,
                     eval_questions=args.eval_questions, save_every=args.save_every,
                     train_question_encoder=not args.freeze_question_encoder,
                     lora_rank=args.lora or 0, grad_accum=args.grad_accum,
                     precision=args.precision)
    examples = read_qa(args.data)
    with Index.open(args.index, batch_passages=cfg.index.batch_passages) as index:
        trained = index.manifest.trained
    done = trained.step if trained else 0
    if done >= args.steps and not args.restart:
        render.out(f"{args.index} is already trained for {done} steps; ask for more with "
                   f"--steps N (N > {done}) or start over with --restart")
        return 0
    if cfg.scale.ray is not None:
        from ragline.scale.train import ray_train

        result = ray_train(args.index, examples, tc, cfg, cfg.scale.workers, args.restart,
                           progress=not args.quiet)
    else:
        with RAG.open(args.index, config=cfg) as rag:
            result = rag.train(examples, tc, progress=not args.quiet, restart=args.restart)
    for ev in result.evals:
        if "em" not in ev:  # before training: the prior only
            render.out(f"step {int(ev['step'])}: answer passages hold {ev['prior_mass']:.2f} "
                       f"of p(z|x) (scale {ev['prior_scale']:.1f})")
            continue
        render.out(f"step {int(ev['step'])}: held-out exact match {100 * ev['em']:.1f}, "
                   f"F1 {100 * ev['f1']:.1f} ({int(ev['questions'])} questions); answer "
                   f"passages hold {ev['prior_mass']:.2f} of p(z|x) (scale "
                   f"{ev['prior_scale']:.1f})")
    if result.losses:
        render.out(f"trained to step {result.step}; loss {result.losses[0]:.3f} → "
                   f"{result.losses[-1]:.3f}; checkpoint {result.checkpoint}")
    return 0
