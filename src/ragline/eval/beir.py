"""Readers for BEIR-format retrieval data: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.

    data = BeirData.from_folder(Path("scifact"), split="test")
    data.queries["1"], data.qrels["1"]          # 'query text', {'31715818': 1}

The corpus needs no reader of its own: `ragline index corpus.jsonl` keeps each row's `_id`
as the document id, which is what the qrels name.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ragline.errors import ConfigError
from ragline.eval.qa_data import read_text_file
from ragline.qa import spread


def read_queries(path: Path) -> dict[str, str]:
    """{query id: text} from BEIR queries.jsonl rows {"_id": ..., "text": ...}."""
    rows = _read_lines(path, "queries")
    out: dict[str, str] = {}
    for n, line in rows:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise ConfigError(f"{path}: line {n} is not JSON") from None
        qid = row.get("_id", row.get("id")) if isinstance(row, dict) else None
        text = row.get("text") if isinstance(row, dict) else None
        if qid is None or not isinstance(text, str):
            raise ConfigError(f'{path}: line {n} needs "_id" and "text" (BEIR queries.jsonl)')
        out[str(qid)] = text
    if not out:
        raise ConfigError(f"{path}: no queries")
    return out


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """{query id: {doc id: grade}} from a BEIR qrels TSV (query-id, corpus-id, score; with or
    without the header) or a TREC qrels file (qid, 0, docid, grade)."""
    out: dict[str, dict[str, int]] = {}
    for n, line in _read_lines(path, "qrels"):
        cols = next(csv.reader([line], delimiter="\t")) if "\t" in line else line.split()
        if n == 1 and not cols[-1].lstrip("-").isdigit():
            continue  # the header
        if len(cols) == 4:  # TREC: qid iteration docid grade
            cols = [cols[0], cols[2], cols[3]]
        if len(cols) != 3 or not cols[2].lstrip("-").isdigit():
            raise ConfigError(f"{path}: line {n} is not 'query-id<TAB>corpus-id<TAB>score'")
        out.setdefault(cols[0], {})[cols[1]] = int(cols[2])
    if not out:
        raise ConfigError(f"{path}: no judgements")
    return out


def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    text = read_text_file(path, f"{what} file")
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


@dataclass(frozen=True)
class BeirData:
    queries: dict[str, str]            # only the queries the qrels judge
    qrels: dict[str, dict[str, int]]
    corpus: Path | None = None

    def spread(self, n: int) -> BeirData:
        """n queries evenly spread over the judged ones (all when n ≥ their number)."""
        if n >= len(self.queries):
            return self
        keep = spread(list(self.queries), n)
        return BeirData({q: self.queries[q] for q in keep}, {q: self.qrels[q] for q in keep},
                        self.corpus)

    @classmethod
    def from_files(cls, queries: Path, qrels: Path, corpus: Path | None = None) -> BeirData:
        q = read_queries(queries)
        r = read_qrels(qrels)
        missing = [qid for qid in r if qid not in q]
        if missing:
            raise ConfigError(f"{qrels}: {len(missing)} judged query id(s) are not in {queries} "
                              f"(first: {missing[0]}); are they from the same data set?")
        return cls({qid: q[qid] for qid in r}, r, corpus)

    @classmethod
    def from_folder(cls, folder: Path, split: str = "test") -> BeirData:
        """A BEIR data set folder: corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""
        if not folder.is_dir():
            raise ConfigError(f"no BEIR data folder at {folder}")
        qrels = folder / "qrels" / f"{split}.tsv"
        if not qrels.is_file():
            have = sorted(p.stem for p in (folder / "qrels").glob("*.tsv"))
            raise ConfigError(f"{qrels} not found; splits here: {', '.join(have) or 'none'}")
        corpus = folder / "corpus.jsonl"
        return cls.from_files(folder / "queries.jsonl", qrels,
                              corpus if corpus.is_file() else None)
