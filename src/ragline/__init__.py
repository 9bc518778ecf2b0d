"""ragline — Retrieval-Augmented Generation: index your files, ask, get cited answers. Offline.

    from ragline import RAG
    rag = RAG.build("my-index", paths=["docs/"])
    print(rag.ask("What is the capital of France?").text)
"""

__version__ = "0.1.0"

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
from ragline.rag import RAG  # noqa: E402
from ragline.types import Answer, Citation, Document, DocumentInfo, Hit, Passage  # noqa: E402

__all__ = [
    "RAG", "Answer", "Citation", "Config", "ConfigError", "Document", "DocumentNotFoundError",
    "EmptyIndexError", "Hit", "IndexMismatchError", "IndexNotFoundError",
    "ModelUnavailableError", "Passage", "DocumentInfo", "RaglineError", "UnreadableFileError",
    "UnsupportedFileError", "__version__", "load_config",
]
