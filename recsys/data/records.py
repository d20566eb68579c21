"""The records the running services log, one schema each, shared by the writer and every reader.

``PredictionRecord``: one served answer (``predictions-*.jsonl``, written by the Serve app's
prediction log). ``EventRecord``: one accepted interaction event (``events-*.jsonl``, written
by the event ingestor). ``RejectedEvent``: one refused payload and why (``rejected-*.jsonl``).

A writer builds a record and writes its ``line()``; the lines are the ones written before these
schemas existed, byte for byte, so the logs already on disk read as they did. A reader
validates through the record's model: :meth:`Record.parse` (one JSON object, or a
:class:`RecordError` naming each bad field), :func:`parse_records` (many, the bad ones counted
by reason), or ``model_validate_json`` on a line (monitoring's reader: a line parsed and
checked in one pass); :func:`reasons` says why in the same words everywhere.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self, TypeVar, get_args

import pandas as pd
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from recsys.data.coerce import UTC_NS
from recsys.data.io import ITEM, RATING, TS, USER

EventType = Literal["view", "click", "rating", "purchase"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
Source = Literal["model", "popular"]  # the model's own ranking, or the popular fill


class RecordError(ValueError):
    """A JSON object that is not a valid record; the message names each bad field."""


def utc_time(value: Any) -> datetime:
    """An ISO 8601 string (or a datetime) as an aware UTC datetime; a naive time is UTC (the
    services write aware UTC times, people type naive ones).

    Raises:
        ValueError: anything else (a number, an unparsable string, a time UTC cannot hold).
    """
    try:
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
        if isinstance(when, datetime):
            return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except (ValueError, OverflowError):
        if isinstance(value, datetime):
            raise ValueError(f"{value.isoformat()}: a time UTC cannot hold") from None
    raise ValueError("not an ISO 8601 time")


UTCTime = Annotated[datetime, BeforeValidator(utc_time)]
# A time of receipt, written as the logs always have (``+00:00``; a UTCTime writes ``Z``).
Received = Annotated[UTCTime, PlainSerializer(datetime.isoformat, when_used="json")]


class Record(BaseModel):
    """What every record shares: unknown fields are errors, numbers and strings are strict
    (``"4"`` is not a rating, ``true`` not a score)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @classmethod
    def parse(cls, value: Any) -> Self:
        """One record from a JSON object read back from a log.

        Raises:
            RecordError: naming the record kind and each bad field.
        """
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise RecordError(f"{cls.__name__}: " + "; ".join(reasons(exc))) from None


class PredictionRecord(Record):
    """One served answer, as the prediction log keeps it. A field with a default may be left
    out (a record of an older or partial writer still reads)."""

    model_config = ConfigDict(allow_inf_nan=True)  # a masked candidate may score -inf

    request_id: str = Field(min_length=1)
    ts: UTCTime  # when the answer was made (UTC)
    # The request as the app validated it (serving's RecommendRequest owns its fields).
    request: dict[str, Any]
    model_version: str
    user_features: dict[str, Any] = {}  # the user's features as read for the answer
    candidates: int | None = None  # how many candidates the ranker scored
    candidate_codes: list[int] | None = None
    candidate_scores: list[float] | None = None
    items: list[str]  # the answer, best first
    scores: list[float]
    sources: list[Source] | None = None  # each item's; None: logged before sources were
    cold_start: bool
    latency_ms: float | None = None
    stage_ms: dict[str, float] | None = None
    # An experiment's answer: its name and the user's arm ("control", "challenger", or
    # "interleaved" with each item's team: the arm whose list placed it). A shadow
    # experiment's challenger logs its answers as arm "shadow", never returned to the user:
    # ``shadow_of`` names the returned (control's) answer to the same request.
    experiment: str | None = None
    arm: Literal["control", "challenger", "interleaved", "shadow"] | None = None
    teams: list[Literal["control", "challenger"]] | None = None
    shadow_of: str | None = None

    @field_validator("request")
    @classmethod
    def _names_the_user(cls, request: dict[str, Any]) -> dict[str, Any]:
        user = request.get(USER)
        if not isinstance(user, str) or not user:
            raise ValueError(f"no {USER} (a non-empty string)")
        return request

    @model_validator(mode="after")
    def _one_score_and_source_per_item(self) -> Self:
        if len(self.scores) != len(self.items):
            raise ValueError("items and scores of different lengths")
        if self.sources is not None and len(self.sources) != len(self.items):
            raise ValueError("items and sources of different lengths")
        if self.teams is not None and len(self.teams) != len(self.items):
            raise ValueError("items and teams of different lengths")
        if (self.experiment is None) != (self.arm is None):
            raise ValueError("an experiment's answer names both the experiment and the arm")
        if (self.arm == "shadow") != (self.shadow_of is not None):
            raise ValueError("a shadow answer (and only one) names the answer it shadows")
        return self

    @property
    def user_id(self) -> str:
        return self.request[USER]

    def line(self) -> str:
        """The record as one compact JSON line (no newline), fields in schema order; numpy
        arrays and scalars are written as lists and numbers."""
        return record_line({name: getattr(self, name) for name in type(self).model_fields})


