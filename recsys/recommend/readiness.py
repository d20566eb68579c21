"""Whether an online store can serve a model version: the readiness check behind ``/readyz``.

A version reads users' states that the online store holds; the store must have been built
from the data the version was trained on (or data that extends it, or that it extends) and
keep at least the recent window the version reads. Otherwise the endpoint would answer from
another population's histories, or from none, silently.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from recsys.recommend.stages import PreparedModel


class StoreMeta(Protocol):
    """What a feature build records of itself (``recsys.features.build.StoreMeta``)."""

    build_id: str
    recent_n: int
    lineage: list[str]
    probe_user: str | None


def check_store(prepared: PreparedModel, meta: StoreMeta | None) -> str:
    """Why an online store built as ``meta`` cannot serve the version ('' when it can).

    It can when its build's lineage shares a data checksum with the version's (the store was
    built from the version's training data, or from data that extends it, or the version's
    data extends the store's) and its recent window is at least the version's.
    """
    name = prepared.version or prepared.model.kind
    if meta is None:
        return (
            "the online store was never built (no feature_meta.json): run the training "
            "pipeline, or `recsys features build`, `apply` and `materialize`"
        )
    if meta.recent_n < prepared.recent_n:
        return (
            f"the online store keeps {meta.recent_n} recent items per user; model {name} reads "
            f"{prepared.recent_n}: rebuild the features with --recent-n {prepared.recent_n}"
        )
    if not prepared.lineage:
        return f"model {name} records no data checksum: the store's users cannot be checked"
    if not set(prepared.lineage) & set(meta.lineage):
        return (
            f"the online store holds data {meta.lineage[0][:12]} (feature build "
            f"{meta.build_id}); model {name} was trained on {prepared.lineage[0][:12]}: "
            "materialize the version's training data"
        )
    return ""


def unreadable(prepared: PreparedModel, readable: Collection[str], service: str) -> str:
    """The context features the version reads that the served feature service lacks ('' when
    it lacks none)."""
    missing = [f for f in prepared.model.state_spec().context if f not in readable]
    if not missing:
        return ""
    return (
        f"the feature service {service} lacks {', '.join(missing)}, which model "
        f"{prepared.version} reads: apply the repository's definitions"
    )


def unmaterialized(meta: StoreMeta, probe_state_empty: bool) -> str:
    """Why a store whose build is ``meta`` holds nothing yet: its probe user (a user of the
    build) has no state online ('' when it has)."""
    if not probe_state_empty:
        return ""
    return (
        f"the online store holds no state for user {meta.probe_user} of feature build "
        f"{meta.build_id}: materialize it (`recsys features materialize`)"
    )
