"""Item content vectors, cached by text checksum: re-encoding an unchanged catalog encodes
nothing, adding items encodes only theirs.

A cache directory holds one folder per encoder spec (``tfidf-svd-64``): ``keys.npy`` (each
text's checksum, sorted), ``vectors.npy`` (their rows) and ``cache.json`` (the fitted encoder's
fingerprint). The fingerprint is a checksum of what the encoder saves, so a refit encoder
(new vocabulary, new components) never reuses the vectors of the old one: its folder is
replaced. A folder is published whole (``recsys.files.atomic_dir``); a missing or unreadable
one is an empty cache, since every vector in it can be encoded again.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.config import RecsysError
from recsys.content.encoders import TFIDF, Encoder, make_encoder
from recsys.content.text import item_text
from recsys.files import atomic_dir

KEY_BYTES = 16  # a text's checksum: 128 bits of BLAKE2b


def encode_items(
    items: pd.DataFrame,
    encoder: Encoder | str = TFIDF,
    *,
    dim: int = 64,
    cache_dir: str | Path | None = None,
    batch_size: int = 4096,
) -> np.ndarray:
    """The content vectors of the ``items`` rows, in the table's row order.

    Args:
        items: the items table (see :func:`recsys.content.item_text`).
        encoder: an encoder, or a spec for :func:`recsys.content.make_encoder`. An unfitted
            encoder (a spec's ``tfidf-svd``) is fitted on these items first, in place (its
            caller saves the fitted encoder); a fitted one (the encoder saved with a model,
            for new items) is used as it is.
        dim: the width a spec's ``tfidf-svd`` asks for.
        cache_dir: where vectors are kept by text checksum; None encodes every text.
        batch_size: texts per ``encode`` call.

    Returns:
        ``(len(items), encoder.dim)`` float32, unit rows (a row of an item with no text: zero).
    """
    if batch_size < 1:
        raise RecsysError(f"encode_items: batch_size {batch_size} must be >= 1")
    texts = item_text(items).tolist()
    if isinstance(encoder, str):
        encoder = make_encoder(encoder, dim=dim)
    if not encoder.fitted:
        encoder.fit(texts)
    if cache_dir is None:
        return encode_batches(encoder, texts, batch_size)
    cache = ContentCache(cache_dir, encoder)
    keys = cache.keys(texts)
    vectors, found = cache.lookup(keys)
    missing = np.flatnonzero(~found)
    if len(missing):
        # each new text once, however many items share it
        new_keys, first, inverse = np.unique(keys[missing], return_index=True, return_inverse=True)
        new = encode_batches(encoder, [texts[missing[i]] for i in first], batch_size)
        vectors[missing] = new[inverse]
        cache.add(new_keys, new)
    return vectors


def encode_batches(encoder: Encoder, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """``encoder.encode`` over ``texts`` in batches: ``(len(texts), encoder.dim)`` float32."""
    out = np.zeros((len(texts), encoder.dim), np.float32)
    for start in range(0, len(texts), batch_size):
        out[start : start + batch_size] = encoder.encode(texts[start : start + batch_size])
    return out


class ContentCache:
    """One fitted encoder's vectors by text checksum, in ``cache_dir/<spec>/``.

    Args:
        cache_dir: the cache's root (one folder per encoder spec below it).
        encoder: a fitted encoder; its fingerprint keys every text.
    """

    def __init__(self, cache_dir: str | Path, encoder: Encoder) -> None:
        self.name, self.dim = encoder.name, encoder.dim
        self.fingerprint = encoder_fingerprint(encoder)
        self.directory = Path(cache_dir) / _folder(encoder.name, encoder.dim)
        self._keys, self._vectors = self._read()  # (m,) sorted, (m, dim)

    def keys(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's checksum with the encoder's name, dim and fingerprint: ``(n,)`` bytes."""
        prefix = f"{self.name}\0{self.dim}\0{self.fingerprint}\0".encode()
        digests = [
            hashlib.blake2b(prefix + t.encode(), digest_size=KEY_BYTES).digest() for t in texts
        ]
        return np.array(digests, dtype=f"S{KEY_BYTES}")

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cached rows of ``keys``: ``(n, dim)`` float32 (zero where absent) and the
        ``(n,)`` bool mask of the keys found."""
        vectors = np.zeros((len(keys), self.dim), np.float32)
        if not len(self._keys):
            return vectors, np.zeros(len(keys), bool)
        at = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        found = self._keys[at] == keys
        vectors[found] = self._vectors[at[found]]
        return vectors, found

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Keep ``vectors`` under ``keys`` (new keys) and publish the folder whole."""
        merged = np.concatenate([self._keys, keys])
        order = np.argsort(merged, kind="stable")
        self._keys = merged[order]
        self._vectors = np.concatenate([self._vectors, vectors.astype(np.float32)])[order]
        meta = {"encoder": self.name, "dim": self.dim, "fingerprint": self.fingerprint}
        with atomic_dir(self.directory) as tmp:
            np.save(tmp / "keys.npy", self._keys)
            np.save(tmp / "vectors.npy", self._vectors)
            (tmp / "cache.json").write_text(json.dumps(meta, indent=2) + "\n")

    def __len__(self) -> int:
        return len(self._keys)

    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        """The folder's keys and vectors; empty when absent, unreadable or another fit's."""
        empty = np.zeros(0, f"S{KEY_BYTES}"), np.zeros((0, self.dim), np.float32)
        try:
            meta = json.loads((self.directory / "cache.json").read_text())
            keys = np.load(self.directory / "keys.npy", allow_pickle=False)
            vectors = np.load(self.directory / "vectors.npy", allow_pickle=False)
        except (OSError, ValueError):
            return empty
        if meta.get("fingerprint") != self.fingerprint or vectors.shape != (len(keys), self.dim):
            return empty  # a refit encoder: the old vectors are stale
        return keys.astype(f"S{KEY_BYTES}"), vectors.astype(np.float32, copy=False)


def encoder_fingerprint(encoder: Encoder) -> str:
    """SHA-256 of the files ``encoder.save`` writes (names and bytes): equal for equal
    parameters, different after a refit that changed any of them."""
    h = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="encoder-") as tmp:
        encoder.save(Path(tmp))
        for path in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
            h.update(str(path.relative_to(tmp)).encode() + b"\0")
            h.update(path.read_bytes())
    return h.hexdigest()


def _folder(name: str, dim: int) -> str:
    """A folder name for an encoder spec; a name that had to be cleaned gets its hash."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:80]
    if clean != name:
        clean += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{clean}-{dim}"
