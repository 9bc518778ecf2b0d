"""A translation memory: (source, target) pairs kept in an ordinary ragline index folder.

Each pair is a document whose text is the source segment (so BM25 and the dense index search
the source side) and whose meta holds the target. The folder's manifest records the memory's
languages. Everything else is an index's: each file is imported in one transaction (a kill
leaves it whole or absent), re-importing an unchanged file is a no-op, a changed file replaces
its pairs, `ragline rm` takes a file's pairs out.

Matches are found by BM25 + dense retrieval (candidates) and ranked by the fuzzy-match score
translation tools report: 1 − Levenshtein distance / the longer segment's length, in characters.

    tm = TranslationMemory.open_or_create("tm", source="en", target="zh")
    tm.add([Path("git.po")])
    tm.matches("Open the file", k=3)      # [Match(source, target, score=0.93, …), …]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rapidfuzz.distance import Levenshtein

from ragline.config import IndexConfig, RetrievalConfig
from ragline.errors import ConfigError, EmptyIndexError, IngestError
from ragline.index.index import Index
from ragline.ingest.blob import Blob
from ragline.ingest.files import FileReader, IngestReport, discover
from ragline.retrieve.searcher import Searcher, check_k, check_query
from ragline.tm.formats import SUFFIXES, check_lang, read_pairs, same_lang
from ragline.types import Document, content_hash

# every pair one passage: a segment is split only past this many words
TM_CHUNK_WORDS = 2000
# candidates retrieval hands to the fuzzy ranking, at least
CANDIDATES = 30


@dataclass(frozen=True)
class Match:
    """A pair of the memory and how close its source is to the text: `score` is the fuzzy
    match in [0, 1] (1: the same segment); `origin` is the file it came from."""

    source: str
    target: str
    score: float
    origin: str = ""
    context: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "score": round(self.score, 4),
                "origin": self.origin, "context": self.context}


def fuzzy_score(a: str, b: str) -> float:
    """1 − Levenshtein distance / the longer length, over characters, whitespace runs as one
    space: the "match %" of translation tools, as a fraction."""
    return float(Levenshtein.normalized_similarity(" ".join(a.split()), " ".join(b.split())))


def pair_reader(source: str, target: str) -> FileReader:
    """Reads TMX, TSV/CSV, PO and MO files into one Document per pair, for an Index."""

    def load(blob: Blob) -> list[Document]:
        path = Path(blob.name)
        pairs, _, _ = read_pairs(path, blob.read(), source, target)
        if not pairs:
            raise IngestError(f"{path}: no translated pairs from {source} to {target}")
        return [Document(id=content_hash(f"{p.source}\x1f{p.target}\x1f{p.context}"),
                         source=str(path), text=p.source,
                         meta={"target": p.target, **({"context": p.context} if p.context
                                                       else {})})
                for p in pairs]

    return FileReader(frozenset(SUFFIXES), load, sniff=False)


class TranslationMemory:
    def __init__(self, index: Index) -> None:
        if not index.manifest.languages:
            index.close()
            raise ConfigError(f"{index.path} is a document index, not a translation memory; "
                              "make one with: ragline tm import TM_DIR FILE…")
        self.index = index
        self.source, self.target = index.manifest.languages
        self.searcher = Searcher(index, index.question_encoder(), RetrievalConfig())

    @classmethod
    def open(cls, path: str | Path) -> TranslationMemory:
        return cls(Index.open(path))

    @classmethod
    def open_or_create(cls, path: str | Path, source: str | None = None,
                       target: str | None = None, files: Sequence[Path] = (),
                       config: IndexConfig | None = None,
                       encoder: str | None = None) -> TranslationMemory:
        """The memory at `path`, or a new one from `source` to `target`. A new memory whose
        languages are not given takes those of the first of `files` that says them. Its
        encoder: the config's for English sources, its multilingual one for others."""
        config = config or IndexConfig()
        source = None if source is None else check_lang(source, "the source")
        target = None if target is None else check_lang(target, "the target")
        path = Path(path)
        if Index.exists(path):
            tm = cls.open(path)
            for asked, have, flag in ((source, tm.source, "--from"), (target, tm.target, "--to")):
                if asked and not same_lang(have, asked):
                    tm.close()
                    raise ConfigError(f"{path} translates {tm.source} to {tm.target}, not "
                                      f"{flag} {asked}; a memory holds one language pair: "
                                      "import into another folder")
            return tm
        missing = [f for f in files if not Path(f).exists()]
        if missing:  # checked before the folder is made: a failed import leaves nothing
            raise ConfigError(f"{missing[0]}: no such file or folder")
        if source is None or target is None:
            source, target = _languages_of(files, source, target)
        if encoder is None:
            encoder = config.encoder if same_lang(source, "en") else (
                config.encoder_zh or config.encoder)
        return cls(Index.open_or_create(path, replace(config, chunk_words=TM_CHUNK_WORDS),
                                        encoder, languages=(source, target)))

    def close(self) -> None:
        self.index.close()

    def __enter__(self) -> TranslationMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, paths: Sequence[str | Path], progress: bool = False) -> IngestReport:
        """Import TMX, TSV/CSV, PO and MO files (folders: every such file under them)."""
        return self.index.add(paths, progress=progress,
                              reader=pair_reader(self.source, self.target))

    def matches(self, text: str, k: int = 3) -> list[Match]:
        """The k pairs whose sources are closest to `text`, best fuzzy score first (ties: the
        better retrieved). Retrieval finds the candidates; it ranks none by itself."""
        check_query(text, "text to translate")
        check_k(k)
        try:
            hits = self.searcher.search(text, k=max(CANDIDATES, 4 * k))
        except EmptyIndexError:
            raise EmptyIndexError(f"{self.index.path} holds no pairs yet; import some with: "
                                  f"ragline tm import {self.index.path} FILE…") from None
        store = self.index.folder.store
        found = []
        for h in hits:
            doc = store.document(h.passage.doc_id)
            if doc is None:  # removed since it was retrieved
                continue
            found.append(Match(doc.text, str(doc.meta.get("target", "")),
                               fuzzy_score(text, doc.text), doc.source,
                               str(doc.meta.get("context", ""))))
        found.sort(key=lambda m: -m.score)  # stable: retrieval order breaks ties
        return found[:k]

    def info(self) -> dict[str, Any]:
        return {**self.index.info(), "languages": {"source": self.source,
                                                   "target": self.target}}


def _languages_of(files: Sequence[Path], source: str | None,
                  target: str | None) -> tuple[str, str]:
    """The languages of the first file that says them (the others are checked against them
    when they are imported)."""
    report = IngestReport()
    reasons = []
    for f in discover(files, report, pair_reader(source or "", target or "")):
        try:
            _, src, tgt = read_pairs(f, f.read_bytes(), source, target)
            return src, tgt
        except (IngestError, OSError) as e:
            reasons.append(str(e))
    raise ConfigError("the languages of the new memory are not known: "
                      + ("; ".join(reasons[:3]) or "no TMX, TSV, CSV, PO or MO file was given")
                      + " (give them with --from and --to)")
