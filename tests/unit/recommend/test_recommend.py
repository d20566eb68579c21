"""The one recommendation path in-process: candidates → rank → order over a tiny fitted
multi-stage model (exclude seen, genre filters, cold start, the popular fill, MMR, reasons),
and its parity: the online state (as the store and the event path hold it) gives the offline
lists, batched or one user at a time. No Ray, no Serve, no network."""

import numpy as np
import pandas as pd
import pytest

from recsys import recommend
from recsys.models.base import Candidates
from recsys.models.kinds import create_model
from recsys.models.multistage import MultiStageModel
from recsys.recommend import Filters, Request
from recsys.state.activity import USER_CONTEXT
from recsys.state.offline import item_context, latest_user_activity, states_from_interactions
from recsys.state.user import UserState, fold, from_row, state_table
from tests.helpers import side_tables

REASON = "because you watched "
STORE_WINDOW = 200  # the online store keeps more than the model reads


@pytest.fixture(scope="module")
def train(tiny_train) -> pd.DataFrame:
    return tiny_train


@pytest.fixture(scope="module")
def model(tiny_multistage) -> MultiStageModel:
    return tiny_multistage


@pytest.fixture(scope="module")
def served(model, train) -> recommend.PreparedModel:
    prepared = recommend.prepare(model, "v1")
    prepared.items = item_context(train, prepared.item_ids)  # as the store holds them
    return prepared


def state_of(train: pd.DataFrame, user: str) -> UserState:
    return states_from_interactions(train, [user], STORE_WINDOW)[0]


def run(served, train, user="u1", state=None, **fields):
    """The three stages, as the fused topology runs them for one request."""
    state = state_of(train, user) if state is None else state
    body = Request(**{"k": 5, **fields})
    cand = recommend.candidates(served, [state], body.exclude_seen)[0]
    scores = recommend.rank(served, [cand])[0]
    answer = recommend.order(served, body, state, cand, scores)
    return answer.items, answer.cold_start, cand, scores


def given(served, codes, scores, known=True) -> Candidates:
    return Candidates(np.asarray(codes, dtype=np.int64), known, np.asarray(scores, float))


def order(served, state=None, codes=(), scores=(), known=True, **fields):
    body = Request(**{"k": 5, **fields})
    state = state or UserState("u")
    return recommend.order(served, body, state, given(served, codes, scores, known), scores)


def check_list(items, k: int) -> None:
    """k distinct items ranked 1..k."""
    assert len(items) == k and [i.rank for i in items] == list(range(1, k + 1))
    assert len({i.item_id for i in items}) == k


def genre_of(item_id: str) -> str:
    """Tiny items ``iN`` have genres ``G{N % 4}|Drama``."""
    return f"G{int(item_id[1:]) % 4}"


def mean_pairwise_cosine(served, items) -> float:
    vec = served.unit[[served.position[i.item_id] for i in items]]
    sims = vec @ vec.T
    n = len(items)
    return float((sims.sum() - np.trace(sims)) / (n * (n - 1)))


# -- parity: what is served is what was evaluated --------------------------------------------
REQUESTS = [
    {},
    {"exclude_seen": False},
    {"diversity": 0.3},
    {"filters": Filters(include_genres=["G1"])},
    {"filters": Filters(exclude_genres=["G2"]), "diversity": 0.3, "exclude_seen": False},
]


