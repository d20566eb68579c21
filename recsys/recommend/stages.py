"""The one recommendation path: (model version, the users' states, a request) → ranked items
with scores and reasons.

``recsys recommend``, the pipeline's evaluation, the monitoring reference, the quality
benchmark and every Serve topology call these functions; ``serving/`` only adapts HTTP and Ray
Serve to them. The three stages, for a batch of users (a single request is a batch of one):

1. :func:`candidates` — the model's candidate generators over the users' states;
2. :func:`rank` — the final score of every candidate (the ranker of a multi-stage model);
3. :func:`order` — the list: seen items out, genre filters, optional MMR diversity, ties by
   (score desc, vocabulary position asc), a reason per item, the most popular items for a user
   nothing is known of (cold start), and popular items to fill a list the filters left short.

:func:`recommend` runs the three; :func:`recommend_frame` runs it for many users from an
interactions table (the offline side). The user's state is the same contract offline and
online (:mod:`recsys.state.user`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from pydantic import BeforeValidator, Field

from recsys.config import RecsysError, Strict, shorten
from recsys.data.io import ITEM, USER, genre_membership
from recsys.models.base import Candidates, Recommender, unit_rows
from recsys.state.user import UserState

SCORE, RANK, REASON, SOURCE = "score", "rank", "reason", "source"
FRAME_COLUMNS = (USER, ITEM, SCORE, RANK, REASON, SOURCE)
BATCH_USERS = 256
MAX_CANDIDATES = 10_000  # the ids a request may restrict its list to
MASKS_KEPT = 64  # genre filter combinations whose catalog mask a prepared model keeps


class BadRequest(RecsysError):
    """A well-formed request naming something the model does not know (HTTP 422)."""


class Filters(Strict):
    """Genre filters over the model's catalog."""

    include_genres: list[str] = []  # keep items with at least one of these genres
    exclude_genres: list[str] = []  # drop items with any of these


