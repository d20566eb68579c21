"""The one batched path (``recsys.recommend.batch``): a batch answers each request as the
path answers it alone, whole or cut at the stage boundaries the composed graph uses, and a
bad request fails alone."""

from __future__ import annotations

import pytest

from recsys.models.kinds import create_model
from recsys.recommend import BadRequest, PreparedModel, Request, batch, prepare, recommend
from recsys.recommend.batch import Ask, Served
from recsys.state.offline import states_from_interactions


class Offline:
    """A :class:`batch.StateSource` over the training interactions (what ``recsys recommend``
    computes), with a version it refuses, as a store that cannot serve it would."""

    def __init__(self, interactions, recent_n: int, refuse: str = "") -> None:
        users = sorted(interactions["user_id"].unique())
        states = states_from_interactions(interactions, users, recent_n)
        self.states = dict(zip(users, states, strict=True))
        self.refuse = refuse
        self.reads = 0

    def read_users(self, user_ids):
        self.reads += 1
        return [(self.states[u], {"user_interactions": len(self.states[u].seen)}) for u in user_ids]

    def item_context(self, prepared):
        return None

    def require_ready(self, prepared):
        if prepared.version == self.refuse:
            raise RuntimeError(f"cannot serve {prepared.version}")


class Models:
    def __init__(self, **versions: PreparedModel) -> None:
        self.versions = versions

    def get(self, version: str) -> PreparedModel:
        return self.versions[version]


@pytest.fixture(scope="module")
def models(tiny_multistage, tiny_train) -> Models:
    ease = create_model("ease").fit(tiny_train)
    return Models(
        v1=prepare(tiny_multistage, "v1"), ease=prepare(ease, "ease"), bad=prepare(ease, "bad")
    )


def asks_for(users) -> list[Ask]:
    return [
        Ask("v1", users[0], Request(k=5)),
        Ask("ease", users[1], Request(k=5, exclude_seen=False)),
        Ask("v1", users[2], Request(filters={"include_genres": ["no such genre"]})),
        Ask("bad", users[3], Request(k=3)),
        Ask("v1", "never-seen", Request(k=4)),  # cold start
        Ask("v1", users[4], Request(k=7, diversity=0.5)),
    ]


def test_a_batch_answers_each_request_as_if_alone_and_a_bad_one_fails_alone(models, tiny_train):
    users = sorted(tiny_train["user_id"].unique())[:5]
    source = Offline(tiny_train, models.get("v1").recent_n, refuse="bad")
    source.states["never-seen"] = states_from_interactions(tiny_train, ["never-seen"], 10)[0]
    asks = asks_for(users)
    out = batch.recommend_batch(models, source, asks)
    assert isinstance(out[2], BadRequest) and "no such genre" in str(out[2])
    assert isinstance(out[3], RuntimeError)
    assert source.reads == 2  # one read per (version, exclude_seen) group served
    for n in (0, 1, 4, 5):
        ask = asks[n]
        (alone,) = recommend(models.get(ask.version), [source.states[ask.user_id]], ask.request)
        got = out[n]
        assert isinstance(got, Served) and got.answer == alone and len(alone.items) == ask.request.k
        assert set(got.timings) == {"candidates", "rank", "order"}
        assert got.features["history_len"] == len(source.states[ask.user_id].seen)
    assert out[4].answer.cold_start


def test_the_stages_apart_give_what_the_batch_gives(models, tiny_train):
    """The composed graph's cut: admit and finish at the Ingress, stage 1 in the
    CandidateGenerator, the ranker in its own deployment."""
    users = sorted(tiny_train["user_id"].unique())[:5]
    source = Offline(tiny_train, models.get("v1").recent_n, refuse="bad")
    source.states["never-seen"] = states_from_interactions(tiny_train, ["never-seen"], 10)[0]
    asks = asks_for(users)
    whole = batch.recommend_batch(models, source, asks)
    results, valid = batch.admit(models, asks)
    assert valid == [0, 1, 3, 4, 5]
    stage1 = batch.candidates_batch(models, source, [batch.stage1_key(asks[n]) for n in valid])
    ok = [j for j, got in enumerate(stage1) if not isinstance(got, Exception)]
    scored = [(asks[valid[j]].version, stage1[j]["candidates"]) for j in ok]
    batch.with_scores(stage1, ok, batch.rank_batch(models, scored), {"candidates": 0, "rank": 0})
    apart = batch.finish(models, asks, results, valid, stage1)
    for a, b in zip(whole, apart, strict=True):
        assert type(a) is type(b)
        if isinstance(a, Served):
            assert a.answer == b.answer
