import json
from pathlib import Path

import pytest

from ragline.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_index_search_info_rm_roundtrip(tmp_path: Path, corpus: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    idx = str(tmp_path / "idx")
    code, out, _ = _run(capsys, "index", str(corpus), "--index", idx, "--encoder", "hash")
    assert code == 0 and "3 document(s)" in out
    code, out, _ = _run(capsys, "search", idx, "capital of Germany", "-k", "1")
    assert code == 0 and "germany.txt · passage 1" in out and "Berlin" in out
    code, out, _ = _run(capsys, "search", idx, "北京", "--mode", "bm25", "--json")
    hits = json.loads(out)
    assert hits[0]["source"].endswith("china.txt") and hits[0]["rank"] == 1
    code, out, _ = _run(capsys, "info", idx, "--json", "--documents")
    info = json.loads(out)
    assert info["counts"]["documents"] == 3 and len(info["documents"]) == 3
    code, out, _ = _run(capsys, "rm", idx, str(corpus / "china.txt"))
    assert code == 0 and "removed 1" in out
    code, out, _ = _run(capsys, "index", str(corpus), "--index", idx)
    assert code == 0 and "1 new" in out and "2 unchanged" in out


def test_bad_files_are_skipped_with_a_summary(tmp_path: Path, corpus: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (corpus / "empty.txt").write_bytes(b"")
    (corpus / "image.png").write_bytes(b"\x89PNG")
    (corpus / "tool.exe").write_bytes(b"MZ\x90\x00\x03\x00")
    code, out, err = _run(capsys, "index", str(corpus), "--index", str(tmp_path / "i"),
                          "--encoder", "hash")
    assert code == 0
    assert "3 document(s)" in out and "skipped 3 file(s)" in out
    assert "broken.pdf: corrupt or unreadable PDF" in out and "empty.txt: file is empty" in out
    assert "image.png: corrupt or unreadable image" in out
    assert "ignored 1 file(s) of unsupported types in folders: .exe" in out
    assert "Traceback" not in err


def test_missing_path_fails_but_indexes_the_rest(tmp_path: Path, corpus: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "index", str(corpus / "france.txt"), str(tmp_path / "nope.txt"),
                          "--index", str(tmp_path / "i"), "--encoder", "hash")
    assert code == 1
    assert "nope.txt: no such file or folder" in err and "1 document(s)" in out


def test_only_a_bad_file_fails_the_command(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "x.xyz"
    bad.write_bytes(b"\x00\x01 binary")
    code, out, _ = _run(capsys, "index", str(bad), "--index", str(tmp_path / "i"),
                        "--encoder", "hash")
    assert code == 1 and "no loader for '.xyz'" in out


@pytest.mark.parametrize("argv,code,message", [
    (["search", "{missing}", "q"], 1, "no ragline index at"),
    (["ask", "{missing}", "q"], 1, "no ragline index at"),
    (["rm", "{idx}", "nothing"], 1, "no document or source 'nothing'"),
    (["search", "{idx}", "   "], 2, "the query is empty"),
])
def test_user_errors_are_one_line(tmp_path: Path, corpus: Path, capsys: pytest.CaptureFixture[str],
                                  argv: list[str], code: int, message: str) -> None:
    idx = str(tmp_path / "idx")
    assert main(["-q", "index", str(corpus), "--index", idx, "--encoder", "hash"]) == 0
    capsys.readouterr()
    argv = [a.format(missing=str(tmp_path / "missing"), idx=idx) for a in argv]
    got, _, err = _run(capsys, *argv)
    assert got == code and message in err and err.count("\n") == 1


def test_k_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["search", "idx", "q", "-k", "0"])
    assert e.value.code == 2 and "must be ≥ 1" in capsys.readouterr().err


def test_ask_on_empty_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ragline import RAG

    RAG.build(tmp_path / "e", encoder="hash").close()
    code, _, err = _run(capsys, "ask", str(tmp_path / "e"), "anything?")
    assert code == 1 and "has no passages yet" in err


_NOISY = '''
import logging, sys, warnings
from ragline import cli
settings = cli.settings
def noisy(args):
    logging.getLogger("olefile").error("not an OLE2 structured storage file")
    logging.getLogger("ragline.ingest").warning("ragline's own warning")
    warnings.warn_explicit("Corrupt EXIF data", UserWarning, "TiffImagePlugin.py", 982,
                           module="PIL.TiffImagePlugin")
    return settings(args)
cli.settings = noisy
sys.exit(cli.main(sys.argv[1:]))
'''


@pytest.mark.parametrize("verbose", [False, True])
def test_libraries_notices_reach_the_user_only_when_verbose(tmp_path: Path,
                                                           verbose: bool) -> None:
    import subprocess
    import sys

    argv = ["-v"] * verbose + ["-q", "info", str(tmp_path / "none")]
    err = subprocess.run([sys.executable, "-c", _NOISY, *argv], capture_output=True,
                         text=True, timeout=120).stderr
    assert "ragline: ragline's own warning" in err
    assert ("OLE2" in err) is verbose and ("EXIF" in err) is verbose, err
