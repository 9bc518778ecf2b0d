"""The RAG façade: index files, search, ask with citations.

    rag = RAG.build("my-index", paths=["docs/"])      # or RAG.open("my-index")
    answer = rag.ask("What is the capital of France?")
    answer.text, answer.citations
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline.config import MODELS, Config, check_model, check_sampling
from ragline.encode import Encoder, SentenceTransformerEncoder, encoder_from_spec, load_encoder
from ragline.errors import ConfigError, DocumentNotFoundError, IndexCorruptError
from ragline.generate.base import Generator
from ragline.generate.citations import CitationStream, best_span, is_refusal, support
from ragline.generate.prompts import STOP, not_found_message, rag_prompt
from ragline.index.dense import DenseSpec
from ragline.index.folder import IndexFolder
from ragline.index.store import source_key
from ragline.ingest.pipeline import IngestReport, ingest_paths
from ragline.retrieve.rerank import load_reranker
from ragline.retrieve.retriever import Retriever, check_k, check_query
from ragline.text import invalid_char, tokenize
from ragline.types import Answer, Citation, DocumentInfo, Hit

if TYPE_CHECKING:  # torch loads only when the RAG model is used
    from ragline.eval.qa_data import QAExample
    from ragline.model.rag_model import RagModel
    from ragline.model.train import TrainConfig, TrainResult

log = logging.getLogger(__name__)

# RAG-Token and RAG-Sequence run the generator over every passage (k × beams sequences): the
# paper trains with 5–10 and decodes with up to 50.
MAX_RAG_K = 50


def _check_rag_k(k: int | None) -> None:
    if k is not None and k > MAX_RAG_K:
        raise ConfigError(f"the RAG models read each passage separately; k must be ≤ "
                          f"{MAX_RAG_K}, got {k}")


def make_generator(cfg: Config) -> Generator:
    g = cfg.generation
    if g.backend in ("llama-cpp", "llama.cpp", "llama"):
        from ragline.generate.llama import LlamaCppGenerator

        return LlamaCppGenerator(g.model, n_ctx=g.n_ctx, n_threads=g.threads)
    if g.backend == "openai":
        if not g.base_url or not g.model:
            raise ConfigError("the openai backend needs generation.base_url and generation.model")
        from ragline.generate.openai_http import OpenAIGenerator

        return OpenAIGenerator(g.base_url, g.model, api_key_env=g.api_key_env)
    raise ConfigError(f"unknown generation backend '{g.backend}'; use 'llama-cpp' or 'openai'")


class RAG:
    def __init__(self, folder: IndexFolder, encoder: Encoder, config: Config | None = None,
                 generator: Generator | None = None, rag_model: RagModel | None = None) -> None:
        self.folder = folder
        self.encoder = encoder
        self.config = config or Config()
        self._generator = generator
        self._rag_model = rag_model
        self._given_rag_model = rag_model  # what `train(restart=True)` starts from (trained in place)
        r = self.config.retrieval
        reranker = load_reranker(r.rerank, device=self.config.model.device) if r.rerank else None
        self.retriever = Retriever(folder, encoder, rrf_k=r.rrf_k, candidates=r.candidates,
                                   dense_weight=r.dense_weight,
                                   query_encoder=self._trained_question_encoder(),
                                   reranker=reranker, rerank_depth=r.rerank_depth)

    # ------------------------------------------------------------ lifecycle

    @classmethod
    def build(cls, path: str | Path, paths: Sequence[str | Path] = (), encoder: str | None = None,
              config: Config | None = None, generator: Generator | None = None,
              progress: bool = False) -> RAG:
        """Create an index at `path` (or open the one there) and add `paths` to it."""
        config = config or Config()
        path = Path(path)
        if (path / "manifest.json").exists():
            # an existing index keeps its encoder; naming a different one is an error
            rag = cls.open(path, config=config, generator=generator, encoder=encoder)
        else:
            ic = config.index
            enc = load_encoder(encoder or ic.encoder, query_prefix=ic.query_prefix,
                               passage_prefix=ic.passage_prefix)
            enc.load()
            folder = IndexFolder.create(path, enc.spec, chunk_words=config.index.chunk_words,
                                        dense=DenseSpec(config.index.dense))
            rag = cls(folder, enc, config, generator)
        if paths:
            rag.add(paths, progress=progress)
        return rag

    @classmethod
    def open(cls, path: str | Path, config: Config | None = None,
             generator: Generator | None = None, encoder: str | None = None,
             rag_model: RagModel | None = None) -> RAG:
        """Open an existing index with the encoder its manifest names."""
        folder = IndexFolder.open(Path(path), expect_encoder=encoder)
        return cls(folder, encoder_from_spec(folder.encoder_spec), config, generator, rag_model)

    def close(self) -> None:
        self.folder.close()

    def __enter__(self) -> RAG:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _trained_question_encoder(self) -> Encoder | None:
        """The question encoder `ragline train` left in the index, if any (the manifest names it;
        the passage side is always the index's own encoder)."""
        trained = (self.folder.manifest.get("trained") or {}).get("question_encoder")
        if not trained:
            return None
        path = self.folder.path / trained["path"]
        if not path.is_dir():
            raise IndexCorruptError(f"{path}: the trained question encoder named in the manifest "
                                    "is missing; retrain or remove 'trained' from manifest.json")
        spec = self.folder.encoder_spec
        enc = SentenceTransformerEncoder(path=path, model_id=f"{spec.id}+{trained['path']}",
                                         dim=spec.dim, query_prefix=spec.query_prefix,
                                         passage_prefix=spec.passage_prefix,
                                         device=self.config.model.device)
        enc.prefixes_from_model = False  # the manifest's prefixes, even when they are empty
        return enc

    @property
    def rag_model(self) -> RagModel:
        """The torch RAG model: the generator `ragline train` left in the index, else the
        bundled Gemma 3 270M. Loaded on first use."""
        if self._rag_model is None:
            from ragline.model.lm import CausalLM
            from ragline.model.rag_model import RagModel

            m = self.config.model
            trained = (self.folder.manifest.get("trained") or {}).get("generator")
            lm = (CausalLM.from_folder(self.folder.path / trained["path"], device=m.device)
                  if trained else CausalLM.bundled(device=m.device))
            self._rag_model = RagModel(lm, max_passage_tokens=m.max_passage_tokens,
                                       max_new_tokens=m.max_new_tokens)
        return self._rag_model

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = make_generator(self.config)
        return self._generator

    # ------------------------------------------------------------ writes

    def add(self, paths: Sequence[str | Path], progress: bool = False,
            names: Mapping[Path, str] | None = None) -> IngestReport:
        """Index files and folders (changed files are replaced, unchanged ones skipped).
        `names`: display names for files stored under meaningless names (server uploads)."""
        with self.folder.write_lock():
            return ingest_paths(self.folder, self.encoder, [Path(p) for p in paths],
                                progress=progress,
                                batch_passages=self.config.index.batch_passages, names=names)

    def remove(self, target: str) -> list[str]:
        """Remove a document by id, or every document of a source file; returns the doc ids."""
        if invalid_char(target) is None and self.folder.store.has_document(target):
            return self.remove_documents([target])  # else a path (its bytes need not be UTF-8)
        store = self.folder.store
        source = source_key(Path(target).expanduser())
        with self.folder.write_lock():
            doc_ids = store.document_ids_of_source(source)
            if not doc_ids and store.source(source) is None:
                raise DocumentNotFoundError(
                    f"no document or source '{target}' in {self.folder.path}; "
                    f"list them with: ragline info {self.folder.path} --documents")
            with store.transaction():
                removed = store.delete_source(source)
            self._after_removal(removed)
        return doc_ids

    def remove_documents(self, doc_ids: Sequence[str]) -> list[str]:
        """Remove documents by id (never a path: what the HTTP API calls). Their files count
        as changed from then on, so indexing one again brings its documents back."""
        store = self.folder.store
        with self.folder.write_lock():
            missing = [d for d in doc_ids if not store.has_document(d)]
            if missing:
                raise DocumentNotFoundError(f"no document '{missing[0]}' in {self.folder.path}")
            with store.transaction():
                store.forget_sources_of(doc_ids)
                removed = store.delete_documents(doc_ids)
            self._after_removal(removed)
        return list(doc_ids)

    def _after_removal(self, removed: list[int]) -> None:
        self.folder.apply_dense(removed)
        self.folder.rebuild_sparse()
        self.folder.persist()

    # ------------------------------------------------------------ reads

    def search(self, query: str, k: int | None = None, mode: str | None = None,
               rerank: bool = True) -> list[Hit]:
        """Top-k passages; a reranker set in the config reorders them unless `rerank=False`."""
        r = self.config.retrieval
        return self.retriever.search(query, k=r.k if k is None else k,
                                     mode=r.mode if mode is None else mode, rerank=rerank)

    def search_many(self, queries: Sequence[str], k: int | None = None, mode: str | None = None,
                    rerank: bool = True, progress: bool = False) -> list[list[Hit]]:
        """`search` for many queries, their vectors encoded in one batch."""
        r = self.config.retrieval
        return self.retriever.search_many(queries, k=r.k if k is None else k,
                                          mode=r.mode if mode is None else mode, rerank=rerank,
                                          progress=progress)

    def reindex(self, dense: DenseSpec | None = None, progress: bool = False) -> None:
        """Rebuild the search indexes from the store, the dense one as `dense` if given (e.g.
        to switch a grown corpus to HNSW or IVF-PQ, or to retrain IVF-PQ on all of it)."""
        with self.folder.write_lock():
            self.folder.rebuild_dense(dense)
            self.folder.rebuild_sparse(progress)
            self.folder.persist()

    def info(self) -> dict[str, Any]:
        m = self.folder.manifest
        return {"path": str(self.folder.path), **{k: m[k] for k in (
            "format", "ragline_version", "encoder", "chunking", "dense", "sparse", "counts",
            "generation", "created", "updated")},
                "dense_index": self.folder.dense.describe() if self.folder.dense else ""}

    def documents(self, source: str | None = None) -> list[DocumentInfo]:
        """The indexed documents, or those of one source file (its resolved path)."""
        return self.folder.store.documents(source)

    def ask(self, question: str, k: int | None = None, mode: str | None = None,
            model: str | None = None, beams: int | None = None) -> Answer:
        """Answer with citations. model: concat (all passages in one prompt, llama.cpp; the
        default), rag-token or rag-sequence (the torch RAG model, see `rag_model`)."""
        answer = None
        for piece in self.ask_stream(question, k=k, mode=mode, model=model, beams=beams):
            if isinstance(piece, Answer):
                answer = piece
        assert answer is not None
        return answer

    def ask_stream(self, question: str, k: int | None = None, mode: str | None = None,
                   model: str | None = None, beams: int | None = None,
                   hits: Sequence[Hit] | None = None, max_tokens: int | None = None,
                   temperature: float | None = None) -> Iterator[str | Answer]:
        """Yield answer text as it is generated (citation markers included), then the Answer.
        Bad arguments (k ≤ 0, an unknown mode or model) fail before any generation. The RAG
        models decode with beam search and yield their text once, at the end.

        `hits`: passages already retrieved for the question (the server retrieves before it
        queues the generation). `max_tokens` and `temperature` override the config for the
        concat model; the RAG models decode by beam search with their own `max_new_tokens`."""
        g = self.config.generation
        model = self.check_ask(question, k, model, beams, max_tokens, temperature,
                               len(hits) if hits is not None else None)
        max_tokens = g.max_tokens if max_tokens is None else max_tokens
        temperature = g.temperature if temperature is None else temperature
        t0 = time.perf_counter()
        timings = {}
        if hits is None:
            hits = self.search(question, k=k, mode=mode)
            timings["retrieve_s"] = time.perf_counter() - t0
        hits = list(hits)
        best = max((h.dense_score for h in hits if h.dense_score is not None), default=None)
        if not hits or (g.min_relevance is not None and best is not None
                        and best < g.min_relevance and self._gate_applies()):
            text = not_found_message(question)
            yield text
            yield Answer(question, text, (), tuple(hits), answered=False,
                         timings={**timings, "total_s": time.perf_counter() - t0}, model=model)
            return

        if model != "concat":
            answer = self._ask_rag_model(question, hits, model, beams, timings, t0)
            yield answer.text
            yield answer
            return
        gen = self.generator
        gen.load()
        prompt = rag_prompt(question, hits, gen.count_tokens,
                            budget=max(256, g.n_ctx - max_tokens - 16))
        stream = CitationStream(hits, min_support=g.min_support)
        parts: list[str] = []
        first: float | None = None
        for piece in gen.stream(prompt, max_tokens=max_tokens, stop=STOP,
                                temperature=temperature):
            if first is None:
                first = time.perf_counter() - t0
            out = stream.feed(piece if parts else piece.lstrip())
            if out:
                parts.append(out)
                yield out
        tail = stream.finish()
        if tail:
            parts.append(tail)
            yield tail
        text = "".join(parts).strip()
        timings.update(first_token_s=first or 0.0, total_s=time.perf_counter() - t0)
        if not self._backed(text, hits):
            yield Answer(question, not_found_message(question), (), tuple(hits),
                         answered=False, timings=timings)
            return
        cites = tuple(stream.citations[n] for n in sorted(stream.citations))
        yield Answer(question, text, cites, tuple(hits), answered=True, timings=timings)

    def check_ask(self, question: str, k: int | None = None, model: str | None = None,
                  beams: int | None = None, max_tokens: int | None = None,
                  temperature: float | None = None, n_hits: int | None = None) -> str:
        """Check an ask request before any work is done; returns the model it uses."""
        model = check_model(self.config.model.kind if model is None else model)
        if beams is not None and beams < 1:
            raise ConfigError(f"beams must be ≥ 1, got {beams}")
        check_query(question, "question")
        check_sampling(max_tokens, temperature, self.config.generation.n_ctx)
        if k is not None:
            check_k(k)
        if model != "concat":
            _check_rag_k(n_hits if n_hits is not None else k)
        return model

    def _ask_rag_model(self, question: str, hits: list[Hit], model: str, beams: int | None,
                       timings: dict[str, float], t0: float) -> Answer:
        m = self.config.model
        gen = self.rag_model.generate(question, hits, model, beams=beams or m.beams,
                                      thorough=m.thorough)
        timings = {**timings, "total_s": time.perf_counter() - t0}
        text = gen.text
        if not self._backed(text, hits):
            return Answer(question, not_found_message(question), (), tuple(hits),
                          answered=False, timings=timings, model=model)
        # cite the passages that explain the answer: p(z|x,y) ≥ 0.2, the best one always
        order = sorted(range(len(hits)), key=lambda i: -gen.posterior[i])
        chosen = [i for i in order if gen.posterior[i] >= 0.2][:3] or order[:1]
        claim = tokenize(text)
        cites = []
        for i in sorted(chosen):
            span, _ = best_span(claim, hits[i].passage.text)
            cites.append(Citation(i + 1, hits[i].passage, hits[i].score, gen.posterior[i], span))
        text = text + " " + "".join(f"[{c.marker}]" for c in cites)
        return Answer(question, text, tuple(cites), tuple(hits), answered=True, timings=timings,
                      model=model)

    def _backed(self, text: str, hits: list[Hit]) -> bool:
        """Refusals and answers the passages do not back are reported as "not found"."""
        return bool(text) and not is_refusal(text) and (
            support(text, hits) >= self.config.generation.min_support)

    def score(self, question: str, answer: str, k: int | None = None,
              mode: str | None = None, models: Sequence[str] = MODELS) -> dict[str, float]:
        """log p(y|x) of a given answer under each model, over the same retrieved passages."""
        for name in models:
            check_model(name)
        if any(name != "concat" for name in models):
            _check_rag_k(k)
        hits = self.search(question, k=k, mode=mode)
        if not hits:
            raise ConfigError("nothing was retrieved for the question")
        return {name: self.rag_model.score(question, hits, answer, name) for name in models}

    def train(self, examples: list[QAExample], cfg: TrainConfig | None = None,
              progress: bool = True, restart: bool = False) -> TrainResult:
        """Fine-tune the question encoder and the generator end to end (see ragline.model.train);
        resumes from the index's last checkpoint unless `restart`."""
        from ragline.model.lm import CausalLM
        from ragline.model.qencoder import QuestionEncoder
        from ragline.model.train import TrainConfig, Trainer, run_training

        cfg = cfg or TrainConfig()
        trained = self.folder.manifest.get("trained") or {}
        m = self.config.model
        resume = bool(trained) and not restart
        if resume:  # the generator the manifest records
            lm = self.rag_model.lm
        elif self._given_rag_model is not None:
            lm = self._given_rag_model.lm
        else:  # never a trained generator loaded earlier by `ask`: restart means the base model
            lm = CausalLM.bundled(m.device)
        qenc = None
        if cfg.train_question_encoder:
            query_side = self.retriever.query_encoder if resume else self.encoder
            qenc = QuestionEncoder.from_encoder(query_side)
        trainer = Trainer(self, lm, qenc, cfg, max_passage_tokens=m.max_passage_tokens,
                          max_new_tokens=m.max_new_tokens)
        if resume:
            checkpoint = self.folder.path / trained["path"]
            if (checkpoint / "optimizer.safetensors").is_file():
                trainer.load_optimizer(checkpoint)
        with self.folder.write_lock():
            result = run_training(trainer, examples, progress=progress)
        # use what was trained from now on
        self.retriever.query_encoder = self._trained_question_encoder() or self.encoder
        lm.model.eval()
        self._rag_model = trainer.model
        return result

    def _gate_applies(self) -> bool:
        # the relevance threshold is calibrated for the bundled MiniLM; other encoders' score
        # scales differ, so they are never gated by it
        return self.folder.encoder_spec.id.endswith("all-MiniLM-L6-v2")
