"""Several indexes behind one server, and keys that each open some of them.

A collection is an index folder, named by the folder (`ragline serve handbook wiki` serves
`handbook` and `wiki`); the first is the default, so a request that names none is answered as
a one-index server answers it. A request names a collection with `?collection=` or a
`collection` field (the OpenAI endpoint: `model: "ragline/wiki"`).

Keys: the server's own key (`$RAGLINE_API_KEY`) opens everything; a keys file (`--keys FILE`,
TOML, made by `ragline keys add`) gives each key the collections it may read and those it may
change, and holds only the keys' SHA-256:

    [[keys]]
    name = "team-a"
    sha256 = "3b7f…"            # of the key itself, which is never stored
    read = ["handbook"]         # "*": every collection
    write = ["wiki"]            # writing implies reading

A collection a key may not read does not exist for it (404, never listed); one it may read
but not change answers a write with 403.

    hub = Collections({"handbook": rag1, "wiki": rag2}, ServerConfig(), KeyRing.load(path))
    access = hub.authenticate("Bearer rk-…")          # None: no such key
    service = hub.get("wiki", access, write=True)      # the collection's Service, or 403/404
"""

from __future__ import annotations

import hashlib
import re
import secrets
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ragline.config import ServerConfig
from ragline.errors import CollectionNotFoundError, ConfigError, ForbiddenError
from ragline.rag import RAG
from ragline.registry import MODELS
from ragline.server.jobs import GenerationQueue
from ragline.server.service import Service

ALL = "*"


@dataclass(frozen=True)
class Access:
    """What a request may do: the collections it may read and change (None: all of them)."""

    name: str
    read: frozenset[str] | None
    write: frozenset[str] | None

    def can_read(self, collection: str) -> bool:
        return self.read is None or collection in self.read or self.can_write(collection)

    def can_write(self, collection: str) -> bool:
        return self.write is None or collection in self.write


FULL = Access("admin", None, None)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return "rk-" + secrets.token_urlsafe(24)


class KeyRing:
    """The keys of a keys file, by their SHA-256."""

    def __init__(self, entries: Mapping[str, Access]) -> None:
        self.entries = dict(entries)

    @classmethod
    def load(cls, path: Path) -> KeyRing:
        """Read a keys file; a ConfigError naming the entry for anything wrong in it."""
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except OSError as e:
            raise ConfigError(f"cannot read the keys file {path}: {e.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not a valid TOML keys file ({e})") from None
        unknown = set(data) - {"keys"}
        if unknown or not isinstance(data.get("keys", []), list):
            raise ConfigError(f"{path}: a keys file holds [[keys]] tables only")
        entries: dict[str, Access] = {}
        for n, entry in enumerate(data.get("keys", []), 1):
            where = f"{path}, key {n}"
            if not isinstance(entry, dict) or set(entry) - {"name", "sha256", "read", "write"}:
                raise ConfigError(f"{where}: a key has name, sha256, read and write only")
            digest = entry.get("sha256")
            if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ConfigError(f"{where}: sha256 must be 64 hex digits (ragline keys add "
                                  "writes it)")
            if digest in entries:
                raise ConfigError(f"{where}: the same key appears twice")
            name = entry.get("name", f"key {n}")
            if not isinstance(name, str):
                raise ConfigError(f"{where}: name must be text")
            entries[digest] = Access(name, _names(entry.get("read", []), f"{where}: read"),
                                     _names(entry.get("write", []), f"{where}: write"))
        return cls(entries)

    def check(self, collections: Sequence[str], path: Path | str = "the keys file") -> None:
        """Every collection a key names must be served (a typo would open nothing)."""
        for access in self.entries.values():
            for named in (access.read or frozenset()) | (access.write or frozenset()):
                if named not in collections:
                    raise ConfigError(f"{path}: key {access.name!r} names collection "
                                      f"{named!r}, which this server does not serve "
                                      f"({', '.join(collections)})")

    def find(self, key: str) -> Access | None:
        digest = key_hash(key)
        for known, access in self.entries.items():  # constant time for each
            if secrets.compare_digest(known, digest):
                return access
        return None


def _names(value: object, where: str) -> frozenset[str] | None:
    if value == ALL:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where} must be a list of collection names, or \"*\"")
    return frozenset(value)


def collection_names(paths: Sequence[Path]) -> list[str]:
    """The collections' names: their folders' (`.ragline-demo` → `ragline-demo`), made fit
    for URLs and model ids; two folders of one name are an error."""
    names: list[str] = []
    for path in paths:
        folder = Path(path).resolve().name
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", folder).strip(".-_")[:64] or "default"
        if name in MODELS.names or name == "ragline":  # "ragline/concat" names a model
            name += "-index"
        if name in names:
            raise ConfigError(f"two collections would be named {name!r} ({path} and another "
                              "folder of that name); serve folders whose names differ")
        names.append(name)
    return names


class Collections:
    """The server's collections, one generation queue for all of them (a local model
    generates one thing at a time), and who may use which."""

    def __init__(self, rags: Mapping[str, RAG], cfg: ServerConfig, keys: KeyRing | None = None,
                 api_key: str | None = None) -> None:
        if not rags:
            raise ConfigError("a server needs at least one collection")
        self.cfg = cfg
        self.keys = keys
        self.api_key = api_key or None
        self.queue = GenerationQueue(workers=cfg.workers, max_waiting=cfg.queue_size,
                                     queue_timeout=cfg.queue_timeout_s, timeout=cfg.timeout_s)
        self.services = {name: Service(rag, cfg, self.queue, name) for name, rag in rags.items()}
        self.default = next(iter(self.services))
        first = self.services[self.default]
        for service in self.services.values():  # one copy of the local model
            service.answerer.share_prompted(first.answerer)
        if keys is not None:
            keys.check(list(self.services))

    @property
    def open(self) -> bool:
        """No key is asked for."""
        return self.api_key is None and self.keys is None

    def authenticate(self, header: str) -> Access | None:
        """The access an Authorization header gives; None for a missing or unknown key."""
        if self.open:
            return FULL
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if self.api_key is not None and secrets.compare_digest(token.encode(),
                                                               self.api_key.encode()):
            return FULL
        return self.keys.find(token) if self.keys is not None else None

    def visible(self, access: Access) -> list[str]:
        return [n for n in self.services if access.can_read(n)]

    def default_for(self, access: Access) -> str | None:
        """The collection a request that names none uses: the server's default, or, for a
        key that may not read it, the first it may."""
        if access.can_read(self.default):
            return self.default
        return next(iter(self.visible(access)), None)

    def get(self, name: str | None, access: Access, write: bool = False) -> Service:
        """The Service of a collection the request may use; CollectionNotFoundError (404) for
        one that is not served or not readable with this key, ForbiddenError (403) for a
        write to one it may only read."""
        if name is None or name == "":
            name = self.default_for(access)
            if name is None:
                raise CollectionNotFoundError("this key opens no collection")
        if not isinstance(name, str) or name not in self.services or not access.can_read(name):
            raise CollectionNotFoundError(f"no collection {str(name)[:64]!r}; GET /v1/collections "
                                        "lists the ones this key opens")
        if write and not access.can_write(name):
            raise ForbiddenError(f"this key may read collection {name!r} but not change it")
        return self.services[name]

    def start(self) -> None:
        self.queue.start()
        for s in self.services.values():
            s.query_encoder.start()

    def stop(self) -> None:
        self.queue.stop()
        for s in self.services.values():
            s.query_encoder.stop()
