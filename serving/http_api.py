"""The HTTP surface of the app: the FastAPI application the Ingress serves, its middleware
(:mod:`serving.guard`), its error answers and the bodies of its small answers. Routes live on
the Ingress (``serving.app``); nothing here touches a model.

Serve freezes the FastAPI app when the Ingress class is decorated (it pickles ``api`` then):
the middleware, the error handlers and every helper a route calls must exist before that.
"""

# No `from __future__ import annotations` here: FastAPI reads the annotations at runtime.
import logging
import math
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from recsys.config import shorten
from recsys.data.new_items import MAX_ITEMS, NewItem
from recsys.features.events import Event
from serving import guard
from serving.schemas import Problem

log = logging.getLogger("ray.serve")
# /openapi.json and /docs are the Ingress's own routes: the document names the served
# version's genres and this replica's tokens (serving/openapi.py).
api = FastAPI(
    title="recsys",
    description="Recommendations from the model version served, and real-time interaction "
    "events. A user's answer is read from the user's state in the online store (the complete "
    "seen set and the recent window): the app answers 503, with the reason, when that store "
    "cannot serve the loaded version.",
    openapi_url=None,
    docs_url=None,
    redoc_url=None,
)
PROBLEMS = {
    code: {"model": Problem, "description": why}
    for code, why in (
        (401, "a bearer token is configured for this route and the request lacks it"),
        (413, "the body is larger than the app's max_body_bytes (default 64 KiB)"),
        (422, "the body does not fit the schema, or names what the model does not know"),
        (500, "an unexpected failure (its error_id is in the replica's log)"),
        (503, "not ready: no model, or an online store or log that cannot serve now"),
    )
}


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    ready: bool
    model_version: str | None = None
    reason: str | None = None


EVENT_BODY = {"application/json": {"schema": Event.model_json_schema()}}
ITEMS_BODY = {  # POST /items: read raw (a bad row is quarantined, not the whole body refused)
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "items": NewItem.model_json_schema(),
                    "minItems": 1,
                    "maxItems": MAX_ITEMS,
                }
            },
            "required": ["items"],
            "additionalProperties": False,
        }
    }
}


class RejectedRow(BaseModel):
    row: int  # its position in the body's items (0-based)
    item_id: str | None = None
    reason: str


class ItemsRefused(BaseModel):
    """``POST /items`` answered 422: what was wrong, and each refused row (nothing kept)."""

    detail: str
    rejected: list[RejectedRow] = []


class ItemsAccepted(BaseModel):
    """``POST /items``: the items logged (recommendable once a replica folds the log, on
    its next request), and the ids the catalog already held (left as they are)."""

    accepted: list[str]
    known: list[str]  # in the catalog, or earlier in this request: a client's retry is safe
    pushed: bool  # their profiles reached the online store
    warning: str | None = None


class EventAccepted(BaseModel):
    accepted: bool
    new_user: bool
    pushed: bool
    warning: str | None = None


api.add_middleware(guard.Guard)


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each bad field, its input shown as JSON can hold it (NaN as "nan"), a long
    input cut to a short prefix."""
    return JSONResponse({"detail": _plain(exc.errors())}, status_code=422)


def _plain(value, key: str = ""):
    if key == "input" and len(repr(value)) > 64:
        return shorten(value)
    if isinstance(value, dict):
        return {str(k): _plain(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@api.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """An unexpected failure: logged with its stack here, never sent to the client."""
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s", error_id, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error", "error_id": error_id}, status_code=500)


ITEMS_ROUTE = {  # POST /items: its answers and its body (read raw: see ITEMS_BODY)
    "status_code": 202,
    "response_model": ItemsAccepted,
    "responses": {**PROBLEMS, 422: {"model": ItemsRefused, "description": "a row refused"}},
    "openapi_extra": {"requestBody": {"required": True, "content": ITEMS_BODY}},
}
