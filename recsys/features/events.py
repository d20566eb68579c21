"""Real-time interaction events: validate, append durably, push the user's new features.

An event is acknowledged only once its line is in the event log and fsync'd; the online
store is updated after that through the ``user_state_push`` and ``user_activity_push``
PushSources, so the user's next recommendation sees the item (exclude-seen, the towers'
recent-items input, the counts). The state is folded by :func:`recsys.state.user.fold`,
the function a test holds to the batch build.
A bad event is never dropped silently: it goes to the rejected log with the reason.
"""

from __future__ import annotations

import json
import threading
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)

from recsys.config import shorten
from recsys.data.io import ITEM, USER
from recsys.data.records import EventRecord, EventType, RejectedEvent, event_frame, parse_records
from recsys.features.build import read_store_meta
from recsys.files import append_line
from recsys.state.activity import ACTIVITY, fold_activity
from recsys.state.user import DEFAULT_RECENT_N, EVENT_TS, RECENT, SEEN, TICK, fold, from_row

ACTIVITY_PUSH, STATE_PUSH = "user_activity_push", "user_state_push"


# What the JSON schema (the OpenAPI document) says of the rules the policy checks: the default
# rating scale, and that a "rating" event carries its rating.
RATING_SCHEMA = {"anyOf": [{"type": "number", "minimum": 1.0, "maximum": 5.0}, {"type": "null"}]}
TIME_SCHEMA = {
    "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}, {"type": "null"}],
    "description": "ISO 8601, or epoch seconds; default: when received. A time before 1970 or "
    "more than 5 minutes ahead of the server's clock is taken as the time of receipt: the "
    "answer's warning says so and the log keeps the client's value as client_timestamp",
}
RATING_NEEDS_A_RATING = {
    "if": {"properties": {"type": {"const": "rating"}}, "required": ["type"]},
    "then": {"required": ["rating"], "properties": {"rating": {"type": "number"}}},
}


