"""Bilingual files → (source, target) pairs: TMX, TSV/CSV, gettext PO and MO.

Each reader finds the file's languages where the file says them (a TMX header and its `xml:lang`
attributes, a PO/MO header's Language, a TSV/CSV header row of language codes) and takes them
from the caller (`--from`, `--to`) where it does not; a file whose languages differ from the
ones asked for, or that says none when none was given, is skipped with the reason.

    pairs = read_pairs(Path("app.po"), data, source="en", target="zh")
    pairs[0].source, pairs[0].target, pairs[0].context
"""

from __future__ import annotations

import csv
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ragline.errors import ConfigError, UnreadableFileError, UnsupportedFileError
from ragline.ingest.loaders import decode_text
from ragline.text import scrub

SUFFIXES = (".tmx", ".tsv", ".csv", ".po", ".mo")
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_LANG_CODE = re.compile(r"^[a-zA-Z]{2,3}([-_][a-zA-Z0-9]{2,8})*$")
_HEADER_NAMES = {"source", "target", "src", "tgt"}


@dataclass(frozen=True)
class Pair:
    """One translation unit: a source segment, its translation, and where the file placed it
    (a PO/MO msgctxt; empty for most formats)."""

    source: str
    target: str
    context: str = ""


def normalize_lang(code: str) -> str:
    """'zh_CN', 'ZH-cn' → 'zh-cn': one spelling to compare language codes by."""
    return code.strip().lower().replace("_", "-")


def same_lang(code: str, want: str) -> bool:
    """Whether `code` is the language `want` names: 'zh-cn' is 'zh'; 'zh' is not 'zh-tw'."""
    code, want = normalize_lang(code), normalize_lang(want)
    return code == want or code.startswith(want + "-")


def check_lang(code: str, what: str) -> str:
    if not _LANG_CODE.match(code.strip()):
        raise ConfigError(f"{what} language {code!r} is not a language code (e.g. en, zh, "
                          "de, pt-BR)")
    return normalize_lang(code)


def read_pairs(path: Path, data: bytes, source: str | None,
               target: str | None) -> tuple[list[Pair], str, str]:
    """The file's pairs and its (source, target) languages."""
    suffix = path.suffix.lower()
    if suffix == ".tmx":
        return _tmx(path, data, source, target)
    if suffix in (".tsv", ".csv"):
        return _table(path, data, source, target, "\t" if suffix == ".tsv" else ",")
    if suffix in (".po", ".mo"):
        return _gettext(path, data, source, target)
    raise UnsupportedFileError(f"{path}: not a translation memory file; supported: "
                               f"{' '.join(SUFFIXES)}")


def _languages(path: Path, found_source: str | None, found_target: str | None,
               source: str | None, target: str | None) -> tuple[str, str]:
    """The pair's languages: the file's, which must agree with the ones asked for."""
    out = []
    for found, asked, side, flag in ((found_source, source, "source", "--from"),
                                     (found_target, target, "target", "--to")):
        if found and asked and not same_lang(found, asked):
            raise UnreadableFileError(f"{path}: its {side} language is {found}, not {asked}")
        lang = asked or found
        if not lang:
            raise UnreadableFileError(f"{path} does not say its {side} language; give it with {flag}")
        out.append(normalize_lang(lang))
    return out[0], out[1]


def _clean(text: str) -> str:
    return scrub(text).strip()


def _pairs(rows: Iterable[tuple[str, str, str]]) -> list[Pair]:
    """Pairs with both sides, whitespace trimmed, each once."""
    out: dict[tuple[str, str, str], Pair] = {}
    for s, t, c in rows:
        s, t = _clean(s), _clean(t)
        if s and t:
            out.setdefault((s, t, c), Pair(s, t, c))
    return list(out.values())


# ---------------------------------------------------------------- TMX


