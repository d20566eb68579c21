"""The content-encoding benchmark's pieces: its synthetic catalog (seeded, a title vocabulary
of real size, MovieLens genres) and its steps' counts of texts encoded, on a tiny catalog."""

import pandas as pd

from benchmarks.content_encoding import catalog_rows, synthetic_items, table, word_list
from recsys.content import item_text
from recsys.data.movielens import GENRES


def test_the_synthetic_catalog_is_seeded_with_many_title_words_and_movielens_genres():
    items = synthetic_items(2_000)
    pd.testing.assert_frame_equal(items, synthetic_items(2_000))
    assert len(set(word_list())) == 4_000
    words = items.title.str.lower().str.split().explode()
    assert 600 < words.nunique() < 4_000  # a long tail: most words are rare
    assert set(items.genres.str.split("|").explode()) <= set(GENRES)
    assert items.release_year.between(1920, 2023).all()
    assert not synthetic_items(10, seed=1, start=2_000).item_id.isin(items.item_id).any()


def test_each_step_encodes_what_it_should_once_the_cache_holds_the_catalog():
    items, new = synthetic_items(300), synthetic_items(20, seed=1, start=10_000)
    rows = {r["step"]: r for r in catalog_rows("synthetic", items, new, dim=8)}
    unique = item_text(items).nunique()
    assert rows["fit"]["encoded"] == 0 and rows["encode"]["encoded"] == 300
    assert rows["cold cache"]["encoded"] == unique
    assert rows["cached"]["encoded"] == rows["cached, from the spec"]["encoded"] == 0
    assert rows["+20 new items"]["encoded"] == 20 and rows["+20 new items"]["items"] == 320
    assert rows["fit"]["dim"] == 8 and rows["encode"]["vectors_mib"] > 0
    assert table(list(rows.values())).splitlines()[0].startswith("| Catalog | items | step |")