@pytest.mark.parametrize("fields", REQUESTS, ids=lambda f: ",".join(f) or "default")
def test_the_online_state_gives_the_offline_lists(served, train, fields):
    request = Request(k=8, **fields)
    users = [*sorted(train.user_id.unique()), "new1", "stranger"]
    offline = recommend.recommend_frame(served, users, request, history=train)  # batched
    # Online: the rows the store materializes (as Feast returns them: the state and the
    # user's activity), and the state the event path folds from the same events; one user
    # per request.
    table = state_table(train, STORE_WINDOW).set_index("user_id")
    activity = latest_user_activity(train)
    folded: dict[str, UserState] = {}
    for event in train.sort_values("timestamp", kind="stable").itertuples():
        before = folded.get(event.user_id, UserState(event.user_id))
        folded[event.user_id] = fold(before, event.item_id, STORE_WINDOW)
    online = []
    for user in users:
        row = table.loc[user].to_dict() if user in table.index else {}
        row = {k: list(v) for k, v in row.items() if k != "event_timestamp"}
        row |= activity.loc[user].to_dict() if user in activity.index else {}
        state = from_row(user, row, USER_CONTEXT)
        replayed = folded.get(user, UserState(user))
        assert (state.seen, state.recent) == (replayed.seen, replayed.recent)
        answer = recommend.recommend(served, [state], request)[0]
        online += [(user, i.item_id, i.score, i.rank, i.reason, i.source) for i in answer.items]
    online = pd.DataFrame(online, columns=list(recommend.FRAME_COLUMNS))
    assert len(offline) == len(online) > 0
    cols = ["user_id", "item_id", "rank", "reason", "source"]
    pd.testing.assert_frame_equal(offline[cols], online[cols])
    np.testing.assert_allclose(offline["score"], online["score"], rtol=1e-5, atol=1e-5)
    if request.exclude_seen:  # nothing a user has seen comes back
        leaked = offline.merge(train, on=["user_id", "item_id"])
        assert leaked.empty


def test_the_recent_window_is_cut_to_the_models_the_same_way_everywhere(served, train):
    full = state_of(train, "u1")
    assert served.recent_n < STORE_WINDOW
    window = full.window(served.recent_n)
    a = recommend.recommend(served, [full], Request(k=5))[0]
    b = recommend.recommend(served, [window], Request(k=5))[0]
    assert a.items == b.items


def test_one_batch_answers_each_user_as_if_alone(served, train):
    users = ["u1", "u2", "stranger", "u3"]
    states = states_from_interactions(train, users, STORE_WINDOW)
    together = recommend.recommend(served, states, Request(k=6))
    for state, answer in zip(states, together, strict=True):
        alone = recommend.recommend(served, [state], Request(k=6))[0]
        assert [i.item_id for i in alone.items] == [i.item_id for i in answer.items]
        np.testing.assert_allclose(
            [i.score for i in alone.items], [i.score for i in answer.items], rtol=1e-5
        )


# -- candidates → rank → order -------------------------------------------------------------
def test_a_known_user_gets_k_unseen_items_ranked_by_score_with_reasons(served, train):
    history = list(state_of(train, "u1").recent)
    items, cold, cand, scores = run(served, train, k=5)
    assert cand.known and not cold
    check_list(items, 5)
    got = [i.score for i in items]
    assert all(a >= b for a, b in zip(got, got[1:], strict=False))
    assert not {i.item_id for i in items} & set(history)
    assert all(i.reason.startswith(REASON) and i.source == "model" for i in items)
    # Each reason names the recent item nearest to the pick (no titles: the item id).
    hist = served.unit[[served.position[h] for h in history]]
    for item in items:
        named = item.reason[len(REASON) :]
        sims = hist @ served.unit[served.position[item.item_id]]
        assert named in history
        assert sims[history.index(named)] == pytest.approx(sims.max())
    # The items are the candidates' top 5 by ranker score, each with its own score.
    by_item = dict(zip(served.item_ids[cand.codes], scores, strict=True))
    assert all(i.score == pytest.approx(by_item[i.item_id]) for i in items)
    cut = sorted(by_item.values(), reverse=True)[4]
    assert {i for i, s in by_item.items() if s > cut} <= {i.item_id for i in items}
    assert all(by_item[i.item_id] >= cut for i in items)


def test_ties_go_to_the_earlier_vocabulary_position(served):
    items = order(served, codes=[7, 3, 5, 1], scores=[1.0, 1.0, 2.0, 1.0], k=4).items
    assert [i.item_id for i in items] == [served.item_ids[c] for c in (5, 1, 3, 7)]


def test_without_exclude_seen_history_items_may_come_back(served, train):
    history = set(state_of(train, "u1").seen)
    items, _, cand, _ = run(served, train, k=40, exclude_seen=False)
    n = len(cand.codes)
    assert n < 40 and len(items) == 40  # every candidate, then popular items fill up to k
    assert {i.item_id for i in items[:n]} & history
    assert all(i.reason == "popular" and i.source == "popular" for i in items[n:])
    assert len({i.item_id for i in items}) == 40
    assert all(a.score > b.score for a, b in zip(items[n - 1 :], items[n:], strict=False))


