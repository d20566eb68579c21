"""The serving stages in-process: candidates → rank → order over a tiny fitted pipeline (exclude
seen, genre filters, cold start, MMR, reasons), the model cache, the prediction log and the
app's internal-error handler. No Ray, no Serve, no network."""

import builtins
import json

import numpy as np
import pandas as pd
import pytest
import torch
from fastapi import FastAPI
from tiny_data import TINY_PIPELINE, side_tables

from recsys.config import RecsysError
from recsys.models import PipelineConfig, PipelineModel, create_model
from serving import stages
from serving.app import _internal_error
from serving.predlog import PredictionLog
from serving.schemas import Filters, RecommendRequest
from tests.conftest import make_interactions

TINY = TINY_PIPELINE
REASON = "because you watched "


@pytest.fixture(scope="module")
def train() -> pd.DataFrame:
    return make_interactions()


@pytest.fixture(scope="module")
def model(train) -> PipelineModel:
    users, items = side_tables()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return PipelineModel(PipelineConfig(**TINY)).fit(train, users, items)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def served(model) -> stages.ServedModel:
    return stages.ServedModel("v1", model)


def history_of(train: pd.DataFrame, user: str) -> list[str]:
    """The user's items newest first (the online store's ``last_items``)."""
    mine = train[train.user_id == user].sort_values("timestamp", ascending=False)
    return mine.item_id.tolist()


def request(**fields) -> RecommendRequest:
    return RecommendRequest(**{"user_id": "u1", "k": 5, **fields})


def genre_of(item_id: str) -> str:
    """Tiny items ``iN`` have genres ``G{N % 4}|Drama``."""
    return f"G{int(item_id[1:]) % 4}"


def recommend(served, train, user="u1", history=None, **fields):
    """The three stages end to end, as the fused topology runs them."""
    history = history_of(train, user) if history is None else history
    body = request(user_id=user, **fields)
    cand = stages.candidates(served, user, history, body.exclude_seen)
    scores = stages.rank(served, [cand["rows"]])[0]
    items, cold = stages.order(served, body, cand["rows"]["iid"], scores, cand["known"], history)
    return items, cold, cand, scores


def check_list(items, k: int) -> None:
    """k distinct items ranked 1..k."""
    assert len(items) == k and [i.rank for i in items] == list(range(1, k + 1))
    assert len({i.item_id for i in items}) == k


def mean_pairwise_cosine(served, items) -> float:
    vec = served.unit[[served.position[i.item_id] for i in items]]
    sims = vec @ vec.T
    n = len(items)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


# -- candidates → rank → order -------------------------------------------------------------
def test_a_known_user_gets_k_unseen_items_ranked_by_score_with_reasons(served, train):
    history = history_of(train, "u1")
    items, cold, cand, scores = recommend(served, train, k=5)
    assert cand["known"] and not cold
    check_list(items, 5)
    got = [i.score for i in items]
    assert all(a >= b for a, b in zip(got, got[1:], strict=False))
    assert not {i.item_id for i in items} & set(history)
    assert all(i.reason.startswith(REASON) for i in items)
    # Each reason names the history item nearest to the pick (no titles: the item id).
    hist = served.unit[[served.position[h] for h in history]]
    for item in items:
        named = item.reason[len(REASON) :]
        sims = hist @ served.unit[served.position[item.item_id]]
        assert named in history
        assert sims[history.index(named)] == pytest.approx(sims.max())
    # The items are the candidates' top 5 by ranker score, each with its own score.
    by_item = dict(zip(served.item_ids[cand["rows"]["iid"] - 1], scores, strict=True))
    assert all(i.score == pytest.approx(by_item[i.item_id]) for i in items)
    cut = sorted(by_item.values(), reverse=True)[4]
    assert {i for i, s in by_item.items() if s > cut} <= {i.item_id for i in items}
    assert all(by_item[i.item_id] >= cut for i in items)


def test_without_exclude_seen_history_items_may_come_back(served, train):
    history = set(history_of(train, "u1"))
    items, _, cand, _ = recommend(served, train, k=40, exclude_seen=False)
    n = len(cand["rows"]["iid"])
    assert n < 40 and len(items) == 40  # every candidate, then popular items fill up to k
    assert {i.item_id for i in items[:n]} & history
    assert all(i.reason == "popular" for i in items[n:])
    assert len({i.item_id for i in items}) == 40
    assert all(a.score > b.score for a, b in zip(items[n - 1 :], items[n:], strict=False))