class Event(BaseModel):
    """One interaction event as clients send it (HTTP body, a JSON line)."""

    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra=RATING_NEEDS_A_RATING
    )

    user_id: str = Field(min_length=1, max_length=256, strict=True)
    item_id: str = Field(min_length=1, max_length=256, strict=True)
    type: EventType
    # a number, never a numeric string; the range is the policy's (see parse_event)
    rating: Annotated[float | None, WithJsonSchema(RATING_SCHEMA)] = Field(None, strict=True)
    timestamp: Annotated[datetime | None, WithJsonSchema(TIME_SCHEMA)] = None

    @field_validator("timestamp", mode="before")
    @classmethod
    def _epoch_seconds(cls, value: Any) -> Any:
        """A number is epoch seconds (never milliseconds); one no datetime holds is the
        earliest or latest there is, which the event's time window then replaces."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        if value != value:  # NaN: left to the datetime check, which refuses it
            return value
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return (datetime.max if value > 0 else datetime.min).replace(tzinfo=UTC)


@dataclass
class EventPolicy:
    """What makes an event acceptable beyond its types."""

    rating_range: tuple[float, float] = (1.0, 5.0)
    max_clock_skew: timedelta = timedelta(minutes=5)  # how far in the future a timestamp may be
    earliest: datetime = datetime(1970, 1, 1, tzinfo=UTC)  # before it: a client without a clock


@dataclass
class EventResult:
    """The outcome of one event: rejected with a reason, or logged (and pushed)."""

    accepted: bool
    reason: str = ""
    unavailable: bool = False  # the log could not keep it (HTTP 503), not the client's fault
    event: EventRecord | None = None  # as logged
    new_user: bool = False
    pushed: bool = False
    features: dict[str, Any] = field(default_factory=dict)


def parse_event(payload: bytes | str | dict, policy: EventPolicy, now: datetime) -> Event:
    """Validate one event; raises ``ValueError`` whose message names each bad field."""
    return read_event(payload, policy, now)[0]


def read_event(
    payload: bytes | str | dict, policy: EventPolicy, now: datetime
) -> tuple[Event, str]:
    """Validate one event and settle its time (UTC; a time outside ``policy``'s window becomes
    ``now``).

    Returns:
        The event and a warning ("" when none): the client's time that was replaced.

    Raises:
        ValueError: naming each bad field.
    """
    try:
        if isinstance(payload, dict):
            event = Event.model_validate(payload)
        else:
            event = Event.model_validate_json(payload)
    except ValidationError as exc:
        raise ValueError("; ".join(_describe(e) for e in exc.errors())) from None
    lo, hi = policy.rating_range
    if event.rating is not None and not lo <= float(event.rating) <= hi:
        raise ValueError(f"rating: {event.rating} is outside [{lo}, {hi}]")
    if event.type == "rating" and event.rating is None:
        raise ValueError("rating: required when type is 'rating'")
    ts = _utc(event.timestamp) if event.timestamp is not None else now
    if ts is not None and policy.earliest <= ts <= now + policy.max_clock_skew:
        return event.model_copy(update={"timestamp": ts}), ""
    sent = shorten(_plain_time(payload))
    warning = (
        f"timestamp {sent} is before {policy.earliest:%Y-%m-%d} or more than "
        f"{policy.max_clock_skew} ahead of the server's clock: taken as received"
    )
    return event.model_copy(update={"timestamp": now}), warning


def _utc(value: datetime) -> datetime | None:
    """A client's time in UTC; None where no UTC datetime can hold it (year 1 or 9999 with an
    offset)."""
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        return None


def _describe(error: dict) -> str:
    where = ".".join(str(p) for p in error["loc"]) or "body"
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown field"
    got = error.get("input")
    shown = f" (got {shorten(got)})" if not isinstance(got, dict) else ""
    return f"{where}: {error['msg']}{shown}"


class EventLog:
    """Append-only JSON-lines logs, one file per UTC day: ``events-*`` (:class:`EventRecord`)
    and ``rejected-*`` (:class:`RejectedEvent`).

    Each record is one ``write`` on an ``O_APPEND`` descriptor followed by ``fsync``, so lines
    from concurrent writers never interleave and an acknowledged event survives a crash.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _append(self, prefix: str, record: EventRecord | RejectedEvent, when: datetime) -> Path:
        path = self.directory / f"{prefix}-{when:%Y-%m-%d}.jsonl"
        with self._lock:
            append_line(path, record.line())
        return path

    def append(self, record: EventRecord, when: datetime) -> Path:
        return self._append("events", record, when)

    def reject(self, payload: Any, reason: str, when: datetime) -> Path:
        raw = payload.decode(errors="replace") if isinstance(payload, bytes) else payload
        return self._append(
            "rejected", RejectedEvent(received=when, reason=reason, payload=raw), when
        )

    def read(self, prefix: str = "events") -> pd.DataFrame:
        """Every valid record of the ``prefix`` logs (``events`` or ``rejected``), one column
        per field of its schema; a corrupt line or an invalid record is skipped with a
        warning."""
        records = []
        for path in sorted(self.directory.glob(f"{prefix}-*.jsonl")):
            for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    warnings.warn(f"{path}:{n}: skipped a corrupt line", stacklevel=2)
        kind = EventRecord if prefix == "events" else RejectedEvent
        kept, why = parse_records(kind, records)
        if why:
            detail = ", ".join(f"{reason}: {count}" for reason, count in why.most_common())
            skipped = f"skipped {len(records) - len(kept)} {prefix} records"
            warnings.warn(f"{self.directory}: {skipped} ({detail})", stacklevel=2)
        if kind is EventRecord:
            return event_frame(kept)
        return pd.DataFrame([dict(r) for r in kept], columns=[*RejectedEvent.model_fields])


