"""RAG-Token and RAG-Sequence as Generators (ragline.generate.base): the torch RAG model reads
each passage on its own and marginalizes over them (Lewis et al. 2020).

    torch_rag = TorchRag(index, ModelConfig())          # loads nothing yet
    gen = RagModelGenerator("rag-token", config, torch_rag)
    *pieces, generation = gen.generate(question, hits, GenerateOptions(beams=4))
    generation.posterior                                 # p(z|x,y) per hit
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ragline.config import Config, ModelConfig
from ragline.generate.base import GenerateOptions, Generation
from ragline.index.index import Index
from ragline.model.rag_model import RagModel
from ragline.types import Hit

# one torch model on a few cores: its generations run one at a time, in any thread
_ONE_AT_A_TIME = threading.Lock()


class TorchRag:
    """The torch RAG model an index uses: the generator `ragline train` left in it (the manifest
    names it), else the configured causal-LM folder (model.generator), else the bundled Gemma
    3 270M. Loaded on first use; shared by RAG-Token, RAG-Sequence, scoring and training."""

    def __init__(self, index: Index, config: ModelConfig | None = None,
                 model: RagModel | None = None) -> None:
        self.index = index
        self.config = config or ModelConfig()
        self.given = model  # what a restarted training starts from, if the caller gave one
        self._model = model

    def __call__(self) -> RagModel:
        if self._model is None:
            from ragline.model.lm import CausalLM

            m = self.config
            trained = self.index.manifest.trained
            if trained and trained.generator:
                lm = CausalLM.from_folder(self.index.path / trained.generator.path, m.device)
            elif m.generator:
                lm = CausalLM.from_folder(Path(m.generator).expanduser(), m.device)
            else:
                lm = CausalLM.bundled(device=m.device)
            self._model = RagModel(lm, max_passage_tokens=m.max_passage_tokens,
                                   max_new_tokens=m.max_new_tokens)
        return self._model

    def use(self, model: RagModel) -> None:
        """Answer with `model` from now on (the one training just left)."""
        self._model = model


class RagModelGenerator:
    """The whole answer at once (beam search), then its posterior over the passages."""

    streams = False

    def __init__(self, kind: str, config: Config, rag_model: Callable[[], RagModel]) -> None:
        self.id = kind
        self.kind = kind
        self.thorough = config.model.thorough
        self.rag_model = rag_model

    def load(self) -> None:
        self.rag_model()

    def generate(self, question: str, hits: Sequence[Hit],
                 options: GenerateOptions) -> Iterator[str | Generation]:
        with _ONE_AT_A_TIME:
            gen = self.rag_model().generate(question, hits, self.kind, beams=options.beams,
                                            thorough=self.thorough)
        yield gen.text
        yield Generation(gen.text, gen.posterior)


def rag_token_generator(config: Config, rag_model: Callable[[], RagModel]) -> RagModelGenerator:
    return RagModelGenerator("rag-token", config, rag_model)


def rag_sequence_generator(config: Config,
                           rag_model: Callable[[], RagModel]) -> RagModelGenerator:
    return RagModelGenerator("rag-sequence", config, rag_model)
