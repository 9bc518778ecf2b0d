"""manifest.json as a typed `Manifest`: checked field by field when read, written atomically,
with fingerprints of the derived files it vouches for.

A manifest that is not what ragline wrote (hand-edited, truncated, another program's JSON) is
an IndexCorruptError that names the damaged field, never a KeyError or an AssertionError deep
in a search. Every setting the query side needs travels in it.

    manifest = read_manifest(Path("my-index/manifest.json"))
    manifest.encoder.dim, manifest.dense.kind, manifest.trained        # typed
    record = fingerprint(Path("my-index/dense.faiss"))   # {"bytes": …, "sha256": …}
    matches(record, Path("my-index/dense.faiss"))         # False if the file was swapped
"""

from __future__ import annotations

import hashlib
import json
import numbers
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ragline.encode.base import EncoderSpec
from ragline.errors import ConfigError, IndexCorruptError, IndexMismatchError
from ragline.index.atomic import atomic_write_bytes
from ragline.index.dense import DenseSpec

FORMAT_VERSION = 1
TOKENIZER_ID = "ragline-1"  # lower-case, snowball-english, jieba search mode; see ragline.text
CHUNK_UNIT = "word; 2 CJK characters = 1 word"

# Files up to this size are hashed whole; larger ones by a sample of blocks (size, head, tail
# and evenly spaced blocks), so that opening a million-vector index does not read 1.5 GB.
WHOLE_HASH_BYTES = 64 << 20
_BLOCK = 1 << 20
_SAMPLES = 16


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class SparseSpec:
    """How BM25 was built: the query side must tokenize the same way."""

    kind: str = "bm25"
    k1: float = 1.5
    b: float = 0.75
    tokenizer: str = TOKENIZER_ID


@dataclass(frozen=True)
class TrainedPart:
    path: str          # a folder inside the index, e.g. "model/step-000030/generator"
    base: str          # what it was trained from


@dataclass(frozen=True)
class TrainedState:
    """What `ragline train` left in the index; `ask` and `search` use it."""

    path: str                                  # the checkpoint folder, "model/step-N"
    step: int
    model: str                                 # rag-sequence | rag-token
    generator: TrainedPart | None = None
    question_encoder: TrainedPart | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    updated: str = ""
    prior_scale: float | None = None           # the learned inverse temperature of p(z|x)
    adapter: bool = False                      # generator/ holds a LoRA adapter, not weights

    @property
    def checkpoints(self) -> set[str]:
        """The checkpoint folders (model/step-N) its parts live in."""
        paths = [self.path] + [p.path for p in (self.generator, self.question_encoder) if p]
        return {"/".join(Path(p).parts[:2]) for p in paths}


