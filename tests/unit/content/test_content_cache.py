"""The content vectors of a catalog, cached by text checksum: an unchanged catalog encodes
nothing again, new or changed items encode only theirs, and a refit encoder never reuses the
vectors of the old fit."""

import numpy as np
import pandas as pd
import pytest

from recsys.config import RecsysError
from recsys.content import ContentCache, TfidfSvdEncoder, encode_items, item_text

GENRES = ["Action|Thriller", "Comedy|Romance", "Animation|Children's", "Drama", "Sci-Fi|War"]
WORDS = ["night", "river", "star", "love", "storm", "city", "ghost", "king", "summer", "road"]


def catalog(n: int = 30, start: int = 0) -> pd.DataFrame:
    """MovieLens-like rows: two-word titles, one genre group in five, a year."""
    ids = range(start, start + n)
    return pd.DataFrame(
        {
            "item_id": [str(i) for i in ids],
            "title": [f"{WORDS[i % 10]} {WORDS[(i * 7 + 3) % 10]} {i}" for i in ids],
            "genres": [GENRES[i % 5] for i in ids],
            "release_year": [1950 + i % 60 for i in ids],
        }
    )


class Counting:
    """An encoder that records every text it is asked to encode."""

    def __init__(self, inner: TfidfSvdEncoder) -> None:
        self.inner, self.encoded = inner, []
        self.modality, self.name = inner.modality, inner.name

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def fitted(self) -> bool:
        return self.inner.fitted

    def fit(self, texts):
        self.inner.fit(texts)
        return self

    def encode(self, texts):
        self.encoded.extend(texts)
        return self.inner.encode(texts)

    def save(self, directory):
        self.inner.save(directory)


@pytest.fixture
def encoder() -> Counting:
    return Counting(TfidfSvdEncoder(dim=8).fit(item_text(catalog())))


def test_vectors_come_in_the_table_order_whether_cached_or_not(encoder, tmp_path):
    items = catalog()
    plain = encode_items(items, encoder.inner)
    assert plain.shape == (30, 8) and plain.dtype == np.float32
    cached = encode_items(items, encoder, cache_dir=tmp_path)
    np.testing.assert_array_equal(cached, plain)
    shuffled = items.sample(frac=1.0, random_state=0)
    again = encode_items(shuffled, encoder, cache_dir=tmp_path)
    np.testing.assert_array_equal(again, plain[shuffled.index])


def test_an_unchanged_catalog_encodes_nothing_the_second_time(encoder, tmp_path):
    first = encode_items(catalog(), encoder, cache_dir=tmp_path, batch_size=7)
    assert len(encoder.encoded) == 30
    second = encode_items(catalog(), encoder, cache_dir=tmp_path)
    assert len(encoder.encoded) == 30  # nothing new
    np.testing.assert_array_equal(first, second)


def test_new_items_encode_only_their_texts_and_a_changed_text_is_encoded_again(encoder, tmp_path):
    encode_items(catalog(), encoder, cache_dir=tmp_path)
    grown = pd.concat([catalog(), catalog(3, start=100)], ignore_index=True)
    vectors = encode_items(grown, encoder, cache_dir=tmp_path)
    assert sorted(encoder.encoded[30:]) == sorted(item_text(catalog(3, start=100)))
    np.testing.assert_array_equal(vectors, encoder.inner.encode(item_text(grown)))
    changed = grown.copy()
    changed.loc[5, "title"] = "storm king returns"
    vectors = encode_items(changed, encoder, cache_dir=tmp_path)
    assert encoder.encoded[33:] == [item_text(changed)[5]]
    np.testing.assert_array_equal(vectors[5], encoder.inner.encode([item_text(changed)[5]])[0])


def test_a_refit_encoder_never_reuses_the_old_vectors(encoder, tmp_path):
    old = encode_items(catalog(), encoder, cache_dir=tmp_path)
    refit = Counting(TfidfSvdEncoder(dim=8).fit(item_text(catalog(40, start=20))))
    new = encode_items(catalog(), refit, cache_dir=tmp_path)
    assert len(refit.encoded) == 30  # every text again: the fingerprint changed
    np.testing.assert_array_equal(new, refit.inner.encode(item_text(catalog())))
    assert not np.allclose(new, old)
    assert len(ContentCache(tmp_path, refit)) == 30  # the old fit's vectors are gone


def test_a_spec_refits_the_same_encoder_on_an_unchanged_catalog_and_reuses_the_cache(
    tmp_path, monkeypatch
):
    encoded = []
    encode = TfidfSvdEncoder.encode
    monkeypatch.setattr(TfidfSvdEncoder, "encode", lambda s, t: encoded.extend(t) or encode(s, t))
    first = encode_items(catalog(), "tfidf-svd", dim=8, cache_dir=tmp_path)
    second = encode_items(catalog(), "tfidf-svd", dim=8, cache_dir=tmp_path)
    assert len(encoded) == 30 and (tmp_path / "tfidf-svd-8" / "vectors.npy").exists()
    np.testing.assert_array_equal(first, second)


def test_items_sharing_a_text_encode_it_once_and_an_item_without_text_is_a_zero_row(
    encoder, tmp_path
):
    items = pd.concat([catalog(4), catalog(4)], ignore_index=True)
    items.loc[7, ["title", "genres", "release_year"]] = [None, None, None]
    vectors = encode_items(items, encoder, cache_dir=tmp_path)
    assert len(encoder.encoded) == 5  # four texts and the empty one
    np.testing.assert_array_equal(vectors[:3], vectors[4:7])
    assert not vectors[7].any()


def test_an_unreadable_cache_is_an_empty_one(encoder, tmp_path):
    encode_items(catalog(), encoder, cache_dir=tmp_path)
    (tmp_path / "tfidf-svd-8" / "vectors.npy").write_bytes(b"not an array")
    vectors = encode_items(catalog(), encoder, cache_dir=tmp_path)
    assert len(encoder.encoded) == 60
    np.testing.assert_array_equal(vectors, encoder.inner.encode(item_text(catalog())))


def test_a_bad_batch_size_is_refused():
    with pytest.raises(RecsysError, match="batch_size 0"):
        encode_items(catalog(), "tfidf-svd", batch_size=0)
