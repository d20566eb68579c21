"""Item text and the encoders: what an item's text holds, TF-IDF-SVD's vectors (unit rows,
nearer for items that share words, seeded, saved and loaded exactly, unseen texts), and the
errors that name the spec or the missing package."""

import sys
import types
from importlib.util import find_spec

import numpy as np
import pandas as pd
import pytest

from recsys.config import RecsysError
from recsys.content import (
    SentenceTransformerEncoder,
    TfidfSvdEncoder,
    has_text,
    item_text,
    load_encoder,
    make_encoder,
)

MOVIES = [  # title, genres, release year: MovieLens-like rows
    ("Toy Story", "Animation|Children's|Comedy", 1995),
    ("Toy Story 2", "Animation|Children's|Comedy", 1999),
    ("Aladdin", "Animation|Children's|Musical", 1992),
    ("GoldenEye", "Action|Adventure|Thriller", 1995),
    ("Tomorrow Never Dies", "Action|Romance|Thriller", 1997),
    ("Die Hard", "Action|Thriller", 1988),
    ("Die Hard 2", "Action|Thriller", 1990),
    ("Sense and Sensibility", "Drama|Romance", 1995),
    ("Emma", "Comedy|Drama|Romance", 1996),
    ("Pride and Prejudice", "Drama|Romance", 1940),
    ("Alien", "Action|Horror|Sci-Fi|Thriller", 1979),
    ("Aliens", "Action|Sci-Fi|Thriller|War", 1986),
    ("Star Wars", "Action|Adventure|Romance|Sci-Fi|War", 1977),
    ("Fargo", "Crime|Drama|Thriller", 1996),
    ("Heat", "Action|Crime|Thriller", 1995),
    ("Babe", "Children's|Comedy|Drama", 1995),
]


def catalog() -> pd.DataFrame:
    titles, genres, years = zip(*MOVIES, strict=True)
    return pd.DataFrame(
        {
            "item_id": [str(i) for i in range(len(MOVIES))],
            "title": titles,
            "genres": genres,
            "release_year": pd.array(years, dtype="Int64"),
        }
    )


@pytest.fixture(scope="module")
def fitted() -> TfidfSvdEncoder:
    return TfidfSvdEncoder(dim=8, seed=0).fit(item_text(catalog()))


def test_an_item_text_joins_title_genres_year_and_description_skipping_missing_parts():
    items = pd.DataFrame(
        {
            "item_id": ["1", "2", "3", "4"],
            "title": ["Toy Story", None, "  Heat ", ""],
            "genres": ["Animation|Children's", "Drama", None, ""],
            "release_year": [1995.0, np.nan, 1995.0, np.nan],
            "description": [None, "A quiet film.", "", None],
        },
        index=[10, 11, 12, 13],
    )
    text = item_text(items)
    assert text.tolist() == [
        "Toy Story. Animation Children's. 1995",
        "Drama. A quiet film.",
        "Heat. 1995",
        "",
    ]
    assert list(text.index) == [10, 11, 12, 13]
    years = pd.DataFrame({"title": ["a", "b"], "release_year": pd.array([1995, None], "Int64")})
    assert item_text(years).tolist() == ["a. 1995", "b"]


def test_a_table_without_a_text_column_is_refused_by_name():
    with pytest.raises(RecsysError, match=r"no text column.*'title', 'genres'.*found \['item_id'"):
        item_text(pd.DataFrame({"item_id": ["1"], "release_year": [1995]}))
    assert not has_text(None)
    assert not has_text(pd.DataFrame({"item_id": ["1"], "release_year": [1995]}))
    assert not has_text(pd.DataFrame({"title": [None, " "], "genres": [np.nan, ""]}))
    assert has_text(pd.DataFrame({"title": [None, ""], "description": [None, "words"]}))
    assert has_text(catalog())


def test_tfidf_svd_vectors_are_unit_rows_of_the_asked_width(fitted):
    vectors = fitted.encode(item_text(catalog()))
    assert vectors.shape == (len(MOVIES), 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert fitted.dim == 8 and fitted.name == "tfidf-svd" and fitted.modality == "text"


def test_items_that_share_title_words_and_genres_are_nearer_than_unrelated_ones(fitted):
    v = fitted.encode(item_text(catalog()))
    title = {t: i for i, (t, _, _) in enumerate(MOVIES)}

    def cos(a, b):
        return float(v[title[a]] @ v[title[b]])

    assert cos("Toy Story", "Toy Story 2") > cos("Toy Story", "Die Hard") + 0.3
    assert cos("Die Hard", "Die Hard 2") > cos("Die Hard", "Emma") + 0.3
    assert cos("Alien", "Aliens") > cos("Alien", "Pride and Prejudice") + 0.3


def test_the_same_seed_gives_the_same_vectors():
    texts = item_text(catalog())
    a = TfidfSvdEncoder(dim=8, seed=3).fit(texts).encode(texts)
    b = TfidfSvdEncoder(dim=8, seed=3).fit(texts).encode(texts)
    np.testing.assert_array_equal(a, b)


def test_the_width_shrinks_to_a_small_vocabulary_and_records_it():
    texts = ["red apple", "green apple", "red car"]  # 7 terms, 3 texts
    encoder = TfidfSvdEncoder(dim=64).fit(texts)
    assert encoder.dim == 3 and encoder.requested_dim == 64
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 3)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert TfidfSvdEncoder(dim=4).fit(["solo", "solo"]).encode(["solo"]).shape == (1, 1)


