"""The RAG façade: index files, search, ask with citations, score and train — composed of an
`Index` (what is stored), a `Searcher` (retrieval) and an `Answerer` (generation).

    rag = RAG.build("my-index", paths=["docs/"])      # or RAG.open("my-index")
    answer = rag.ask("What is the capital of France?")
    answer.text, answer.citations
    rag.ask("How tall is it?", history=[Turn("user", "…"), Turn("assistant", "…")])  # a follow-up
    rag.write("Explain how the tower was built.")     # a cited text; or task="question", answer=…
    rag.index, rag.searcher, rag.answerer             # the parts, for finer control
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline.answer import Answerer, check_rag_k
from ragline.config import Config
from ragline.errors import ConfigError
from ragline.generate.base import Generator
from ragline.index.dense import DenseSpec
from ragline.index.index import Index
from ragline.ingest.pipeline import IngestReport
from ragline.registry import MODELS
from ragline.retrieve.collection import Collection
from ragline.retrieve.rerank import load_reranker
from ragline.retrieve.searcher import Searcher
from ragline.types import Answer, DocumentInfo, Hit, Turn

if TYPE_CHECKING:  # torch loads only when the RAG model is used
    from ragline.generate.tasks import Task
    from ragline.model.generators import RagModelSlot
    from ragline.model.rag_model import RagModel
    from ragline.model.train import TrainConfig, TrainResult
    from ragline.qa import QAExample


def _collection(index: Index, config: Config) -> Collection | None:
    """Shards on Ray actors when the config names a cluster; None: the index searched here."""
    s = config.scale
    if s.ray is None:
        return None  # here `partial` left damaged shards out when the index was opened
    from ragline.scale.actors import ray_collection

    return ray_collection(index, s.ray, s.partial)


# the models that give log p(y|x) of an answer (`ragline score`)
SCORED = ("concat", "rag-token", "rag-sequence")


class RAG:
    """`generator`: the concat generator to use instead of the configured one; `rag_model`:
    the torch RAG model instead of the trained or bundled one (tests use tiny ones)."""

    def __init__(self, index: Index, config: Config | None = None,
                 generator: Generator | None = None, rag_model: RagModel | None = None) -> None:
        self.index = index
        self.config = config or Config()
        self._rag_model = rag_model
        self._slot: RagModelSlot | None = None
        r = self.config.retrieval
        reranker = load_reranker(r.rerank, device=self.config.model.device) if r.rerank else None
        self.searcher = Searcher(index, index.question_encoder(), r, reranker,
                                 index.prior_scale(r.prior_scale), _collection(index, self.config))
        self.answerer = Answerer(self.searcher, self.config, self.load_rag_model, generator)

    @classmethod
    def build(cls, path: str | Path, paths: Sequence[str | Path] = (), encoder: str | None = None,
              config: Config | None = None, generator: Generator | None = None,
              progress: bool = False) -> RAG:
        """Create an index at `path` (or open the one there) and add `paths` to it."""
        config = config or Config()
        rag = cls(Index.open_or_create(path, config.index, encoder, config.model.device, paths),
                  config, generator)
        if paths:
            rag.add(paths, progress=progress)
        return rag

    @classmethod
    def open(cls, path: str | Path, config: Config | None = None,
             generator: Generator | None = None, encoder: str | None = None,
             rag_model: RagModel | None = None) -> RAG:
        """Open an existing index with the encoder its manifest names."""
        config = config or Config()
        index = Index.open(path, encoder, config.index.batch_passages, config.model.device,
                           partial=bool(config.scale.partial))
        return cls(index, config, generator, rag_model)

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> RAG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load_rag_model(self, task: Task | None = None) -> RagModel:
        """The RAG model, on llama.cpp or torch (see ragline.model.generators.RagModelSlot),
        loaded on first use; with a `task` other than answering, the one that task runs on."""
        return self._rag_slot()() if task is None else self._rag_slot().for_task(task)

    def _rag_slot(self) -> RagModelSlot:
        if self._slot is None:
            from ragline.model.generators import RagModelSlot

            self._slot = RagModelSlot(self.index, self.config.model, self._rag_model,
                                   self.config.retrieval.prior_scale)
        return self._slot

    @property
    def rag_model(self) -> RagModel:
        return self.load_rag_model()

    # ------------------------------------------------------------ the index

    def add(self, paths: Sequence[str | Path], progress: bool = False,
            names: Mapping[Path, str] | None = None) -> IngestReport:
        return self.index.add(paths, progress=progress, names=names)

    def remove(self, target: str) -> list[str]:
        """Remove a document by id, or every document of a source file; returns the doc ids."""
        return self.index.remove(target)

    def remove_documents(self, doc_ids: Sequence[str]) -> list[str]:
        return self.index.remove_documents(doc_ids)

    def reindex(self, dense: DenseSpec | None = None, progress: bool = False) -> None:
        self.index.reindex(dense, progress)

    def info(self) -> dict[str, Any]:
        return self.index.info()

    def documents(self, source: str | None = None) -> list[DocumentInfo]:
        return self.index.documents(source)

    # ------------------------------------------------------------ search and answers

    def search(self, query: str, k: int | None = None, mode: str | None = None,
               rerank: bool = True) -> list[Hit]:
        """Top-k passages; a reranker set in the config reorders them unless `rerank=False`."""
        return self.searcher.search(query, k=k, mode=mode, rerank=rerank)

    def search_many(self, queries: Sequence[str], k: int | None = None, mode: str | None = None,
                    rerank: bool = True, progress: bool = False) -> list[list[Hit]]:
        """`search` for many queries, their vectors encoded in one batch."""
        return self.searcher.search_many(queries, k=k, mode=mode, rerank=rerank,
                                         progress=progress)

    def ask(self, question: str, k: int | None = None, mode: str | None = None,
            model: str | None = None, beams: int | None = None,
            history: Sequence[Turn] = ()) -> Answer:
        """Answer with citations. model: per-passage (the default), concat (all passages in
        one prompt), rag-token or rag-sequence (the torch RAG model, see `rag_model`).
        `history`: the conversation so far; a follow-up ("How tall is it?") is rewritten into
        a standalone question first (Answer.standalone_question)."""
        return self.answerer.ask(question, k=k, mode=mode, model=model, beams=beams,
                                 history=history)

    def ask_stream(self, question: str, k: int | None = None, mode: str | None = None,
                   model: str | None = None, beams: int | None = None,
                   hits: Sequence[Hit] | None = None, max_tokens: int | None = None,
                   temperature: float | None = None,
                   history: Sequence[Turn] = ()) -> Iterator[str | Answer]:
        """Yield answer text as it is generated (citation markers included), then the Answer.
        Bad arguments fail before any generation (see Answerer.prepare)."""
        prepared = self.answerer.prepare(question, k=k, mode=mode, model=model, beams=beams,
                                         max_tokens=max_tokens, temperature=temperature,
                                         hits=hits, history=history)
        return self.answerer.answer(prepared)

    def write(self, instruction: str, task: str = "text", answer: str | None = None,
              k: int | None = None, mode: str | None = None, model: str | None = None,
              beams: int | None = None, max_tokens: int | None = None) -> Answer:
        """A text written from the passages retrieved for `instruction`, every sentence cited
        (one no passage supports is left out: Answer.dropped); task="question": a question
        whose answer is `answer` (Jeopardy question generation). model: concat (default),
        rag-token (the RAG paper's best for question generation) or rag-sequence."""
        return self.answerer.ask(instruction, k=k, mode=mode, model=model, beams=beams,
                                 max_tokens=max_tokens, task=task, answer=answer)

    def write_stream(self, instruction: str, task: str = "text", answer: str | None = None,
                     k: int | None = None, mode: str | None = None, model: str | None = None,
                     beams: int | None = None, max_tokens: int | None = None,
                     ) -> Iterator[str | Answer]:
        """`write`, a sentence at a time, then the Answer."""
        prepared = self.answerer.prepare(instruction, k=k, mode=mode, model=model, beams=beams,
                                         max_tokens=max_tokens, task=task, answer=answer)
        return self.answerer.answer(prepared)

    def score(self, question: str, answer: str, k: int | None = None,
              mode: str | None = None, models: Sequence[str] = SCORED) -> dict[str, float]:
        """log p(y|x) of a given answer under each model, over the same retrieved passages."""
        for name in models:
            if MODELS.canonical(name) not in SCORED:
                raise ConfigError(f"{MODELS.canonical(name)} answers from the first passage it "
                                  f"is sure of and has no p(y|x); score {', '.join(SCORED)}")
        if any(name != "concat" for name in models):
            check_rag_k(k)
        hits = self.search(question, k=k, mode=mode)
        if not hits:
            raise ConfigError("nothing was retrieved for the question")
        return {name: self.load_rag_model().score(question, hits, answer, name) for name in models}

    def train(self, examples: list[QAExample], cfg: TrainConfig | None = None,
              progress: bool = True, restart: bool = False) -> TrainResult:
        """Fine-tune the question encoder and the generator end to end (see ragline.model.train);
        resumes from the index's last checkpoint unless `restart`."""
        from ragline.model.train import fine_tune

        return fine_tune(self.searcher, self._rag_slot(), examples, cfg, progress, restart)