def test_filters_that_leave_few_candidates_are_filled_with_popular_items(served, train):
    items, *_ = recommend(served, train, k=8, filters={"include_genres": ["G3"]})
    assert len(items) == 8 and all(int(i.item_id[1:]) % 4 == 3 for i in items)
    assert not {i.item_id for i in items} & set(history_of(train, "u1"))


def test_reasons_use_the_catalog_titles(model, train):
    history = history_of(train, "u1")
    titled = stages.ServedModel("v1", model, {i: f"Title of {i}" for i in history})
    assert titled.title("i1") == "Title of i1" and titled.title("i999") == "i999"
    items, *_ = recommend(titled, train, history=history)
    assert all(i.reason.startswith(f"{REASON}Title of i") for i in items)


def test_a_batch_ranks_each_request_as_if_alone(served, train):
    rows = [stages.candidates(served, u, history_of(train, u), True)["rows"] for u in ("u1", "u2")]
    empty = {k: v[:0] for k, v in rows[0].items()}
    alone = [stages.rank(served, [r])[0] for r in rows]
    batched = stages.rank(served, [rows[0], empty, rows[1]])
    assert [len(s) for s in batched] == [len(rows[0]["iid"]), 0, len(rows[1]["iid"])]
    np.testing.assert_allclose(batched[0], alone[0], rtol=1e-5)
    np.testing.assert_allclose(batched[2], alone[1], rtol=1e-5)
    swapped = stages.rank(served, [rows[1], rows[0]])
    np.testing.assert_allclose(swapped[0], alone[1], rtol=1e-5)
    np.testing.assert_allclose(swapped[1], alone[0], rtol=1e-5)
    np.testing.assert_allclose(alone[0], served.model.ranker.score(rows[0]), rtol=1e-6)
    assert [len(s) for s in stages.rank(served, [empty, empty])] == [0, 0]


# -- genre filters ---------------------------------------------------------------------------
def test_genre_mask_follows_the_item_genres(served):
    assert stages.genre_mask(served, Filters()) is None
    genres = [genre_of(i) for i in served.item_ids]
    g2 = stages.genre_mask(served, Filters(include_genres=["G2"]))
    np.testing.assert_array_equal(g2, [g == "G2" for g in genres])
    not_g1 = stages.genre_mask(served, Filters(exclude_genres=["G1"]))
    np.testing.assert_array_equal(not_g1, [g != "G1" for g in genres])
    either = stages.genre_mask(served, Filters(include_genres=["G0", "G3"]))
    np.testing.assert_array_equal(either, [g in ("G0", "G3") for g in genres])
    assert not stages.genre_mask(
        served, Filters(include_genres=["G2"], exclude_genres=["Drama"])
    ).any()


def test_include_and_exclude_genres_filter_the_list(served, train):
    whole = np.arange(1, len(served.item_ids) + 1)  # every item a candidate
    scores = np.linspace(1.0, 0.0, len(whole))
    body = request(k=5, filters=Filters(include_genres=["G2"]))
    items, _ = stages.order(served, body, whole, scores, True, [])
    check_list(items, 5)
    assert all(genre_of(i.item_id) == "G2" for i in items)
    body = request(k=20, filters=Filters(exclude_genres=["G1", "G3"]))
    items, _ = stages.order(served, body, whole, scores, True, [])
    check_list(items, 20)
    assert {genre_of(i.item_id) for i in items} == {"G0", "G2"}
    # End to end on the user's own candidates: only what the filter allows, possibly fewer.
    items, *_ = recommend(served, train, k=10, filters=Filters(exclude_genres=["G1"]))
    assert items and all(genre_of(i.item_id) != "G1" for i in items)
    items, *_ = recommend(served, train, k=10, filters=Filters(include_genres=["G3"]))
    assert all(genre_of(i.item_id) == "G3" for i in items)


