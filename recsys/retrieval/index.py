"""Top-k inner-product search over item embeddings (FAISS), saved beside the model.

Scores are dot products ``z_u · z_i``, the two-tower logit. Up to ``exact_max_items`` items the
search is exact; above, IVF lists (or an HNSW graph, when asked) answer approximately, and the
build measures its recall against exact search so the manifest says how approximate it is.
IVF is the default above the threshold: on clustered embeddings at 200k items it finds more of
exact search's top 100 than HNSW, sooner, and builds faster (``benchmarks/index_precision.py``).

The vectors are stored at a ``precision``: ``fp32`` as given, or FAISS's scalar quantizer at
``fp16`` (half the bytes) or ``int8`` (a quarter: each dimension's range cut in 256 steps,
learnt from the items), measured like an approximate kind: recall at ``recall_k`` against
exact search over the fp32 vectors.

HNSW is not built on raw inner products: linked by dot products, the large-norm items swallow
every neighbourhood and recall stalls whatever ``ef_search``. Each item gets one extra
coordinate ``sqrt(max|x|² - |x|²)`` and queries a zero (Bachrach et al., 2014): all items then
share one norm, L2 order is inner-product order, and scores are recomputed as dot products.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Self

import faiss
import numpy as np

from recsys.config import RecsysError
from recsys.files import atomic_path, write_json
from recsys.retrieval.recall import as_matrix, exact_top, recall_queries, share_found

INDEX_FILE = "item_index.faiss"
META_FILE = "item_index.json"
KINDS = ("auto", "flat", "hnsw", "ivf")
# The vectors' storage: FAISS's scalar quantizer types (None: the float32 vectors as given).
PRECISIONS = {"fp32": None, "fp16": "QT_fp16", "int8": "QT_8bit"}


@dataclass
class IndexConfig:
    """How to build an :class:`ItemIndex` and how to measure its recall."""

    exact_max_items: int = 50_000  # up to this many items: exact inner product (IndexFlatIP)
    kind: str = "auto"  # "auto" | "flat" | "hnsw" | "ivf"
    # "auto" | "fp32" | "fp16" | "int8": how each item's vector is stored. "auto": fp32 up to
    # exact_max_items items, int8 above (why, measured end to end: docs/benchmarks.md)
    precision: str = "auto"
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None  # default ~ 4 * sqrt(n)
    ivf_nprobe: int = 16
    # IVF built with a query sample (the two-tower's: its training users): the build doubles
    # nprobe until the recall@recall_k it measures on them reaches this (0: never); the
    # manifest records the nprobe it took. Without a sample (noisy copies of items stand in)
    # nprobe stays: on such copies a target the int8 codes cannot reach probed every list, as
    # slow as exact search (docs/benchmarks.md).
    ivf_target_recall: float = 0.95
    recall_queries: int = 1000  # queries used to measure recall vs exact
    recall_k: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RecsysError(f"IndexConfig.kind: {self.kind!r} is not one of {list(KINDS)}")
        if self.precision not in (known := [*PRECISIONS, "auto"]):
            raise RecsysError(f"IndexConfig.precision: {self.precision!r} is not one of {known}")
        for name, value in asdict(self).items():
            if name in ("kind", "precision", "seed", "ivf_nlist", "exact_max_items"):
                continue
            if name == "ivf_target_recall":
                if not 0.0 <= value <= 1.0:
                    raise RecsysError(f"IndexConfig.{name}: {value} must be within [0, 1]")
                continue
            if value < 1:
                raise RecsysError(f"IndexConfig.{name}: {value} must be >= 1")

    def resolve_precision(self, n_items: int) -> str:
        """The precision ``auto`` stands for at ``n_items`` items; others as given."""
        if self.precision != "auto":
            return self.precision
        return "fp32" if n_items <= self.exact_max_items else "int8"

    def resolve_kind(self, n_items: int) -> str:
        """The kind ``auto`` stands for at ``n_items`` items; other kinds as given."""
        if self.kind != "auto":
            return self.kind
        return "flat" if n_items <= self.exact_max_items else "ivf"


class ItemIndex:
    """A FAISS index over item embeddings; row ``i`` of the embeddings is item index ``i``."""

    def __init__(
        self,
        index: faiss.Index,
        kind: str,
        config: IndexConfig,
        recall_at_k: float | None,
        build_seconds: float,
    ) -> None:
        self._index = index
        self.kind = kind
        self.config = config
        self.n_items = int(index.ntotal)
        self.dim = int(index.d) - (kind == "hnsw")  # HNSW stores the extra MIPS coordinate
        self.recall_at_k = recall_at_k
        self.recall_k = min(config.recall_k, self.n_items)
        self.build_seconds = build_seconds
        _set_search_defaults(index, config)

    @classmethod
    def build(
        cls,
        item_embeddings: np.ndarray,
        config: IndexConfig | None = None,
        query_sample: np.ndarray | None = None,
    ) -> Self:
        """Index ``item_embeddings`` and, for approximate kinds, measure recall vs exact.

        Args:
            item_embeddings: ``(n_items, dim)`` finite floats; row ``i`` is item ``i``.
            config: Build and recall settings; defaults to :class:`IndexConfig`.
            query_sample: ``(n, dim)`` typical queries (e.g. user embeddings) for the recall
                measurement; without it, item embeddings perturbed with noise stand in.

        Returns:
            The built index, with ``recall_at_k`` set (1.0 for exact search).
        """
        config = config or IndexConfig()
        items = as_matrix(item_embeddings, "item_embeddings")
        kind = config.resolve_kind(len(items))
        # the index records what it was built at (a loaded index is that, whatever "auto" means)
        config = dataclasses.replace(config, precision=config.resolve_precision(len(items)))
        start = time.perf_counter()
        stored = _mips_to_l2(items) if kind == "hnsw" else items
        index = _new_index(kind, stored, config)
        index.add(stored)
        seconds = time.perf_counter() - start
        exact = kind == "flat" and config.precision == "fp32"
        built = cls(index, kind, config, 1.0 if exact else None, seconds)
        if not exact:
            queries = recall_queries(items, query_sample, config.recall_queries, config.seed)
            truth = exact_top(items, queries, built.recall_k)
            built.recall_at_k = share_found(built._raw_search(queries, built.recall_k)[1], truth)
            if kind == "ivf" and query_sample is not None:
                built._probe_until(config.ivf_target_recall, queries, truth)
        return built

    def _probe_until(self, target: float, queries: np.ndarray, truth: np.ndarray) -> None:
        """Double IVF's ``nprobe`` until the measured recall reaches ``target`` (or every
        list is probed): how clustered the embeddings are decides how many lists it takes."""
        nlist = self._index.nlist
        while self.recall_at_k < target and self.config.ivf_nprobe < nlist:
            nprobe = min(2 * self.config.ivf_nprobe, nlist)
            self.config = dataclasses.replace(self.config, ivf_nprobe=nprobe)
            self.recall_at_k = share_found(self._raw_search(queries, self.recall_k)[1], truth)
        _set_search_defaults(self._index, self.config)

    def search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` highest-scoring items per query, best first.

        Args:
            queries: ``(n, dim)`` query embeddings.
            k: Results per query, at least 1.
            exclude: Per query, item indices never to return (e.g. items already seen).

        Returns:
            ``(scores, items)``: float32 and int64 arrays of shape ``(n, k)``; where fewer than
            ``k`` items are left a row is padded with ``-inf`` scores and ``-1`` items.
        """
        q = as_matrix(queries, "queries", dim=self.dim)
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise RecsysError(f"k: {k!r} must be an integer >= 1")
        if exclude is not None and len(exclude) != len(q):
            raise RecsysError(f"exclude: {len(exclude)} lists for {len(q)} queries")
        extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
        # Over-fetch so each query still has k results once its excluded items are dropped.
        scores, ids = self._raw_search(q, min(int(k) + extra, self.n_items))
        if exclude is not None:
            for row, excl in enumerate(exclude):
                ids[row, np.isin(ids[row], np.asarray(excl, dtype=np.int64))] = -1
        return _compact(scores, ids, int(k))

    def with_added(self, vectors: np.ndarray) -> Self:
        """A copy of this index with ``vectors`` appended as items ``n_items`` onwards (the
        quantizer and lists as trained); this index is left as it was.

        Raises:
            RecsysError: an HNSW index (its items share one norm, fixed at the build).
        """
        if self.kind == "hnsw":
            raise RecsysError("an HNSW item index cannot take new items: build it again")
        index = faiss.clone_index(self._index)
        index.add(as_matrix(vectors, "vectors", dim=self.dim))
        return type(self)(index, self.kind, self.config, self.recall_at_k, self.build_seconds)

    def save(self, directory: Path) -> list[str]:
        """Write ``item_index.faiss`` and then ``item_index.json``; return the file names."""
        directory = Path(directory)
        with atomic_path(directory / INDEX_FILE) as tmp:
            faiss.write_index(self._index, str(tmp))
        # The metadata goes last: its presence means the index file beside it is complete.
        write_json({**self.info(), "config": asdict(self.config)}, directory / META_FILE)
        return [INDEX_FILE, META_FILE]

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Read an index written by :meth:`save`, search settings included."""
        directory = Path(directory)
        meta_path, index_path = directory / META_FILE, directory / INDEX_FILE
        if not meta_path.exists() or not index_path.exists():
            raise RecsysError(f"{directory}: no saved item index ({INDEX_FILE} + {META_FILE})")
        try:
            meta = json.loads(meta_path.read_text())
            config = IndexConfig(**meta["config"])
            index = faiss.read_index(str(index_path))
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise RecsysError(f"{directory}: unreadable item index: {exc}") from exc
        loaded = cls(index, meta["kind"], config, meta["recall_at_k"], meta["build_seconds"])
        if (loaded.n_items, loaded.dim) != (meta["n_items"], meta["dim"]):
            raise RecsysError(
                f"{index_path}: holds {loaded.n_items} x {loaded.dim} vectors but {META_FILE} "
                f"says {meta['n_items']} x {meta['dim']}"
            )
        return loaded

    @cached_property
    def bytes_per_item(self) -> float:
        """The index's serialized size per item (vectors, and graph links or lists): measured
        once, as a save writes the index and the manifest records it."""
        return round(faiss.serialize_index(self._index).nbytes / self.n_items, 1)

    def info(self) -> dict:
        """What the model manifest records about the index."""
        return {
            "kind": self.kind,
            "precision": self.config.precision,
            "bytes_per_item": self.bytes_per_item,
            "n_items": self.n_items,
            "dim": self.dim,
            "recall_at_k": self.recall_at_k,
            "recall_k": self.recall_k,
            "build_seconds": round(self.build_seconds, 3),
            **({"nprobe": self.config.ivf_nprobe} if self.kind == "ivf" else {}),
        }

    def _raw_search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        # Per-call parameters rather than mutating the index: concurrent searches share it.
        if self.kind == "hnsw":
            params = faiss.SearchParametersHNSW(efSearch=max(self.config.hnsw_ef_search, k))
            padded = np.hstack([q, np.zeros((len(q), 1), np.float32)])  # (n, dim + 1)
            _, ids = self._index.search(padded, k, params=params)
            return self._rescore(q, ids)
        ivf = self.kind == "ivf"
        params = faiss.SearchParametersIVF(nprobe=self.config.ivf_nprobe) if ivf else None
        return self._index.search(q, k, params=params)

    def _rescore(self, q: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact dot products for the candidates ``ids``, each row sorted best first."""
        flat = self._index.reconstruct_batch(np.maximum(ids, 0).ravel())
        vectors = flat.reshape(*ids.shape, -1)[..., : self.dim]  # (n, k, dim)
        scores = np.einsum("nd,nkd->nk", q, vectors)
        scores[ids < 0] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _new_index(kind: str, stored: np.ndarray, config: IndexConfig) -> faiss.Index:
    """An empty index of ``kind`` at ``config.precision``, trained on ``stored`` (the vectors
    it will hold: for HNSW, the items padded by :func:`_mips_to_l2`) where it learns."""
    dim = stored.shape[1]
    quantizer = PRECISIONS[config.precision]
    qtype = getattr(faiss.ScalarQuantizer, quantizer) if quantizer else None
    if kind == "flat" and qtype is None:
        return faiss.IndexFlatIP(dim)
    if kind == "flat":
        index = faiss.IndexScalarQuantizer(dim, qtype, faiss.METRIC_INNER_PRODUCT)
    elif kind == "hnsw":  # L2 over _mips_to_l2 vectors
        m = config.hnsw_m
        index = faiss.IndexHNSWFlat(dim, m) if qtype is None else faiss.IndexHNSWSQ(dim, qtype, m)
        index.hnsw.efConstruction = config.hnsw_ef_construction
    else:
        # k-means wants ~39+ points per list; fewer lists than that would be trained on noise.
        nlist = config.ivf_nlist or int(4 * np.sqrt(len(stored)))
        nlist = max(1, min(nlist, len(stored) // 39))
        coarse, ip = faiss.IndexFlatIP(dim), faiss.METRIC_INNER_PRODUCT
        if qtype is None:
            index = faiss.IndexIVFFlat(coarse, dim, nlist, ip)
        else:
            index = faiss.IndexIVFScalarQuantizer(coarse, dim, nlist, qtype, ip)
        index.cp.seed = config.seed
        index.cp.min_points_per_centroid = 1  # the clamp above already did that job; no warning
    if not index.is_trained:
        index.train(stored)
    return index


def _mips_to_l2(items: np.ndarray) -> np.ndarray:
    """``(n, dim + 1)``: items padded to one common norm, so L2 order is inner-product order."""
    sq_norms = np.einsum("nd,nd->n", items, items, dtype=np.float64)
    extra = np.sqrt(sq_norms.max() - sq_norms)
    return np.hstack([items, extra[:, None]]).astype(np.float32)


def _set_search_defaults(index: faiss.Index, config: IndexConfig) -> None:
    """Store the search settings in the index too, for anyone reading the file with faiss."""
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = config.hnsw_ef_search
    elif isinstance(index, faiss.IndexIVF):
        index.nprobe = config.ivf_nprobe


def _compact(scores: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Move the valid (``id >= 0``) results of each row to the front, keep ``k``, pad."""
    order = np.argsort(ids < 0, axis=1, kind="stable")[:, :k]  # (n, min(fetched, k))
    ids = np.take_along_axis(ids, order, axis=1).astype(np.int64)
    scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
    if ids.shape[1] < k:
        pad = k - ids.shape[1]
        ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)))
    scores[ids < 0] = -np.inf
    return scores, ids
