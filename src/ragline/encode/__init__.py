"""Encoders by name: `minilm` (default, bundled), `hash[:dim]` (tests), or a local folder.

    enc = load_encoder("hash:64")
"""

from __future__ import annotations

from pathlib import Path

from ragline.encode.base import Encoder, EncoderSpec, l2_normalize
from ragline.encode.hashing import HashEncoder
from ragline.encode.sbert import MINILM_ID, SentenceTransformerEncoder
from ragline.errors import ConfigError

DEFAULT_ENCODER = "minilm"
_MINILM_ALIASES = {"minilm", "all-minilm-l6-v2", MINILM_ID.lower()}


def load_encoder(name: str = DEFAULT_ENCODER, device: str | None = None,
                 query_prefix: str = "", passage_prefix: str = "") -> Encoder:
    """Make (not load) the encoder a name or manifest id refers to. Prefixes given here win
    over those a sentence-transformers folder names in its config."""
    key = name.strip().lower()
    if key in _MINILM_ALIASES:
        return SentenceTransformerEncoder(device=device, query_prefix=query_prefix,
                                          passage_prefix=passage_prefix)
    if key == "hash" or key.startswith(("hash:", "hash-")):
        dim_s = key[5:] or "256"
        if not dim_s.isdigit() or int(dim_s) < 1:
            raise ConfigError(f"hash encoder dimension must be a positive integer, got '{dim_s}'")
        return HashEncoder(dim=int(dim_s))
    if Path(name).expanduser().is_dir():
        return SentenceTransformerEncoder(path=Path(name).expanduser().resolve(), device=device,
                                          query_prefix=query_prefix, passage_prefix=passage_prefix)
    raise ConfigError(
        f"unknown encoder '{name}'; use 'minilm', 'hash[:DIM]' or a sentence-transformers folder"
    )


def encoder_from_spec(spec: EncoderSpec, device: str | None = None) -> Encoder:
    """The encoder an index was built with, as its manifest names it."""
    enc = load_encoder(spec.id, device=device)
    if isinstance(enc, SentenceTransformerEncoder):
        enc.spec = spec  # prefixes and dim travel with the index, never guessed
        enc.prefixes_from_model = False
    return enc


__all__ = ["DEFAULT_ENCODER", "Encoder", "EncoderSpec", "HashEncoder",
           "SentenceTransformerEncoder", "encoder_from_spec", "l2_normalize", "load_encoder"]
