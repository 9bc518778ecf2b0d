"""BM25 over passage tokens, in segments that take additions and deletions without a rebuild.

Tokens come from ragline.text.tokenize (jieba for CJK). Each segment holds raw term
frequencies and passage lengths, never precomputed scores, so a query scores with the
statistics of the whole index (live passages, document frequencies, mean length) and the
result equals one BM25 index built over the live passages, however they are segmented
(Lucene's scoring, the variant bm25s calls "lucene"):

    score(q, d) = Σ_{t ∈ q} ln(1 + (N - df_t + 0.5) / (df_t + 0.5)) · tf / (tf + k1·(1 - b + b·|d|/avgdl))

Writes (the Lucene shape): an addition becomes a new small segment; a deletion clears a
passage's bit in its segment's live mask (the store is the truth, so the masks are derived
from it on open, never saved); when ten segments of a size tier pile up they merge into one,
dropping deleted passages, so every passage is merged O(log n) times. Segments are immutable
folders of numpy arrays + a JSON term list (no pickle), written once.

    bm25 = BM25Index.build(rowids, token_lists)
    bm25.add(more_rowids, more_tokens); bm25.remove(rowids)
    scores, ids = bm25.search(["capit", "franc"], k=10)
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba
import numpy as np

from ragline.errors import IndexCorruptError
from ragline.index.atomic import fsync_dir

MERGE_FACTOR = 10        # segments of one size tier that trigger a merge
MIN_TIER = 1_000         # segments below this many passages share the lowest tier
BUILD_CHUNK = 50_000     # passages per segment when building from scratch (bounds memory)
_FILES = ("rowids.npy", "lengths.npy", "indptr.npy", "docs.npy", "tfs.npy", "terms.json")


class Segment:
    """Postings of a batch of passages. Term t's postings are docs[indptr[t]:indptr[t+1]]
    (local passage indices) with their term frequencies in tfs."""

    def __init__(self, rowids: np.ndarray, lengths: np.ndarray, terms: list[str],
                 indptr: np.ndarray, docs: np.ndarray, tfs: np.ndarray,
                 name: str | None = None) -> None:
        self.rowids = rowids        # (n,) int64, ascending: the store's passage row ids
        self.lengths = lengths      # (n,) int32: tokens per passage
        self.terms = terms          # term of each local term id
        self.term_id = {t: i for i, t in enumerate(terms)}
        self.indptr = indptr        # (n_terms + 1,) int64
        self.docs = docs            # (n_postings,) int32
        self.tfs = tfs              # (n_postings,) float32
        self.name = name            # its folder once saved; None while only in memory
        self._norm: tuple[float, np.ndarray] | None = None
        self.set_live(np.ones(len(rowids), dtype=bool))

    def set_live(self, live: np.ndarray) -> None:
        """Which passages are not deleted; what queries need of it is kept at hand, so a
        query costs what its posting lists cost, not the segment's size."""
        self.live = live                                  # (n,) bool
        self.dead = np.flatnonzero(~live)                 # local indices of deleted passages
        self.n_live = int(live.sum())
        self.live_length = int(self.lengths[live].sum())

    @property
    def size(self) -> int:
        return len(self.rowids)

    @classmethod
    def from_tokens(cls, rowids: Sequence[int] | np.ndarray,
                    tokens: Sequence[Sequence[str]]) -> Segment:
        vocab: dict[str, int] = {}
        term_ids: list[int] = []
        doc_idx: list[int] = []
        tfs: list[int] = []
        for i, toks in enumerate(tokens):
            for tok, n in Counter(toks).items():
                term_ids.append(vocab.setdefault(tok, len(vocab)))
                doc_idx.append(i)
                tfs.append(n)
        t = np.asarray(term_ids, dtype=np.int64)
        order = np.argsort(t, kind="stable")  # postings grouped by term
        return cls(np.asarray(rowids, dtype=np.int64),
                   np.fromiter((len(x) for x in tokens), dtype=np.int32, count=len(tokens)),
                   list(vocab), _indptr(t, len(vocab)),
                   np.asarray(doc_idx, dtype=np.int32)[order],
                   np.asarray(tfs, dtype=np.float32)[order])

    @classmethod
    def merge(cls, segments: Sequence[Segment]) -> Segment:
        """One segment holding the live passages of `segments` (given in row id order)."""
        vocab: dict[str, int] = {}
        parts_t, parts_d, parts_tf, rowids, lengths = [], [], [], [], []
        offset = 0
        for s in segments:
            remap = np.fromiter((vocab.setdefault(t, len(vocab)) for t in s.terms),
                                dtype=np.int64, count=len(s.terms))
            new_doc = np.cumsum(s.live, dtype=np.int64) - 1 + offset  # local index after drop
            term_of = np.repeat(np.arange(len(s.terms)), np.diff(s.indptr))  # (n_postings,)
            keep = s.live[s.docs]
            parts_t.append(remap[term_of[keep]])
            parts_d.append(new_doc[s.docs[keep]])
            parts_tf.append(s.tfs[keep])
            rowids.append(s.rowids[s.live])
            lengths.append(s.lengths[s.live])
            offset += s.n_live
        t = np.concatenate(parts_t) if parts_t else np.zeros(0, np.int64)
        order = np.argsort(t, kind="stable")  # postings grouped by term
        docs = np.concatenate(parts_d)[order]
        ids, lens = np.concatenate(rowids), np.concatenate(lengths)
        by_rowid = np.argsort(ids, kind="stable")
        if np.any(by_rowid != np.arange(len(ids))):
            # merged parts whose row id ranges interleave: renumber passages in row id order
            # (remove() binary-searches rowids); postings need no order within a term
            where = np.empty_like(by_rowid)
            where[by_rowid] = np.arange(len(by_rowid))
            docs, ids, lens = where[docs], ids[by_rowid], lens[by_rowid]
        return cls(ids, lens, list(vocab), _indptr(t, len(vocab)), docs.astype(np.int32),
                   np.concatenate(parts_tf)[order])

    def norm(self, k1: float, b: float, avgdl: float) -> np.ndarray:
        """k1·(1 - b + b·|d|/avgdl) per passage, cached while avgdl stays the same."""
        if self._norm is None or self._norm[0] != avgdl:
            self._norm = (avgdl, (k1 * (1 - b + b * self.lengths / avgdl)).astype(np.float32))
        return self._norm[1]

    def save(self, folder: Path) -> None:
        """Write the segment under `folder/<name>` (a temporary folder renamed into place)."""
        if self.name is None:
            self.name = f"seg-{int(self.rowids[0]) if self.size else 0:012d}-{secrets.token_hex(4)}"
        final = folder / self.name
        if final.is_dir():
            return  # immutable: a saved segment never changes
        tmp = folder / f".{self.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for fname, arr in (("rowids.npy", self.rowids), ("lengths.npy", self.lengths),
                           ("indptr.npy", self.indptr), ("docs.npy", self.docs),
                           ("tfs.npy", self.tfs)):
            np.save(tmp / fname, arr, allow_pickle=False)
        (tmp / "terms.json").write_text(json.dumps(self.terms, ensure_ascii=False), "utf-8")
        tmp.rename(final)
        fsync_dir(folder)

    @classmethod
    def load(cls, folder: Path) -> Segment:
        try:
            arrays = [np.load(folder / f, allow_pickle=False) for f in _FILES[:5]]
            terms = json.loads((folder / "terms.json").read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise IndexCorruptError(f"{folder}: unreadable BM25 segment ({e})") from None
        rowids, lengths, indptr, docs, tfs = arrays
        if not isinstance(terms, list) or len(indptr) != len(terms) + 1 or len(docs) != len(tfs):
            raise IndexCorruptError(f"{folder}: inconsistent BM25 segment")
        return cls(rowids, lengths, terms, indptr, docs, tfs, name=folder.name)


def _indptr(term_ids: np.ndarray, n_terms: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.bincount(term_ids, minlength=n_terms))]).astype(
        np.int64)


