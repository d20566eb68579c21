"""The content baselines: content kNN and genre affinity recommend items nobody has rated
(cold ones, in the catalog only), learn the user's taste from its history, save and load, and
go through the one recommendation path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsys import recommend
from recsys.config import RecsysError
from recsys.models.extend import with_new_items
from recsys.models.kinds import create_model, load_model
from recsys.models.multistage import MultiStageConfig, MultiStageModel
from recsys.models.two_tower.model import WEIGHTS_FILE
from recsys.recommend import Request
from recsys.recommend.added import with_added
from tests.helpers import TINY_MULTISTAGE, make_interactions, side_tables

TOPICS = {0: "space rocket galaxy", 1: "cooking kitchen recipe", 2: "horse ranch western"}


def catalog(n_items: int = 40, cold: int = 6) -> pd.DataFrame:
    """Items of three topics (title words and a genre each); the last ``cold`` have no
    interactions."""
    ids = [f"i{i}" for i in range(n_items + cold)]
    return pd.DataFrame(
        {
            "item_id": ids,
            "title": [f"{TOPICS[i % 3]} story {i}" for i in range(len(ids))],
            "genres": [["SciFi", "Food", "Western"][i % 3] for i in range(len(ids))],
            "release_year": [1990 + i % 7 for i in range(len(ids))],
        }
    )


def topic_history(n_users: int = 30) -> pd.DataFrame:
    """Each user rates items of one topic only (its id modulo 3)."""
    rows = make_interactions(n_users=n_users, n_items=40, per_user=6)
    items = [i for i in range(40)]
    rng = np.random.default_rng(0)
    picks = [f"i{rng.choice([i for i in items if i % 3 == int(u[1:]) % 3])}" for u in rows.user_id]
    return rows.assign(item_id=picks).drop_duplicates(["user_id", "item_id"])


@pytest.mark.parametrize("kind", ["content", "genre"])
def test_a_cold_item_of_the_users_topic_is_recommended(kind, tmp_path):
    train, items = topic_history(), catalog()
    model = create_model(kind).fit(train, None, items)
    assert "i41" in set(model.item_ids)  # the catalog's cold items are in the vocabulary
    cold = [f"i{i}" for i in range(40, 46)]
    body = Request(k=2, candidates=cold)
    frame = recommend.recommend_frame(model, ["u0", "u1", "stranger"], body, history=train)
    topic = {u: int(u[1:]) % 3 for u in ("u0", "u1")}
    for user, want in topic.items():
        got = frame[frame.user_id == user]
        assert len(got) == 2 and all(int(i[1:]) % 3 == want for i in got.item_id), got
        assert (got.source == "model").all()
    assert (frame[frame.user_id == "stranger"].source == "popular").all()
    model.save(tmp_path / kind, version=f"{kind}-1")
    again = load_model(tmp_path / kind)
    same = recommend.recommend_frame(again, ["u0", "u1"], body, history=train)
    pd.testing.assert_frame_equal(same, frame[frame.user_id != "stranger"].reset_index(drop=True))


def test_content_needs_text_and_genre_needs_genres():
    train = topic_history()
    bare = catalog()[["item_id", "release_year"]]
    with pytest.raises(RecsysError, match="content: the items table has no text"):
        create_model("content").fit(train, None, bare)
    with pytest.raises(RecsysError, match="genre: the items table names no genres"):
        create_model("genre").fit(train, None, catalog().drop(columns="genres"))


def test_content_reasons_name_the_nearest_history_item():
    train, items = topic_history(), catalog()
    model = create_model("content").fit(train, None, items)
    prepared = recommend.prepare(
        model, "c1", titles=dict(zip(items.item_id, items.title, strict=True))
    )
    frame = recommend.recommend_frame(prepared, ["u0"], Request(k=3), history=train)
    assert frame.reason.str.startswith("because you watched space rocket galaxy").all()


def new_items(*topics: int) -> pd.DataFrame:
    """Items added after training, one of each topic: ``n0`` (space), ``n1`` (cooking)..."""
    genres = ["SciFi", "Food", "Western"]
    return pd.DataFrame(
        {
            "item_id": [f"n{t}" for t in topics],
            "title": [f"{TOPICS[t]} premiere" for t in topics],
            "genres": [genres[t] for t in topics],
            "release_year": [2001] * len(topics),
            "description": [""] * len(topics),
        }
    )


@pytest.mark.parametrize("kind", ["content", "genre"])
def test_an_item_added_after_training_goes_to_the_users_of_its_topic(kind):
    train, items = topic_history(), catalog(cold=0)
    model = create_model(kind).fit(train, None, items)
    prepared = recommend.prepare(model, "v1")
    added = with_added(prepared, new_items(0, 1, 2))
    assert len(model.item_ids) == 40 and len(prepared.item_ids) == 40  # the loaded one: as it was
    assert added.item_ids[-3:].tolist() == ["n0", "n1", "n2"] and added.title("n1").startswith(
        "cook"
    )
    listed = Request(k=1, candidates=["n0", "n1", "n2"])
    frame = recommend.recommend_frame(added, ["u0", "u1", "u2"], listed, history=train)
    assert frame.item_id.tolist() == ["n0", "n1", "n2"]  # u0: space, u1: cooking, u2: western
    assert with_added(added, new_items(1)) is added  # an item it holds is not added twice


def test_the_multistage_model_scores_a_new_item_by_its_content_and_leaves_the_loaded_one(
    tiny_multistage, tiny_train
):
    """The tiny model reads content (its items' genres and years); an item of cluster 1's
    genre reaches cluster 1's users through the content source. The loaded version answers
    as before: a request still running on it is not touched by the addition."""
    prepared = recommend.prepare(tiny_multistage, "v1")
    users, warm = ["u1", "u5", "u3", "u7"], Request(k=5)  # clusters 1, 1, 3, 3
    before = recommend.recommend_frame(prepared, users, warm, history=tiny_train)
    fresh = pd.DataFrame(
        {"item_id": ["x1", "x3"], "title": ["x1", "x3"], "genres": ["G1|Drama", "G3|Drama"]}
    )
    added = with_added(prepared, fresh)
    listed = recommend.recommend_frame(
        added, users, Request(k=1, candidates=["x1", "x3"]), history=tiny_train
    )
    assert listed.item_id.tolist() == ["x1", "x1", "x3", "x3"]
    assert listed.reason.str.startswith("because you watched i").all()
    again = recommend.recommend_frame(prepared, users, warm, history=tiny_train)
    pd.testing.assert_frame_equal(before, again)
    n = len(tiny_multistage.item_ids)
    for fit in (added.model.sources, *added.model.fold_sources):
        assert fit.ease.shape == (n + 2, n + 2) and fit.rp3.shape == (n + 2, n + 2)
        assert len(fit.popularity) == n + 2 and fit.content is added.model.content
    assert tiny_multistage.sources.ease.shape == (n, n) and len(tiny_multistage.content) == n


def test_a_model_of_interactions_alone_waits_for_its_next_training():
    train = topic_history()
    model = create_model("popularity").fit(train, None, catalog())
    prepared = recommend.prepare(model, "p1")
    assert with_added(prepared, new_items(0)) is prepared


def test_the_item_tower_embeds_an_item_nobody_rated_from_its_text(tmp_path):
    """With content, the item tower reads each item's content vector; an item no training
    interaction met is embedded as the unknown id (its id embedding was never trained), so
    its text and features alone place it. Without content (``off``) the tower has no such
    input. What it buys on MovieLens's cold items: docs/content.md."""
    train, items = topic_history(60), catalog(cold=6)
    tower = dict(dim=16, id_dim=16, feat_dim=8, hidden=32, epochs=3, batch_size=64)
    model = create_model("two_tower", tower).fit(train, None, items)
    plain = create_model("two_tower", {**tower, "content": "off"}).fit(train, None, items)
    assert plain._item_content is None and plain.net.item_tower.content_proj is None
    net, cold = model.net.item_tower.eval(), model._item_index["i41"] + 1
    assert len(model._item_content) == 47 and not model._item_content[0].any()  # 46 items + 0
    with torch.no_grad():
        as_unknown = net(torch.tensor([cold])).clone()
        net.trained[cold] = True  # as if its id had been trained
        assert not torch.allclose(net(torch.tensor([cold])), as_unknown)
        net.trained[cold] = False
        own = net.content[cold].clone()  # the buffer is the model's array, not a copy
        net.content[cold] = torch.as_tensor(model._item_content[1])  # another item's text
        assert not torch.allclose(net(torch.tensor([cold])), as_unknown)
        net.content[cold] = own
    listed = Request(k=2, candidates=[f"i{i}" for i in range(40, 46)])
    users = [f"u{u}" for u in range(12)]
    frame = recommend.recommend_frame(model, users, listed, history=train)
    again = load_model(model.save(tmp_path / "m", version="t1"))
    np.testing.assert_array_equal(again._item_content, model._item_content)
    # the loaded weights are the file's pages, mapped: a replica holds the rows it reads
    mapped = Path("/proc/self/maps").read_text()
    assert str((tmp_path / "m" / WEIGHTS_FILE).resolve()) in mapped
    for m in (model, again):  # one copy of the content and of the item table in a process
        assert np.shares_memory(m.net.item_tower.content.numpy(), m._item_content)
        assert np.shares_memory(m.net.item_tower.table.numpy(), m._item_table)
    pd.testing.assert_frame_equal(
        recommend.recommend_frame(again, users, listed, history=train), frame
    )


def test_a_tower_that_reads_content_embeds_and_indexes_new_items(tmp_path):
    """A two-tower that reads content takes new items: embedded by its item tower (id
    unknown) and added to a copy of its index; the loaded one is left as it was. A
    multi-stage model with such a tower as a source takes them too."""
    train, items = topic_history(60), catalog(cold=0)
    tower = dict(dim=16, id_dim=16, feat_dim=8, hidden=32, epochs=3, batch_size=64)
    model = create_model("two_tower", tower).fit(train, None, items)
    assert create_model("two_tower", {**tower, "content": "off"}).takes_new_items is False
    loaded = load_model(model.save(tmp_path / "t", version="t1"))
    added = with_added(recommend.prepare(loaded, "t1"), new_items(0, 1, 2)).model
    assert added.index.n_items == 43 and loaded.index.n_items == 40
    assert added.item_embeddings.shape == (43, 16) and loaded.item_embeddings.shape == (40, 16)
    with torch.no_grad():  # each new item as its tower embeds it: features only, id unknown
        mine = added.net.item_tower(torch.tensor([41, 42, 43])).numpy()
    np.testing.assert_allclose(added.item_embeddings[40:], mine, rtol=1e-5)
    assert not added.net.item_tower.trained[41:].any()
    scores, ids = added.retrieve(added.item_embeddings[40:], 43)  # each finds itself first
    assert ids[:, 0].tolist() == [40, 41, 42]
    frame = recommend.recommend_frame(
        added, ["u0", "u1"], Request(k=1, candidates=["n0", "n1", "n2"]), history=train
    )
    assert len(frame) == 2 and set(frame.item_id) <= {"n0", "n1", "n2"}
    users, items = side_tables()
    stages = MultiStageModel(MultiStageConfig(**{**TINY_MULTISTAGE, "n_two_tower": 10}))
    stages.fit(make_interactions(), users, items)
    assert stages.takes_new_items and stages.sources.two_tower.takes_new_items
    # the catalog is encoded once: the model's and its towers' vectors come from one fit
    assert stages.sources.two_tower.content_encoder is stages.content_encoder
    loaded = load_model(stages.save(tmp_path / "s", version="s1"))
    np.testing.assert_array_equal(loaded.content, stages.content)
    assert np.shares_memory(loaded.content, loaded.sources.two_tower._item_content)
    fresh = pd.DataFrame({"item_id": ["x1"], "title": ["x1"], "genres": ["G1|Drama"]})
    grown = with_new_items(stages, fresh)
    for fit in (grown.sources, *grown.fold_sources):
        assert fit.two_tower.index.n_items == 45 and len(fit.two_tower.item_embeddings) == 45
    listed = recommend.recommend_frame(
        grown, ["u1", "u5"], Request(k=1, candidates=["x1", "i2"]), history=make_interactions()
    )
    assert listed.item_id.tolist() == ["x1", "x1"]
