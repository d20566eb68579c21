"""Item content as vectors: an item's text (title, genres, year, description), encoders behind
one modality + encoder interface (``tfidf-svd`` built in, ``sentence-transformers`` when
installed), and the content vectors of a catalog, cached by text checksum."""

from recsys.content.cache import ContentCache, encode_items, encoder_fingerprint
from recsys.content.encoders import (
    Encoder,
    SentenceTransformerEncoder,
    TfidfSvdEncoder,
    load_encoder,
    make_encoder,
)
from recsys.content.text import TEXT_COLUMNS, has_text, item_text

__all__ = [
    "TEXT_COLUMNS",
    "ContentCache",
    "Encoder",
    "SentenceTransformerEncoder",
    "TfidfSvdEncoder",
    "encode_items",
    "encoder_fingerprint",
    "has_text",
    "item_text",
    "load_encoder",
    "make_encoder",
]
