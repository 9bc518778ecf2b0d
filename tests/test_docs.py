"""The documentation stays true: the README is short, its links lead somewhere, the reference
pages are what the code makes, and every shell command of the README and of the guides'
quickstarts runs and prints what they say (marked: the real models)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GUIDES = sorted((ROOT / "docs" / "guides").glob("*.md"))
_FENCE = re.compile(r"^```bash\n(.*?)^```", re.M | re.S)


def bash_blocks(markdown: str, section: str | None = None) -> list[str]:
    """The ```bash blocks of a page, or of its `## section` only."""
    if section is not None:
        parts = re.split(r"^## ", markdown, flags=re.M)
        markdown = "".join(p for p in parts if p.startswith(section + "\n"))
    return [m.group(1) for m in _FENCE.finditer(markdown)]


def test_bash_blocks_are_found_by_section() -> None:
    page = ("# T\n\n```bash\na\n```\n\n## Quickstart\n\n```bash\nb\nc\n```\n\n"
            "## Other\n\n```bash\nd\n```\n```python\ne\n```\n")
    assert bash_blocks(page) == ["a\n", "b\nc\n", "d\n"]
    assert bash_blocks(page, "Quickstart") == ["b\nc\n"]


def test_the_readme_is_short_and_its_links_lead_somewhere() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local, "the README links to the documentation"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_every_guide_has_a_quickstart() -> None:
    with_one = {g.name for g in GUIDES if bash_blocks(g.read_text(), "Quickstart")}
    # the Python guide's examples are Python, the settings guide's TOML
    assert with_one == {g.name for g in GUIDES} - {"python.md", "settings.md"}
    assert with_one == set(QUICKSTART_PRINTS), "each Quickstart says what it prints"


def test_the_reference_pages_are_what_the_code_makes() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "docs_reference.py"), "--check"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


# ---------------------------------------------------------------- running the commands


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def run_commands(script: str, cwd: Path) -> str:
    """`script` in bash (-e: the first failing command fails it) in `cwd`, where `examples`
    and `.venv` are the repository's, with the venv's commands on PATH."""
    for name in ("examples", ".venv"):
        if not (cwd / name).exists():
            (cwd / name).symlink_to(ROOT / name)
    env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=1500)
    assert out.returncode == 0, f"{script}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
    return out.stdout


@pytest.mark.model
def test_the_readme_commands_run_and_print_what_it_says(tmp_path: Path) -> None:
    if not _port_free(8000):
        pytest.skip("port 8000 is taken: the README's tour serves on it")
    newcomer, *tour = bash_blocks(README.read_text())
    commands = [line.split("#")[0].strip() for line in newcomer.splitlines()]
    assert commands == ["make demo", "make test"]
    # `make test` is what runs this test; `make demo` runs where a newcomer runs it
    demo = subprocess.run(["make", "demo"], cwd=ROOT, capture_output=True, text=True,
                          timeout=1500)
    assert demo.returncode == 0, demo.stderr
    assert "March 1889 [1]" in demo.stdout and "明朝 [1]" in demo.stdout
    out = run_commands("\n".join(tour), tmp_path)
    assert "Piccard" in out and "明朝" in out
    assert "I could not find the answer in the indexed documents." in out
    assert "无法保存所选文件" in out
    assert '"1889' in out or "1889" in out.split("无法保存所选文件")[-1]  # the served answer


# what each guide's quickstart says its commands print
QUICKSTART_PRINTS = {
    "asking.md": ("March 1889 [1]", '"refused": true', "(searched for: When was the Eiffel Tower"),
    "indexing.md": ("7 unchanged", "Challenger Deep", "removed 1 document(s)"),
    "rag-model.md": ("March 1889 [1]", "rag-token     log p(y|x)", "rag-sequence  log p(y|x)"),
    "scale-out.md": ("shard-000", "shard-001", "Challenger Deep"),
    "serving.md": ('"query":"Great Wall"', "1889"),
    "translation.md": ("无法保存所选文件", "100 % match", '"translation"'),
    "writing.md": ("[1]", "When was the Eiffel Tower completed? [1]"),
}


@pytest.mark.model
@pytest.mark.parametrize("guide", list(QUICKSTART_PRINTS), ids=lambda g: g.removesuffix(".md"))
def test_a_guides_quickstart_runs(guide: str, tmp_path: Path) -> None:
    blocks = bash_blocks((ROOT / "docs" / "guides" / guide).read_text(), "Quickstart")
    if any("--port 8000" in b for b in blocks) and not _port_free(8000):
        pytest.skip("port 8000 is taken")
    out = run_commands("\n".join(blocks), tmp_path)
    missing = [text for text in QUICKSTART_PRINTS[guide] if text not in out]
    assert not missing, f"{guide}'s quickstart did not print {missing}:\n{out}"
