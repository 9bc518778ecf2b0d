"""The RAG model (Lewis et al. 2020): marginalization over retrieved passages, decoding on
torch or llama.cpp, and end-to-end training. Importing this package loads torch; `import
ragline` does not.

    from ragline.model import RagModel, LlamaLM, CausalLM
    rm = RagModel(LlamaLM("qwen2.5-0.5b").load())      # answers; CausalLM.load(...) trains
"""

from ragline.model.decode import Candidate, rag_sequence_search, rag_token_search
from ragline.model.llama_lm import LlamaLM
from ragline.model.lm import CausalLM, HFTokenizer, LanguageModel
from ragline.model.marginal import (
    calibrate_scale,
    doc_log_prior,
    doc_posterior,
    sequence_logprob,
    token_logprob,
    token_next,
)
from ragline.model.rag_model import DocPrior, Generation, RagModel
from ragline.model.train import TrainConfig, Trainer, TrainResult

__all__ = ["Candidate", "CausalLM", "DocPrior", "Generation", "HFTokenizer", "LanguageModel",
           "LlamaLM", "RagModel", "TrainConfig", "TrainResult", "Trainer", "calibrate_scale",
           "doc_log_prior", "doc_posterior", "rag_sequence_search", "rag_token_search",
           "sequence_logprob", "token_logprob", "token_next"]
