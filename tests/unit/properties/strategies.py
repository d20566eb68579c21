"""What a user can send, as Hypothesis strategies: cells of an interactions file, events,
option values. Shared by the property modules; ``examples`` scales a path's examples."""

from __future__ import annotations

import os
from datetime import UTC, timedelta, timezone

from hypothesis import settings
from hypothesis import strategies as st


def fuzz(share: float = 1.0) -> settings:
    """The current profile; under ``bounded``, ``share`` of its examples (a cheap path gets
    more). ``long`` runs its full count on every path."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "bounded")
    profile = settings.get_profile(name)
    scaled = profile.max_examples if name == "long" else int(profile.max_examples * share)
    return settings(profile, max_examples=max(1, scaled))


# Any character a file can encode (no lone surrogates), newlines, quotes and a BOM included.
CHARS = st.characters(exclude_categories=("Cs",))
TEXT = st.text(CHARS, max_size=12)
SPECIAL = st.sampled_from(
    ["", " ", "NaN", "nan", "None", "null", "inf", "-inf", "1e309", "-0", "\ufeff", '"', ",", "\n"]
)
OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
DATETIMES = st.datetimes(timezones=st.none() | st.just(UTC) | OFFSETS)


def _iso(dt) -> st.SearchStrategy[str]:
    z = dt.isoformat().replace("+00:00", "Z")
    return st.sampled_from([dt.isoformat(), dt.isoformat(sep=" "), z, dt.date().isoformat()])


EPOCH_TEXT = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(0, 4_000_000_000).map(str),
    st.floats().map(repr),
    st.floats(-1e10, 1e10).map(str),
)
TIMESTAMP_TEXT = st.one_of(EPOCH_TEXT, DATETIMES.flatmap(_iso), TEXT, SPECIAL)
ID_TEXT = st.one_of(TEXT, SPECIAL, st.integers(-(2**64), 2**64).map(str), st.floats().map(str))
RATING_TEXT = st.one_of(
    st.floats().map(str), st.integers(-10, 10).map(str), st.integers().map(str), TEXT, SPECIAL
)