def _whole(value: object) -> object:
    """JSON Schema counts 84.0 as an integer: take it as 84 (never 84.5, "84" or true)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A count in a request body: an integer, or a float with no fraction (JSON Schema's integer).
Count = Annotated[int, BeforeValidator(_whole)]


class Request(Strict):
    """What every recommendation asks for besides the user."""

    k: Count = Field(10, ge=1, le=10_000, strict=True)
    exclude_seen: bool = Field(True, strict=True)
    filters: Filters = Filters()
    diversity: float = Field(0.0, ge=0.0, le=1.0, strict=True)  # MMR: 0 = pure relevance
    # Only these items (business rules; an evaluation over part of the catalog): the model
    # ranks them all when it cannot reach them itself; ids the version does not know are left
    # out (a catalog changes before the next training), and the answer counts them.
    candidates: list[str] | None = Field(None, min_length=1, max_length=MAX_CANDIDATES)


class Recommendation(Strict):
    """One recommended item. ``source``: ``model`` (the model's own ranking) or ``popular``
    (the cold-start answer, or the fill of a list the filters left short)."""

    item_id: str
    score: float
    rank: int
    reason: str
    source: Literal["model", "popular"] = "model"


@dataclass
class Answer:
    """One user's list; ``cold_start`` when nothing was known of the user."""

    user_id: str
    items: list[Recommendation]
    cold_start: bool
    unknown_candidates: int = 0  # listed ids the version does not know, left out


@dataclass
class PreparedModel:
    """A loaded model version and what the ordering stage precomputes from it."""

    model: Recommender
    version: str = ""
    titles: dict[str, str] = field(default_factory=dict)
    lineage: list[str] = field(default_factory=list)
    items: dict | None = None  # the items' context (ITEM_CONTEXT): the store's, or offline
    masks: dict = field(default_factory=dict, repr=False)  # genre filters -> allowed items

    def __post_init__(self) -> None:
        model = self.model
        self.item_ids = np.asarray(model.item_ids, dtype=object)
        own = getattr(model, "_item_index", None)  # the model's {id: position}: one copy
        same = isinstance(own, dict) and len(own) == len(self.item_ids)
        same = same and all(isinstance(i, str) for i in own)
        self.position = own if same else {str(i): n for n, i in enumerate(self.item_ids)}
        self.recent_n = model.state_spec().recent_n
        self.popularity = np.asarray(model.item_popularity, dtype=np.float64)
        self.popular = np.argsort(-self.popularity, kind="stable")  # ties: vocabulary order
        genres = model.item_genres or [""] * len(self.item_ids)
        self.genres, self.member = genre_membership(genres)
        self.genre_index = {g: j for j, g in enumerate(self.genres)}
        self.unit = model.unit_vectors()  # the model's own copy, which its reasons read
        if self.unit is None and self.genres:  # diversity over genres when no embeddings
            self.unit = unit_rows(self.member.astype(np.float32))

    def title(self, item_id: str) -> str:
        return self.titles.get(item_id, item_id)

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Vocabulary positions of the ids the model knows (unknown ids dropped)."""
        lookup = self.position
        return np.fromiter((lookup[i] for i in ids if i in lookup), dtype=np.int64)


def prepare(
    model: Recommender,
    version: str = "",
    titles: dict[str, str] | None = None,
    lineage: list[str] | None = None,
) -> PreparedModel:
    return PreparedModel(model, version, titles or {}, list(lineage or []))


# -- the three stages ------------------------------------------------------------------------
def candidates(
    prepared: PreparedModel,
    states: Sequence[UserState],
    exclude_seen: bool = True,
    items: dict | None = None,
    only: np.ndarray | None = None,
) -> list[Candidates]:
    """Stage 1: each user's candidates (batched over ``states``); ``items``: the items'
    context as the store holds it (default: the prepared model's); ``only``: the positions
    a request restricts them to (:func:`candidate_codes`)."""
    model = prepared.model
    return model.candidates(model.encode(states), exclude_seen, items or prepared.items, only)


def rank(prepared: PreparedModel, batch: Sequence[Candidates]) -> list[np.ndarray]:
    """Stage 2: the final score of each user's candidates (one forward pass for the batch)."""
    return prepared.model.rank(batch)


def order(
    prepared: PreparedModel,
    request: Request,
    state: UserState,
    cand: Candidates,
    scores: np.ndarray,
) -> Answer:
    """Stage 3: one user's list from the candidates and their scores."""
    listed = candidate_codes(prepared, request.candidates)
    allowed = allowed_items(prepared, request.filters, listed)
    seen = prepared.positions(state.seen)
    recent = prepared.positions(state.recent[: prepared.recent_n])
    hidden = seen if request.exclude_seen else seen[:0]
    if cand.known:
        idx, score = np.asarray(cand.codes, dtype=np.int64), np.asarray(scores, dtype=np.float64)
    else:  # the most popular items, as many as the list (and its diversity pool) can use
        pool = max(5 * request.k, 50) if request.diversity > 0 else request.k
        idx = _popular(prepared, allowed, hidden, pool)
        score = prepared.popularity[idx]
    keep = np.isfinite(score)
    if allowed is not None:
        keep &= allowed[idx]
    if len(hidden):
        keep &= ~np.isin(idx, hidden)
    idx, score = idx[keep], score[keep]
    top = np.lexsort((idx, -score))  # score descending, then vocabulary position
    if request.diversity > 0 and len(top) and prepared.unit is not None:
        top = _mmr(prepared, idx, score, top, request.k, request.diversity)
    top = top[: request.k]
    picked, picked_score = idx[top], score[top]
    source = "model" if cand.known else "popular"
    reasons = _reasons(prepared, picked, recent, cand.known, request.filters)
    sources = [source] * len(picked)
    if cand.known and len(picked) < request.k:  # too few candidates passed: popular fill
        fill = _popular(
            prepared, allowed, np.concatenate([hidden, picked]), request.k - len(picked)
        )
        floor = picked_score.min() if len(picked) else 0.0
        picked = np.concatenate([picked, fill])
        picked_score = np.concatenate([picked_score, floor - 1.0 - np.arange(len(fill))])
        reasons += _reasons(prepared, fill, recent, False, request.filters)
        sources += ["popular"] * len(fill)
    items = [
        Recommendation(
            item_id=str(prepared.item_ids[i]), score=float(s), rank=n + 1, reason=r, source=src
        )
        for n, (i, s, r, src) in enumerate(zip(picked, picked_score, reasons, sources, strict=True))
    ]
    unknown = len(set(request.candidates)) - len(listed) if listed is not None else 0
    return Answer(state.user_id, items, not cand.known, unknown)


def recommend(
    prepared: PreparedModel,
    states: Sequence[UserState],
    request: Request,
    items: dict | None = None,
) -> list[Answer]:
    """The three stages for a batch of users."""
    genre_mask(prepared, request.filters)  # an unknown genre fails before any work
    only = candidate_codes(prepared, request.candidates)
    cands = candidates(prepared, states, request.exclude_seen, items, only)
    scores = rank(prepared, cands)
    return [
        order(prepared, request, state, cand, score)
        for state, cand, score in zip(states, cands, scores, strict=True)
    ]


# -- ordering helpers -------------------------------------------------------------------------
def allowed_items(
    prepared: PreparedModel, filters: Filters, codes: np.ndarray | None
) -> np.ndarray | None:
    """The items a request allows: its genre filters and its candidate list (``codes``,
    :func:`candidate_codes`); None: all."""
    allowed = genre_mask(prepared, filters)
    if codes is None:
        return allowed
    listed = np.zeros(len(prepared.item_ids), dtype=bool)
    listed[codes] = True
    return listed if allowed is None else listed & allowed


def candidate_codes(prepared: PreparedModel, ids: Sequence[str] | None) -> np.ndarray | None:
    """The sorted vocabulary positions of a request's candidate ids (the ones the version
    knows: maybe none), None without a list."""
    return None if ids is None else np.unique(prepared.positions(ids))


def genre_mask(prepared: PreparedModel, filters: Filters) -> np.ndarray | None:
    """Items allowed by the request's genre filters (None: no filter), computed once per
    combination of filters a model version meets (the last :data:`MASKS_KEPT`)."""
    if not filters.include_genres and not filters.exclude_genres:
        return None
    for name, genres in (
        ("include_genres", filters.include_genres),
        ("exclude_genres", filters.exclude_genres),
    ):
        unknown = [g for g in genres if g not in prepared.genre_index]
        if unknown:
            known = ", ".join(prepared.genres) or "none: the model has no genres"
            shown = shorten(unknown[0])
            raise BadRequest(f"filters.{name}: unknown genre {shown} (known: {known})")
    key = (tuple(filters.include_genres), tuple(filters.exclude_genres))
    if key not in prepared.masks:
        if len(prepared.masks) >= MASKS_KEPT:
            prepared.masks.clear()
        prepared.masks[key] = _genre_mask(prepared, filters)
    return prepared.masks[key]


def _genre_mask(prepared: PreparedModel, filters: Filters) -> np.ndarray:
    mask = np.ones(len(prepared.item_ids), dtype=bool)
    if filters.include_genres:
        cols = [prepared.genre_index[g] for g in filters.include_genres]
        mask &= prepared.member[:, cols].any(axis=1)
    if filters.exclude_genres:
        cols = [prepared.genre_index[g] for g in filters.exclude_genres]
        mask &= ~prepared.member[:, cols].any(axis=1)
    return mask


def _popular(prepared: PreparedModel, allowed, hidden: np.ndarray, n: int) -> np.ndarray:
    """The ``n`` most popular items the filters allow, minus ``hidden``: read from the head
    of the catalog's order, a longer head only when the filters leave too few."""
    ranked = prepared.popular
    head = n + len(hidden)
    while True:
        top = ranked[:head]
        ok = ~np.isin(top, hidden)
        if allowed is not None:
            ok &= allowed[top]
        picked = top[ok][:n]
        if len(picked) == n or head >= len(ranked):
            return picked
        head *= 4


def _mmr(prepared: PreparedModel, idx, score, top, k: int, diversity: float) -> np.ndarray:
    """Maximal marginal relevance over the best max(5k, 50): (1-d)·relevance − d·max
    similarity to the items already picked (cosine of item vectors)."""
    pool = top[: max(5 * k, 50)]
    rel = score[pool]
    rel = (rel - rel.min()) / max(rel.max() - rel.min(), 1e-9)
    vec = prepared.unit[idx[pool]]  # (pool, dim)
    picked, best_sim = [], np.full(len(pool), -1.0)
    for _ in range(min(k, len(pool))):
        gain = (1 - diversity) * rel - diversity * np.maximum(best_sim, 0.0)
        gain[picked] = -np.inf
        j = int(np.argmax(gain))
        picked.append(j)
        best_sim = np.maximum(best_sim, vec @ vec[j])
    return pool[picked]


def _reasons(prepared: PreparedModel, chosen, recent, known: bool, filters: Filters) -> list[str]:
    """ "because you watched X" (the recent item that explains the pick best, by the model),
    "popular" for the popularity answer."""
    if not known:
        where = f" in {', '.join(filters.include_genres)}" if filters.include_genres else ""
        return [f"popular{where}"] * len(chosen)
    if not len(chosen):
        return []
    because = prepared.model.explain(np.asarray(chosen, dtype=np.int64), recent)
    return [
        f"because you watched {prepared.title(str(prepared.item_ids[j]))}"
        if j >= 0
        else prepared.model.unexplained
        for j in because
    ]
