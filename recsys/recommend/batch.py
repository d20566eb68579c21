"""The one recommendation path for a batch of requests, cut at its stage boundaries.

:func:`recommend_batch` runs a batch whole: each request's version, user and :class:`Request`
→ its answer, with the candidates, their scores, the user features read and the seconds each
stage took. The fused Serve replica calls it as it is. The composed Serve graph calls the same
pieces in its deployments: :func:`admit` and :func:`finish` where the requests arrive,
:func:`candidates_batch` where the users' states are read, :func:`rank_batch` in the ranker.

Where the users' states come from is the caller's (:class:`StateSource`: the online store in
a replica); what a user gets is decided here and in :mod:`recsys.recommend.stages` only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from recsys.models.base import Candidates
from recsys.recommend.stages import (
    Answer,
    PreparedModel,
    Request,
    candidate_codes,
    candidates,
    genre_mask,
    order,
    rank,
)
from recsys.state.user import UserState


@dataclass(frozen=True)
class Ask:
    """One request of a batch: the model version, the user, what is asked."""

    version: str
    user_id: str
    request: Request


@dataclass
class Served:
    """One request's answer and what produced it (for the prediction log and telemetry)."""

    answer: Answer
    candidates: Candidates
    scores: np.ndarray
    features: dict
    timings: dict[str, float]
    state: UserState | None = None  # the user's state it was made from (a shadow replays it)


class Models(Protocol):
    """The loaded versions, by name."""

    def get(self, version: str) -> PreparedModel: ...


class StateSource(Protocol):
    """Where the users' states and the items' context come from, and whether it can serve a
    version (raises when it cannot: the whole group of requests meets that exception)."""

    def read_users(self, user_ids: list[str]) -> list[tuple[UserState, dict]]: ...

    def item_context(self, prepared: PreparedModel) -> dict | None: ...

    def require_ready(self, prepared: PreparedModel) -> None: ...


# What stage 1 needs of a request: (version, user id, exclude_seen, the candidate ids it is
# restricted to, if any); picklable across a hop.
Stage1Key = tuple[str, str, bool, tuple[str, ...] | None]


def stage1_key(ask: Ask) -> Stage1Key:
    only = ask.request.candidates
    return ask.version, ask.user_id, ask.request.exclude_seen, tuple(only) if only else None


def admit(models: Models, asks: list[Ask]) -> tuple[list, list[int]]:
    """The results so far (the exception of a request whose filters name a genre its version
    lacks: it fails before any work) and the positions of the requests admitted."""
    results: list = [None] * len(asks)
    valid = []
    for n, ask in enumerate(asks):
        try:
            genre_mask(models.get(ask.version), ask.request.filters)
            valid.append(n)
        except Exception as exc:
            results[n] = exc
    return results, valid


def candidates_batch(models: Models, source: StateSource, keys: list[Stage1Key]) -> list:
    """Stage 1 for concurrent requests: one read of their users' states, then the candidates
    as one matrix operation per (version, exclude_seen, candidate list). Per request:
    ``{"state", "candidates", "features"}``, or the exception it met (a store that cannot
    serve its version)."""
    results: list = [None] * len(keys)
    groups: dict[tuple[str, bool, tuple[str, ...] | None], list[int]] = {}
    for n, (version, _, exclude_seen, only) in enumerate(keys):
        groups.setdefault((version, exclude_seen, only), []).append(n)
    for (version, exclude_seen, only), members in groups.items():
        try:
            prepared = models.get(version)
            source.require_ready(prepared)
        except Exception as exc:
            for n in members:
                results[n] = exc
            continue
        reads = source.read_users([keys[n][1] for n in members])
        states = [state for state, _ in reads]
        codes = candidate_codes(prepared, only)
        cands = candidates(prepared, states, exclude_seen, source.item_context(prepared), codes)
        for n, (state, features), cand in zip(members, reads, cands, strict=True):
            features = {**features, "history_len": len(state.seen)}
            results[n] = {"state": state, "candidates": cand, "features": features}
    return results


def rank_batch(models: Models, requests: list[tuple[str, Candidates]]) -> list[np.ndarray]:
    """Stage 2 for candidates ``(version, candidates)``: one pass of the ranker per version
    (a model switch may mix versions in one batch)."""
    out: list = [None] * len(requests)
    for version in dict.fromkeys(v for v, _ in requests):
        mine = [n for n, (v, _) in enumerate(requests) if v == version]
        scores = rank(models.get(version), [requests[n][1] for n in mine])
        for n, score in zip(mine, scores, strict=True):
            out[n] = score
    return out


def with_scores(stage1: list, ok: list[int], scores: list, timings: dict) -> None:
    """Stage 1's results at ``ok`` take their scores and the batch's stage seconds."""
    for j, score in zip(ok, scores, strict=True):
        stage1[j] |= {"scores": score, "timings": timings}


def finish(
    models: Models, asks: list[Ask], results: list, valid: list[int], stage1: list
) -> list[Served | Exception]:
    """Stage 3: each admitted request's list from its scored candidates; per request a
    :class:`Served`, or the exception it met."""
    t0 = time.perf_counter()
    served = []
    for j, n in enumerate(valid):
        got = stage1[j]
        if isinstance(got, Exception):
            results[n] = got
            continue
        ask = asks[n]
        try:
            prepared = models.get(ask.version)
            answer = order(prepared, ask.request, got["state"], got["candidates"], got["scores"])
        except Exception as exc:
            results[n] = exc
            continue
        served.append(n)
        results[n] = Served(
            answer, got["candidates"], got["scores"], got["features"], {}, got["state"]
        )
    timings = {"order": time.perf_counter() - t0}
    for j, n in enumerate(valid):
        if isinstance(results[n], Served):
            results[n].timings = stage1[j]["timings"] | timings
    return results


def recommend_batch(models: Models, source: StateSource, asks: list[Ask]) -> list:
    """The one path for a batch of requests, all in this process: :func:`admit`, stage 1,
    the ranker in one pass per version, then each list.

    Returns:
        Per request a :class:`Served`, or the exception that request met (an unknown genre;
        a store that cannot serve its version).
    """
    results, valid = admit(models, asks)
    t0 = time.perf_counter()
    stage1 = candidates_batch(models, source, [stage1_key(asks[n]) for n in valid])
    t1 = time.perf_counter()
    ok = [j for j, got in enumerate(stage1) if not isinstance(got, Exception)]
    scores = rank_batch(models, [(asks[valid[j]].version, stage1[j]["candidates"]) for j in ok])
    with_scores(stage1, ok, scores, {"candidates": t1 - t0, "rank": time.perf_counter() - t1})
    return finish(models, asks, results, valid, stage1)
