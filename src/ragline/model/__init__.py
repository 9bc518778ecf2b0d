"""The RAG model (Lewis et al. 2020): marginalization over retrieved passages, decoding, and
end-to-end training. Importing this package loads torch; `import ragline` does not.

    from ragline.model import RagModel, CausalLM
    rm = RagModel(CausalLM.bundled())
"""

from ragline.model.decode import Candidate, rag_sequence_search, rag_token_search
from ragline.model.lm import CausalLM, HFTokenizer
from ragline.model.marginal import doc_log_prior, doc_posterior, sequence_logprob, token_logprob, token_next
from ragline.model.rag_model import Generation, RagModel
from ragline.model.train import TrainConfig, Trainer, TrainResult

__all__ = ["Candidate", "CausalLM", "Generation", "HFTokenizer", "RagModel",
           "TrainConfig", "TrainResult", "Trainer", "doc_log_prior", "doc_posterior",
           "rag_sequence_search", "rag_token_search", "sequence_logprob", "token_logprob",
           "token_next"]
