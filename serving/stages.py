"""The serving stages as plain functions over a loaded model version — no Ray here, so the
fused topology, the composed deployments and the in-process benchmark floor share one code.

candidates (user tower + FAISS, EASE, popular) → rank (the DCN ranker, batched) → order
(exclude seen, genre filters, MMR, a reason per item, the cold-start answer).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recsys.config import RecsysError
from recsys.features.online import history_frame
from recsys.models import PipelineModel, load_model
from recsys.registry import Registry
from serving.schemas import Filters, RecommendedItem, RecommendRequest


class BadRequest(ValueError):
    """A request that is well-formed but names something the model does not know (HTTP 422)."""


@dataclass
class ServedModel:
    """A pipeline model version and what the stages precompute from it."""

    version: str
    model: PipelineModel
    titles: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tt = self.model.two_tower
        self.item_ids = np.asarray(self.model.item_ids, dtype=object)
        self.position = {str(i): n for n, i in enumerate(self.item_ids)}
        emb = tt.item_embeddings.astype(np.float32)  # (n_items, dim)
        self.unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-9)
        self.genres, self.member = tt.item_genres()  # (n_items, n_genres)
        self.genre_index = {g: j for j, g in enumerate(self.genres)}
        self.popularity = np.asarray(self.model.item_popularity, dtype=np.float64)

    def title(self, item_id: str) -> str:
        return self.titles.get(item_id, item_id)


class ModelCache:
    """Loaded versions by name, the latest two kept: a request that started on the old version
    finishes on it while the replicas switch (no request sees a half-switched pipeline)."""

    def __init__(
        self, root: str | Path, titles: dict[str, str] | None = None, keep: int = 2
    ) -> None:
        # A registry on an object store (s3://, gs://): versions are downloaded on first use.
        self.registry = Registry(root) if "://" in str(root) else None
        self.root = None if self.registry else Path(root)
        self.titles, self.keep = titles or {}, keep
        self._models: OrderedDict[str, ServedModel] = OrderedDict()
        self._lock = threading.Lock()

    def path(self, version: str) -> Path:
        if self.registry is not None:
            return self.registry.local_path(version)
        path = Path(version)
        return path if path.is_absolute() else self.root / version

    def get(self, version: str) -> ServedModel:
        with self._lock:
            if version in self._models:
                self._models.move_to_end(version)
                return self._models[version]
            model = load_model(self.path(version))
            if not isinstance(model, PipelineModel):
                raise RecsysError(
                    f"model {version}: serving needs a pipeline model, got {model.kind}"
                )
            served = ServedModel(version, model, self.titles)
            self._models[version] = served
            while len(self._models) > self.keep:
                self._models.popitem(last=False)
            return served


def candidates(served: ServedModel, user_id: str, history: list[str], exclude_seen: bool) -> dict:
    """Stage 1: the user's candidates with the ranker's features; ``known`` False means nothing
    is known of the user (the ordering stage gives the cold-start answer)."""
    frame = history_frame(user_id, {"last_items": history})
    rows, known = served.model.serve_candidates(user_id, frame, exclude_seen)
    return {"rows": rows, "known": known}


def rank(served: ServedModel, batch: list[dict]) -> list[np.ndarray]:
    """Stage 2: ranker logits for several requests' candidate rows in one forward pass."""
    sizes = [len(rows["iid"]) for rows in batch]
    if not sum(sizes):
        return [np.zeros(0) for _ in batch]
    joined = {k: np.concatenate([rows[k] for rows in batch]) for k in batch[0]}
    scores = served.model.ranker.score(joined)
    return np.split(scores, np.cumsum(sizes)[:-1])


def genre_mask(served: ServedModel, filters: Filters) -> np.ndarray | None:
    """Items allowed by the request's genre filters (None: no filter)."""
    if not filters.include_genres and not filters.exclude_genres:
        return None
    mask = np.ones(len(served.item_ids), dtype=bool)
    for name, genres in (
        ("include_genres", filters.include_genres),
        ("exclude_genres", filters.exclude_genres),
    ):
        unknown = [g for g in genres if g not in served.genre_index]
        if unknown:
            raise BadRequest(
                f"filters.{name}: unknown genre {unknown[0]!r} (known: {', '.join(served.genres)})"
            )
    if filters.include_genres:
        cols = [served.genre_index[g] for g in filters.include_genres]
        mask &= served.member[:, cols].any(axis=1)
    if filters.exclude_genres:
        cols = [served.genre_index[g] for g in filters.exclude_genres]
        mask &= ~served.member[:, cols].any(axis=1)
    return mask


