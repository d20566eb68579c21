"""Hypothesis profiles for the property suite: ``bounded`` (part of ``make test``) and
``long`` (``make test-properties``: at least 10,000 examples per input path), chosen by
``HYPOTHESIS_PROFILE``. No example database: nothing lands in the work tree."""

import os

from hypothesis import HealthCheck, settings

COMMON = {
    "deadline": None,  # a 2-core machine shared with other work: time is no invariant here
    "database": None,
    "derandomize": False,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # the autouse $RECSYS_HOME; examples use temp dirs
    ],
}
settings.register_profile("bounded", max_examples=60, **COMMON)
settings.register_profile("long", max_examples=10_000, **COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "bounded")
if PROFILE not in ("bounded", "long"):
    raise ValueError(f"HYPOTHESIS_PROFILE={PROFILE!r}: expected 'bounded' or 'long'")
