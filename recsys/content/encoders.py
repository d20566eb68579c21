"""Content encoders: texts in, unit vectors out, one interface for every modality.

An :class:`Encoder` is fitted on the catalog (a no-op for a pretrained model), encodes any
text afterwards (new items at run time use the encoder saved with the model) and saves itself
to a small directory that :func:`load_encoder` reads back. Two text encoders:

- ``tfidf-svd`` (:class:`TfidfSvdEncoder`), the default: TF-IDF over word unigrams and bigrams,
  projected to ``dim`` dimensions by a truncated SVD (latent semantic analysis). It needs no
  downloaded weights, and its parameters are plain arrays (``.npy``) and JSON, never pickle.
- ``sentence-transformers:<name or path>`` (:class:`SentenceTransformerEncoder`), the
  production encoder, when the optional ``sentence-transformers`` package is installed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import sparse

from recsys.config import RecsysError
from recsys.files import read_json_model, write_json

if TYPE_CHECKING:  # scikit-learn is imported where an encoder fits or transforms: a process
    # that only loads a model holding its vectors (a Ray Train worker) never pays for it
    from sklearn.feature_extraction.text import CountVectorizer

ENCODER_FILE = "encoder.json"
TFIDF, SENTENCE_TRANSFORMERS = "tfidf-svd", "sentence-transformers"
SPECS = (TFIDF, f"{SENTENCE_TRANSFORMERS}:<model name or local path>")
NGRAMS = (1, 2)
MIN_DF_FROM = 1_000  # catalogs this large drop terms of one item (bigrams of one title)


class Encoder(Protocol):
    """The modality + encoder interface (text now; images plug in the same way)."""

    modality: str  # "text"
    name: str  # "tfidf-svd", "sentence-transformers:all-MiniLM-L6-v2"
    dim: int  # the vectors' width (after fitting: the effective one)
    fitted: bool  # False until fit() for an encoder learnt on the catalog

    def fit(self, texts: Sequence[str]) -> Encoder: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...  # (n, dim) float32, unit rows

    def save(self, directory: Path) -> None: ...


class EncoderFile(BaseModel):
    """``encoder.json``: which encoder a directory holds and how it was made."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["tfidf-svd", "sentence-transformers"]
    modality: str = "text"
    dim: int
    model: str | None = None  # sentence-transformers: the hub name or local path
    requested_dim: int | None = None  # tfidf-svd: the asked-for dim (dim may be smaller)
    seed: int | None = None
    min_df: int | None = None
    max_terms: int | None = None


