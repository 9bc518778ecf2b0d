"""Optional dependencies stay optional: a missing one names the extra to install."""

import builtins
from pathlib import Path
from typing import Any

import pytest

from ragline.errors import ModelUnavailableError, UnsupportedFileError
from ragline.ingest.loaders import load_file

from docgen import make_pdf


def _hide(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    real = builtins.__import__

    def fake(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] in names:
            raise ImportError(f"No module named '{name}'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)


def test_pdf_without_pypdf_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    p = tmp_path / "a.pdf"
    p.write_bytes(make_pdf(["text"]))
    _hide(monkeypatch, "pypdf")
    with pytest.raises(UnsupportedFileError, match=r"a\.pdf: .*ragline\[pdf\]"):
        load_file(p)


def test_docx_without_python_docx_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    p = tmp_path / "a.docx"
    p.write_bytes(b"PK")
    _hide(monkeypatch, "docx")
    with pytest.raises(UnsupportedFileError, match=r"a\.docx: .*ragline\[docx\]"):
        load_file(p)


def test_llama_without_llama_cpp_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragline.generate.llama import LlamaCppGenerator
    from ragline.model.llama_lm import LlamaLM

    _hide(monkeypatch, "llama_cpp")
    with pytest.raises(ModelUnavailableError, match=r"ragline\[llama-cpp\]"):
        LlamaCppGenerator().load()
    with pytest.raises(ModelUnavailableError, match=r"ragline\[llama-cpp\]"):
        LlamaLM("gemma-270m").load()


def test_answers_without_xllamacpp_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragline.generate.xllama import XLlamaGenerator

    _hide(monkeypatch, "xllamacpp")
    with pytest.raises(ModelUnavailableError, match=r"xllamacpp .*ragline\[llama\]"):
        XLlamaGenerator().load()


def test_the_rag_models_fall_back_to_torch_without_llama_cpp_python(
        monkeypatch: pytest.MonkeyPatch, hash_rag: Any) -> None:
    import importlib.util

    from ragline.model.generators import RagModelSlot

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    slot = RagModelSlot(hash_rag.index, hash_rag.config.model)
    assert slot.runtime() == "torch"


def test_import_ragline_loads_no_model_stack() -> None:
    import subprocess
    import sys

    code = ("import sys, ragline; heavy = {'torch', 'sentence_transformers', 'llama_cpp', "
            "'xllamacpp', 'faiss', 'transformers'} & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_torch_generator_without_gguf_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    from ragline.generate.packaged import PackagedModel
    from ragline.model import lm

    monkeypatch.setenv("RAGLINE_CACHE", str(tmp_path))  # nothing converted yet
    monkeypatch.setattr(PackagedModel, "path", lambda self, progress=True: tmp_path / "g.gguf")
    _hide(monkeypatch, "gguf")
    with pytest.raises(ModelUnavailableError, match=r"ragline\[llama\]"):
        lm.torch_folder(PackagedModel("g.gguf", (), "0" * 64, "llama", instruct=False))


@pytest.mark.parametrize("hidden", ["fastapi", "python_multipart"])
def test_server_without_its_extra_names_it(monkeypatch: pytest.MonkeyPatch, hidden: str,
                                           hash_rag: Any) -> None:
    from ragline.server import create_app

    _hide(monkeypatch, hidden)
    with pytest.raises(ModelUnavailableError, match=r"ragline\[server\]"):
        create_app(hash_rag)


def test_int8_encoder_without_onnxruntime_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragline.encode import load_encoder

    encoder = load_encoder("minilm-int8")  # naming it needs nothing installed
    _hide(monkeypatch, "onnxruntime")
    with pytest.raises(ModelUnavailableError, match=r"ragline\[onnx\]"):
        encoder.load()


def test_ray_without_its_extra_names_it(monkeypatch: pytest.MonkeyPatch, hash_rag: Any,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from ragline.cli import main

    _hide(monkeypatch, "ray")
    assert main(["search", str(hash_rag.index.path), "capital", "--ray"]) == 1
    err = capsys.readouterr().err
    assert "ray is not installed" in err and "ragline[ray]" in err


@pytest.mark.parametrize("name,module,extra", [
    ("a.pptx", "pptx", "office"), ("a.xlsx", "openpyxl", "office"),
    ("a.ods", "python_calamine", "office"), ("a.epub", "ebooklib", "office"),
])
def test_office_types_without_their_library_name_the_extra(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, module: str,
        extra: str) -> None:
    p = tmp_path / name
    p.write_bytes(b"PK")
    _hide(monkeypatch, module)
    with pytest.raises(UnsupportedFileError, match=rf"ragline\[{extra}\]"):
        load_file(p)


def test_code_without_tree_sitter_is_still_read_by_lines(monkeypatch: pytest.MonkeyPatch,
                                                          tmp_path: Path) -> None:
    import ragline.ingest.code as code

    p = tmp_path / "t.go"
    p.write_text("package x\n\nfunc F() {}\n")
    monkeypatch.setattr(code, "_PARSERS", {})
    _hide(monkeypatch, "tree_sitter", "tree_sitter_go")
    [doc] = load_file(p)
    assert doc.meta["lines"] and "sections" not in doc.meta


def test_mcp_without_its_package_names_the_extra_and_the_server_runs_without_it(
        monkeypatch: pytest.MonkeyPatch, hash_rag: Any, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    import sys

    from fastapi.testclient import TestClient

    from ragline.cli import main
    from ragline.server import create_app

    monkeypatch.delitem(sys.modules, "ragline.server.mcp_server", raising=False)
    _hide(monkeypatch, "mcp")
    assert main(["mcp", str(hash_rag.index.path)]) == 1
    err = capsys.readouterr().err
    assert "mcp is not installed" in err and "ragline[server]" in err
    with TestClient(create_app(hash_rag)) as client:
        assert client.get("/health").status_code == 200
        assert client.post("/mcp", json={}).status_code == 404
    assert "MCP is off" in caplog.text
