"""The one recommendation path: (model version, the users' states, a request) → items.

``stages`` holds the path (candidates → rank → order); ``batch`` a batch of requests cut at
its stage boundaries; ``readiness`` whether an online store can serve a version; ``frame``
many users' lists from an interactions table; ``offline`` ``recsys recommend``'s files.
"""

from recsys.recommend.frame import recommend_frame
from recsys.recommend.readiness import check_store
from recsys.recommend.stages import (
    FRAME_COLUMNS,
    Answer,
    BadRequest,
    Filters,
    PreparedModel,
    Recommendation,
    Request,
    candidates,
    genre_mask,
    order,
    prepare,
    rank,
    recommend,
)

__all__ = [
    "FRAME_COLUMNS",
    "Answer",
    "BadRequest",
    "Filters",
    "PreparedModel",
    "Recommendation",
    "Request",
    "candidates",
    "check_store",
    "genre_mask",
    "order",
    "prepare",
    "rank",
    "recommend",
    "recommend_frame",
]
