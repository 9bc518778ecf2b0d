"""Translation memories: TMX, TSV/CSV, PO and MO files read into pairs (languages from the file
or the caller), imported into an index with its incremental updates and crash safety, searched
by fuzzy match; translation conditioned on the matches, a 100 % match returned as it is. The
files are made here; a scripted generator stands in for the model (the bundled one:
tests/test_models.py)."""

from __future__ import annotations

import gettext
import json
import logging
from pathlib import Path

import polib
import pytest
from fastapi.testclient import TestClient

from ragline import RAG
from ragline.cli import main
from ragline.config import IndexConfig, ServerConfig
from ragline.errors import ConfigError, UnreadableFileError
from ragline.server import create_app
from ragline.testing import ScriptedGenerator
from ragline.tm import TranslationMemory, Translator, fuzzy_score, read_pairs

from killer import run_killed

# 20 pairs of a software project's messages, with its terms: "stash" is 贮藏, "working tree"
# is 工作区
PAIRS = [
    ("Open the file", "打开文件"), ("Close the file", "关闭文件"),
    ("Save the file", "保存文件"), ("Delete the file", "删除文件"),
    ("Rename the file", "重命名文件"), ("Open the folder", "打开文件夹"),
    ("Show the working tree status", "显示工作区状态"), ("Clean the working tree", "清理工作区"),
    ("Stash the changes", "贮藏修改"), ("Apply the stash", "应用贮藏"),
    ("Drop the stash", "删除贮藏"), ("List the stashes", "列出贮藏"),
    ("Create a branch", "创建分支"), ("Delete a branch", "删除分支"),
    ("Rename a branch", "重命名分支"), ("Merge a branch", "合并分支"),
    ("Commit the changes", "提交修改"), ("Undo the last commit", "撤销最后一次提交"),
    ("Push the commits", "推送提交"), ("Fetch the remote", "获取远程仓库"),
]


def tmx(pairs: list[tuple[str, str]], srclang: str = "en", extra: str = "") -> str:
    units = "".join(f'<tu><tuv xml:lang="en"><seg>{s}</seg></tuv>'
                    f'<tuv xml:lang="zh-CN"><seg>{t}</seg></tuv>{extra}</tu>\n'
                    for s, t in pairs)
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4"><header '
            f'srclang="{srclang}" datatype="plaintext" segtype="sentence" adminlang="en" '
            f'creationtool="test" creationtoolversion="1" o-tmf="test"/><body>\n{units}'
            '</body></tmx>\n')


PO = r'''msgid ""
msgstr ""
"Language: zh_CN\n"
"Content-Type: text/plain; charset=UTF-8\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\n"

msgid "Open the file"
msgstr "打开文件"

msgctxt "menu"
msgid "Open"
msgstr "打开"

#, fuzzy
msgid "Close the file"
msgstr "关门"

msgid "Not translated yet"
msgstr ""

msgid "%d file"
msgid_plural "%d files"
msgstr[0] "%d 个文件"
msgstr[1] "%d 个文件们"

#~ msgid "Retired"
#~ msgstr "退役"
'''


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    d = tmp_path / "files"
    d.mkdir()
    (d / "project.tmx").write_text(tmx(PAIRS), encoding="utf-8")
    (d / "app.po").write_text(PO, encoding="utf-8")
    polib.pofile(PO).save_as_mofile(str(d / "app.mo"))
    (d / "glossary.tsv").write_text("en\tzh\nrepository\t仓库\nremote\t远程\n", encoding="utf-8")
    (d / "plain.csv").write_text("source,target\nbranch,分支\n", encoding="utf-8")
    return {p.name: p for p in d.iterdir()}


def _read(path: Path, source: str | None = None, target: str | None = None
          ) -> tuple[list[tuple[str, str, str]], str, str]:
    pairs, src, tgt = read_pairs(path, path.read_bytes(), source, target)
    return [(p.source, p.target, p.context) for p in pairs], src, tgt


def test_tmx_reads_its_pairs_and_languages(files: dict[str, Path], tmp_path: Path) -> None:
    pairs, src, tgt = _read(files["project.tmx"])
    assert (src, tgt) == ("en", "zh-cn") and len(pairs) == 20
    assert pairs[6] == ("Show the working tree status", "显示工作区状态", "")
    # a third language: the target must be chosen
    three = tmp_path / "three.tmx"
    three.write_text(tmx(PAIRS[:2], extra='<tuv xml:lang="de"><seg>Datei</seg></tuv>'),
                     encoding="utf-8")
    with pytest.raises(UnreadableFileError, match="choose one with --to"):
        _read(three)
    assert _read(three, target="de")[0][0] == ("Open the file", "Datei", "")
    with pytest.raises(UnreadableFileError, match="holds no ja segments"):
        _read(files["project.tmx"], target="ja")