def test_filters_that_leave_few_candidates_are_filled_with_popular_items(served, train):
    items, *_ = run(served, train, k=8, filters={"include_genres": ["G3"]})
    assert len(items) == 8 and all(int(i.item_id[1:]) % 4 == 3 for i in items)
    assert not {i.item_id for i in items} & set(state_of(train, "u1").seen)


def test_reasons_use_the_catalog_titles(model, train):
    history = list(state_of(train, "u1").recent)
    titled = recommend.prepare(model, "v1", {i: f"Title of {i}" for i in history})
    titled.items = item_context(train, titled.item_ids)
    assert titled.title("i1") == "Title of i1" and titled.title("i999") == "i999"
    items, *_ = run(titled, train)
    assert all(i.reason.startswith(f"{REASON}Title of i") for i in items)


def test_a_batch_ranks_each_request_as_if_alone(served, train):
    states = states_from_interactions(train, ["u1", "u2"], STORE_WINDOW)
    cands = recommend.candidates(served, states)
    rows = cands[0].rows
    empty = Candidates(
        cands[0].codes[:0], True, rows={"x": rows["x"][:, :0], "iid": rows["iid"][:0]}
    )
    alone = [recommend.rank(served, [c])[0] for c in cands]
    batched = recommend.rank(served, [cands[0], empty, cands[1]])
    assert [len(s) for s in batched] == [len(cands[0].codes), 0, len(cands[1].codes)]
    np.testing.assert_allclose(batched[0], alone[0], rtol=1e-5)
    np.testing.assert_allclose(batched[2], alone[1], rtol=1e-5)
    by_fold = [served.model.ranker.score(fold) for fold in rows["x"]]  # averaged over folds
    np.testing.assert_allclose(alone[0], np.mean(by_fold, axis=0), rtol=1e-6)
    assert [len(s) for s in recommend.rank(served, [empty, empty])] == [0, 0]


# -- genre filters ---------------------------------------------------------------------------
def test_genre_mask_follows_the_item_genres(served):
    assert recommend.genre_mask(served, Filters()) is None
    genres = [genre_of(i) for i in served.item_ids]
    g2 = recommend.genre_mask(served, Filters(include_genres=["G2"]))
    np.testing.assert_array_equal(g2, [g == "G2" for g in genres])
    not_g1 = recommend.genre_mask(served, Filters(exclude_genres=["G1"]))
    np.testing.assert_array_equal(not_g1, [g != "G1" for g in genres])
    either = recommend.genre_mask(served, Filters(include_genres=["G0", "G3"]))
    np.testing.assert_array_equal(either, [g in ("G0", "G3") for g in genres])
    both = Filters(include_genres=["G2"], exclude_genres=["Drama"])
    assert not recommend.genre_mask(served, both).any()


def test_include_and_exclude_genres_filter_the_list(served, train):
    whole = np.arange(len(served.item_ids))  # every item a candidate
    scores = np.linspace(1.0, 0.0, len(whole))
    items = order(served, codes=whole, scores=scores, filters=Filters(include_genres=["G2"])).items
    check_list(items, 5)
    assert all(genre_of(i.item_id) == "G2" for i in items)
    no_odd = Filters(exclude_genres=["G1", "G3"])
    items = order(served, codes=whole, scores=scores, k=20, filters=no_odd).items
    check_list(items, 20)
    assert {genre_of(i.item_id) for i in items} == {"G0", "G2"}
    items, *_ = run(served, train, k=10, filters=Filters(exclude_genres=["G1"]))
    assert items and all(genre_of(i.item_id) != "G1" for i in items)


@pytest.mark.parametrize("name", ["include_genres", "exclude_genres"])
def test_an_unknown_genre_is_a_bad_request_listing_the_known_ones(served, name):
    with pytest.raises(recommend.BadRequest) as info:
        order(served, codes=[1, 2], scores=[1.0, 0.5], filters=Filters(**{name: ["G1", "Nope"]}))
    message = str(info.value)
    assert message.startswith(f"filters.{name}: unknown genre 'Nope'")
    assert "known: Drama, G0, G1, G2, G3" in message


