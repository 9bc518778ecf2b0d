"""RAG-Token and RAG-Sequence as Generators (ragline.generate.base): the torch RAG model reads
each passage on its own and marginalizes over them (Lewis et al. 2020).

    rag_slot = RagModelSlot(index, ModelConfig())          # loads nothing yet
    gen = RagModelGenerator("rag-token", config, rag_slot)
    *pieces, generation = gen.generate(question, hits, GenerateOptions(beams=4))
    generation.posterior                                 # p(z|x,y) per hit
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from ragline.config import Config, ModelConfig
from ragline.devices import pick_device
from ragline.errors import ConfigError, IndexCorruptError, ModelUnavailableError
from ragline.generate.base import GenerateOptions, Generation
from ragline.generate.packaged import resolve_gguf
from ragline.generate.tasks import ANSWER, Task
from ragline.index.index import Index
from ragline.model.adapters import (
    ADAPTER_FILE,
    ADAPTER_GGUF,
    adapter_gguf,
    load_adapter,
    packaged_adapter,
)
from ragline.model.llama_lm import LlamaLM
from ragline.model.lm import DEFAULT_RAG_LM, CausalLM, LanguageModel
from ragline.model.rag_model import RagModel
from ragline.registry import LLMS
from ragline.types import Hit

# one torch model on a few cores: its generations run one at a time, in any thread
_ONE_AT_A_TIME = threading.Lock()


def trained_generator(index: Index, device: str | None = None,
                      trainable: bool = False) -> CausalLM:
    """The generator `ragline train` left in the index: a full model folder, or a LoRA adapter
    over the base model the manifest names (merged for answering unless `trainable`)."""
    trained = index.manifest.trained
    assert trained is not None and trained.generator is not None
    path = index.path / trained.generator.path
    if not path.is_dir():
        raise IndexCorruptError(f"{path}: the trained generator named in the manifest is "
                                "missing; retrain with --restart")
    if not trained.adapter:
        return CausalLM.from_folder(path, device)
    lm = CausalLM.load(trained.generator.base, device)
    load_adapter(lm, path, trainable=trainable)
    return lm


class RagModelSlot:
    """The RAG model an index answers with: the generator `ragline train` left in it (the
    manifest names it), else the configured one (model.generator), else DEFAULT_RAG_LM; on
    llama.cpp or in torch (`runtime`). Loaded on first use; shared by RAG-Token, RAG-Sequence
    and scoring."""

    def __init__(self, index: Index, config: ModelConfig | None = None,
                 model: RagModel | None = None, prior_scale: float | None = None) -> None:
        self.index = index
        self.config = config or ModelConfig()
        self.prior_scale = index.prior_scale(prior_scale)
        self.given = model  # what a restarted training starts from, if the caller gave one
        self._model = model
        self._bare: RagModelSlot | None = None

    def adapter(self) -> Path | None:
        """The LoRA adapter folder the (untrained) generator answers with, as model.adapter
        says; None for the bare generator, and for an index with a trained generator of its own."""
        spec = self.config.adapter
        trained = self.index.manifest.trained
        if spec == "none" or (trained is not None and trained.generator is not None):
            return None
        if spec == "auto":
            return packaged_adapter(self.config.generator or DEFAULT_RAG_LM)
        folder = Path(spec).expanduser()
        if not (folder / ADAPTER_FILE).is_file():
            raise ModelUnavailableError(f"model.adapter {spec}: not a LoRA adapter folder "
                                        f"({ADAPTER_FILE} missing)")
        return folder

    def runtime(self) -> str:
        """llama-cpp or torch, as model.runtime says or (auto) the generator allows."""
        m = self.config
        trained = self.index.manifest.trained
        why = None  # why llama.cpp cannot run this generator
        base = m.generator or DEFAULT_RAG_LM
        if trained is not None and trained.generator is not None:
            base = trained.generator.base
            if not trained.adapter:
                why = "it was fully fine-tuned (llama.cpp reads LoRA adapters only)"
            elif not (self.index.path / trained.generator.path / ADAPTER_GGUF).is_file():
                why = f"its adapter has no {ADAPTER_GGUF}"
        if why is None and LLMS.find(base) is None and not base.lower().endswith(".gguf"):
            why = "its generator is a transformers folder, not a GGUF model"
        if m.runtime == "llama-cpp" and why:
            raise ConfigError(f"model.runtime llama-cpp cannot run this index's generator: "
                              f"{why}; use model.runtime = \"torch\"")
        if m.runtime != "auto":
            return m.runtime
        if why or pick_device(m.device) == "cuda" or importlib.util.find_spec("llama_cpp") is None:
            return "torch"
        return "llama-cpp"

    def __call__(self) -> RagModel:
        if self._model is None:
            m = self.config
            trained = self.index.manifest.trained
            lm: LanguageModel
            folder: Path | None
            if self.runtime() == "llama-cpp":
                # a base GGUF and an adapter folder: the one training left (runtime() checked
                # it holds its GGUF), else model.adapter's
                if trained is not None and trained.generator is not None:
                    base, folder = trained.generator.base, self.index.path / trained.generator.path
                else:
                    base, folder = m.generator or DEFAULT_RAG_LM, self.adapter()
                lm = LlamaLM(base, folder and adapter_gguf(folder, resolve_gguf(base)[0])).load()
            elif trained and trained.generator:
                lm = trained_generator(self.index, m.device)
            else:
                lm = CausalLM.load(m.generator, m.device)
                if (folder := self.adapter()) is not None:
                    load_adapter(lm, folder)
            self._model = RagModel(lm, max_passage_tokens=m.max_passage_tokens,
                                   max_new_tokens=m.max_new_tokens, prior_scale=self.prior_scale,
                                   min_prior=m.min_prior, passage_budget=m.passage_tokens)
        return self._model

    def for_task(self, task: Task) -> RagModel:
        """The model a task runs on. Answers get the adapter; a text or a question gets the
        bare generator when the adapter is ragline's packaged one, which was fine-tuned to
        answer in a few words (on it, RAG-Token cut generated questions to "What"). A model
        the caller gave, or one `ragline train` left, serves every task."""
        trained = self.index.manifest.trained
        if (task is ANSWER or self.given is not None or (trained and trained.generator)
                or self.config.adapter != "auto" or self.adapter() is None):
            return self()
        if self._bare is None:
            self._bare = RagModelSlot(self.index, replace(self.config, adapter="none"),
                                      prior_scale=self.prior_scale)
        return self._bare()

    def use(self, model: RagModel) -> None:
        """Answer with `model` from now on (the one training just left)."""
        self._model = model


class RagModelGenerator:
    """The whole answer at once (beam search), then its posterior over the passages."""

    streams = False

    def __init__(self, kind: str, config: Config, rag_model: Callable[..., RagModel]) -> None:
        """`rag_model()`: the model answers run on; `rag_model(task)`: the one another task
        runs on (RAG.load_rag_model, RagModelSlot.for_task)."""
        self.id = kind
        self.kind = kind
        self.thorough = config.model.thorough
        self.rag_model = rag_model

    def load(self) -> None:
        self.rag_model()

    def generate(self, question: str, hits: Sequence[Hit],
                 options: GenerateOptions) -> Iterator[str | Generation]:
        with _ONE_AT_A_TIME:
            # a task with a length of its own (a text, a question) takes the request's; answers
            # keep [model] max_new_tokens
            model = self.rag_model() if options.task is ANSWER else self.rag_model(options.task)
            gen = model.generate(
                question, hits, self.kind, beams=options.beams, thorough=self.thorough,
                task=options.task, max_new_tokens=options.max_tokens if options.task.max_tokens
                else None)
        yield gen.text
        yield Generation(gen.text, gen.posterior)


def rag_token_generator(config: Config, rag_model: Callable[..., RagModel]) -> RagModelGenerator:
    return RagModelGenerator("rag-token", config, rag_model)


def rag_sequence_generator(config: Config,
                           rag_model: Callable[..., RagModel]) -> RagModelGenerator:
    return RagModelGenerator("rag-sequence", config, rag_model)