def test_a_saved_encoder_loads_back_to_identical_vectors_without_pickle(fitted, tmp_path):
    fitted.save(tmp_path / "enc")
    files = sorted(p.name for p in (tmp_path / "enc").iterdir())
    assert files == ["components.npy", "encoder.json", "idf.npy", "terms.json"]
    loaded = load_encoder(tmp_path / "enc")
    texts = [*item_text(catalog()), "Toy Story 3. Animation. 2010", "never seen words"]
    np.testing.assert_array_equal(loaded.encode(texts), fitted.encode(texts))
    assert (loaded.dim, loaded.seed, loaded.min_df) == (fitted.dim, fitted.seed, fitted.min_df)


def test_an_unseen_text_lands_near_its_kind_and_one_of_unknown_words_is_zero(fitted):
    v = fitted.encode(item_text(catalog()))
    new = fitted.encode(["Toy Story 3. Animation Children's Comedy. 2010", "zzz qqq", ""])
    assert new.shape == (3, 8)
    assert MOVIES[int(np.argmax(v @ new[0]))][0].startswith("Toy Story")
    assert np.linalg.norm(new[0]) == pytest.approx(1.0, abs=1e-5)
    assert not new[1:].any()  # no known term: a zero row, not NaN


def test_an_unfitted_or_empty_encoder_is_refused():
    with pytest.raises(RecsysError, match="before fit"):
        TfidfSvdEncoder().encode(["a text"])
    with pytest.raises(RecsysError, match="no vocabulary"):
        TfidfSvdEncoder().fit(["", "  "])
    with pytest.raises(RecsysError, match="dim 0"):
        TfidfSvdEncoder(dim=0)


def test_an_unknown_encoder_spec_names_itself_and_the_known_forms(tmp_path):
    assert isinstance(make_encoder("tfidf-svd", dim=16), TfidfSvdEncoder)
    for spec in ("bogus", "sentence-transformers:", "tfidf"):
        with pytest.raises(RecsysError, match=rf"'{spec}'.*tfidf-svd.*sentence-transformers:<"):
            make_encoder(spec)
    with pytest.raises(RecsysError, match="not a content encoder directory"):
        load_encoder(tmp_path)


@pytest.mark.skipif(find_spec("sentence_transformers") is not None, reason="it is installed")
def test_without_sentence_transformers_the_error_says_how_to_get_it():
    with pytest.raises(
        RecsysError,
        match=r"sentence-transformers:all-MiniLM-L6-v2: the sentence-transformers package is "
        r"not installed \(pip install sentence-transformers\), or use tfidf-svd",
    ):
        make_encoder("sentence-transformers:all-MiniLM-L6-v2")


class FakeSentenceTransformer:
    """Stands in for ``sentence_transformers.SentenceTransformer``: a hash of each text."""

    calls: list[dict] = []

    def __init__(self, model, device=None):
        if model == "missing":
            raise OSError("no such model")
        self.model = model

    def get_sentence_embedding_dimension(self):
        return 4

    def encode(self, texts, **kwargs):
        FakeSentenceTransformer.calls.append({"texts": list(texts), **kwargs})
        rng = np.random.default_rng([len(t) for t in texts])
        out = rng.normal(size=(len(texts), 4))
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_the_sentence_transformers_encoder_normalises_and_saves_its_model_name(
    tmp_path, monkeypatch
):
    module = types.ModuleType("sentence_transformers")
    module.SentenceTransformer = FakeSentenceTransformer
    monkeypatch.setitem(sys.modules, "sentence_transformers", module)
    encoder = make_encoder("sentence-transformers:/models/mini")
    assert isinstance(encoder, SentenceTransformerEncoder) and encoder.fitted
    assert (encoder.name, encoder.dim) == ("sentence-transformers:/models/mini", 4)
    vectors = encoder.fit(["ignored"]).encode(["Toy Story", "", "Heat"])
    assert vectors.dtype == np.float32 and vectors.shape == (3, 4)
    assert not vectors[1].any()  # no text: a zero row, as tfidf-svd gives
    call = FakeSentenceTransformer.calls[-1]
    assert call["texts"] == ["Toy Story", "Heat"] and call["normalize_embeddings"] is True
    encoder.save(tmp_path)
    loaded = load_encoder(tmp_path)
    assert loaded.name == encoder.name and loaded.dim == 4
    with pytest.raises(RecsysError, match="sentence-transformers:missing: cannot be loaded"):
        make_encoder("sentence-transformers:missing")
