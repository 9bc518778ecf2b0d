"""Encoders by name (see ragline.registry.ENCODERS): `minilm` (default, bundled), `hash[:DIM]`
(tests), or a local sentence-transformers folder.

    enc = load_encoder("hash:64")
"""

from __future__ import annotations

from pathlib import Path

from ragline.encode.base import Encoder, EncoderSpec, l2_normalize
from ragline.encode.hashing import HashEncoder
from ragline.encode.sbert import SentenceTransformerEncoder
from ragline.errors import ConfigError
from ragline.registry import ENCODERS

DEFAULT_ENCODER = "minilm"


def load_encoder(name: str = DEFAULT_ENCODER, device: str | None = None,
                 query_prefix: str = "", passage_prefix: str = "") -> Encoder:
    """Make (not load) the encoder a name or manifest id refers to. Prefixes given here win
    over those a sentence-transformers folder names in its config."""
    if name.strip().lower().startswith("hash-"):  # a manifest's id of the hash encoder
        name = "hash:" + name.strip()[5:]
    if ENCODERS.find(name) is not None:
        encoder: Encoder = ENCODERS.create(name, device=device, query_prefix=query_prefix,
                                           passage_prefix=passage_prefix)
        return encoder
    if Path(name).expanduser().is_dir():
        return SentenceTransformerEncoder(path=Path(name).expanduser().resolve(), device=device,
                                          query_prefix=query_prefix, passage_prefix=passage_prefix)
    raise ConfigError(f"unknown encoder '{name}'; use {ENCODERS.usage()} or a "
                      "sentence-transformers folder")


def encoder_from_spec(spec: EncoderSpec, device: str | None = None) -> Encoder:
    """The encoder an index was built with, as its manifest names it."""
    enc = load_encoder(spec.id, device=device)
    if isinstance(enc, SentenceTransformerEncoder):
        enc.spec = spec  # prefixes and dim travel with the index, never guessed
        enc.prefixes_from_model = False
    return enc


__all__ = ["DEFAULT_ENCODER", "Encoder", "EncoderSpec", "HashEncoder",
           "SentenceTransformerEncoder", "encoder_from_spec", "l2_normalize", "load_encoder"]
