"""What a synthetic dataset is made from: sizes, seed, the world's shape, drift and time window
(:class:`SynthConfig`), checked before anything is written and recorded in ``dataset.json`` so
that :mod:`recsys.data.synthetic` can make the same data again.

:data:`WORLDS` names shapes: ``independent`` (each interaction drawn on its own from a Zipf
popularity, nothing moving in time: the default) and ``movielens`` (the knobs fitted to
MovieLens-100k's measured statistics by ``python -m benchmarks.data_statistics --fit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from recsys.config import RecsysError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SynthConfig:
    """What to generate; every field goes into ``dataset.json`` so the data can be remade."""

    n_users: int = 10_000
    n_items: int = 2_000
    n_interactions: int = 200_000
    seed: int = 0
    drift: float = 0.0  # 0..1; shifts user features and item popularity
    latent_dim: int = 16
    popularity_exponent: float = 1.0  # Zipf-like power law over items
    popularity_offset: float = 0.0  # Zipf-Mandelbrot: (rank + offset)^-exponent, a flatter head
    popularity_decay: float = 0.0  # times exp(-decay * rank / n_items): a tail of rare items
    activity_sigma: float = 0.75  # lognormal spread of user activity
    sequence: float = 0.0  # logit per unit of similarity to the user's previous item
    trend: float = 0.0  # 0..1: popularity share moved to a second ranking by the span's end
    chunk_size: int = 1_000_000
    start: str = "2024-01-01T00:00:00+00:00"  # ISO-8601; no offset means UTC
    days: float = 365.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`RecsysError` naming the first field that is out of range."""
        for name in ("seed", "n_users", "n_items", "n_interactions", "latent_dim", "chunk_size"):
            value, least = getattr(self, name), 0 if name == "seed" else 1
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
                raise RecsysError(
                    f"synthetic config: {name}={value!r}, expected an integer >= {least}"
                )
        _check_range("drift", self.drift, 0.0, 1.0)
        _check_range("popularity_exponent", self.popularity_exponent, 0.0, 10.0)
        _check_range("popularity_offset", self.popularity_offset, 0.0, 1e9)
        _check_range("popularity_decay", self.popularity_decay, 0.0, 100.0)
        _check_range("activity_sigma", self.activity_sigma, 0.0, 10.0)
        _check_range("sequence", self.sequence, 0.0, 100.0)
        _check_range("trend", self.trend, 0.0, 1.0)
        _check_range("days", self.days, 1e-9, 1e6)
        start, end = self.window_ms()
        if end - start < self.n_interactions:
            raise RecsysError(
                f"synthetic config: days={self.days!r} is too short to give "
                f"{self.n_interactions} interactions distinct milliseconds"
            )
        if end > (datetime.now(UTC) - EPOCH) // timedelta(milliseconds=1):
            raise RecsysError(
                f"synthetic config: start={self.start!r} plus days={self.days!r} "
                "ends in the future; validation would quarantine those rows"
            )

    def window_ms(self) -> tuple[int, int]:
        """``[start, end)`` of the timestamps, in epoch milliseconds."""
        try:
            start = datetime.fromisoformat(self.start)
        except (TypeError, ValueError) as exc:
            raise RecsysError(
                f"synthetic config: start={self.start!r} is not an ISO-8601 time: {exc}"
            ) from exc
        start = start.replace(tzinfo=UTC) if start.tzinfo is None else start
        first = (start - EPOCH) // timedelta(milliseconds=1)
        if first < 0:
            raise RecsysError(f"synthetic config: start={self.start!r}, expected 1970 or later")
        return first, first + int(self.days * 86_400_000)


# A world's knobs (fields of SynthConfig); sizes, seed and time window stay the caller's.
WORLDS: dict[str, dict[str, float]] = {
    "independent": {},
    # from `python -m benchmarks.data_statistics --fit`; what they give against MovieLens-100k:
    # benchmarks/results/data_statistics.json and the table in docs/benchmarks.md
    "movielens": {
        "popularity_exponent": 0.375,
        "popularity_offset": 28.125,
        "popularity_decay": 5.625,
        "activity_sigma": 0.9,
        "sequence": 0.5625,
        "trend": 0.5625,
    },
}


def config_for(world: str, **fields) -> SynthConfig:
    """A :class:`SynthConfig` of the named world's knobs and ``fields`` (sizes, seed...).

    Raises:
        RecsysError: an unknown world, naming the known ones.
    """
    if world not in WORLDS:
        raise RecsysError(f"synthetic world {world!r} is unknown; known: {', '.join(WORLDS)}")
    return SynthConfig(**(WORLDS[world] | fields))


def _check_range(name: str, value: object, low: float, high: float) -> None:
    ok = isinstance(value, int | float | np.number) and not isinstance(value, bool)
    if not ok or not low <= value <= high:
        raise RecsysError(
            f"synthetic config: {name}={value!r}, expected a number in [{low:g}, {high:g}]"
        )
