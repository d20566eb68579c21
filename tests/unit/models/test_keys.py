"""Keys: a sorted bytes array of string ids, found like a pandas hash index finds them."""

import io

import numpy as np
import pandas as pd
import pytest

from recsys.models import keys as keys_module
from recsys.models.encoding import FeatureEncoder, _user_table
from recsys.models.keys import Keys

IDS = ["u10", "u2", "é-user", "u2", "", "x" * 40, "u1"]


def test_positions_equal_a_hash_index_of_the_sorted_unique_ids():
    keys, order = Keys.sorting(IDS)
    unique = sorted(set(IDS), key=lambda s: s.encode())
    assert keys.tolist() == unique and [IDS[i] for i in order] == unique
    queries = [*IDS, "u", "u100", "u1\x01", "x" * 41, "x" * 39, "é", "zz"]
    expected = pd.Index(unique).get_indexer(queries)
    assert keys.positions(queries).tolist() == expected.tolist()
    assert keys[int(keys.positions(["é-user"])[0])] == "é-user"


def test_a_value_longer_than_every_key_is_not_cut_to_a_match():
    keys = Keys.of(["abc", "abd"])
    assert keys.positions(["abcd", "abdzzzz", "ab", "abc"]).tolist() == [-1, -1, -1, 0]


def test_the_bulk_and_the_search_paths_agree(monkeypatch):
    rng = np.random.default_rng(0)
    ids = np.array([f"u{i}" for i in rng.choice(10**6, 5_000, replace=False)], dtype=object)
    keys = Keys.of(ids)
    queries = np.array([f"u{i}" for i in rng.integers(0, 10**6, 3_000)], dtype=object)
    searched = keys.positions(queries)
    monkeypatch.setattr(keys_module, "BULK", 10)
    assert np.array_equal(keys.positions(queries), searched)
    assert np.array_equal(keys.positions(keys), np.arange(len(keys)))
    assert (searched >= 0).sum() == np.isin(queries, ids).sum()


def test_empty_keys_and_queries():
    assert Keys.of([]).positions(["a", "b"]).tolist() == [-1, -1]
    assert Keys.of(["a"]).positions([]).tolist() == []


def test_a_user_table_saved_unsorted_loads_with_each_users_codes(tmp_path):
    users = pd.DataFrame(
        {"user_id": ["u9", "u1", "u5"], "gender": ["M", "F", "M"], "occupation": ["a", "b", "c"]}
    )
    enc = FeatureEncoder.fit(users, None)
    want = {u: enc.codes_of_users([u])[0].tolist() for u in users.user_id}
    buf = io.BytesIO()  # the format before the keys were sorted: the table's own order
    keys = np.array(list(users.user_id), dtype=str)
    np.savez(buf, keys=keys, codes=enc.codes_of_users(keys).astype(np.int64))
    loaded, codes = _user_table(buf.getvalue())
    assert loaded.tolist() == ["u1", "u5", "u9"] and codes.dtype == np.int32
    for u, code in want.items():
        assert codes[loaded.positions([u])[0]].tolist() == code
    with pytest.raises(ValueError):
        codes[0, 0] = 1  # shared by the encoders that load it: read-only
