"""ragline — Retrieval-Augmented Generation: index your files, ask, get cited answers. Offline.

    from ragline import RAG
    rag = RAG.build("my-index", paths=["docs/"])
    print(rag.ask("What is the capital of France?").text)
    print(rag.write("Explain how the tower was built.").text)      # every sentence cited
"""

__version__ = "0.1.0"

from ragline.answer import Answerer, Prepared  # noqa: E402
from ragline.config import Config, load_config  # noqa: E402
from ragline.errors import (  # noqa: E402
                            ConfigError,
                            DocumentNotFoundError,
                            EmptyIndexError,
                            IndexMismatchError,
                            IndexNotFoundError,
                            ModelUnavailableError,
                            RaglineError,
                            UnreadableFileError,
                            UnsupportedFileError,
)
from ragline.index.index import Index  # noqa: E402
from ragline.rag import RAG  # noqa: E402
from ragline.retrieve.searcher import Searcher  # noqa: E402
from ragline.tm import Match, Translation, TranslationMemory, Translator  # noqa: E402
from ragline.types import Answer, Citation, Document, DocumentInfo, Hit, Passage, Turn  # noqa: E402

__all__ = [
    "RAG", "Answer", "Answerer", "Citation", "Config", "ConfigError", "Document",
    "DocumentInfo", "DocumentNotFoundError", "EmptyIndexError", "Hit", "Index",
    "IndexMismatchError", "IndexNotFoundError", "Match", "ModelUnavailableError", "Passage",
    "Prepared", "RaglineError", "Searcher", "Translation", "TranslationMemory", "Translator",
    "Turn", "UnreadableFileError", "UnsupportedFileError", "__version__", "load_config",
]
