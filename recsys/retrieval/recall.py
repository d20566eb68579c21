"""How much of exact search's top k an approximate item index finds: the queries it is
measured on, exact search's answers to them, and the share found."""

from __future__ import annotations

import faiss
import numpy as np

from recsys.config import RecsysError


def as_matrix(x: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    """``x`` as a C-contiguous float32 ``(n, dim)`` matrix of finite values, or an error."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise RecsysError(f"{name}: expected a 2-D (n, dim) array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise RecsysError(f"{name}: empty array of shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise RecsysError(f"{name}: dimension {arr.shape[1]} does not match the index ({dim})")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise RecsysError(
            f"{name}: {len(rows)} rows contain NaN or inf (first: row {rows[0]}) "
            "(values beyond float32 range count as inf)"
        )
    return arr


def recall_queries(items: np.ndarray, sample: np.ndarray | None, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` rows of ``sample``, or noisy copies of random items."""
    rng = np.random.default_rng(seed)
    if sample is not None:
        sample = as_matrix(sample, "query_sample", dim=items.shape[1])
        if len(sample) > n:
            sample = sample[rng.choice(len(sample), n, replace=False)]
        return sample
    rows = rng.integers(0, len(items), n)
    noise = rng.normal(0.0, 0.1 * float(items.std()) or 1e-3, (len(rows), items.shape[1]))
    return np.ascontiguousarray(items[rows] + noise, dtype=np.float32)


def exact_top(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """``(n, k)`` exact inner-product search's item ids for ``queries``."""
    exact = faiss.IndexFlatIP(items.shape[1])
    exact.add(items)
    return exact.search(queries, k)[1]


def share_found(found: np.ndarray, truth: np.ndarray) -> float:
    """The share of ``truth``'s ids (per row) that ``found`` holds."""
    hits = sum(len(np.intersect1d(a, t)) for a, t in zip(found, truth, strict=True))
    return hits / truth.size