def _tmx(path: Path, data: bytes, source: str | None,
         target: str | None) -> tuple[list[Pair], str, str]:
    # entity declarations are how XML bombs and external-entity reads work; TMX needs none
    if b"<!ENTITY" in data[:65536]:
        raise UnreadableFileError(f"{path}: declares XML entities, which a TMX file has no "
                                  "use for; refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise UnreadableFileError(f"{path}: malformed TMX ({e})") from None
    if root.tag != "tmx":
        raise UnreadableFileError(f"{path}: not a TMX file (its root element is <{root.tag}>)")
    header = root.find("header")
    src = header.get("srclang") if header is not None else None
    if src and src.lower() == "*all*":
        src = None
    units: list[dict[str, str]] = []
    for tu in root.iter("tu"):
        segs = {}
        for tuv in tu.findall("tuv"):
            lang = tuv.get(_XML_LANG) or tuv.get("lang")
            seg = tuv.find("seg")
            if lang and seg is not None:
                segs[normalize_lang(lang)] = "".join(seg.itertext())
        units.append(segs)
    langs = sorted({lang for u in units for lang in u})
    src = source or src
    if src is None:
        raise UnreadableFileError(f"{path} does not say its source language; give it with --from")
    others = [lang for lang in langs if not same_lang(lang, src)]
    if target is None and len(others) != 1:
        raise UnreadableFileError(f"{path} holds {', '.join(others) or 'no'} target languages; "
                                  "choose one with --to")
    if target is not None and not any(same_lang(lang, target) for lang in others):
        raise UnreadableFileError(f"{path} holds no {target} segments (it holds "
                                  f"{', '.join(others) or 'no other language'})")
    src, tgt = _languages(path, src, None, None, target or others[0])

    def side(unit: dict[str, str], want: str) -> str:
        return next((text for lang, text in unit.items() if same_lang(lang, want)), "")

    return _pairs((side(u, src), side(u, tgt), "") for u in units), src, tgt


# ---------------------------------------------------------------- TSV / CSV


def _table(path: Path, data: bytes, source: str | None, target: str | None,
           delimiter: str) -> tuple[list[Pair], str, str]:
    text = decode_text(data, str(path))
    try:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter) if any(r)]
    except csv.Error as e:
        raise UnreadableFileError(f"{path}: malformed {'TSV' if delimiter == chr(9) else 'CSV'}"
                                  f" ({e})") from None
    found: tuple[str | None, str | None] = (None, None)
    if rows and len(rows[0]) >= 2:
        head = [c.strip() for c in rows[0][:2]]
        if all(_LANG_CODE.match(c) and c.lower() not in _HEADER_NAMES for c in head) and \
                all(len(c) <= 8 for c in head):
            found, rows = (head[0], head[1]), rows[1:]  # a header of language codes
        elif {c.lower() for c in head} <= _HEADER_NAMES:
            rows = rows[1:]
    short = [i for i, r in enumerate(rows, 1) if len(r) < 2]
    if short:
        raise UnreadableFileError(f"{path}: row {short[0]} has one column; each row needs a "
                                  "source and a target")
    src, tgt = _languages(path, found[0], found[1], source, target)
    return _pairs((r[0], r[1], "") for r in rows), src, tgt


# ---------------------------------------------------------------- gettext


def _gettext(path: Path, data: bytes, source: str | None,
             target: str | None) -> tuple[list[Pair], str, str]:
    import polib

    try:
        catalog = (polib.mofile(data) if path.suffix.lower() == ".mo"
                   else polib.pofile(decode_text(data, str(path))))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UnreadableFileError(f"{path}: malformed {path.suffix[1:].upper()} file "
                                  f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                                  ) from None
    lang = catalog.metadata.get("Language") or _lang_from_path(path)
    # gettext's msgids are the program's own strings: English, unless told otherwise
    src, tgt = _languages(path, None, lang, source or "en", target)
    rows: list[tuple[str, str, str]] = []
    for entry in catalog:
        if entry.obsolete or "fuzzy" in entry.flags or not entry.msgid:
            continue  # unfinished or retired translations do not go into a memory
        ctx = entry.msgctxt or ""
        if entry.msgid_plural:
            rows.append((entry.msgid, entry.msgstr_plural.get(0, ""), ctx))
            rows.append((entry.msgid_plural, entry.msgstr_plural.get(1, ""), ctx))
        else:
            rows.append((entry.msgid, entry.msgstr, ctx))
    return _pairs(rows), src, tgt


def _lang_from_path(path: Path) -> str | None:
    """.../locale/<lang>/LC_MESSAGES/app.mo or .../<lang>.po: the language the path names."""
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "LC_MESSAGES":
        return parts[-3]
    return path.stem if _LANG_CODE.match(path.stem) and len(path.stem) <= 8 else None
