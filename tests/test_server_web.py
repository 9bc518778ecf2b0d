"""The web page, end to end in headless Chromium (Debian's chromium, driven by Playwright).

scripts/setup.sh installs chromium; where it is missing these tests skip, unless
RAGLINE_REQUIRE_BROWSER=1 (set by .ci/run) makes that a failure. RAGLINE_SCREENSHOT=PATH saves
a screenshot of the page after an answer.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragline import RAG
from ragline.config import ServerConfig
from ragline.server import create_app

from conftest import CONCAT, THREE_DOCS, write_docs
from serving import GatedGenerator, live_server

sync_api = pytest.importorskip("playwright.sync_api")

ANSWER = "Paris is the capital of France."
LAST = "#conversation .turn:last-child"  # the newest turn of the conversation
LAST_JS = "document.querySelector('.turn:last-child .answer').textContent"
# flags for a sandboxed machine without network (see /work/.library: Chromium's background
# connections are refused here, many at a time)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]


def chromium_path() -> str:
    path = os.environ.get("RAGLINE_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")
    if not path:
        if os.environ.get("RAGLINE_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed; scripts/setup.sh installs it (apt-get)")
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, GatedGenerator]]:
    docs = write_docs(tmp_path / "docs", THREE_DOCS)
    gen = GatedGenerator(ANSWER, delay=0.03)  # slow enough to watch it stream
    rag = RAG.build(tmp_path / "idx", paths=[docs], encoder="hash", generator=gen,
                    config=CONCAT)  # concat streams; the default reader: test_the_default_…
    with live_server(create_app(rag, ServerConfig())) as url:
        yield url, gen
    rag.close()


def test_ask_watch_the_answer_stream_and_open_a_citation(browser: Any,
                                                         site: tuple[str, Any]) -> None:
    url, _ = site
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("#docs li.doc >> nth=2")
    assert "3 documents" in page.inner_text("#stats")

    page.fill("#question", "What is the capital of France?")
    page.click("#ask")
    # part of the answer is on the page before all of it is: it streams
    page.wait_for_function(f"() => {{ const t = {LAST_JS}; "
                           "return t.length > 3 && !t.includes('France'); }")
    page.wait_for_function(f"{LAST_JS}.includes('France.')")
    page.wait_for_selector(f"{LAST} .citations li")
    assert page.inner_text(f"{LAST} .answer").startswith(ANSWER)
    assert "france.txt" in page.inner_text(f"{LAST} .citations")
    assert page.inner_text("#status").startswith("answered in")

    page.click(f"{LAST} .answer .cite")  # the [1] marker in the answer
    assert page.is_visible("#passage")
    assert "france.txt" in page.inner_text("#passage-source")
    assert page.inner_text("#passage-text") == THREE_DOCS["france.txt"]
    assert page.inner_text("#passage-text mark") == ANSWER  # the supporting sentence
    assert page.locator(f"{LAST} .passages li").count() == 3
    if os.environ.get("RAGLINE_SCREENSHOT"):
        page.screenshot(path=os.environ["RAGLINE_SCREENSHOT"], full_page=True)
    assert errors == []
    page.close()


def test_the_default_reader_shows_its_answer_and_its_confidence(browser: Any,
                                                                tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", THREE_DOCS)
    rag = RAG.build(tmp_path / "idx", paths=[docs], encoder="hash",
                    generator=GatedGenerator(ANSWER))
    with live_server(create_app(rag, ServerConfig())) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#docs li.doc >> nth=2")
        assert page.input_value("#model") == "per-passage"  # the server's default
        page.fill("#question", "What is the capital of France?")
        page.click("#ask")
        page.wait_for_selector(f"{LAST} .citations li")
        assert page.inner_text(f"{LAST} .answer").startswith("Paris is the capital of France")
        assert page.inner_text(f"{LAST} .answer .cite") == "1"  # the marker of the passage read
        assert "france.txt" in page.inner_text(f"{LAST} .citations")
        status = page.inner_text("#status")
        assert status.startswith("answered in") and "confidence 1.00" in status
        page.close()
    rag.close()


def test_write_mode_shows_a_cited_text(browser: Any, site: tuple[str, Any]) -> None:
    url, _ = site
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    assert not page.is_visible("#answer-for")
    page.select_option("#task", "question")
    assert page.is_visible("#answer-for")  # the question task asks for its answer
    page.select_option("#task", "text")
    assert not page.is_visible("#answer-for") and page.inner_text("#ask") == "Write"
    page.fill("#question", "Write about the capital of France")
    with page.expect_request("**/v1/write") as sent:
        page.click("#ask")
    assert sent.value.post_data_json["instruction"] == "Write about the capital of France"
    page.wait_for_function("document.getElementById('status').textContent.includes(' in ')")
    assert page.inner_text("#status").startswith("written in")
    assert page.inner_text(f"{LAST} .answer").startswith("Paris is the capital of France")
    assert "france.txt" in page.inner_text(f"{LAST} .citations")
    assert errors == []
    page.close()


def test_upload_see_it_indexed_and_delete_it(browser: Any, site: tuple[str, Any],
                                             tmp_path: Path) -> None:
    url, _ = site
    note = tmp_path / "rome <b>notes.md"
    note.write_text("# Rome\n\nRome is the capital of Italy.", encoding="utf-8")
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#docs li.doc >> nth=2")
    page.set_input_files("#file", str(note))
    page.click("#upload")
    page.wait_for_selector("#docs li.doc >> nth=3")
    assert "added, 1 passage" in page.inner_text("#upload-status")
    row = page.locator("#docs li.doc", has_text="rome <b>notes.md")  # shown as text, not HTML
    assert row.count() == 1 and "4 documents" in page.inner_text("#stats")
    names = {d["name"] for d in httpx.get(url + "/v1/documents").json()["documents"]}
    assert "rome <b>notes.md" in names

    page.once("dialog", lambda d: d.accept())  # "Remove … from the index?"
    row.locator("button.delete").click()
    page.wait_for_function("document.querySelectorAll('#docs li.doc').length === 3")
    names = {d["name"] for d in httpx.get(url + "/v1/documents").json()["documents"]}
    assert "rome <b>notes.md" not in names
    page.close()


def test_unsupported_upload_shows_the_servers_message(browser: Any, site: tuple[str, Any],
                                                      tmp_path: Path) -> None:
    url, _ = site
    bad = tmp_path / "tool.exe"
    bad.write_bytes(b"MZ")
    page = browser.new_page()
    page.goto(url)
    page.set_input_files("#file", str(bad))
    page.click("#upload")
    # past the page's own "indexing tool.exe…": the server's answer is in
    page.wait_for_function("(t => t.includes('exe') && !t.startsWith('indexing'))"
                           "(document.getElementById('upload-status').textContent)")
    assert "no loader for '.exe'" in page.inner_text("#upload-status")
    page.close()


def test_a_keyed_server_asks_for_the_key_then_works(browser: Any, tmp_path: Path) -> None:
    docs = write_docs(tmp_path / "docs", THREE_DOCS)
    rag = RAG.build(tmp_path / "idx", paths=[docs], encoder="hash",
                    generator=GatedGenerator(ANSWER), config=CONCAT)
    with live_server(create_app(rag, ServerConfig(), api_key="k-42")) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#keybox", state="visible")
        page.fill("#key", "k-42")
        page.click("#keyform button")
        page.wait_for_selector("#docs li.doc >> nth=2")
        page.fill("#question", "What is the capital of France?")
        page.click("#ask")
        page.wait_for_selector(f"{LAST} .citations li")
        assert page.inner_text(f"{LAST} .answer").startswith(ANSWER)
        page.close()
    rag.close()


def test_a_conversation_follows_up_keeps_its_sources_and_survives_a_reload(
        browser: Any, tmp_path: Path) -> None:
    """As a user would: a question, then "How tall is it?"; the second is answered about the
    first's subject, each answer keeps its own citations, a reload keeps the conversation and
    "New conversation" clears it (and the next question is asked alone)."""
    docs = write_docs(tmp_path / "docs", {
        "eiffel.txt": "The Eiffel Tower in Paris is 330 metres tall. It was completed in 1889.",
        "it.txt": "How is it? It is what it is, people say of it."})

    def reply(prompt: str) -> str:
        if prompt.endswith('"it" means:'):
            return "the Eiffel Tower"
        return "330 metres [1]" if "tall" in prompt.rsplit("Question:", 1)[-1] else "1889 [1]"

    from conftest import ScriptedGenerator

    rag = RAG.build(tmp_path / "idx", paths=[docs], encoder="hash", config=CONCAT,
                    generator=ScriptedGenerator(reply))
    with live_server(create_app(rag, ServerConfig())) as url:
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.fill("#k", "1")
        turns = page.locator("#conversation .turn")
        for n, question in enumerate(["When was the Eiffel Tower completed?", "How tall is it?"]):
            page.fill("#question", question)
            with page.expect_request("**/v1/ask") as sent:
                page.click("#ask")
            page.wait_for_function(f"document.querySelectorAll('#conversation .turn .citations li')"
                                   f".length === {n + 1}")
        assert [m["role"] for m in sent.value.post_data_json["history"]] == ["user", "assistant"]
        assert turns.count() == 2
        first, second = turns.nth(0), turns.nth(1)
        assert first.locator(".answer").inner_text().startswith("1889")
        assert second.locator(".answer").inner_text().startswith("330 metres")
        assert second.locator(".searched").inner_text() == \
            "searched for: How tall is the Eiffel Tower?"
        assert "eiffel.txt" in second.locator(".citations").inner_text()
        first.locator(".answer .cite").click()  # the first answer's own [1]
        assert "completed in 1889" in page.inner_text("#passage-text mark")

        page.reload()
        page.wait_for_selector("#conversation .turn >> nth=1")
        assert page.locator("#conversation .turn").nth(1).locator(".answer").inner_text() \
            .startswith("330 metres")
        assert "eiffel.txt" in page.locator("#conversation .turn").nth(0) \
            .locator(".citations").inner_text()

        page.click("#new")
        assert page.locator("#conversation .turn").count() == 0
        page.fill("#question", "How tall is it?")
        with page.expect_request("**/v1/ask") as sent:
            page.click("#ask")
        page.wait_for_function("document.getElementById('status').textContent.includes(' in ')")
        assert sent.value.post_data_json["history"] == []
        assert page.locator("#conversation .turn .searched").inner_text() == ""
        page.reload()
        page.wait_for_selector("#conversation .turn")
        assert page.locator("#conversation .turn").count() == 1
        assert errors == []
        page.close()
    rag.close()