# -- cold start ------------------------------------------------------------------------------
def test_an_unknown_user_gets_the_most_popular_items(served, train):
    items, cold, cand, _ = run(served, train, user="stranger", k=5)
    assert not cand.known and cold
    check_list(items, 5)
    assert all(i.reason == "popular" and i.source == "popular" for i in items)
    pop = served.popularity[[served.position[i.item_id] for i in items]]
    np.testing.assert_array_equal(pop, np.sort(served.popularity)[::-1][:5])
    np.testing.assert_allclose([i.score for i in items], pop)  # the training counts
    counts = train.item_id.value_counts()
    assert all(served.popularity[served.position[i]] == n for i, n in counts.items())


def test_cold_start_respects_the_genre_filter_and_exclude_seen(served):
    g2 = [i for i in served.item_ids if genre_of(i) == "G2"]
    g2_pop = np.sort(served.popularity[[served.position[i] for i in g2]])[::-1]
    answer = order(served, known=False, k=3, filters=Filters(include_genres=["G2"]))
    assert answer.cold_start and all(genre_of(i.item_id) == "G2" for i in answer.items)
    assert all(i.reason == "popular in G2" for i in answer.items)
    got = served.popularity[[served.position[i.item_id] for i in answer.items]]
    np.testing.assert_array_equal(got, g2_pop[:3])

    top = [i.item_id for i in order(served, known=False, k=3).items]
    seen = UserState("u", tuple(top[:2]))
    items = order(served, seen, known=False, k=3).items
    assert not {i.item_id for i in items} & set(top[:2]) and len(items) == 3
    items = order(served, seen, known=False, k=3, exclude_seen=False).items
    assert [i.item_id for i in items] == top


# -- MMR -------------------------------------------------------------------------------------
def test_diversity_lowers_the_similarity_within_the_list(served):
    # Relevance = similarity to one item: the pure-relevance list is its nearest neighbours.
    whole = np.arange(len(served.item_ids))
    relevance = served.unit[:] @ served.unit[0]
    plain = order(served, codes=whole, scores=relevance).items
    diverse = order(served, codes=whole, scores=relevance, diversity=0.9).items
    check_list(plain, 5)
    check_list(diverse, 5)
    assert plain[0].item_id == diverse[0].item_id == served.item_ids[0]  # the best comes first
    assert mean_pairwise_cosine(served, diverse) < mean_pairwise_cosine(served, plain) - 0.1
    assert all(i.reason == "matches your profile" for i in diverse)  # no history
    for diversity in (0.1, 0.5):  # a little diversity must not pick an item twice either
        check_list(order(served, codes=whole, scores=relevance, diversity=diversity).items, 5)


def test_diversity_end_to_end_still_gives_k_unseen_items(served, train):
    items, *_ = run(served, train, k=5, diversity=0.9)
    check_list(items, 5)
    assert not {i.item_id for i in items} & set(state_of(train, "u1").seen)


def test_diversity_with_filters_that_leave_nothing_gives_an_empty_list(served, train):
    nothing = Filters(exclude_genres=["Drama"])  # every tiny item is a drama
    assert run(served, train, k=5, filters=nothing)[0] == []
    assert run(served, train, k=5, filters=nothing, diversity=0.5)[0] == []


# -- every model kind goes through the same path ---------------------------------------------
@pytest.mark.parametrize("kind", ["popularity", "ease"])
def test_a_baseline_is_served_by_the_same_path(kind, train):
    users, items = side_tables()
    model = create_model(kind).fit(train, users, items)
    prepared = recommend.prepare(model, kind)
    frame = recommend.recommend_frame(prepared, ["u1", "stranger"], Request(k=4), history=train)
    assert frame.groupby("user_id").size().to_dict() == {"u1": 4, "stranger": 4}
    assert frame.merge(train, on=["user_id", "item_id"]).empty
    u1 = frame[frame.user_id == "u1"]
    assert (u1.source == "model").all()
    if kind == "ease":  # the history item with the largest weight towards the pick
        assert u1.reason.str.startswith(REASON).all()
    else:
        assert (u1.reason == "popular").all()
    g3 = Filters(include_genres=["G3"])
    filtered = recommend.recommend_frame(prepared, ["u1"], Request(k=3, filters=g3), history=train)
    assert all(genre_of(i) == "G3" for i in filtered.item_id)