@pytest.mark.parametrize("name", ["include_genres", "exclude_genres"])
def test_an_unknown_genre_is_a_bad_request_listing_the_known_ones(served, name):
    body = request(filters=Filters(**{name: ["G1", "Nope"]}))
    with pytest.raises(stages.BadRequest) as info:
        stages.order(served, body, np.array([1, 2]), np.array([1.0, 0.5]), True, [])
    message = str(info.value)
    assert message.startswith(f"filters.{name}: unknown genre 'Nope'")
    assert "known: Drama, G0, G1, G2, G3" in message
    assert isinstance(info.value, ValueError)


# -- cold start ------------------------------------------------------------------------------
def test_an_unknown_user_gets_the_most_popular_items(served, train):
    items, cold, cand, _ = recommend(served, train, user="stranger", history=[], k=5)
    assert not cand["known"] and cold
    check_list(items, 5)
    assert all(i.reason == "popular" for i in items)
    pop = served.popularity[[served.position[i.item_id] for i in items]]
    np.testing.assert_array_equal(pop, np.sort(served.popularity)[::-1][:5])
    np.testing.assert_allclose([i.score for i in items], np.log1p(pop))
    # The model's popularity is the training counts.
    counts = train.item_id.value_counts()
    assert all(served.popularity[served.position[i]] == n for i, n in counts.items())


def test_cold_start_respects_the_genre_filter_and_exclude_seen(served):
    g2 = [i for i in served.item_ids if genre_of(i) == "G2"]
    g2_pop = np.sort(served.popularity[[served.position[i] for i in g2]])[::-1]
    body = request(user_id="stranger", k=3, filters=Filters(include_genres=["G2"]))
    items, cold = stages.order(served, body, np.zeros(0, int), np.zeros(0), False, [])
    assert cold and all(genre_of(i.item_id) == "G2" for i in items)
    assert all(i.reason == "popular in G2" for i in items)
    got = served.popularity[[served.position[i.item_id] for i in items]]
    np.testing.assert_array_equal(got, g2_pop[:3])

    top = [i.item_id for i in stages.order(served, request(k=3), [], [], False, [])[0]]
    seen = top[:2]
    items, _ = stages.order(served, request(k=3), [], [], False, seen)
    assert not {i.item_id for i in items} & set(seen) and len(items) == 3
    items, _ = stages.order(served, request(k=3, exclude_seen=False), [], [], False, seen)
    assert [i.item_id for i in items] == top


# -- MMR -------------------------------------------------------------------------------------
def test_diversity_lowers_the_similarity_within_the_list(served):
    # Relevance = similarity to one item: the pure-relevance list is its nearest neighbours.
    whole = np.arange(1, len(served.item_ids) + 1)
    relevance = served.unit @ served.unit[0]
    plain, _ = stages.order(served, request(k=5), whole, relevance, True, [])
    diverse, _ = stages.order(served, request(k=5, diversity=0.9), whole, relevance, True, [])
    check_list(plain, 5)
    check_list(diverse, 5)
    assert plain[0].item_id == diverse[0].item_id == served.item_ids[0]  # the best comes first
    assert mean_pairwise_cosine(served, diverse) < mean_pairwise_cosine(served, plain) - 0.1
    assert all(i.reason == "matches your profile" for i in diverse)  # no history
    for diversity in (0.1, 0.5):  # a little diversity must not pick an item twice either
        check_list(
            stages.order(served, request(k=5, diversity=diversity), whole, relevance, True, [])[0],
            5,
        )


def test_diversity_end_to_end_still_gives_k_unseen_items(served, train):
    history = set(history_of(train, "u1"))
    items, *_ = recommend(served, train, k=5, diversity=0.9)
    check_list(items, 5)
    assert not {i.item_id for i in items} & history


def test_diversity_with_filters_that_leave_nothing_gives_an_empty_list(served, train):
    nothing = Filters(exclude_genres=["Drama"])  # every tiny item is a drama
    assert recommend(served, train, k=5, filters=nothing)[0] == []
    items, *_ = recommend(served, train, k=5, filters=nothing, diversity=0.5)
    assert items == []


# -- model cache -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_root(model, train, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for version in ("v1", "v2", "v3"):
        model.save(root / version)
    create_model("ease").fit(train).save(root / "ease")
    return root