class EventIngestor:
    """Validates events, logs them durably, and pushes each user's updated activity features.

    Args:
        store: a ``feast.FeatureStore`` (its online store receives the pushes).
        log: where accepted and rejected events are appended.
        policy: rating range and allowed clock skew.
    """

    def __init__(self, store, log: EventLog, policy: EventPolicy | None = None) -> None:
        self.store = store
        self.log = log
        self.policy = policy or EventPolicy()
        meta = read_store_meta(Path(store.repo_path) / "data")
        self.genres: list[str] = meta.genres if meta else []
        self.recent_n: int = meta.recent_n if meta else DEFAULT_RECENT_N
        self._user_locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._last_stamp = datetime.min.replace(tzinfo=UTC)

    def ingest(self, payload: bytes | str | dict) -> EventResult:
        """Handle one event; never raises for a bad event (see ``EventResult.reason``), nor for
        a log that cannot keep it (``unavailable``: nothing was acknowledged or pushed)."""
        now = datetime.now(UTC)
        try:
            event, warning = read_event(payload, self.policy, now)
        except ValueError as exc:
            try:
                self.log.reject(payload, str(exc), now)
            except OSError as failure:
                return self._unavailable(failure)
            return EventResult(accepted=False, reason=str(exc))
        client = _plain_time(payload) if warning else None
        record = EventRecord(**event.model_dump(), received=now, client_timestamp=client)
        try:
            self.log.append(record, now)  # durable before anything else happens
        except OSError as failure:
            return self._unavailable(failure)
        result = EventResult(accepted=True, event=record, reason=warning)
        try:
            with self._user_lock(event.user_id):
                result.new_user, result.features = self._push(event)
            result.pushed = True
        except Exception as exc:  # the event is safe in the log; report, do not fail it
            pushed = f"logged, but the online push failed: {exc}"
            result.reason = f"{warning}; {pushed}" if warning else pushed
        return result

    @staticmethod
    def _unavailable(failure: OSError) -> EventResult:
        reason = f"the event log cannot keep events now ({type(failure).__name__}: {failure})"
        return EventResult(accepted=False, reason=reason, unavailable=True)

    def _user_lock(self, user_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._user_locks.setdefault(user_id, threading.Lock())

    def _push(self, event: Event) -> tuple[bool, dict]:
        from feast.data_source import PushMode

        current = self.store.get_online_features(
            features=[f"user_activity:{f}" for f in ACTIVITY]
            + [f"user_state:{SEEN}", f"user_state:{RECENT}", "item_profile:genres"],
            entity_rows=[{USER: event.user_id, ITEM: event.item_id}],
        ).to_dict()
        row = {k: v[0] for k, v in current.items()}
        state = fold(from_row(event.user_id, row), event.item_id, self.recent_n)
        new_user = row.get("user_interactions") is None and not row.get(SEEN)
        features = self._updated(row, event)
        stamp = self._stamp()
        activity = pd.DataFrame([{USER: event.user_id, **features, EVENT_TS: stamp}])
        self.store.push(ACTIVITY_PUSH, activity, to=PushMode.ONLINE)
        states = pd.DataFrame(
            [
                {
                    USER: event.user_id,
                    SEEN: list(state.seen),
                    RECENT: list(state.recent),
                    EVENT_TS: stamp,
                }
            ]
        )
        self.store.push(STATE_PUSH, states, to=PushMode.ONLINE)
        return new_user, {**features, SEEN: list(state.seen), RECENT: list(state.recent)}

    def _updated(self, row: dict, event: Event) -> dict:
        return activity_after(row, event.user_id, event.rating, row.get("genres"), self.genres)

    def _stamp(self) -> datetime:
        """The pushed row's time: now, strictly after this ingestor's previous push (an online
        store keeps the newest row per key, so a late event must still land as the latest)."""
        with self._locks_guard:
            stamp = max(datetime.now(UTC), self._last_stamp + TICK.to_pytimedelta())
            self._last_stamp = stamp
        return stamp


def activity_after(
    row: dict, user_id: str, rating: float | None, item_genres, genres: list[str]
) -> dict:
    """The user's activity features after one event: :func:`fold_activity` from the online
    ``row`` (the ``ACTIVITY`` features, None where the store has none) over the event.

    Args:
        item_genres: the event's item's genres (names), or None.
        genres: the store's genre vocabulary (``genre_affinity``'s positions).
    """
    onehot = np.isin(genres, list(item_genres or [])).astype(np.float64)[None, :]  # (1, G)
    ratings = np.array([np.nan if rating is None else float(rating)])
    after = fold_activity(np.array([user_id], dtype=object), ratings, onehot, [row])
    return {
        "user_interactions": int(after["user_interactions"][0]),
        "user_ratings": int(after["user_ratings"][0]),
        "user_mean_rating": after["user_mean_rating"][0],
        "genre_affinity": after["genre_affinity"][0].tolist(),
    }


def _plain_time(payload: bytes | str | dict) -> Any:
    """The timestamp as the client sent it (for the log, beside the one used)."""
    body = payload if isinstance(payload, dict) else json.loads(payload)
    return body.get("timestamp")