class TfidfSvdEncoder:
    """TF-IDF (word 1-2-grams, sublinear tf, lowercase) -> truncated SVD -> L2 normalise.

    Args:
        dim: the vectors' width; shrinks to the catalog's vocabulary (or item count) when that
            is smaller, and :attr:`dim` then records the effective width.
        seed: the SVD's random state: the same catalog and seed give the same vectors.
        min_df: a term's least document count; None: 2 from 1,000 texts on, else 1.
        max_terms: the vocabulary's size at most (the most frequent terms), which bounds the
            saved components at ``dim * max_terms`` floats.
    """

    modality = "text"
    name = TFIDF

    def __init__(
        self, dim: int = 64, seed: int = 0, *, min_df: int | None = None, max_terms: int = 50_000
    ) -> None:
        if dim < 1 or max_terms < 1:
            raise RecsysError(f"{TFIDF}: dim {dim} and max_terms {max_terms} must be >= 1")
        self.dim, self.requested_dim, self.seed = dim, dim, seed
        self.min_df, self.max_terms = min_df, max_terms
        self.terms: list[str] = []
        self.idf = np.zeros(0, np.float64)  # (terms,)
        self.components = np.zeros((0, 0), np.float32)  # (dim, terms)
        self._counter: CountVectorizer | None = None

    @property
    def fitted(self) -> bool:
        return self._counter is not None

    def fit(self, texts: Sequence[str]) -> TfidfSvdEncoder:
        """Learn the vocabulary, the idf weights and the SVD's components from ``texts``."""
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.utils.extmath import svd_flip

        texts = list(texts)
        min_df = self.min_df or (2 if len(texts) >= MIN_DF_FROM else 1)
        vectorizer = TfidfVectorizer(
            ngram_range=NGRAMS, sublinear_tf=True, min_df=min_df, max_features=self.max_terms
        )
        try:
            vectorizer.fit(texts)
        except ValueError as exc:  # no words at all, or none in min_df texts
            raise RecsysError(
                f"{TFIDF}: {len(texts)} item texts give no vocabulary (min_df {min_df}): {exc}"
            ) from exc
        self.min_df = min_df
        self._set(list(vectorizer.get_feature_names_out()), vectorizer.idf_, None)
        tfidf = self._tfidf(texts)  # (texts, terms)
        k = min(self.requested_dim, *tfidf.shape)
        if k < self.requested_dim or tfidf.shape[1] < 2:  # small: an exact SVD is cheap
            _, _, vt = np.linalg.svd(tfidf.toarray(), full_matrices=False)
            components = svd_flip(None, vt, u_based_decision=False)[1][:k]
        else:
            svd = TruncatedSVD(k, algorithm="randomized", random_state=self.seed)
            components = svd.fit(tfidf).components_
        self._set(self.terms, self.idf, components)
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` float32 unit rows; a text with no known term gives a zero row."""
        if not self.fitted:
            raise RecsysError(f"{TFIDF}: encode() before fit(): fit it on the catalog first")
        from sklearn.preprocessing import normalize

        vectors = self._tfidf(list(texts)) @ self.components.T  # (n, dim)
        return normalize(np.asarray(vectors, np.float32)).astype(np.float32, copy=False)

    def save(self, directory: Path) -> None:
        """Write ``encoder.json``, ``terms.json``, ``idf.npy`` and ``components.npy``."""
        if not self.fitted:
            raise RecsysError(f"{TFIDF}: save() before fit(): nothing to save")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json(self.terms, directory / "terms.json")
        np.save(directory / "idf.npy", self.idf)
        np.save(directory / "components.npy", self.components)
        meta = EncoderFile(
            kind=TFIDF,
            dim=self.dim,
            requested_dim=self.requested_dim,
            seed=self.seed,
            min_df=self.min_df,
            max_terms=self.max_terms,
        )
        write_json(meta.model_dump(exclude_none=True), directory / ENCODER_FILE)

    @classmethod
    def load(cls, directory: Path, meta: EncoderFile) -> TfidfSvdEncoder:
        """The encoder :meth:`save` wrote to ``directory`` (its ``encoder.json`` read)."""
        encoder = cls(meta.requested_dim or meta.dim, meta.seed or 0, min_df=meta.min_df)
        encoder.max_terms = meta.max_terms or encoder.max_terms
        try:
            terms = json.loads((directory / "terms.json").read_text())
            idf = np.load(directory / "idf.npy", allow_pickle=False)
            components = np.load(directory / "components.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise RecsysError(f"{directory}: unreadable {TFIDF} encoder: {exc}") from exc
        if components.shape != (meta.dim, len(terms)) or idf.shape != (len(terms),):
            raise RecsysError(
                f"{directory}: {TFIDF} parts disagree: {len(terms)} terms, idf {idf.shape}, "
                f"components {components.shape}, dim {meta.dim}"
            )
        encoder._set(terms, idf, components)
        return encoder

    def _set(self, terms: list[str], idf: np.ndarray, components: np.ndarray | None) -> None:
        """Take fitted parameters; the same transform serves a fitted and a loaded encoder."""
        from sklearn.feature_extraction.text import CountVectorizer

        self.terms, self.idf = terms, np.asarray(idf, np.float64)
        self._counter = CountVectorizer(vocabulary=terms, ngram_range=NGRAMS, dtype=np.float64)
        if components is not None:
            self.components = np.ascontiguousarray(components, np.float32)  # (dim, terms)
            self.dim = len(self.components)

    def _tfidf(self, texts: list[str]) -> sparse.csr_matrix:
        """TfidfVectorizer's transform, from the saved vocabulary and idf alone."""
        from sklearn.preprocessing import normalize

        counts = self._counter.transform(texts).tocsr()  # (texts, terms)
        counts.data = 1.0 + np.log(counts.data)  # sublinear tf
        return normalize(counts @ sparse.diags(self.idf))


class SentenceTransformerEncoder:
    """A pretrained sentence-transformers model (a hub name or a local path); not fitted.

    Args:
        model: what ``SentenceTransformer(model)`` loads.
        batch_size: texts per forward pass.
        device: ``"cpu"``, ``"cuda"``; None lets the library choose.

    Raises:
        RecsysError: the package is not installed, or the model cannot be loaded.
    """

    modality = "text"
    fitted = True

    def __init__(self, model: str, batch_size: int = 256, device: str | None = None) -> None:
        self.model, self.batch_size = model, batch_size
        self.name = f"{SENTENCE_TRANSFORMERS}:{model}"
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise RecsysError(
                f"encoder {self.name}: the sentence-transformers package is not installed "
                f"(pip install sentence-transformers), or use {TFIDF}"
            ) from exc
        try:
            self._model = SentenceTransformer(model, device=device)
        except (OSError, ValueError) as exc:
            raise RecsysError(f"encoder {self.name}: cannot be loaded: {exc}") from exc
        self.dim = int(self._model.get_sentence_embedding_dimension())

    def fit(self, texts: Sequence[str]) -> SentenceTransformerEncoder:
        return self  # pretrained

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, dim)`` float32 unit rows; an empty text gives a zero row (no content)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        rows = [i for i, t in enumerate(texts) if t.strip()]
        if rows:
            out[rows] = self._model.encode(
                [texts[i] for i in rows],
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return out

    def save(self, directory: Path) -> None:
        """Write ``encoder.json`` naming the model (the weights stay where they are)."""
        meta = EncoderFile(kind=SENTENCE_TRANSFORMERS, dim=self.dim, model=self.model)
        write_json(meta.model_dump(exclude_none=True), Path(directory) / ENCODER_FILE)


def make_encoder(spec: str = TFIDF, dim: int = 64, seed: int = 0) -> Encoder:
    """An unfitted encoder from its spec.

    Args:
        spec: ``"tfidf-svd"`` or ``"sentence-transformers:<model name or local path>"``.
        dim: the width of ``tfidf-svd``'s vectors (a pretrained model has its own).
        seed: ``tfidf-svd``'s SVD random state.

    Raises:
        RecsysError: an unknown spec, naming it and the known forms.
    """
    kind, _, model = spec.partition(":")
    if spec == TFIDF:
        return TfidfSvdEncoder(dim, seed)
    if kind == SENTENCE_TRANSFORMERS and model.strip():
        return SentenceTransformerEncoder(model.strip())
    raise RecsysError(f"encoder {spec!r}: unknown; expected one of {list(SPECS)}")


def load_encoder(directory: str | Path) -> Encoder:
    """The encoder an :meth:`Encoder.save` wrote to ``directory``."""
    directory = Path(directory)
    meta = read_json_model(directory / ENCODER_FILE, EncoderFile, "content encoder")
    if meta.kind == TFIDF:
        return TfidfSvdEncoder.load(directory, meta)
    return SentenceTransformerEncoder(meta.model or "")
