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
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ragline.errors import ConfigError, UnreadableFileError, UnsupportedFileError
from ragline.ingest.loaders import decode_text
from ragline.text import scrub

log = logging.getLogger(__name__)

SUFFIXES = (".tmx", ".tsv", ".csv", ".po", ".mo")
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# BCP 47 (RFC 5646) language tags as files write them ('_' for '-' as gettext does): a
# language, then an optional script, region and variants
_LANG_CODE = re.compile(r"^[a-zA-Z]{2,3}(?:[-_][a-zA-Z]{4})?(?:[-_](?:[a-zA-Z]{2}|[0-9]{3}))?"
                        r"(?:[-_](?:[a-zA-Z0-9]{5,8}|[0-9][a-zA-Z0-9]{3}))*$")
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


def is_lang(code: str) -> bool:
    return len(code) <= 35 and _LANG_CODE.match(code) is not None


def _shown(text: str, limit: int = 40) -> str:
    """A value from a file or a user, cut short enough to quote in one line."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def check_lang(code: str, what: str) -> str:
    """`code` as one spelling, or ConfigError when it is not a BCP 47 language tag."""
    if not isinstance(code, str) or not is_lang(code.strip()):
        raise ConfigError(f"{what} language {_shown(str(code))} is not a language code (e.g. "
                          "en, zh, de, pt-BR, zh-Hans)")
    return normalize_lang(code)


def _file_lang(path: Path, code: str, where: str) -> str:
    """A language a file names: a BCP 47 tag, or the file is refused."""
    if not is_lang(code.strip()):
        raise UnreadableFileError(f"{path}: {where} {_shown(code)} is not a language code")
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


def _pairs(rows: Iterable[tuple[str, str, str]]) -> list[Pair]:
    """Pairs with both sides, each once, verbatim: a segment's own leading space and final
    newline are part of it (a UI string's "  %s\n" must come back so), matching ignores them."""
    out: dict[tuple[str, str, str], Pair] = {}
    for s, t, c in rows:
        s, t = scrub(s), scrub(t)
        if s.strip() and t.strip():
            out.setdefault((s, t, c), Pair(s, t, c))
    return list(out.values())


# ---------------------------------------------------------------- TMX


def _tmx(path: Path, data: bytes, source: str | None,
         target: str | None) -> tuple[list[Pair], str, str]:
    _refuse_declarations(path, data)
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
    if src:
        src = _file_lang(path, src, "its header's srclang")
    units: list[dict[str, str]] = []
    for tu in root.iter("tu"):
        segs = {}
        for tuv in tu.findall("tuv"):
            lang = tuv.get(_XML_LANG) or tuv.get("lang")
            seg = tuv.find("seg")
            if lang and seg is not None:
                segs[_file_lang(path, lang, "the xml:lang")] = "".join(seg.itertext())
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


def _refuse_declarations(path: Path, data: bytes) -> None:
    """A DTD's internal subset or an entity declaration refused by the XML parser itself, in
    whatever encoding the file is (entities are how XML bombs and external-entity reads work;
    TMX needs none). A plain `<!DOCTYPE tmx SYSTEM "tmx14.dtd">` is allowed: nothing loads it."""
    from xml.parsers import expat

    class Declared(Exception):
        pass

    def doctype(name: str, sysid: str | None, pubid: str | None, internal: bool) -> None:
        if internal:
            raise Declared("a DOCTYPE with declarations of its own (entities, elements)")

    def entity(name: str, *args: object) -> None:
        raise Declared(f"the XML entity {name!r}")

    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    try:
        parser.Parse(data, True)
    except Declared as e:
        raise UnreadableFileError(f"{path}: declares {e}; XML entities are how XML bombs and "
                                  "file reads work and a TMX file needs none: refused") from None
    except expat.ExpatError as e:
        raise UnreadableFileError(f"{path}: malformed TMX ({e})") from None


# ---------------------------------------------------------------- TSV / CSV


def _table(path: Path, data: bytes, source: str | None, target: str | None,
           delimiter: str) -> tuple[list[Pair], str, str]:
    text = decode_text(data, str(path))
    kind = "TSV" if delimiter == "\t" else "CSV"
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []  # (the file's line, the row)
    try:
        line = 1
        for r in reader:
            if any(c.strip() for c in r):
                rows.append((line, r))
            line = reader.line_num + 1
    except csv.Error as e:
        raise UnreadableFileError(f"{path}: malformed {kind} at line {reader.line_num} ({e})"
                                  ) from None
    found: tuple[str | None, str | None] = (None, None)
    if rows and len(rows[0][1]) >= 2:
        head = [c.strip() for c in rows[0][1][:2]]
        if _language_header(head, source, target):
            found, rows = (head[0], head[1]), rows[1:]
        elif {c.lower() for c in head} <= _HEADER_NAMES:
            rows = rows[1:]
    short = [line for line, r in rows if len(r) < 2 or not r[1].strip()]
    if short:
        log.warning("%s: %d row(s) without a target were skipped (line %s); each row needs a "
                    "source and a target", path, len(short),
                    ", ".join(map(str, short[:5])) + (", …" if len(short) > 5 else ""))
    src, tgt = _languages(path, found[0], found[1], source, target)
    return _pairs((r[0], r[1], "") for _, r in rows if len(r) >= 2), src, tgt


def _language_header(head: list[str], source: str | None, target: str | None) -> bool:
    """Whether a first row names the columns' languages rather than holding a pair. With
    languages given, a row that names them is one; otherwise both cells must be language tags
    whose language is written in one case ('en', 'EN', 'zh-CN'), so that "Yes, Ja" is a pair
    (a header naming other languages than those given is then refused by `_languages`)."""
    if not all(is_lang(c) and c.lower() not in _HEADER_NAMES for c in head):
        return False
    if (source is not None or target is not None) and all(
            want is None or same_lang(c, want)
            for c, want in zip(head, (source, target), strict=True)):
        return True
    primary = [re.split(r"[-_]", c)[0] for c in head]
    return all(p.islower() or p.isupper() for p in primary)


# ---------------------------------------------------------------- gettext


def _gettext(path: Path, data: bytes, source: str | None,
             target: str | None) -> tuple[list[Pair], str, str]:
    entries, lang = (_mo_entries(path, data) if path.suffix.lower() == ".mo"
                     else _po_entries(path, data))
    if lang:
        lang = _file_lang(path, lang, "its Language header")
    else:
        lang = _lang_from_path(path)
    # gettext's msgids are the program's own strings: English, unless told otherwise
    src, tgt = _languages(path, None, lang, source or "en", target)
    rows: list[tuple[str, str, str]] = []
    for msgid, plural, forms, ctx in entries:
        if not msgid:
            continue  # the header
        rows.append((msgid, forms[0] if forms else "", ctx))
        if plural:
            rows.append((plural, forms[1] if len(forms) > 1 else "", ctx))
    return _pairs(rows), src, tgt


# (msgid, msgid_plural, msgstr forms, msgctxt) of the finished translations of a catalog
_Entry = tuple[str, str, list[str], str]


def _po_entries(path: Path, data: bytes) -> tuple[list[_Entry], str | None]:
    import polib

    text = decode_text(data, str(path))
    _check_po_syntax(path, text)
    try:
        # polib opens its argument as a file when a file of that name exists: the content
        # checked above always has a line break and an msgid, so it never names one
        catalog = polib.pofile(text + "\n")
    except (OSError, ValueError) as e:
        raise UnreadableFileError(f"{path}: malformed PO file "
                                  f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                                  ) from None
    entries = []
    for entry in catalog:
        if entry.obsolete or "fuzzy" in entry.flags:
            continue  # unfinished or retired translations do not go into a memory
        forms = ([entry.msgstr_plural[i] for i in sorted(entry.msgstr_plural)] if entry.msgid_plural
                 else [entry.msgstr])
        entries.append((entry.msgid, entry.msgid_plural or "", forms, entry.msgctxt or ""))
    return entries, catalog.metadata.get("Language") or None


_PO_STRING = r'"(?:[^"\\]|\\.)*"'
_PO_LINE = re.compile(rf"^(?:(?:msgctxt|msgid|msgid_plural|msgstr(?:\[\d+\])?)\s+)?"
                      rf"{_PO_STRING}\s*$")


def _check_po_syntax(path: Path, text: str) -> None:
    """What msgfmt refuses, refused with its line: every line a comment, blank, or a keyword
    and one whole quoted string, or a string continuing the one above."""
    seen_msgid = False
    for n, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not _PO_LINE.match(stripped):
            raise UnreadableFileError(f"{path}: malformed PO file at line {n}: "
                                      f"{_shown(stripped)} (a keyword and a quoted string, "
                                      "or a quoted string continuing the one above)")
        seen_msgid = seen_msgid or stripped.startswith("msgid")
    if not seen_msgid:
        raise UnreadableFileError(f"{path}: not a PO file (it has no msgid)")


_MO_MAGIC = 0x950412DE


def _mo_entries(path: Path, data: bytes) -> tuple[list[_Entry], str | None]:
    """A compiled catalog's entries, read from its bytes. Every offset and length must lie
    inside the file, and the strings together can be no longer than the file, before anything
    is decoded: a crafted table pointing 10,000 entries at one long string would otherwise
    decode it 10,000 times."""
    import struct

    def bad(why: str) -> UnreadableFileError:
        return UnreadableFileError(f"{path}: malformed MO file ({why})")

    size = len(data)
    if size < 28:
        raise bad("shorter than its header")
    for order in ("<", ">"):
        magic, revision, n, orig, trans = struct.unpack_from(f"{order}5I", data)
        if magic == _MO_MAGIC:
            break
    else:
        raise bad("no MO magic number")
    if revision >> 16 not in (0, 1):
        raise bad(f"unknown format revision {revision >> 16}")
    for table in (orig, trans):
        if table + 8 * n > size:
            raise bad(f"its table of {n:,} strings runs past the end of the file")
    spans = []
    for table in (orig, trans):
        lengths_offsets = struct.unpack_from(f"{order}{2 * n}I", data, table)
        for i in range(n):
            length, offset = lengths_offsets[2 * i], lengths_offsets[2 * i + 1]
            if offset + length > size:
                raise bad(f"string {i + 1} lies outside the file")
            spans.append((offset, length))
    if sum(length for _, length in spans) > size:
        raise bad("its strings overlap: together they are longer than the file")
    raw = [data[o:o + length] for o, length in spans]
    ids, strs = raw[:n], raw[n:]
    charset = "utf-8"
    for id_bytes, str_bytes in zip(ids, strs, strict=True):
        if id_bytes == b"":  # the header entry
            found = re.search(rb"charset=([A-Za-z0-9_.:-]+)", str_bytes)
            if found:
                charset = found.group(1).decode("ascii")
            break
    try:
        import codecs

        codecs.lookup(charset)
    except LookupError:
        raise bad(f"unknown charset {charset!r}") from None
    entries: list[_Entry] = []
    lang = None
    try:
        for id_bytes, str_bytes in zip(ids, strs, strict=True):
            msgid, tstr = id_bytes.decode(charset), str_bytes.decode(charset)
            ctx, _, msgid = msgid.rpartition("\x04")
            singular, _, plural = msgid.partition("\x00")
            if not singular and not ctx:
                m = re.search(r"^Language:\s*(\S*)", tstr, re.M)
                lang = m.group(1) if m and m.group(1) else None
            entries.append((singular, plural, tstr.split("\x00"), ctx))
    except UnicodeDecodeError as e:
        raise bad(f"not {charset} text ({e.reason})") from None
    return entries, lang


def _lang_from_path(path: Path) -> str | None:
    """.../locale/<lang>/LC_MESSAGES/app.mo or .../<lang>.po: the language the path names."""
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "LC_MESSAGES" and is_lang(parts[-3]):
        return normalize_lang(parts[-3])
    return normalize_lang(path.stem) if is_lang(path.stem) and len(path.stem) <= 8 else None