@dataclass(frozen=True)
class Manifest:
    """manifest.json. `generation` is the store generation the derived files reflect."""

    encoder: EncoderSpec
    chunk_words: int = 100
    dense: DenseSpec = field(default_factory=DenseSpec)
    sparse: SparseSpec = field(default_factory=SparseSpec)
    generation: int = -1
    counts: dict[str, int] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    ragline_version: str = ""
    trained: TrainedState | None = None
    segments: tuple[str, ...] = ()             # the BM25 segments (folders in sparse/)
    shards: tuple[str, ...] = ()               # a sharded index: its shards' folders, in order
    # a translation memory (ragline.tm): its (source, target) languages; () for documents
    languages: tuple[str, ...] = ()
    # a shard of a sharded index: (its number, the shard count); () for any other index
    shard: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT_VERSION, "ragline_version": self.ragline_version,
            "encoder": self.encoder.to_dict(),
            "chunking": {"words": self.chunk_words, "unit": CHUNK_UNIT},
            "dense": self.dense.to_dict(),
            "sparse": {**asdict(self.sparse), "segments": list(self.segments)},
            "generation": self.generation, "counts": dict(self.counts),
            "files": dict(self.files), "created": self.created, "updated": self.updated,
        }
        if self.trained is not None:
            out["trained"] = asdict(self.trained)
        if self.shards:
            out["shards"] = list(self.shards)
        if self.languages:
            out["translation_memory"] = dict(zip(("source", "target"), self.languages,
                                                 strict=True))
        if self.shard:
            out["shard"] = {"number": self.shard[0], "of": self.shard[1]}
        return out

    @classmethod
    def from_dict(cls, m: dict[str, Any], path: Path) -> Manifest:
        """A checked manifest dict (see `check_manifest`) as a Manifest."""
        m = check_manifest(m, path)
        t = m.get("trained")
        trained = None
        if t is not None:
            trained = TrainedState(
                path=t["path"], step=int(t.get("step", 0)), model=str(t.get("model", "")),
                generator=TrainedPart(**_part(t.get("generator"))) if t.get("generator") else None,
                question_encoder=(TrainedPart(**_part(t["question_encoder"]))
                                  if t.get("question_encoder") else None),
                metrics=dict(t.get("metrics") or {}), updated=str(t.get("updated", "")),
                prior_scale=(float(t["prior_scale"]) if t.get("prior_scale") is not None
                             else None),
                adapter=bool(t.get("adapter", False)))
        sparse = m["sparse"]
        return cls(encoder=EncoderSpec.from_dict(m["encoder"]),
                   chunk_words=m["chunking"]["words"], dense=DenseSpec.from_dict(m["dense"]),
                   sparse=SparseSpec(kind=str(sparse.get("kind", "bm25s")), k1=sparse["k1"],
                                     b=sparse["b"],
                                     tokenizer=str(sparse.get("tokenizer", TOKENIZER_ID))),
                   generation=m["generation"], counts=dict(m.get("counts") or {}),
                   files=dict(m.get("files") or {}), created=str(m.get("created", "")),
                   updated=str(m.get("updated", "")),
                   ragline_version=str(m.get("ragline_version", "")), trained=trained,
                   segments=tuple(sparse.get("segments") or ()),
                   shards=tuple(m.get("shards") or ()),
                   languages=(m["translation_memory"]["source"], m["translation_memory"]["target"])
                   if m.get("translation_memory") else (),
                   shard=(m["shard"]["number"], m["shard"]["of"]) if m.get("shard") else ())

    def updated_now(self, **changes: Any) -> Manifest:
        return replace(self, **changes, updated=now())


def _part(d: dict[str, Any]) -> dict[str, str]:
    return {"path": d["path"], "base": str(d.get("base", ""))}


def read_manifest(path: Path) -> Manifest:
    """The manifest at `path`, checked field by field (see `check_manifest`)."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise IndexCorruptError(f"{path}: unreadable manifest ({e}); restore it from a backup "
                                "or rebuild the index") from None
    return Manifest.from_dict(raw, path)


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Replace manifest.json atomically (a kill leaves the old one or the new one)."""
    atomic_write_bytes(path, json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False).encode())


