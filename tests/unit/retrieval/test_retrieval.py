"""The item index: exact and approximate top-k, recall, exclusion, persistence, bad input."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from recsys.config import RecsysError
from recsys.retrieval import IndexConfig, ItemIndex

DIM = 16


def clustered(n: int, seed: int = 0, n_clusters: int = 20) -> np.ndarray:
    """Items around a few centres, like trained embeddings; norms vary from item to item."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, DIM))
    return (centres[rng.integers(0, n_clusters, n)] + 0.3 * rng.normal(size=(n, DIM))).astype(
        np.float32
    )


def exact_top_k(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ items.T), axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def items() -> np.ndarray:
    return clustered(2000)


@pytest.fixture(scope="module")
def queries(items) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (items[rng.integers(0, len(items), 200)] + 0.1 * rng.normal(size=(200, DIM))).astype(
        np.float32
    )


@pytest.fixture(scope="module")
def hnsw(items, queries) -> ItemIndex:
    return ItemIndex.build(items, IndexConfig(kind="hnsw"), query_sample=queries)


@pytest.fixture(scope="module")
def ivf(items, queries) -> ItemIndex:
    return ItemIndex.build(items, IndexConfig(kind="ivf"), query_sample=queries)


def test_flat_returns_exact_top_k(items, queries):
    index = ItemIndex.build(items, IndexConfig(kind="flat"))
    scores, ids = index.search(queries, 10)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (200, 10)
    assert np.array_equal(ids, exact_top_k(items, queries, 10))
    assert np.allclose(scores, np.take_along_axis(queries @ items.T, ids, 1), atol=1e-4)
    assert index.recall_at_k == 1.0 and (index.n_items, index.dim) == (2000, DIM)


def test_auto_is_exact_up_to_the_threshold_then_ivf_at_int8(items):
    """Above the threshold IVF, measured ahead of HNSW (benchmarks/index_precision.py), over
    int8 vectors (end to end within 1% of fp32 at 200k items: docs/benchmarks.md, at scale)."""
    config = IndexConfig(exact_max_items=500, recall_queries=50)
    small = ItemIndex.build(items[:500], config)
    assert (small.kind, small.info()["precision"], small.recall_at_k) == ("flat", "fp32", 1.0)
    big = ItemIndex.build(items, config)  # above the threshold: IVF lists of int8 vectors
    assert (big.kind, big.info()["precision"]) == ("ivf", "int8")
    assert big.info()["kind"] == "ivf" and 0.9 < big.recall_at_k <= 1.0


@pytest.mark.parametrize("name", ["hnsw", "ivf"])
def test_recall_is_measured_high_and_matches_a_recount(name, items, queries, request):
    index: ItemIndex = request.getfixturevalue(name)
    assert index.kind == name and index.recall_k == 100
    _, approx = index.search(queries, 100)
    truth = exact_top_k(items, queries, 100)
    hits = [len(np.intersect1d(a, t)) for a, t in zip(approx, truth, strict=True)]
    assert index.recall_at_k == pytest.approx(np.mean(hits) / 100)
    assert 0.9 < index.recall_at_k <= 1.0


@pytest.mark.parametrize("name", ["hnsw", "ivf"])
def test_approximate_scores_are_exact_dot_products_best_first(name, items, queries, request):
    index: ItemIndex = request.getfixturevalue(name)
    scores, ids = index.search(queries, 20)
    assert (ids >= 0).all()
    assert np.allclose(scores, np.einsum("nd,nkd->nk", queries, items[ids]), atol=1e-4)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_recall_without_a_query_sample_uses_noisy_items(items):
    index = ItemIndex.build(items, IndexConfig(kind="hnsw", recall_queries=100, recall_k=10))
    assert index.info()["recall_k"] == 10 and 0.9 < index.recall_at_k <= 1.0


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_exclude_drops_items_and_still_returns_k(kind, items, queries, hnsw):
    index = hnsw if kind == "hnsw" else ItemIndex.build(items, IndexConfig(kind="flat"))
    truth = exact_top_k(items, queries[:3], 30)
    # Query 0 loses its top 5, query 1 three items across its ranking, query 2 nothing.
    exclude = [truth[0, :5], truth[1, [0, 7, 12]], np.array([], dtype=np.int64)]
    _, ids = index.search(queries[:3], 10, exclude=exclude)
    assert ids.shape == (3, 10) and (ids >= 0).all()
    for row, excl in enumerate(exclude):
        assert not np.isin(ids[row], excl).any()
        assert len(set(ids[row])) == 10
        expected = [i for i in truth[row] if i not in set(excl)][:10]
        assert np.mean(np.isin(ids[row], expected)) >= 0.9