def test_the_cache_loads_a_version_once_and_keeps_the_latest_two(model_root, served):
    cache = stages.ModelCache(model_root, keep=2)
    v1 = cache.get("v1")
    assert isinstance(v1, stages.ServedModel) and v1.version == "v1"
    assert cache.get("v1") is v1
    np.testing.assert_array_equal(v1.item_ids, served.item_ids)
    np.testing.assert_allclose(v1.unit, served.unit, rtol=1e-6)
    v2, v3 = cache.get("v2"), cache.get("v3")  # v1 is the oldest: evicted
    assert cache.get("v3") is v3 and cache.get("v2") is v2
    again = cache.get("v1")
    assert again is not v1 and again.version == "v1"
    assert cache.get("v2") is v2  # used more recently than v3, which went instead
    assert cache.get("v3") is not v3


def test_the_cache_takes_an_absolute_path_as_the_version(model_root, tmp_path):
    cache = stages.ModelCache(tmp_path / "elsewhere")
    assert cache.path("v1") == tmp_path / "elsewhere" / "v1"
    assert cache.path(str(model_root / "v2")) == model_root / "v2"
    assert cache.get(str(model_root / "v2")).version == str(model_root / "v2")


def test_the_cache_refuses_a_model_that_is_not_a_pipeline(model_root):
    with pytest.raises(RecsysError, match="pipeline"):
        stages.ModelCache(model_root).get("ease")


# -- prediction log --------------------------------------------------------------------------
def read_records(directory) -> list[dict]:
    files = sorted(directory.glob("predictions-*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def test_the_log_writes_json_lines_with_arrays_as_lists(tmp_path):
    log = PredictionLog(tmp_path / "predictions")
    log.log({"request_id": "a", "codes": np.array([3, 1, 2]), "score": np.float32(0.5)})
    log.log({"request_id": "b", "scores": np.array([[0.25, 1.0]]), "n": np.int64(7)})
    log.flush()
    assert read_records(tmp_path / "predictions") == [
        {"request_id": "a", "codes": [3, 1, 2], "score": 0.5},
        {"request_id": "b", "scores": [[0.25, 1.0]], "n": 7},
    ]
    assert log.stats() == {
        "written": 2,
        "dropped": 0,
        "errors": 0,
        "queued": 0,
        "last_error": "",
        "healthy": True,
    }
    log.close()
    assert not log._thread.is_alive()


def test_the_log_rotates_by_size(tmp_path):
    log = PredictionLog(tmp_path, max_bytes=1)
    for n in range(3):
        log.log({"n": n})
        log.flush()  # one batch each: every write finds the file full
    log.close()
    files = sorted(tmp_path.glob("predictions-*.jsonl"))
    assert len(files) == 3
    assert all(len(f.read_text().splitlines()) == 1 for f in files)
    assert sorted(r["n"] for r in read_records(tmp_path)) == [0, 1, 2]


def test_an_unwritable_directory_is_counted_never_raised(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    log = PredictionLog(blocker / "predictions")
    for n in range(3):
        log.log({"n": n})  # never raises
    log.flush()
    stats = log.stats()
    assert stats["errors"] == 3 and stats["written"] == 0 and not stats["healthy"]
    name = stats["last_error"].split(":")[0]
    assert issubclass(getattr(builtins, name), OSError), stats["last_error"]
    log.close()
    assert not log._thread.is_alive()


def test_a_full_queue_drops_and_counts(tmp_path):
    log = PredictionLog(tmp_path, capacity=1)
    log._stop.set()  # the writer stops taking records: the queue stays full
    log._thread.join(timeout=5)
    log.log({"n": 0})
    log.log({"n": 1})
    log.log({"n": 2})
    assert log.stats()["dropped"] == 2 and log.stats()["queued"] == 1


# -- the app's internal-error handler --------------------------------------------------------
@pytest.mark.filterwarnings("ignore::starlette.exceptions.StarletteDeprecationWarning")
def test_an_internal_error_hides_the_details_from_the_client():
    from starlette.testclient import TestClient  # its import warns about httpx

    app = FastAPI()
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["detail"] == "internal error"
    assert isinstance(body["error_id"], str) and len(body["error_id"]) == 12
    assert "secret detail" not in response.text and "Traceback" not in response.text
