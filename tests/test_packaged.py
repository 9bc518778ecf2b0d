"""Generator models from part packages: assembled once, checked by sha256, named by the
registry; a missing part names the extra to install."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest

from ragline.errors import ModelUnavailableError
from ragline.generate.packaged import PackagedModel, resolve_gguf
from ragline.registry import LLMS


def fake_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, blobs: list[bytes]) -> PackagedModel:
    """Part packages on sys.path, each `<module>/data/partNN.bin`."""
    root = tmp_path / "site"
    for i, blob in enumerate(blobs, 1):
        pkg = root / f"fake_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("RAGLINE_CACHE", str(tmp_path / "cache"))
    digest = hashlib.sha256(b"".join(blobs)).hexdigest()
    return PackagedModel("fake.gguf", tuple((f"fake_part{i}", f"data/part{i:02d}.bin")
                                            for i in range(1, len(blobs) + 1)),
                         digest, "fake", instruct=True)


def test_parts_are_assembled_once_in_order_and_checked(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    model = fake_parts(tmp_path, monkeypatch, [b"GGUF" + b"a" * 5000, b"b" * 3000, b"c"])
    path = model.path(progress=False)
    assert path.read_bytes() == b"GGUF" + b"a" * 5000 + b"b" * 3000 + b"c"
    mtime = path.stat().st_mtime_ns
    assert model.path(progress=False).stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake.gguf", "fake.verified"]


def test_a_wrong_checksum_leaves_no_model_behind(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    model = fake_parts(tmp_path, monkeypatch, [b"one", b"two"])
    bad = PackagedModel(model.name, model.parts, "0" * 64, "fake", True)
    with pytest.raises(ModelUnavailableError, match="sha256.*reinstall"):
        bad.path(progress=False)
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_a_missing_part_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = fake_parts(tmp_path, monkeypatch, [b"one"])
    gone = PackagedModel(model.name, (*model.parts, ("fake_part_absent", "data/x.bin")),
                         model.sha256, "qwen15b", True)
    sys.modules.pop("fake_part_absent", None)
    with pytest.raises(ModelUnavailableError, match=r"fake-part-absent.*ragline\[qwen15b\]"):
        gone.path(progress=False)


def test_names_and_paths_resolve(tmp_path: Path) -> None:
    assert LLMS.names[0] == "qwen2.5-0.5b" and LLMS.canonical("Qwen-1.5B") == "qwen2.5-1.5b"
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_gguf(str(gguf)) == (gguf, None)  # a file: its metadata decides the format
    with pytest.raises(ModelUnavailableError, match="not a file and not a model name.*qwen2.5"):
        resolve_gguf("qwen-7b")


def test_a_chat_template_that_refuses_a_system_turn_gets_it_in_the_first_user_turn() -> None:
    from types import SimpleNamespace

    from ragline.generate.llama import LlamaCppGenerator

    gen = LlamaCppGenerator("x.gguf")
    gen.llm = SimpleNamespace(detokenize=lambda ids, special: b"<s>", token_eos=lambda: 2,
                              token_bos=lambda: 1)
    strict = ("{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no') }}"
              "{% endif %}<{{ m.role }}>{{ m.content }}{% endfor %}")
    render = gen._chat(strict, Path("x.gguf"))
    assert render([("system", "S"), ("user", "U"), ("assistant", "A"), ("user", "V")]) == (
        "<user>S\n\nU<assistant>A<user>V")
    broken = gen._chat("{{ raise_exception('broken') }}", Path("x.gguf"))
    with pytest.raises(ModelUnavailableError, match="chat template of x.gguf failed: broken"):
        broken([("user", "U")])


def test_xllamacpp_puts_a_refused_system_turn_in_the_first_user_turn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from ragline.generate.xllama import XLlamaGenerator

    gen = XLlamaGenerator("x.gguf")
    rendered: list[list[dict[str, str]]] = []

    def post(route: str, body: dict[str, Any]) -> dict[str, str]:
        # the server answers a template's raise_exception with HTTP 400
        rendered.append(body["messages"])
        if any(m["role"] == "system" for m in body["messages"]):
            raise ModelUnavailableError("llama.cpp refused /apply-template: no system role")
        return {"prompt": "".join(f"<{m['role']}>{m['content']}" for m in body["messages"])}

    monkeypatch.setattr(gen, "_post", post)
    assert gen._render([("system", "S"), ("user", "U"), ("assistant", "A"), ("user", "V")]) == (
        "<user>S\n\nU<assistant>A<user>V")
    assert len(rendered) == 2
    with pytest.raises(ModelUnavailableError, match="chat template of x failed: .*no system"):
        gen._render([("system", "S")])