def test_fewer_items_than_k_pads_with_minus_one_and_minus_inf(items):
    index = ItemIndex.build(items[:4], IndexConfig(kind="flat"))
    scores, ids = index.search(items[:2], 6, exclude=[np.array([0]), np.array([1, 2])])
    assert (ids[0, :3] >= 0).all() and (ids[0, 3:] == -1).all() and 0 not in ids[0]
    assert (ids[1, :2] >= 0).all() and (ids[1, 2:] == -1).all() and 1 not in ids[1]
    assert np.isneginf(scores[ids == -1]).all() and np.isfinite(scores[ids >= 0]).all()


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_save_load_round_trip(kind, items, queries, tmp_path):
    config = IndexConfig(kind=kind, hnsw_ef_search=64, ivf_nprobe=8, recall_queries=100)
    index = ItemIndex.build(items, config, query_sample=queries)
    names = index.save(tmp_path / "model")
    assert sorted(names) == sorted(p.name for p in (tmp_path / "model").iterdir())
    loaded = ItemIndex.load(tmp_path / "model")
    assert loaded.info() == index.info() and loaded.config == index.config
    assert config.precision == "auto" and index.config.precision == "fp32"  # as built
    for got, want in zip(loaded.search(queries, 50), index.search(queries, 50), strict=True):
        assert np.array_equal(got, want)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_a_reduced_precision_stores_fewer_bytes_and_measures_its_recall(precision, items, queries):
    """fp16 halves a flat index's bytes per item, int8 quarters them; either is measured
    against exact fp32 search like an approximate kind, and the measure is a recount's."""
    full = ItemIndex.build(items, IndexConfig(kind="flat"))
    small = ItemIndex.build(
        items, IndexConfig(kind="flat", precision=precision), query_sample=queries
    )
    share = {"fp16": 2, "int8": 4}[precision]
    assert small.info()["bytes_per_item"] == pytest.approx(
        full.info()["bytes_per_item"] / share, rel=0.05
    )
    assert small.info()["precision"] == precision
    _, approx = small.search(queries, 100)
    truth = exact_top_k(items, queries, 100)
    hits = [len(np.intersect1d(a, t)) for a, t in zip(approx, truth, strict=True)]
    assert small.recall_at_k == pytest.approx(np.mean(hits) / 100)
    assert 0.95 < small.recall_at_k <= 1.0


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_an_int8_index_saves_loads_and_searches_the_same(kind, items, queries, tmp_path):
    config = IndexConfig(kind=kind, precision="int8", recall_queries=100)
    index = ItemIndex.build(items, config, query_sample=queries)
    index.save(tmp_path / "model")
    loaded = ItemIndex.load(tmp_path / "model")
    assert loaded.info() == index.info() and loaded.config.precision == "int8"
    for got, want in zip(loaded.search(queries, 50), index.search(queries, 50), strict=True):
        assert np.array_equal(got, want)
    assert 0.85 < index.recall_at_k <= 1.0


def test_search_from_several_threads_agrees_with_serial(hnsw, queries):
    batches = np.array_split(queries, 8)
    serial = [hnsw.search(b, 20)[1] for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(lambda b: hnsw.search(b, 20)[1], batches * 4))
    for got, want in zip(parallel, serial * 4, strict=True):
        assert np.array_equal(got, want)


def test_bad_embeddings_are_named():
    bad = clustered(50)
    bad[[3, 9, 40], 2] = [np.nan, np.inf, -np.inf]
    with pytest.raises(RecsysError, match=r"item_embeddings: 3 rows contain NaN or inf.*row 3"):
        ItemIndex.build(bad)
    with pytest.raises(RecsysError, match=r"item_embeddings: expected a 2-D.*\(16,\)"):
        ItemIndex.build(np.ones(DIM))
    with pytest.raises(RecsysError, match="kind: 'annoy'"):
        IndexConfig(kind="annoy")
    with pytest.raises(RecsysError, match=r"precision: 'int4' is not one of \['fp32', 'fp16'"):
        IndexConfig(precision="int4")


def test_bad_queries_are_named(items, tmp_path):
    index = ItemIndex.build(items[:100], IndexConfig(kind="flat"))
    with pytest.raises(RecsysError, match="k: 0 must be an integer >= 1"):
        index.search(items[:2], 0)
    with pytest.raises(RecsysError, match=r"queries: dimension 8 does not match the index \(16\)"):
        index.search(items[:2, :8], 5)
    with pytest.raises(RecsysError, match="queries: expected a 2-D"):
        index.search(items[0], 5)
    with pytest.raises(RecsysError, match="exclude: 1 lists for 2 queries"):
        index.search(items[:2], 5, exclude=[np.array([1])])
    with pytest.raises(RecsysError, match="no saved item index"):
        ItemIndex.load(tmp_path)


def test_ivf_probes_more_lists_until_its_recall_reaches_the_target(items, queries, tmp_path):
    """How many lists IVF must probe depends on how clustered the embeddings are: the build
    doubles nprobe from where the config starts until the measured recall reaches the target,
    and the saved index searches at that nprobe."""
    kept = ItemIndex.build(
        items, IndexConfig(kind="ivf", ivf_nprobe=1, ivf_target_recall=0.0), query_sample=queries
    )
    assert kept.config.ivf_nprobe == 1 and kept.recall_at_k < 0.9  # one list of 51: too few
    tuned = ItemIndex.build(
        items, IndexConfig(kind="ivf", ivf_nprobe=1, ivf_target_recall=0.9), query_sample=queries
    )
    nprobe = tuned.config.ivf_nprobe
    assert nprobe > 1 and nprobe & (nprobe - 1) == 0  # doubled from 1
    assert tuned.recall_at_k >= 0.9
    # what it measured is what a search at that nprobe finds
    truth = exact_top_k(items, queries, tuned.recall_k)
    _, found = tuned.search(queries, tuned.recall_k)
    recount = np.mean([len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True)])
    assert recount / tuned.recall_k == pytest.approx(tuned.recall_at_k, abs=0.02)
    tuned.save(tmp_path)
    again = ItemIndex.load(tmp_path)
    assert again.config.ivf_nprobe == nprobe and again.info()["recall_at_k"] == tuned.recall_at_k
    # without real queries (noisy copies of items stand in) nprobe stays where it starts
    noisy = ItemIndex.build(items, IndexConfig(kind="ivf", ivf_nprobe=1, ivf_target_recall=0.9))
    assert noisy.config.ivf_nprobe == 1
    with pytest.raises(RecsysError, match="ivf_target_recall"):
        IndexConfig(ivf_target_recall=1.5)
