from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/docgen.py

from ragline import RAG  # noqa: E402
from ragline.config import Config, ModelConfig  # noqa: E402
from ragline.testing import ScriptedGenerator  # noqa: E402,F401  (tests import it from here)

# the settings of tests about concat's prompt, its markers and its streaming (the default
# model reads one passage at a time and does not stream: tests/test_reader.py)
CONCAT = Config(model=ModelConfig(kind="concat"))

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

THREE_DOCS = {
    "france.txt": "Paris is the capital of France. The Eiffel Tower stands in Paris.",
    "germany.txt": "Berlin is the capital of Germany. The Brandenburg Gate stands in Berlin.",
    "china.txt": "北京是中国的首都。故宫位于北京市中心。",
}


def write_docs(folder: Path, docs: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in docs.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_docs(tmp_path / "docs", THREE_DOCS)


@pytest.fixture
def hash_rag(tmp_path: Path, corpus: Path) -> Iterator[RAG]:
    rag = RAG.build(tmp_path / "idx", paths=[corpus], encoder="hash")
    yield rag
    rag.close()
