"""The one recommendation path: (model version, the users' states, a request) → items.

``stages`` holds the path (candidates → rank → order); ``readiness`` whether an online store
can serve a version; ``offline`` the file-level entry point behind ``recsys recommend``.
"""

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
    recommend_frame,
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