# -- a request's candidate list --------------------------------------------------------------
def test_a_candidate_list_is_ranked_whole_by_the_ranker(served, train):
    """Listed items the model's own sources would not reach are candidates too: the ranker
    orders every unseen listed item; unknown ids are left out; batched or alone, the same."""
    state = state_of(train, "u1")
    seen = set(state.seen)
    plain = {i.item_id for i in recommend.recommend(served, [state], Request(k=20))[0].items}
    unseen = [str(i) for i in served.item_ids if str(i) not in seen]
    far = [i for i in reversed(unseen) if i not in plain][:6]  # what u1 is not shown unasked
    assert len(far) == 6
    listed = far + sorted(seen)[:2] + ["no-such-item"]
    body = Request(k=10, candidates=listed)
    answer = recommend.recommend(served, [state], body)[0]
    got = [i.item_id for i in answer.items]
    assert sorted(got) == sorted(far)  # every unseen listed item, the seen ones left out
    assert answer.unknown_candidates == 1  # no-such-item
    assert {i.source for i in answer.items} == {"model"}
    scores = [i.score for i in answer.items]
    assert scores == sorted(scores, reverse=True)
    other = state_of(train, "u2")
    pair = recommend.recommend(served, [other, state], body)
    assert [i.item_id for i in pair[1].items] == got  # a batch answers each as if alone
    frame = recommend.recommend_frame(served, ["u1"], body, history=train)
    assert frame["item_id"].tolist() == got  # the offline side: the same path
    top = recommend.recommend(served, [state], Request(k=2, candidates=listed))[0]
    assert [i.item_id for i in top.items] == got[:2]


def test_a_candidate_list_the_model_knows_nothing_of_gets_an_empty_list_that_says_so(served, train):
    """A catalog changes before the next training: ids the version does not know are left
    out and counted, never filled in with other items."""
    known, stranger = state_of(train, "u1"), UserState(user_id="stranger")
    body = Request(candidates=["x1", "x2", "x3", "x2"])
    for answer in recommend.recommend(served, [known, stranger], body):
        assert answer.items == [] and answer.unknown_candidates == 3


def test_a_single_stage_model_keeps_to_the_list_and_a_stranger_gets_its_popular_items(train):
    users, items = side_tables()
    prepared = recommend.prepare(create_model("ease").fit(train, users, items), "ease")
    listed = [str(i) for i in prepared.item_ids[::3]]
    body = Request(k=50, candidates=listed)
    frame = recommend.recommend_frame(prepared, ["u1", "stranger"], body, history=train)
    assert set(frame.item_id) <= set(listed)
    seen = set(train[train.user_id == "u1"].item_id)
    assert set(frame[frame.user_id == "u1"].item_id) == set(listed) - seen
    popular = frame[frame.user_id == "stranger"]
    assert (popular.source == "popular").all() and len(popular) == len(listed)


# -- validation ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {"k": 0},
        {"k": True},
        {"diversity": float("nan")},
        {"diversity": True},
        {"colour": 1},
        {"candidates": []},
        {"candidates": [7]},
        {"candidates": ["i"] * 10_001},
    ],
)
def test_a_bad_request_is_refused(fields):
    with pytest.raises(ValueError):
        Request(**fields)


# -- readiness: can this online store serve this version? ------------------------------------
def test_the_store_must_hold_the_versions_data_and_window(model):
    from recsys.features.build import StoreMeta

    prepared = recommend.prepare(model, "v7", lineage=["aaa", "bbb"])
    meta = StoreMeta(build_id="b1", lineage=["bbb"], recent_n=STORE_WINDOW, probe_user="u1")
    assert recommend.check_store(prepared, meta) == ""
    assert "never built" in recommend.check_store(prepared, None)
    other = meta.model_copy(update={"lineage": ["ccc"]})
    assert "holds data ccc" in recommend.check_store(prepared, other)
    assert "v7 was trained on aaa" in recommend.check_store(prepared, other)
    short = meta.model_copy(update={"recent_n": 3})
    expected = f"keeps 3 recent items per user; model v7 reads {prepared.recent_n}"
    assert expected in recommend.check_store(prepared, short)
    unknown = recommend.prepare(model, "v8")
    assert "records no data checksum" in recommend.check_store(unknown, meta)
