"""Content that two files hold is stored once and lives while either holds it: removing one
file keeps it (named by the other from then on), removing both takes it out, and adding a file
again brings it back. The same for translation memories (a PO and its compiled MO) and for
stores made before documents were referenced from every file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import polib
import pytest

from ragline.cli import main
from ragline.index.index import Index
from ragline.tm import TranslationMemory

TEXT = "The okapi is a giraffid mammal of the Ituri rainforest in Congo."


def _two_copies(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.txt", tmp_path / "b.md"
    a.write_text(TEXT, encoding="utf-8")
    b.write_text(TEXT, encoding="utf-8")
    return a, b


def _texts(index: Index) -> list[str]:
    return [d.source for d in index.documents()]


def test_a_document_two_files_hold_lives_until_both_are_removed(tmp_path: Path) -> None:
    a, b = _two_copies(tmp_path)
    with Index.open_or_create(tmp_path / "idx", encoder="hash") as index:
        report = index.add([a, b])
        assert len(report.duplicates) == 1 and index.counts()["documents"] == 1
        assert index.remove(str(a)) == []  # b still holds it
        assert _texts(index) == [str(b.resolve())]
        assert [d.id for d in index.documents(str(b.resolve()))]
        assert index.add([a]).added  # a is read again: it was removed
        assert index.counts()["documents"] == 1
        assert len(index.remove(str(b))) == 0 and len(index.remove(str(a))) == 1
        assert index.counts() == {"documents": 0, "passages": 0, "sources": 0}
        index.add([a, b])
        assert index.counts()["documents"] == 1
    with Index.open(tmp_path / "idx") as index:  # saved as it was
        assert index.counts()["documents"] == 1
        index.remove(str(b))
        assert index.folder.dense is not None and index.folder.dense.ntotal == 1


def test_changing_one_of_two_files_keeps_the_other_ones_copy(tmp_path: Path) -> None:
    a, b = _two_copies(tmp_path)
    with Index.open_or_create(tmp_path / "idx", encoder="hash") as index:
        index.add([a, b])
        a.write_text(TEXT + "\n\nA second paragraph about the okapi's stripes.", encoding="utf-8")
        index.add([a])
        assert index.counts()["documents"] == 2  # b's copy and a's new text
        index.remove(str(b))
        assert index.counts()["documents"] == 1 and _texts(index) == [str(a.resolve())]


def test_a_po_and_its_mo_share_pairs_and_removing_one_keeps_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    po = polib.POFile()
    po.metadata = {"Language": "de", "Content-Type": "text/plain; charset=UTF-8"}
    for s, t in [("Open", "Öffnen"), ("Close", "Schließen"), ("Save", "Speichern")]:
        po.append(polib.POEntry(msgid=s, msgstr=t))
    po.save(str(tmp_path / "good.po"))
    po.save_as_mofile(str(tmp_path / "good.mo"))
    tm = str(tmp_path / "tm")
    assert main(["-q", "tm", "import", tm, str(tmp_path / "good.po"), str(tmp_path / "good.mo"),
                 "--encoder", "hash"]) == 0
    capsys.readouterr()
    assert main(["-q", "rm", tm, str(tmp_path / "good.po")]) == 0
    assert "3 stay, held by other files too" in capsys.readouterr().out
    with TranslationMemory.open(tm) as m:
        assert m.index.counts()["documents"] == 3
        assert m.matches("Save", k=1)[0].target == "Speichern"
    assert main(["-q", "rm", tm, str(tmp_path / "good.mo")]) == 0
    assert main(["-q", "tm", "import", tm, str(tmp_path / "good.mo")]) == 0
    with TranslationMemory.open(tm) as m:
        assert m.index.counts()["documents"] == 3


def test_a_store_from_before_references_is_filled_on_open(tmp_path: Path) -> None:
    a, b = _two_copies(tmp_path)
    with Index.open_or_create(tmp_path / "idx", encoder="hash") as index:
        index.add([a])
    con = sqlite3.connect(tmp_path / "idx" / "store.sqlite")
    con.executescript("DROP TABLE document_sources; DELETE FROM meta WHERE key='references';")
    con.close()
    with Index.open(tmp_path / "idx") as index:
        assert len(index.documents(str(a.resolve()))) == 1  # referenced from its file again
        index.add([b])
        index.remove(str(a))
        assert index.counts()["documents"] == 1