class EventRecord(Record):
    """One accepted interaction event, as the event log keeps it."""

    model_config = ConfigDict(allow_inf_nan=False)

    user_id: str = Field(min_length=1)
    item_id: str = Field(min_length=1)
    type: EventType
    rating: float | None = None  # required when ``type`` is "rating"
    timestamp: UTCTime  # when it happened (UTC; the time of receipt when the client's was off)
    received: Received  # when the service received it
    # Only when the client's time was replaced: the value as the client sent it.
    client_timestamp: Any = None

    @model_validator(mode="after")
    def _a_rating_event_has_a_rating(self) -> Self:
        if self.type == "rating" and self.rating is None:
            raise ValueError("rating: required when type is 'rating'")
        return self

    def line(self) -> str:
        """The record as one JSON line (no newline), keys sorted; ``client_timestamp`` only
        when there is one."""
        unset = {"client_timestamp"} if self.client_timestamp is None else set()
        return json.dumps(self.model_dump(mode="json", exclude=unset, fallback=str), sort_keys=True)


class RejectedEvent(Record):
    """One refused event: the payload as received, and why."""

    received: Received
    reason: str
    payload: Any  # the body as text (undecodable bytes replaced), or the object given

    def line(self) -> str:
        """The record as one JSON line (no newline), keys sorted."""
        return json.dumps(self.model_dump(mode="json", fallback=str), sort_keys=True)


# What happened, in an event frame; ``received`` and ``client_timestamp`` are the log's own.
EVENT_COLUMNS = (USER, ITEM, "type", RATING, TS)


def reasons(exc: ValidationError) -> list[str]:
    """Each error of ``exc`` in a few words: the field, then what is wrong with it."""
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(part) for part in error["loc"])
        if error["type"] == "missing":
            out.append(f"missing {where}")
        elif error["type"] == "extra_forbidden":
            out.append(f"{where}: unknown field")
        else:
            cause = error.get("ctx", {}).get("error") if error["type"] == "value_error" else None
            what = str(cause) if cause is not None else error["msg"]
            out.append(f"{where}: {what}" if where else what)
    return out


R = TypeVar("R", bound=Record)


def parse_records(kind: type[R], values: Iterable[Any]) -> tuple[list[R], Counter]:
    """The valid records of ``values``, and the invalid ones counted by reason (a record with
    two bad fields counts under both)."""
    kept, why = [], Counter()
    for value in values:
        try:
            kept.append(kind.model_validate(value))
        except ValidationError as exc:
            why.update(reasons(exc))
    return kept, why


def event_frame(records: Sequence[EventRecord]) -> pd.DataFrame:
    """Event records as a frame: one column per field, in the schema's order (``rating``
    float, NaN where none; ``timestamp`` and ``received`` ns UTC; ``client_timestamp`` as
    sent, None where none)."""
    columns = {name: [getattr(r, name) for r in records] for name in EventRecord.model_fields}
    frame = pd.DataFrame(columns, dtype=object)
    frame[RATING] = frame[RATING].astype("float64")  # None: NaN
    for column in (TS, "received"):
        frame[column] = pd.to_datetime(columns[column], utc=True).astype(UTC_NS)
    return frame


def record_line(fields: dict[str, Any]) -> str:
    """A prediction record's fields (as :class:`PredictionRecord` names them, in its order) as
    one compact JSON line; numpy arrays and scalars are written as lists and numbers. The
    serving replica writes its records this way: no model is built per answer."""
    return json.dumps(fields, default=_json_value, separators=(",", ":"))


def _json_value(value: Any) -> Any:
    """What ``json`` cannot write itself: numpy arrays and scalars, times, anything else as
    its text."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value.isoformat() if isinstance(value, datetime) else str(value)