def order(
    served: ServedModel,
    request: RecommendRequest,
    item_codes: np.ndarray,
    scores: np.ndarray,
    known: bool,
    history: list[str],
) -> tuple[list[RecommendedItem], bool]:
    """Stage 3: the final list — filters, optional MMR, reasons; popular items for a user
    nothing is known of. Returns the items and whether this was the cold-start answer."""
    allowed = genre_mask(served, request.filters)
    seen = {served.position[i] for i in history if i in served.position}
    if known:
        idx, score = np.asarray(item_codes, dtype=np.int64) - 1, np.asarray(scores, float)
    else:
        idx = np.argsort(-served.popularity, kind="stable")
        score = np.log1p(served.popularity[idx])
    keep = np.ones(len(idx), dtype=bool)
    if allowed is not None:
        keep &= allowed[idx]
    if request.exclude_seen and seen:
        keep &= ~np.isin(idx, list(seen))
    idx, score = idx[keep], score[keep]
    top = np.argsort(-score, kind="stable")
    if request.diversity > 0 and len(top):
        top = _mmr(served, idx, score, top, request.k, request.diversity)
    picked, picked_score = idx[top[: request.k]], score[top[: request.k]]
    reasons = _reasons(served, picked, history, known, request.filters)
    if known and len(picked) < request.k:  # the filters left too few candidates: popular fill
        hidden = (seen if request.exclude_seen else set()) | set(picked.tolist())
        fill = _popular(served, allowed, hidden, request.k - len(picked))
        floor = picked_score.min() if len(picked) else 0.0
        picked = np.concatenate([picked, fill])
        picked_score = np.concatenate([picked_score, floor - 1.0 - np.arange(len(fill))])
        reasons += _reasons(served, fill, history, False, request.filters)
    items = [
        RecommendedItem(item_id=str(served.item_ids[i]), score=float(s), rank=n + 1, reason=r)
        for n, (i, s, r) in enumerate(zip(picked, picked_score, reasons, strict=True))
    ]
    return items, not known


def _popular(served: ServedModel, allowed, hidden: set[int], n: int) -> np.ndarray:
    """The ``n`` most popular items the filters allow, minus ``hidden``."""
    ranked = np.argsort(-served.popularity, kind="stable")
    ok = ~np.isin(ranked, list(hidden)) if hidden else np.ones(len(ranked), dtype=bool)
    if allowed is not None:
        ok &= allowed[ranked]
    return ranked[ok][:n]


def _mmr(served, idx, score, top, k, diversity) -> np.ndarray:
    """Maximal marginal relevance over the best 5k: (1-d)·relevance − d·max similarity to the
    items already picked (cosine of item embeddings)."""
    pool = top[: max(5 * k, 50)]
    rel = score[pool]
    rel = (rel - rel.min()) / max(rel.max() - rel.min(), 1e-9)
    vec = served.unit[idx[pool]]  # (pool, dim)
    picked, best_sim = [], np.full(len(pool), -1.0)
    for _ in range(min(k, len(pool))):
        gain = (1 - diversity) * rel - diversity * np.maximum(best_sim, 0.0)
        gain[picked] = -np.inf
        j = int(np.argmax(gain))
        picked.append(j)
        best_sim = np.maximum(best_sim, vec @ vec[j])
    return pool[picked]


def _reasons(served, chosen: np.ndarray, history: list[str], known: bool, filters) -> list[str]:
    """ "because you watched X": the history item nearest to each pick (item embeddings)."""
    hist = [served.position[i] for i in history if i in served.position]
    if not known:
        where = f" in {', '.join(filters.include_genres)}" if filters.include_genres else ""
        return [f"popular{where}"] * len(chosen)
    if not hist or not len(chosen):
        return ["matches your profile"] * len(chosen)
    sims = served.unit[chosen] @ served.unit[hist].T  # (picks, history)
    nearest = np.asarray(hist)[np.argmax(sims, axis=1)]
    return [f"because you watched {served.title(str(served.item_ids[h]))}" for h in nearest]