@numba.njit(cache=True, nogil=True)
def _accumulate(docs: np.ndarray, tfs: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                idf: np.ndarray, norm: np.ndarray, acc: np.ndarray, touched: np.ndarray) -> int:
    """acc[d] += idf_t · tf / (tf + norm[d]) over the postings [starts[t], ends[t]) of each
    query term t; the passages first touched go to `touched`, whose length it returns (the
    candidates: never a scan of the whole segment)."""
    n = 0
    for t in range(len(starts)):
        w = idf[t]
        for j in range(starts[t], ends[t]):
            d = docs[j]
            if acc[d] == 0.0:
                touched[n] = d
                n += 1
            tf = tfs[j]
            acc[d] += w * tf / (tf + norm[d])
    return n


@dataclass(frozen=True)
class BM25Stats:
    """Live passages, their total length in tokens, and each query token's document
    frequency: all that BM25 scores depend on beyond one passage's own counts."""

    n: int
    length: int
    df: np.ndarray  # (query tokens,) int64

    @classmethod
    def total(cls, parts: Sequence[BM25Stats]) -> BM25Stats:
        return cls(sum(p.n for p in parts), sum(p.length for p in parts),
                   np.sum([p.df for p in parts], axis=0))


class BM25Index:
    """Segments plus the scoring parameters; `ntotal` counts live passages."""

    kind = "bm25"

    def __init__(self, segments: list[Segment] | None = None, k1: float = 1.5,
                 b: float = 0.75) -> None:
        self.segments = segments or []
        self.k1, self.b = k1, b

    @property
    def ntotal(self) -> int:
        return sum(s.n_live for s in self.segments)

    @classmethod
    def build(cls, rowids: Sequence[int], tokens: Sequence[Sequence[str]], k1: float = 1.5,
              b: float = 0.75) -> BM25Index:
        index = cls(k1=k1, b=b)
        for i in range(0, len(rowids), BUILD_CHUNK):
            index.add(rowids[i:i + BUILD_CHUNK], tokens[i:i + BUILD_CHUNK])
        return index

    def rowids(self) -> np.ndarray:
        """Row ids of every passage the segments hold, live or deleted."""
        if not self.segments:
            return np.zeros(0, np.int64)
        return np.concatenate([s.rowids for s in self.segments])

    def add(self, rowids: Sequence[int] | np.ndarray, tokens: Sequence[Sequence[str]],
            merge: bool = True) -> None:
        """Passages with row ids above every one held (the store's AUTOINCREMENT); a full
        tier is merged unless `merge` is False (the caller then calls `merge_tiers`)."""
        if len(rowids):
            self.segments = [*self.segments, Segment.from_tokens(rowids, tokens)]
            if merge:
                self.merge_tiers()

    def remove(self, rowids: Iterable[int]) -> None:
        ids = np.asarray(list(rowids) if not isinstance(rowids, np.ndarray) else rowids,
                         dtype=np.int64)
        if not len(ids):
            return
        for s in self.segments:  # never empty: segments without live passages are dropped
            pos = np.minimum(np.searchsorted(s.rowids, ids), s.size - 1)
            hit = pos[s.rowids[pos] == ids]
            if len(hit):
                live = s.live.copy()
                live[hit] = False
                s.set_live(live)
        self.segments = [s for s in self.segments if s.n_live]

    def keep_only(self, live_rowids: np.ndarray) -> None:
        """Mark every passage not in `live_rowids` (sorted) deleted: the masks on open."""
        for s in self.segments:
            s.set_live(np.isin(s.rowids, live_rowids, assume_unique=True))
        self.segments = [s for s in self.segments if s.n_live]

    def merge_tiers(self, swap: Callable[[], AbstractContextManager[Any]] = nullcontext) -> None:
        """Merge MERGE_FACTOR segments of one tier (sizes within a factor of 10) into one.
        The merge reads the old segments and builds a new one while searches go on over the
        old ones; only the swap holds `swap` (the folder's search write lock). Call it from
        the one writer thread, which alone changes live masks."""
        while True:
            tiers: dict[int, list[Segment]] = {}
            for s in self.segments:
                tier = int(math.log10(max(s.n_live, MIN_TIER) / MIN_TIER))
                tiers.setdefault(tier, []).append(s)
            full = [t for t, group in tiers.items() if len(group) >= MERGE_FACTOR]
            if not full:
                return
            group = tiers[min(full)][:MERGE_FACTOR]
            merged = Segment.merge(sorted(group, key=lambda s: int(s.rowids[0])))
            with swap():
                self.segments = sorted([s for s in self.segments if s not in group] + [merged],
                                       key=lambda s: int(s.rowids[0]))

    def optimize(self) -> None:
        """Merge every segment into one, deleted passages dropped."""
        if len(self.segments) > 1 or any(len(s.dead) for s in self.segments):
            self.segments = [Segment.merge(self.segments)]

    def stats(self, query_tokens: Sequence[str]) -> BM25Stats:
        """The corpus statistics a query needs, over live passages: what shards of one
        corpus sum so that each scores as one index would (BM25Stats.total)."""
        return self._stats(self._find(query_tokens), len(query_tokens))

    def _find(self, query_tokens: Sequence[str]) -> list[tuple[Segment, list[tuple[int, int]]]]:
        """Per segment: (query position, local term id) of the query terms it holds."""
        return [(s, [(i, s.term_id[t]) for i, t in enumerate(query_tokens) if t in s.term_id])
                for s in self.segments]

    def _stats(self, found: list[tuple[Segment, list[tuple[int, int]]]],
               n_tokens: int) -> BM25Stats:
        df = np.zeros(n_tokens, dtype=np.int64)
        for s, terms in found:
            for i, j in terms:
                a, z = s.indptr[j], s.indptr[j + 1]
                df[i] += np.count_nonzero(s.live[s.docs[a:z]]) if len(s.dead) else z - a
        return BM25Stats(self.ntotal, sum(s.live_length for s in self.segments), df)

    def search(self, query_tokens: list[str], k: int,
               stats: BM25Stats | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, row ids) with score > 0; fewer when fewer passages share a term.
        `stats`: the statistics to score with (a sharded corpus's, summed over its shards);
        by default this index's own."""
        if self.ntotal == 0 or not query_tokens or k < 1:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        found = self._find(query_tokens)  # the term lookups serve the statistics and the scores
        st = stats if stats is not None else self._stats(found, len(query_tokens))
        n, df = st.n, st.df
        avgdl = max(st.length / n, 1e-9)
        idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        all_scores, all_ids = [], []
        for s, terms in found:
            if not terms:
                continue
            local = np.array([j for _, j in terms], dtype=np.int64)
            starts, ends = s.indptr[local], s.indptr[local + 1]
            acc = np.zeros(s.size, dtype=np.float32)                 # (passages of the segment,)
            touched = np.empty(int((ends - starts).sum()), dtype=np.int32)
            n_touched = _accumulate(s.docs, s.tfs, starts, ends, idf[[i for i, _ in terms]],
                                    s.norm(self.k1, self.b, avgdl), acc, touched)
            acc[s.dead] = 0
            cand = touched[:n_touched]
            cand = cand[acc[cand] > 0]
            if len(cand) > k:  # the k best and every tie of the k-th: ties go by row id below
                kth = -np.partition(-acc[cand], k - 1)[k - 1]
                cand = cand[acc[cand] >= kth]
            all_scores.append(acc[cand])
            all_ids.append(s.rowids[cand])
        if not all_scores:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores, ids = np.concatenate(all_scores), np.concatenate(all_ids)
        top = np.lexsort((ids, -scores))[:k]  # best first; ties by row id, so order is stable
        return scores[top], ids[top]

    def save(self, folder: Path) -> list[str]:
        """Write segments not yet on disk into `folder`; returns the names of all segments.
        Folders of segments no longer listed stay until `tidy` (the manifest may still name
        them until it is rewritten)."""
        folder.mkdir(exist_ok=True)
        for s in self.segments:
            s.save(folder)
        return [s.name for s in self.segments if s.name]

    @classmethod
    def load(cls, folder: Path, names: Sequence[str], k1: float, b: float) -> BM25Index:
        return cls([Segment.load(folder / n) for n in names], k1, b)


def segment_files(folder: Path, name: str) -> list[Path]:
    return [folder / name / f for f in _FILES]