@pytest.mark.parametrize(("text", "why"), [
    ('<?xml version="1.0"?><!DOCTYPE tmx [<!ENTITY a "aaaa">]><tmx>&a;</tmx>', "entities"),
    ("<tmx><body><tu>", "malformed TMX"),
    ("<html></html>", "not a TMX file"),
])
def test_bad_tmx_is_refused_with_the_reason(tmp_path: Path, text: str, why: str) -> None:
    bad = tmp_path / "bad.tmx"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(UnreadableFileError, match=why):
        _read(bad)


def test_tables_take_languages_from_a_header_or_the_caller(
        files: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert _read(files["glossary.tsv"]) == ([("repository", "仓库", ""), ("remote", "远程", "")],
                                            "en", "zh")
    with pytest.raises(UnreadableFileError, match="give it with --from"):
        _read(files["plain.csv"])
    assert _read(files["plain.csv"], "en", "zh")[0] == [("branch", "分支", "")]
    one = tmp_path / "one.tsv"
    one.write_text("a\tb\n\nlonely\nc\td\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert _read(one, "en", "zh")[0] == [("a", "b", ""), ("c", "d", "")]
    assert "skipped (line 3)" in caplog.text  # the file's own line, blank lines counted


def test_po_and_mo_give_the_same_finished_pairs(files: dict[str, Path]) -> None:
    po = _read(files["app.po"])
    mo = _read(files["app.mo"])
    assert po[1:] == ("en", "zh-cn") and mo[1:] == ("en", "zh-cn")
    # fuzzy, untranslated and obsolete entries are left out; a context is kept; both plurals
    assert sorted(po[0]) == sorted(mo[0]) == sorted([
        ("Open the file", "打开文件", ""), ("Open", "打开", "menu"),
        ("%d file", "%d 个文件", ""), ("%d files", "%d 个文件们", "")])
    # the MO file made here is one gettext itself reads
    with files["app.mo"].open("rb") as f:
        assert gettext.GNUTranslations(f).gettext("Open the file") == "打开文件"


def test_fuzzy_score_is_the_translators_match() -> None:
    assert fuzzy_score("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert fuzzy_score("Open  the file", "Open the file") == 1.0  # whitespace runs as one
    assert fuzzy_score("Open the file", "open the file") < 1.0


def _memory(tmp_path: Path, *paths: Path, **kw: str) -> TranslationMemory:
    tm = TranslationMemory.open_or_create(tmp_path / "tm", files=list(paths),
                                          config=IndexConfig(encoder="hash"), **kw)
    tm.add(list(paths))
    return tm


def test_import_is_incremental_and_one_language_pair(files: dict[str, Path],
                                                     tmp_path: Path) -> None:
    with _memory(tmp_path, files["project.tmx"]) as tm:
        assert (tm.source, tm.target) == ("en", "zh-cn")
        assert tm.index.counts()["documents"] == 20
        again = tm.add([files["project.tmx"]])
        assert again.unchanged and not again.added
        # a changed file replaces its pairs
        files["project.tmx"].write_text(tmx(PAIRS[:5] + [("Open a tab", "打开标签页")]),
                                        encoding="utf-8")
        changed = tm.add([files["project.tmx"]])
        assert changed.replaced and tm.index.counts()["documents"] == 6
        # a file of another pair is skipped, saying why; the PO file joins (same pair)
        report = tm.add([files["glossary.tsv"], files["app.po"]])
        assert [why for _, why in report.skipped] == ["its target language is zh, not zh-cn"]
        assert tm.index.counts()["documents"] == 6 + 3  # "Open the file" is kept once
        assert tm.matches("Open a tab", k=1)[0].target == "打开标签页"
        with pytest.raises(ConfigError, match="is a translation memory"):
            tm.index.add([files["glossary.tsv"]])  # documents have no place in a memory
    with pytest.raises(ConfigError, match="translates en to zh-cn, not --to de"):
        TranslationMemory.open_or_create(tmp_path / "tm", "en", "de")


def test_a_document_index_is_no_memory(hash_rag: RAG) -> None:
    with pytest.raises(ConfigError, match="not a translation memory"):
        TranslationMemory.open(hash_rag.index.path)


def test_matches_rank_by_fuzzy_score(files: dict[str, Path], tmp_path: Path) -> None:
    with _memory(tmp_path, files["project.tmx"]) as tm:
        found = tm.matches("Show the working tree state", k=3)
        assert found[0].source == "Show the working tree status"
        assert found[0].score == pytest.approx(fuzzy_score("Show the working tree state",
                                                           found[0].source))
        assert [m.score for m in found] == sorted((m.score for m in found), reverse=True)
        assert tm.matches("Drop the stash", k=1)[0].score == 1.0


def test_translation_uses_the_matches_and_returns_an_exact_one_as_is(
        files: dict[str, Path], tmp_path: Path) -> None:
    gen = ScriptedGenerator("删除工作区")
    with _memory(tmp_path, files["project.tmx"]) as tm:
        translator = Translator(tm, gen)
        exact = translator.translate("Apply the stash", k=3)
        assert exact.exact and exact.translation == "应用贮藏" and not gen.prompts
        t = translator.translate("Drop the working tree", k=2)
        assert t.translation == "删除工作区" and not t.exact and len(t.matches) == 2
        prompt = gen.prompts[-1]
        # the examples, the closest last, right before the segment
        closest, second = t.matches
        assert prompt.index(second.source) < prompt.index(closest.source) < prompt.index(
            "English: Drop the working tree\nSimplified Chinese:")
        assert closest.target in prompt
        baseline = translator.translate("Drop the working tree", k=0)
        assert baseline.matches == () and "贮藏" not in gen.prompts[-1]
        with pytest.raises(ConfigError, match="from 0"):
            translator.translate("x", k=-1)
        with pytest.raises(ConfigError, match="not to de"):
            translator.check_target("de")
        translator.check_target("zh")


def test_an_instruct_model_gets_the_matches_as_turns(files: dict[str, Path],
                                                     tmp_path: Path) -> None:
    class Chat(ScriptedGenerator):
        def chat_template(self):  # type: ignore[no-untyped-def]
            return lambda turns: "".join(f"<{r}>{c}</{r}>" for r, c in turns) + "<assistant>"

    gen = Chat("清理贮藏")
    with _memory(tmp_path, files["project.tmx"]) as tm:
        t = Translator(tm, gen).translate("Clean the stash", k=2)
    prompt = gen.prompts[-1]
    assert prompt.startswith("<system>You translate English into Simplified Chinese.")
    for m in t.matches:
        assert f"<user>{m.source}</user><assistant>{m.target}</assistant>" in prompt
    assert prompt.endswith("<user>Clean the stash</user><assistant>")


def test_import_killed_mid_file_is_finished_by_the_rerun(files: dict[str, Path],
                                                         tmp_path: Path) -> None:
    args = ["-q", "tm", "import", str(tmp_path / "tm"), str(files["project.tmx"]),
            str(files["app.po"]), "--encoder", "hash"]
    assert run_killed("commit", 12, args) == -9  # inside the TMX file's transaction
    assert main(args) == 0
    with TranslationMemory.open(tmp_path / "tm") as tm:
        assert tm.index.counts()["documents"] == 20 + 3
        assert tm.index.counts()["sources"] == 2


def test_cli_imports_and_translates_as_json(files: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    tm = str(tmp_path / "tm")
    assert main(["tm", "import", tm, str(files["plain.csv"]), "--encoder", "hash"]) == 2
    assert "--from" in capsys.readouterr().err
    assert main(["-q", "tm", "import", tm, str(files["project.tmx"]), "--encoder", "hash"]) == 0
    assert "translates en → zh-cn" in capsys.readouterr().out
    # a 100 % match needs no model
    assert main(["translate", tm, "Merge a branch", "--to", "zh", "--json"]) == 0
    [out] = json.loads(capsys.readouterr().out)
    assert out["source"] == "Merge a branch" and out["translation"] == "合并分支"
    assert out["exact"] and {"source", "target", "score"} <= set(out["matches"][0])
    assert main(["translate", tm, "Merge a branch", "--to", "de"]) == 2
    assert main(["translate", tm, "x", "-k", "99"]) == 2
    assert main(["translate", tm]) == 2


def test_server_translates_from_its_memory(files: dict[str, Path], tmp_path: Path) -> None:
    gen = ScriptedGenerator("合并工作区")
    with _memory(tmp_path, files["project.tmx"]) as tm, \
            RAG.open(tm.index.path, generator=gen) as rag:
        with TestClient(create_app(rag, ServerConfig())) as client:  # the index is the memory
            r = client.post("/v1/translate", json={"text": ["Merge a branch",
                                                            "Merge the working tree"], "k": 2})
            assert r.status_code == 200
            body = r.json()
            assert (body["source"], body["target"]) == ("en", "zh-cn")
            first, second = body["translations"]
            assert first["exact"] and first["translation"] == "合并分支"
            assert second["translation"] == "合并工作区" and len(second["matches"]) == 2
            for bad in ({"text": []}, {"text": "x", "k": 50}, {"text": "x", "to": "de"}):
                assert client.post("/v1/translate", json=bad).status_code == 400


def test_server_without_a_memory_says_how_to_give_one(hash_rag: RAG) -> None:
    with TestClient(create_app(hash_rag, ServerConfig())) as client:
        r = client.post("/v1/translate", json={"text": "hello"})
    assert r.status_code == 400 and "--tm TM_DIR" in r.json()["error"]["message"]
