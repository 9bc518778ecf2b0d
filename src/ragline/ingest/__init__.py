"""Ingestion: files → Documents (loaders) → Passages (chunking)."""

from ragline.ingest.chunk import chunk_document, chunk_spans
from ragline.ingest.loaders import load_file, supported_suffixes

__all__ = ["chunk_document", "chunk_spans", "load_file", "supported_suffixes"]
