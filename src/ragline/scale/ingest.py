"""Distributed ingestion on Ray Data: read → chunk → embed on a pool of actors → commit per shard.

    report = ray_ingest(index, [Path("docs/")], address="local", workers=2, progress=True)

- Reading and chunking run as Ray tasks, a file each (`_read_file`): a row per passage, with
  its shard, its file's id and the number of passages the file gives that shard. Ray Data
  does not keep order, so every row carries its ids and the driver reassembles files.
- Embedding runs in `workers` actors that load the encoder once (`_Embedder`), on a GPU each
  when the cluster has GPUs.
- The driver commits a file to each shard once all its passages are back, in one transaction
  per shard (ragline.ingest.pipeline.FileCommitter), and files in their order, as one process
  does: a kill leaves each file wholly in or out of each shard. Every shard records every
  file, so a re-run skips what each shard has and finishes the rest: nothing is lost and
  nothing is embedded or stored twice.
- Ray restarts a dead embedding actor and retries its batch; a dead reading task is retried.

Memory stays bounded by Ray Data's streaming execution (a few blocks in flight per stage) and
the files whose passages are not all back yet, or that wait for an earlier file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ragline.encode import encoder_from_spec
from ragline.encode.base import EncoderSpec
from ragline.index.index import Index
from ragline.index.shards import ShardedIndex
from ragline.index.store import SourceRecord, source_key
from ragline.ingest.chunk import chunk_document
from ragline.ingest.files import IngestReport, discover, read_documents
from ragline.ingest.pipeline import (
    FileCommitter,
    Piece,
    SourceFile,
    merge_shard_reports,
    shard_of,
)
from ragline.scale.cluster import connect, has_gpus
from ragline.text import display_path, tokenize
from ragline.types import Document, Passage

log = logging.getLogger(__name__)

BLOCK_BYTES = 256 << 10  # ≈ 100 passages' rows (text, JSON of passage and tokens)

# row kinds: a passage; a shard that gets none of a changed file's documents (it still records
# the file); a file no shard needs; a file that cannot be read. (A file's loader already drops
# a document id it repeats.)
PASSAGE, NONE, UNCHANGED, SKIPPED = "passage", "none", "unchanged", "skipped"


def _row(**fields: Any) -> dict[str, Any]:
    base = {"file": 0, "shard": 0, "n": 0, "groups": 0, "kind": PASSAGE, "sha256": "", "size": 0,
            "reason": "", "doc": "", "passage": "", "tokens": "", "text": ""}
    return {**base, **fields}


def _read_file(item: dict[str, Any], chunk_words: int, n_shards: int) -> Iterator[dict[str, Any]]:
    """A file → rows (see the module docstring). `item["old"]` holds each shard's recorded
    sha256 of the file ("" for none)."""
    f, file_id = Path(item["path"]), int(item["file"])
    try:
        data = f.read_bytes()
    except OSError as e:
        yield _row(file=file_id, kind=SKIPPED, reason=f"cannot read ({e.strerror})")
        return
    sha = hashlib.sha256(data).hexdigest()
    todo = [i for i, old in enumerate(item["old"]) if old != sha]
    if not todo:
        yield _row(file=file_id, kind=UNCHANGED)
        return
    report = IngestReport()
    docs = read_documents(f, data, report)
    if docs is None:
        yield _row(file=file_id, kind=SKIPPED, reason=report.skipped[0][1])
        return
    per_shard: dict[int, list[tuple[Document, Passage, list[str]]]] = {i: [] for i in todo}
    for d in docs:
        shard = shard_of(d.id, n_shards)
        if shard not in per_shard:
            continue
        d = Document(id=d.id, source=item["source"], text=d.text, title=d.title, meta=d.meta)
        for p in chunk_document(d, chunk_words):
            per_shard[shard].append((d, p, tokenize(p.embed_text)))
    # groups: the (file, shard) parts the driver waits for before it commits the file
    common = {"file": file_id, "sha256": sha, "size": len(data), "groups": len(todo)}
    for shard, rows in per_shard.items():
        if not rows:
            yield _row(**common, shard=shard, kind=NONE)
        seen: set[str] = set()
        for d, p, tokens in rows:
            first = d.id not in seen  # the document rides with its first passage only
            seen.add(d.id)
            yield _row(**common, shard=shard, n=len(rows),
                       doc=json.dumps(asdict(d), ensure_ascii=False) if first else "",
                       passage=json.dumps(asdict(p), ensure_ascii=False),
                       tokens=json.dumps(tokens, ensure_ascii=False), text=p.embed_text)


class _Embedder:
    """A Ray Data actor: the encoder, loaded once; adds a `vector` column."""

    def __init__(self, spec: dict[str, Any], device: str | None) -> None:
        self.encoder = encoder_from_spec(EncoderSpec.from_dict(spec), device=device)
        self.encoder.load()
        self.dim = self.encoder.spec.dim

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        is_passage = batch["kind"] == PASSAGE
        vectors = np.zeros((len(is_passage), self.dim), np.float32)  # (rows, dim)
        if is_passage.any():
            texts = [str(t) for t in batch["text"][is_passage]]
            vectors[is_passage] = self.encoder.encode_passages(texts, batch_size=32)
        return {**{k: v for k, v in batch.items() if k != "text"}, "vector": vectors}


def ray_ingest(index: Index, paths: Sequence[Path], address: str | None = None,
               workers: int = 2, progress: bool = False, batch_passages: int = 128,
               device: str | None = None) -> IngestReport:
    """Index `paths` into `index` (sharded or not) with Ray doing the reading, chunking and
    embedding; the driver commits. Returns one report for all shards."""
    # a Ray started here needs a CPU beside the embedding actors, for the reading tasks
    ray = connect(address, num_cpus=max(os.cpu_count() or 1, workers + 1))
    from ray.data import DataContext

    shards = index.shards if isinstance(index, ShardedIndex) else [index]
    report = IngestReport()
    files = discover([Path(p) for p in paths], report)
    items = []
    for i, f in enumerate(files):
        key = source_key(f)
        old = [(rec.sha256 if (rec := s.folder.store.source(key)) else "") for s in shards]
        items.append({"file": i, "path": str(f), "source": key, "old": old})
    if not items:
        return report
    for name in ("ray", "ray.data"):  # importing ray.data set its own INFO logging
        logging.getLogger(name).setLevel(logging.WARNING)
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts passages committed
    # blocks of about a batch: a large file's rows must spread over every embedding actor
    # (Ray Data gives a block to one actor; one block per file would leave the others idle)
    ctx.target_max_block_size = BLOCK_BYTES
    gpus = has_gpus(ray)
    ds = (ray.data.from_items(items, override_num_blocks=min(len(items), 64))
          .flat_map(_read_file, fn_kwargs={"chunk_words": index.manifest.chunk_words,
                                           "n_shards": len(shards)})
          .map_batches(_Embedder, fn_constructor_kwargs={
              "spec": index.manifest.encoder.to_dict(), "device": "cuda" if gpus else device},
              batch_size=batch_passages, concurrency=workers, num_gpus=1 if gpus else 0,
              num_cpus=0 if gpus else 1, batch_format="numpy"))
    assembler = _Assembler(files, [s.folder for s in shards], report)
    with tqdm(desc=f"indexing on Ray ({workers} workers)", unit="passage", dynamic_ncols=True,
              disable=not progress) as bar:
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                bar.update(assembler.take(batch))
        finally:
            assembler.close()
    for s in shards:
        s.folder.persist()
    return assembler.result()


class _Assembler:
    """Collects rows back into (file, shard) pieces and commits each whole one."""

    def __init__(self, files: list[Path], folders: list[Any], report: IngestReport) -> None:
        self.files, self.report = files, report
        self.shard_reports = [IngestReport() for _ in folders]
        self.committers = [FileCommitter(f, r) for f, r in zip(folders, self.shard_reports,
                                                                 strict=True)]
        self.pending: dict[tuple[int, int], list[dict[str, Any]]] = {}
        self.claimed: list[dict[str, str]] = [{} for _ in folders]  # doc id → source, per shard
        # (shard, rows) of each file's finished groups; files ready to commit; the next one
        self.groups: dict[int, list[tuple[int, list[dict[str, Any]]]]] = {}
        self.finished: dict[int, list[tuple[int, list[dict[str, Any]]]]] = {}
        self.next_file = 0

    def take(self, batch: dict[str, np.ndarray]) -> int:
        """Commit what the batch completes; returns the passages it brought. Files are
        committed in their order, as in one process (so the first of two files holding the
        same document keeps it); a file that comes back early waits for those before it."""
        n_new = 0
        for j in range(len(batch["kind"])):
            row = {k: v[j] for k, v in batch.items()}
            kind, file = str(row["kind"]), int(row["file"])
            if kind == UNCHANGED:
                self.report.unchanged.append(source_key(self.files[file]))
                self.finished[file] = []
            elif kind == SKIPPED:
                self.report.skipped.append((display_path(self.files[file]), str(row["reason"])))
                self.finished[file] = []
            elif kind == NONE:
                self._group_done(file, int(row["shard"]), [row], int(row["groups"]))
            else:
                n_new += 1
                key = (file, int(row["shard"]))
                rows = self.pending.setdefault(key, [])
                rows.append(row)
                if len(rows) == int(row["n"]):
                    self._group_done(file, key[1], self.pending.pop(key), int(row["groups"]))
        while self.next_file in self.finished:
            for shard, rows in self.finished.pop(self.next_file):
                self._commit(self.next_file, shard, rows)
            self.next_file += 1
        return n_new

    def _group_done(self, file: int, shard: int, rows: list[dict[str, Any]], groups: int) -> None:
        done = self.groups.setdefault(file, [])
        done.append((shard, rows))
        if len(done) == groups:
            self.finished[file] = sorted(self.groups.pop(file), key=lambda g: g[0])

    def _commit(self, file: int, shard: int, rows: list[dict[str, Any]]) -> None:
        path = self.files[file]
        source = source_key(path)
        store = self.committers[shard].folder.store
        record = SourceRecord(path=source, sha256=str(rows[0]["sha256"]),
                              size=int(rows[0]["size"]))
        own = set(store.document_ids_of_source(source))
        docs: dict[str, Document] = {}
        passages: dict[str, list[tuple[Passage, np.ndarray, list[str]]]] = {}
        for row in rows:
            if row["kind"] != PASSAGE:
                continue
            p = Passage(**json.loads(str(row["passage"])))
            if row["doc"]:
                docs[p.doc_id] = Document(**json.loads(str(row["doc"])))
            passages.setdefault(p.doc_id, []).append(
                (p, np.asarray(row["vector"], np.float32), json.loads(str(row["tokens"]))))
        piece = Piece(SourceFile(record, replacing=store.source(source) is not None), [], [], [],
                       last=True)
        claimed = self.claimed[shard]
        vectors = []
        for doc_id, parts in passages.items():
            other = claimed.get(doc_id)
            if other is None and doc_id not in own and store.has_document(doc_id):
                other = (store.document(doc_id) or docs[doc_id]).source
            if other is not None:
                log.info("%s: document %s duplicates one from %s; kept once", path, doc_id, other)
                self.shard_reports[shard].duplicates.append((source, doc_id))
                piece.shared.append(doc_id)
                continue
            claimed[doc_id] = source
            parts.sort(key=lambda x: x[0].position)
            piece.append(docs[doc_id], [p for p, _, _ in parts], [t for _, _, t in parts])
            vectors += [v for _, v, _ in parts]
        dim = self.committers[shard].folder.encoder_spec.dim
        piece.vectors = np.stack(vectors) if vectors else np.zeros((0, dim), np.float32)
        self.committers[shard].put(piece)

    def close(self) -> None:
        for c in self.committers:
            c.close()

    def result(self) -> IngestReport:
        return merge_shard_reports(self.report, self.shard_reports)
