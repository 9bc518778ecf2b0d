"""Typed settings; one TOML file feeds the library, the CLI and the server.

    # ragline.toml
    [retrieval]
    k = 5
    mode = "weighted"
    [generation]
    backend = "openai"
    base_url = "http://127.0.0.1:8080/v1"
    model = "qwen2.5-7b-instruct"

    cfg = load_config(Path("ragline.toml"))
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ragline.errors import ConfigError
from ragline.registry import BACKENDS, DENSE_KINDS, MODELS, RETRIEVERS


def _positive(section: str, obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{section}.{name} must be an integer ≥ 1, got {value!r}")


@dataclass(frozen=True)
class IndexConfig:
    encoder: str = "minilm"             # for new indexes: a name of ENCODERS | a folder
    # what a new index gets instead of the default encoder when the files it is created from
    # are mostly Chinese (MiniLM is English-only; "": never switch)
    encoder_zh: str = "use-multilingual"
    chunk_words: int = 100             # words per passage (CJK characters count as words)
    batch_passages: int = 1024      # passages embedded together (sorted by length: less padding)
    # flat | hnsw | ivfpq (see index.dense); None: chosen by corpus size (flat, then IVF-PQ
    # from 200,000 passages). An existing index keeps its kind: naming another one is an
    # error (`ragline reindex` switches).
    dense: str | None = None
    # text put before queries / passages by encoders trained with them (E5: "query: ",
    # "passage: "); empty takes what the model's own config names. Kept in the manifest.
    query_prefix: str = ""
    passage_prefix: str = ""           # (see query_prefix)

    def __post_init__(self) -> None:
        _positive("index", self, "chunk_words", "batch_passages")
        if self.dense is not None:
            DENSE_KINDS.check(self.dense)


# p(z|x) over cosine scores needs an inverse temperature: at 1 the softmax over d(z)·q(x) ∈ [-1, 1]
# is nearly uniform. 20 is the scale sentence-transformers' in-batch softmax loss trains its
# bi-encoders with (all-MiniLM-L6-v2 among them), so softmax(20 · cos) is the distribution the
# encoder learned to produce. `ragline train` calibrates and learns its own.
DEFAULT_PRIOR_SCALE = 20.0

RAG_RUNTIMES = ("auto", "llama-cpp", "torch")
PRECISIONS = ("auto", "fp32", "bf16")       # of training


@dataclass(frozen=True)
class RetrievalConfig:
    k: int = 5                          # passages retrieved and given to the answer model
    mode: str = "weighted"              # dense | bm25 | hybrid | weighted (ragline.registry.RETRIEVERS)
    rrf_k: int = 60                     # hybrid: reciprocal rank fusion's constant
    candidates: int = 100               # dense and BM25 candidates the fusion modes combine
    dense_weight: float = 0.5           # weighted: the dense score's share of the fused score
    rerank: str | None = None           # query-likelihood | cross-encoder:PATH (None: off)
    rerank_depth: int = 20              # first-stage passages the reranker reorders
    # the inverse temperature of p(z|x) = softmax(scale · d(z)·q(x)) over the top k (None: the
    # one `ragline train` learned for the index, else DEFAULT_PRIOR_SCALE)
    prior_scale: float | None = None

    def __post_init__(self) -> None:
        _positive("retrieval", self, "k", "rrf_k", "candidates", "rerank_depth")
        if self.prior_scale is not None and not 0 < self.prior_scale <= 1000:
            raise ConfigError(f"retrieval.prior_scale must be in (0, 1000], got {self.prior_scale}")
        RETRIEVERS.check(self.mode)
        if not 0.0 <= self.dense_weight <= 1.0:
            raise ConfigError(f"dense_weight must be in [0, 1], got {self.dense_weight}")


@dataclass(frozen=True)
class GenerationConfig:
    backend: str = "llama-cpp"          # or "openai" (any OpenAI-compatible server)
    # llama-cpp: a name of ragline.registry.LLMS or a GGUF path (None: the first name);
    # openai: the server's model name
    model: str | None = None
    # the passages' share of the prompt, in tokens (None: what the context allows). The time
    # to the first token grows with the prompt (Qwen 0.5B reads ≈100 tokens/s on 2 cores):
    # 200 keeps it under 3 s. Passages over it keep the sentences that share most with the
    # question.
    passage_tokens: int | None = 200
    chat: bool | None = None            # use the model's chat template (None: instruct models)
    base_url: str | None = None         # openai: the server, e.g. http://127.0.0.1:8080/v1
    api_key_env: str = "OPENAI_API_KEY"  # openai: the variable that holds its key
    max_tokens: int = 128               # the longest answer, in tokens
    temperature: float = 0.0            # 0: greedy (the same answer every time)
    n_ctx: int = 4096                   # the local model's context, in tokens
    threads: int | None = None          # the local model's CPU threads (None: up to 8)
    # Skip generation when no passage's d(z)·q(x) reaches this (None: always generate).
    # For all-MiniLM-L6-v2, 0.25 let through 99.7% of SQuAD questions over their own
    # paragraphs and stopped 84% of them over unrelated documents (docs/measured/answers.md).
    min_relevance: float | None = 0.25
    min_support: float = 0.5            # share of answer words the passages must contain
    # the per-passage reader answers when its calibrated confidence that the passage states
    # the answer reaches this (ragline.generate.reader.MIN_CONFIDENCE says how it was chosen;
    # `ragline eval faithfulness` prints the trade-off over thresholds). 0: answer from the
    # first passage that gives an answer.
    min_confidence: float = 0.05
    reads: int = 3                      # the per-passage reader reads at most this many

    def __post_init__(self) -> None:
        BACKENDS.check(self.backend)
        _positive("generation", self, "n_ctx", "reads")
        if self.passage_tokens is not None:
            _positive("generation", self, "passage_tokens")
        for name in ("min_support", "min_confidence"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"generation.{name} must be in [0, 1], got {getattr(self, name)}")
        check_sampling(self.max_tokens, self.temperature, self.n_ctx)


def check_sampling(max_tokens: int | None, temperature: float | None,
                   n_ctx: int | None = None) -> None:
    """Per-request overrides of [generation] max_tokens and temperature. With `n_ctx`, the
    answer must leave at least half of the context window to the prompt."""
    if max_tokens is not None and max_tokens < 1:
        raise ConfigError(f"max_tokens must be ≥ 1, got {max_tokens}")
    if max_tokens is not None and n_ctx is not None and max_tokens > n_ctx // 2:
        raise ConfigError(f"max_tokens must be ≤ {n_ctx // 2} (half of the model's context of "
                          f"{n_ctx} tokens), got {max_tokens}")
    if temperature is not None and not 0.0 <= temperature <= 2.0:
        raise ConfigError(f"temperature must be in [0, 2], got {temperature}")


@dataclass(frozen=True)
class ModelConfig:
    """The RAG model (torch generator): how `ask --model rag-token|rag-sequence` decodes."""

    kind: str = "per-passage"           # per-passage | concat | rag-token | rag-sequence (MODELS)
    # the RAG models' generator: a name of registry.LLMS or any transformers causal-LM folder
    # (None: qwen2.5-0.5b, the concat default). An index that `ragline train` left a generator
    # in uses that one.
    generator: str | None = None
    # where RAG-Token and RAG-Sequence decode: llama-cpp (the packaged GGUF, with a trained LoRA
    # adapter converted to GGUF), torch, or auto (torch on a GPU or for a folder or fully
    # fine-tuned generator, llama-cpp otherwise). Training always runs in torch.
    runtime: str = "auto"
    # a LoRA adapter on the generator: auto (the adapter ragline ships for its default
    # generator, when there is one), none (the bare generator), or a peft adapter folder.
    # An index that `ragline train` left a generator in answers with that one instead.
    adapter: str = "auto"
    beams: int = 1                      # greedy: each beam costs k more rows a token
    thorough: bool = True               # RAG-Sequence decoding: thorough or fast
    # generation reads only the passages with p(z|x) ≥ this: one below it changes p(y|x) by
    # less than that much, and skipping it saves its share of the prompt (0: read all k)
    min_prior: float = 1e-3
    max_passage_tokens: int = 192       # a passage's tokens at most, each read separately
    # the passages a RAG answer reads share this many tokens in proportion to p(z|x), at least
    # 24 each (None: each gets max_passage_tokens). Reading is most of an answer's time on CPU,
    # so RAG reads about what concat reads (generation.passage_tokens, 200): split equally, 400
    # cost RAG-Token 2.1× concat's time (docs/measured/rag-model.md).
    passage_tokens: int | None = 240
    max_new_tokens: int = 32            # the longest RAG-Token / RAG-Sequence answer
    device: str | None = None           # None: cuda when present, else cpu

    def __post_init__(self) -> None:
        MODELS.check(self.kind)
        _positive("model", self, "beams", "max_passage_tokens", "max_new_tokens")
        if self.passage_tokens is not None and self.passage_tokens < 1:
            raise ConfigError(f"model.passage_tokens must be ≥ 1, got {self.passage_tokens}")
        if not 0.0 <= self.min_prior < 1.0:
            raise ConfigError(f"model.min_prior must be in [0, 1), got {self.min_prior}")
        if not self.adapter.strip():
            raise ConfigError('model.adapter must be "auto", "none" or an adapter folder')
        if self.runtime not in RAG_RUNTIMES:
            raise ConfigError(f"model.runtime must be one of {', '.join(RAG_RUNTIMES)}, "
                              f"got {self.runtime!r}")


@dataclass(frozen=True)
class ServerConfig:
    """`ragline serve`: where it listens and how much it takes on (see ragline.server)."""

    host: str = "127.0.0.1"             # loopback unless told otherwise
    port: int = 8000                    # `ragline serve --port`
    api_key_env: str = "RAGLINE_API_KEY"  # when this variable is set, every route needs the key
    max_upload_mb: float = 32.0         # the largest file POST /v1/documents takes
    queue_size: int = 32                # generations waiting beyond the running ones; then 503
    workers: int = 1                    # generations at once (1 for a local model)
    queue_timeout_s: float = 120.0      # longest wait in the queue before a 503
    timeout_s: float = 120.0            # longest generation before a 504
    read_only: bool = False             # no uploads or deletions, no MCP add or remove
    # the folders MCP's add_documents may read files from (none: it takes text only)
    allow_paths: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.read_only, bool):
            raise ConfigError(f"server.read_only must be true or false, got {self.read_only!r}")
        if isinstance(self.allow_paths, str) or not all(
                isinstance(p, str) and p for p in self.allow_paths):
            raise ConfigError("server.allow_paths must be a list of folders, e.g. "
                              "[\"~/notes\"]")
        object.__setattr__(self, "allow_paths", tuple(self.allow_paths))
        for name in ("max_upload_mb", "queue_timeout_s", "timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"server.{name} must be > 0, got {getattr(self, name)}")
        if self.queue_size < 0:
            raise ConfigError(f"server.queue_size must be ≥ 0, got {self.queue_size}")
        if self.workers < 1:
            raise ConfigError(f"server.workers must be ≥ 1, got {self.workers}")
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"server.port must be in 1..65535, got {self.port}")


@dataclass(frozen=True)
class ScaleConfig:
    """Ray (extra `ragline[ray]`, see ragline.scale): where, and how much of it."""

    # None: everything in this process; "local": a Ray instance on this machine; "auto": the
    # cluster this machine belongs to; or a cluster address (host:port, ray://host:port)
    ray: str | None = None
    workers: int = 2                    # embedding actors (`index --ray`) / training workers
    partial: bool = False               # a shard that stays down is left out, not an error

    def __post_init__(self) -> None:
        _positive("scale", self, "workers")
        if self.ray is not None and not self.ray.strip():
            raise ConfigError('scale.ray must be "local", "auto" or a cluster address')


@dataclass(frozen=True)
class Config:
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    scale: ScaleConfig = field(default_factory=ScaleConfig)


def _section(cls: type, data: Any, name: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"[{name}] must be a table")
    known = {f.name for f in fields(cls)}
    if name == "generation" and "min_grounding" in data:
        raise ConfigError("generation.min_grounding (a count of the question's words) is gone: "
                          "the answer model judges its answers now; set "
                          "generation.min_confidence instead (see ragline eval faithfulness)")
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{name}]: {', '.join(sorted(unknown))}; "
                          f"known: {', '.join(sorted(known))}")
    try:
        return cls(**data)
    except TypeError as e:  # e.g. port = "eighty": a comparison in __post_init__ fails
        raise ConfigError(f"[{name}]: a setting has the wrong type ({e})") from None


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML ({e})") from None
    unknown = set(data) - {"index", "retrieval", "generation", "model", "server", "scale"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(sorted(unknown))}")
    return Config(
        index=_section(IndexConfig, data.get("index", {}), "index"),
        retrieval=_section(RetrievalConfig, data.get("retrieval", {}), "retrieval"),
        generation=_section(GenerationConfig, data.get("generation", {}), "generation"),
        model=_section(ModelConfig, data.get("model", {}), "model"),
        server=_section(ServerConfig, data.get("server", {}), "server"),
        scale=_section(ScaleConfig, data.get("scale", {}), "scale"),
    )


def override(cfg: Any, **changes: Any) -> Any:
    """A copy of a settings slice with the given non-None values replaced."""
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})
