"""Approximate nearest-neighbour search over item embeddings (FAISS)."""

from recsys.retrieval.index import IndexConfig, ItemIndex

__all__ = ["IndexConfig", "ItemIndex"]
