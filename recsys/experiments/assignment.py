"""A user's arm: a hash of (experiment, user id), so the same user lands in the same arm on
every request, replica, restart and reload, an unknown user included, and two experiments
assign independently of each other."""

from __future__ import annotations

import hashlib

import numpy as np

HASH_BUCKETS = float(1 << 64)


def unit_hash(experiment: str, user_id: str) -> float:
    """A number in [0, 1) that depends only on the experiment's name and the user id."""
    digest = hashlib.blake2b(f"{experiment}\x1f{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / HASH_BUCKETS


def arm_of(experiment: str, user_id: str, share: float) -> str:
    """``challenger`` for a ``share`` of the users, ``control`` for the rest."""
    return "challenger" if unit_hash(experiment, user_id) < share else "control"


def mirrored(experiment: str, request_id: str, share: float) -> bool:
    """Whether a shadow experiment's challenger also answers this request (a ``share`` of the
    requests, by the same hash over the request's id)."""
    return unit_hash(experiment, request_id) < share


def arms_of(experiment: str, user_ids, share: float) -> np.ndarray:
    """:func:`arm_of` for many users: an array of ``control``/``challenger``."""
    u = np.fromiter((unit_hash(experiment, str(x)) for x in user_ids), dtype=np.float64)
    return np.where(u < share, "challenger", "control")
