"""manifest.json: read and checked before anything trusts it, fingerprints of the files it vouches for.

A manifest that is not what ragline wrote (hand-edited, truncated, another program's JSON) is
an IndexCorruptError that names the damaged field, never a KeyError or an AssertionError deep
in a search:

    manifest = read_manifest(Path("my-index/manifest.json"))
    record = fingerprint(Path("my-index/dense.faiss"))   # {"bytes": …, "sha256": …}
    matches(record, Path("my-index/dense.faiss"))         # False if the file was swapped
"""

from __future__ import annotations

import hashlib
import json
import numbers
from pathlib import Path
from typing import Any

from ragline.errors import ConfigError, IndexCorruptError, IndexMismatchError

FORMAT_VERSION = 1

# Files up to this size are hashed whole; larger ones by a sample of blocks (size, head, tail
# and evenly spaced blocks), so that opening a million-vector index does not read 1.5 GB.
WHOLE_HASH_BYTES = 64 << 20
_BLOCK = 1 << 20
_SAMPLES = 16


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest at `path`, checked field by field (see `check_manifest`)."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise IndexCorruptError(f"{path}: unreadable manifest ({e}); restore it from a backup "
                                "or rebuild the index") from None
    return check_manifest(raw, path)


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
    from ragline.index.dense import DenseSpec  # the dense spec checks its own fields

    dense = section("dense")
    if any(k in dense and k != "kind" and not _is_int(dense[k])
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
    if not _is_int(m.get("generation")):
        raise bad("'generation' is missing or not an integer")
    for key in ("counts", "files"):
        if key in m and not isinstance(m[key], dict):
            raise bad(f"'{key}' is not an object")
    trained = m.get("trained")
    if trained is not None:
        if not isinstance(trained, dict) or not isinstance(trained.get("path"), str):
            raise bad("'trained' is not an object with a 'path'")
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
