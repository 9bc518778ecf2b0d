"""Text and text-like files: plain text, Markdown, HTML, markup (reST, LaTeX, Org, AsciiDoc),
subtitles with their times, and data files (JSON, XML, YAML, TOML) read with their keys.

    [doc] = load_subtitles(Blob("talk.srt", data=b"1\n00:00:01,000 --> 00:00:03,000\nHello"))
    doc.meta["sections"]    # [[start, end, title, "00:00:01 – 00:00:03"], ...]
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from ragline.errors import UnreadableFileError
from ragline.ingest.blob import Blob, decode_text, require_text
from ragline.text import count_words
from ragline.types import Document

# ---------------------------------------------------------------- plain text and markup


def load_txt(blob: Blob) -> list[Document]:
    """Plain text, and text-like files read as written (reST, LaTeX, Org, AsciiDoc, YAML,
    TOML, a README with no extension): placed by line range."""
    text = require_text(decode_text(blob.read(), blob.name), blob.name, "file is empty")
    return [Document.from_text(text, source=blob.name, title=_markup_title(text),
                               meta={"lines": True})]


# a title line as reST, AsciiDoc, Org and LaTeX write one
_TITLE_RES = (re.compile(r"\A\s*(?:[=#*~-]{3,}\n)?([^\n]{2,120})\n[=#*~-]{3,}\n"),  # reST
              re.compile(r"^=\s+(\S[^\n]{1,120})$", re.MULTILINE),                # AsciiDoc
              re.compile(r"^#\+TITLE:\s*(\S[^\n]{0,120})$", re.MULTILINE | re.IGNORECASE),
              re.compile(r"\\title\{([^}\n]{1,120})\}"))                         # LaTeX


def _markup_title(text: str) -> str:
    head = text[:4000]
    for pattern in _TITLE_RES:
        m = pattern.search(head)
        if m:
            return m.group(1).strip()
    return ""


def load_markdown(blob: Blob) -> list[Document]:
    from markdown_it import MarkdownIt

    source = decode_text(blob.read(), blob.name)
    title = ""
    m = re.search(r"^#{1,2}\s+(.+?)\s*#*\s*$", source, re.MULTILINE)
    if m:
        title = m.group(1).strip()
    html = MarkdownIt("commonmark").enable("table").render(source)
    text, _ = html_to_text(html)
    text = require_text(text, blob.name, "file is empty")
    return [Document.from_text(text, source=blob.name, title=title)]


# ---------------------------------------------------------------- HTML

_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "nav", "header", "footer",
              "aside", "form", "iframe", "button", "select", "head")
_BLOCK_TAGS = ("p", "div", "section", "article", "main", "h1", "h2", "h3", "h4", "h5", "h6",
               "li", "ul", "ol", "table", "tr", "blockquote", "pre", "br", "hr", "dd", "dt",
               "figcaption")


# HTML parsers scan the stack of open elements for many start tags, so a page of nested
# <div>s parses in time quadratic in its depth (1.1 MB of them: 47 s). Browsers cap the tree
# depth (Blink at 512); tags deeper than this are dropped before parsing, their text kept.
MAX_HTML_DEPTH = 256
_TAG_RE = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]*)[^>]*?(/?)>")
# elements that never hold content, and those whose end tag may be left out (a new one closes
# the last): neither deepens the tree in a parser, so neither is counted
_FLAT_TAGS = frozenset("area base br col embed hr img input link meta source track wbr "
                       "p li dt dd tr td th option optgroup rb rt rp thead tbody tfoot "
                       "colgroup caption".split())


def limit_depth(html: str, max_depth: int = MAX_HTML_DEPTH) -> str:
    """`html` with tags nested deeper than `max_depth` removed (one linear pass)."""
    depth = deepest = 0
    for m in _TAG_RE.finditer(html):  # most pages: measure only, change nothing
        if m.group(2).lower() in _FLAT_TAGS or m.group(3):
            continue
        depth = max(0, depth - 1) if m.group(1) else depth + 1
        deepest = max(deepest, depth)
    if deepest <= max_depth:
        return html
    out: list[str] = []
    last = depth = 0
    dropped: Counter[str] = Counter()  # open tags dropped, by name: their end tags go too
    for m in _TAG_RE.finditer(html):
        name = m.group(2).lower()
        if name in _FLAT_TAGS or m.group(3):
            continue
        if m.group(1):  # an end tag
            if dropped[name]:
                dropped[name] -= 1
            else:
                depth = max(0, depth - 1)
                continue
        elif depth < max_depth:
            depth += 1
            continue
        else:
            dropped[name] += 1
        out.append(html[last:m.start()])
        out.append(" ")
        last = m.end()
    out.append(html[last:])
    return "".join(out)


def html_to_text(html: str) -> tuple[str, str]:
    """(text, title) of an HTML page: no markup, no scripts or navigation, blocks on their own lines."""
    from selectolax.lexbor import LexborHTMLParser

    tree = LexborHTMLParser(limit_depth(html))
    title_node = tree.css_first("title") or tree.css_first("h1")
    title = " ".join(title_node.text().split()) if title_node else ""
    for tag in _DROP_TAGS:
        for node in tree.css(tag):
            node.decompose()
    for node in tree.css(",".join(_BLOCK_TAGS)):
        node.insert_before("\n")
        node.insert_after("\n")
    for node in tree.css("td,th"):
        node.insert_after(" ")
    root = tree.body or tree.root
    raw = root.text(separator="") if root is not None else ""
    lines = (" ".join(line.split()) for line in raw.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return text, title


def load_html(blob: Blob) -> list[Document]:
    text, title = html_to_text(decode_text(blob.read(), blob.name))
    text = require_text(text, blob.name, "no text in the page")
    return [Document.from_text(text, source=blob.name, title=title)]




# ---------------------------------------------------------------- subtitles

_CUE_TIME = re.compile(r"(\d+:)?(\d{1,2}):(\d{2})[.,](\d{1,3})\s*-->\s*"
                       r"(\d+:)?(\d{1,2}):(\d{2})[.,](\d{1,3})")
SUBTITLE_WORDS = 100  # cues are gathered into passages of about this many words


def _clock(h: str | None, m: str, s: str) -> str:
    return f"{int((h or '0:')[:-1]):02d}:{int(m):02d}:{int(s):02d}"


def load_subtitles(blob: Blob) -> list[Document]:
    """SubRip (.srt) and WebVTT (.vtt): the cues' text, gathered into passages of about
    100 words, each placed by its time range ("00:01:02 – 00:01:30")."""
    text = decode_text(blob.read(), blob.name)
    cues: list[tuple[str, str, str]] = []  # (from, to, text)
    for block in re.split(r"\n\s*\n", text):
        lines = block.strip().split("\n")
        for i, line in enumerate(lines):
            m = _CUE_TIME.search(line)
            if m:
                words = " ".join(re.sub(r"<[^>]+>", "", ln).strip() for ln in lines[i + 1:])
                if words.strip():
                    g = m.groups()
                    cues.append((_clock(g[0], g[1], g[2]), _clock(g[4], g[5], g[6]),
                                 " ".join(words.split())))
                break
    if not cues:
        raise UnreadableFileError(f"{blob.name}: no subtitle cues (lines like "
                                  "'00:00:01,000 --> 00:00:04,000' followed by text)")
    parts: list[str] = []
    sections: list[list[Any]] = []
    pos = 0
    group: list[tuple[str, str, str]] = []
    for n, cue in enumerate(cues):
        group.append(cue)
        size = sum(count_words(c[2]) for c in group)
        if size >= SUBTITLE_WORDS or n == len(cues) - 1:
            chunk = "\n".join(c[2] for c in group)
            sections.append([pos, pos + len(chunk), "", f"{group[0][0]} – {group[-1][1]}"])
            parts.append(chunk)
            pos += len(chunk) + 1
            group = []
    return [Document.from_text("\n".join(parts), source=blob.name,
                               meta={"sections": sections, "whole_sections": True})]


# ---------------------------------------------------------------- data files


def _flatten(value: Any, path: str, out: list[str], depth: int = 0) -> None:
    """`a.b[0].c: value` lines: every value with the keys that lead to it."""
    if depth > 100:
        raise UnreadableFileError("nested too deeply to read")
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{path}.{k}" if path else str(k), out, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _flatten(v, f"{path}[{i}]", out, depth + 1)
    elif value is not None and str(value).strip():
        text = " ".join(str(value).split())
        out.append(f"{path}: {text}" if path else text)


def load_json(blob: Blob) -> list[Document]:
    """JSON as `key.path: value` lines, so that a passage keeps the names of its values."""
    text = decode_text(blob.read(), blob.name)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise UnreadableFileError(f"{blob.name}: malformed JSON ({str(e)[:120]})") from None
    lines: list[str] = []
    try:
        _flatten(value, "", lines)
    except UnreadableFileError as e:
        raise UnreadableFileError(f"{blob.name}: {e}") from None
    body = require_text("\n".join(lines), blob.name, "no values in the JSON")
    return [Document.from_text(body, source=blob.name)]


def load_xml(blob: Blob) -> list[Document]:
    """XML as `element: text` lines (attributes as `element@name: value`). Entities and
    DTDs are refused (defusedxml): a crafted file cannot expand or read other files."""
    from defusedxml import DefusedXmlException
    from defusedxml.ElementTree import ParseError, iterparse

    lines: list[str] = []
    title = ""
    try:
        for _, el in iterparse(blob.buffer(), events=("end",)):
            tag = _local(el.tag)
            for k, v in el.attrib.items():
                if v.strip():
                    lines.append(f"{tag}@{_local(k)}: {' '.join(v.split())}")
            if el.text and el.text.strip():
                lines.append(f"{tag}: {' '.join(el.text.split())}")
                if not title and tag.lower() in ("title", "name"):
                    title = " ".join(el.text.split())[:200]
            el.clear()
    except DefusedXmlException as e:
        raise UnreadableFileError(f"{blob.name}: refused: the XML declares {e}") from None
    except ParseError as e:
        raise UnreadableFileError(f"{blob.name}: malformed XML ({e})") from None
    body = require_text("\n".join(lines), blob.name, "no text in the XML")
    return [Document.from_text(body, source=blob.name, title=title)]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else str(tag)