def check_manifest(m: Any, path: Path) -> dict[str, Any]:
    def bad(what: str) -> IndexCorruptError:
        return IndexCorruptError(f"{path}: damaged manifest: {what}; restore it from a backup "
                                 "or rebuild the index")

    if not isinstance(m, dict):
        raise bad(f"expected a JSON object, found {_json_type(m)}")
    fmt = m.get("format")
    if not _is_int(fmt):
        raise bad("'format' is missing or not an integer")
    if fmt != FORMAT_VERSION:
        from ragline import __version__

        raise IndexMismatchError(f"{path.parent}: index format {fmt} is not supported by "
                                 f"ragline {__version__} (format {FORMAT_VERSION}); rebuild the index")

    def section(name: str) -> dict[str, Any]:
        value = m.get(name)
        if not isinstance(value, dict):
            raise bad(f"'{name}' is missing or not an object")
        return value

    enc = section("encoder")
    if not isinstance(enc.get("id"), str) or not enc["id"]:
        raise bad("'encoder.id' is missing or not a string")
    if not _is_positive_int(enc.get("dim")):
        raise bad("'encoder.dim' is missing or not a positive integer")
    for key in ("pooling", "query_prefix", "passage_prefix"):
        if key in enc and not isinstance(enc[key], str):
            raise bad(f"'encoder.{key}' is not a string")
    if "normalized" in enc and not isinstance(enc["normalized"], bool):
        raise bad("'encoder.normalized' is not true or false")
    words = section("chunking").get("words")
    if not _is_positive_int(words):
        raise bad("'chunking.words' is missing or not a positive integer")
    dense = section("dense")
    if any(k in dense and k not in ("kind", "auto") and not _is_int(dense[k])
           for k in DenseSpec.__dataclass_fields__):
        raise bad("a field of 'dense' is not an integer")
    try:
        DenseSpec.from_dict(dense)
    except (ConfigError, TypeError) as e:
        raise bad(f"'dense': {e}") from None
    sparse = section("sparse")
    for key in ("k1", "b"):
        if not _is_number(sparse.get(key)) or sparse[key] < 0:
            raise bad(f"'sparse.{key}' is missing or not a number ≥ 0")
    segments = sparse.get("segments", [])
    if not isinstance(segments, list) or not all(
            isinstance(x, str) and x and "/" not in x and not x.startswith(".") for x in segments):
        raise bad("'sparse.segments' is not a list of folder names")
    shard = m.get("shard")
    if shard is not None and not (
            isinstance(shard, dict) and _is_int(shard.get("number")) and _is_int(shard.get("of"))
            and 0 <= shard["number"] < shard["of"]):
        raise bad("'shard' is not {\"number\": N, \"of\": COUNT} with 0 ≤ N < COUNT")
    shards = m.get("shards", [])
    if not isinstance(shards, list) or not all(
            isinstance(x, str) and x and "/" not in x and not x.startswith(".") for x in shards):
        raise bad("'shards' is not a list of folder names")
    tm = m.get("translation_memory")
    if tm is not None and not (isinstance(tm, dict) and all(
            isinstance(tm.get(k), str) and tm[k] for k in ("source", "target"))):
        raise bad("'translation_memory' is not an object with a 'source' and a 'target'")
    if not _is_int(m.get("generation")):
        raise bad("'generation' is missing or not an integer")
    for key in ("counts", "files"):
        if key in m and not isinstance(m[key], dict):
            raise bad(f"'{key}' is not an object")
    trained = m.get("trained")
    if trained is not None:
        if not isinstance(trained, dict) or not isinstance(trained.get("path"), str):
            raise bad("'trained' is not an object with a 'path'")
        if "step" in trained and not _is_int(trained["step"]):
            raise bad("'trained.step' is not an integer")
        for part in ("generator", "question_encoder"):
            sub = trained.get(part)
            if sub is not None and not (isinstance(sub, dict) and isinstance(sub.get("path"), str)):
                raise bad(f"'trained.{part}' is not an object with a 'path'")
    return m


def _json_type(x: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true or false",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(x), type(x).__name__)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_positive_int(x: Any) -> bool:
    return _is_int(x) and bool(x >= 1)


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


# ---------------------------------------------------------------- fingerprints


def fingerprint(path: Path) -> dict[str, Any]:
    """What the manifest records of a derived file: its size and a hash, whole or sampled."""
    size = path.stat().st_size
    if size <= WHOLE_HASH_BYTES:
        return {"bytes": size, "sha256": _whole_sha256(path)}
    return {"bytes": size, "sampled_sha256": _sampled_sha256(path, size)}


def matches(record: Any, path: Path) -> bool:
    """Whether `path` is the file `record` (from `fingerprint`) describes."""
    if not isinstance(record, dict):
        return False
    try:
        size = path.stat().st_size
    except OSError:
        return False
    if record.get("bytes") != size:
        return False
    if "sampled_sha256" in record:
        return bool(record["sampled_sha256"] == _sampled_sha256(path, size))
    return bool(record.get("sha256") == _whole_sha256(path))


def _whole_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _sampled_sha256(path: Path, size: int) -> str:
    h = hashlib.sha256(str(size).encode())
    step = max(1, (size - _BLOCK) // (_SAMPLES - 1))
    with path.open("rb") as f:
        for i in range(_SAMPLES):  # the first block holds the header, the last the tail
            f.seek(min(i * step, max(0, size - _BLOCK)))
            h.update(f.read(_BLOCK))
    return h.hexdigest()
