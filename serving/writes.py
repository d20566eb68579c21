"""The write routes' answers (``POST /events``, ``POST /items``): what an ingestor's result
means over HTTP. 202 once the rows are in the durable log; 422 naming what was wrong when
nothing was kept; 503 when the log cannot keep anything now (the client may retry)."""

# No `from __future__ import annotations`: FastAPI reads the annotations at runtime.
from dataclasses import asdict

from fastapi.responses import JSONResponse

from recsys.features.events import EventResult
from recsys.features.item_ingest import ItemsResult


def event_answer(result: EventResult) -> JSONResponse:
    if result.unavailable:  # nothing kept, nothing acknowledged: the client may retry
        return JSONResponse({"detail": result.reason}, status_code=503)
    if not result.accepted:
        return JSONResponse({"detail": result.reason}, status_code=422)
    body = {"accepted": True, "new_user": result.new_user, "pushed": result.pushed}
    if result.reason:
        body["warning"] = result.reason
    return JSONResponse(body, status_code=202)


def items_answer(result: ItemsResult) -> JSONResponse:
    """202 with the accepted ids and the known ones; 422 when a row was refused, naming each
    row, its id and the field (nothing of the request kept: the client sends it mended)."""
    if result.unavailable:
        return JSONResponse({"detail": result.reason}, status_code=503)
    rejected = [asdict(r) for r in result.rejected]
    if result.rejected:
        detail = "nothing kept: " + "; ".join(
            f"row {r.row}" + (f" ({r.item_id!r})" if r.item_id else "") + f": {r.reason}"
            for r in result.rejected
        )
        return JSONResponse({"detail": detail, "rejected": rejected}, status_code=422)
    body = {"accepted": result.accepted, "known": result.known, "pushed": result.pushed}
    if result.reason:
        body["warning"] = result.reason
    return JSONResponse(body, status_code=202)
