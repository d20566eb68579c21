"""Reading the serving logs back: predictions, feedback events, and the join of the two.

Both logs are JSON lines written by running services (``serving/predlog.py``,
``recsys.features.events``), read by :mod:`recsys.monitoring.jsonl`, which skips a damaged
line or file with a warning. Each record is read through its schema
(:mod:`recsys.data.records`): one that is JSON but not a valid prediction or event is skipped
here the same way, counted by reason in a warning naming the file.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.data.coerce import UTC_NS
from recsys.data.io import TS
from recsys.data.records import EVENT_COLUMNS, EventRecord, PredictionRecord, event_frame
from recsys.monitoring.jsonl import log_files, read_records

PREDICTION_DTYPES = {"request_id": object, "ts": UTC_NS, "user_id": object}
PREDICTION_DTYPES |= {"model_version": object, "cold_start": bool, "item_id": object}
PREDICTION_DTYPES |= {"rank": np.int64, "score": np.float64, "source": object}
PREDICTION_COLUMNS = tuple(PREDICTION_DTYPES)
FEEDBACK_COLUMNS = EVENT_COLUMNS  # user_id, item_id, type, rating, timestamp
FEEDBACK_DTYPES = dict(
    zip(FEEDBACK_COLUMNS, (object, object, object, np.float64, UTC_NS), strict=True)
)


def load_predictions(
    directory: str | Path, *, since: datetime | None = None, until: datetime | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """The prediction log as one row per returned item.

    Args:
        directory: holds the ``predictions-*.jsonl`` files.
        since: keep answers with ``ts >= since`` (a naive datetime is taken as UTC).
        until: keep answers with ``ts < until``.

    Returns:
        A frame with ``PREDICTION_COLUMNS`` (``ts`` UTC, ``rank`` 1-based), then the user's
        scalar features as ``user_<name>`` columns (a name already starting with ``user_``
        is kept) and ``user_history_len`` (the size of the user's seen set); ``source`` is
        ``model`` for the model's own items, ``popular`` for a cold-start answer's items and
        the popular fill of a short list. And the warnings. An answer with no items gives no
        rows.
    """
    since, until = _utc(since), _utc(until)
    paths, warnings = log_files(Path(directory), "predictions")
    requests, items, scores, sources, counts = [], [], [], [], []
    for path in paths:
        # One file at a time: the candidate lists dominate a record and are dropped at once.
        answers, problems = read_records(path, PredictionRecord)
        warnings += problems
        for answer in answers:
            if answer.arm == "shadow":  # a shadow challenger's list: logged, never served
                continue
            if (since is None or answer.ts >= since) and (until is None or answer.ts < until):
                requests.append(_answer(answer))
                items.extend(answer.items)
                scores.extend(answer.scores)
                sources.extend(_sources(answer))
                counts.append(len(answer.items))
    if not requests:
        return _empty(PREDICTION_DTYPES), warnings
    counts = np.asarray(counts, dtype=np.int64)
    frame = pd.DataFrame.from_records(requests)
    frame["ts"] = _ns(frame["ts"])  # before the repeat: parse once per answer, not per item
    frame = frame.loc[frame.index.repeat(counts)].reset_index(drop=True)  # (items, ...)
    starts = np.repeat(np.cumsum(counts) - counts, counts)  # each row's answer's first row
    frame["item_id"] = pd.Series(items, dtype=object)
    frame["rank"] = np.arange(len(items), dtype=np.int64) - starts + 1
    frame["score"] = np.asarray(scores, dtype=np.float64)
    frame["source"] = pd.Series(sources, dtype=object)
    features = sorted(c for c in frame.columns if c not in PREDICTION_COLUMNS)
    return frame[[*PREDICTION_COLUMNS, *features]], warnings


def load_experiment_answers(directory: str | Path, name: str) -> tuple[pd.DataFrame, list[str]]:
    """The answers of experiment ``name`` as one row per listed item: ``request_id, ts,
    user_id, model_version, arm, team, item_id, rank, latency_ms, request`` (``team``: the arm
    whose list placed the item; ``request``: the request the answer was made for, a shadow
    answer's the returned answer's id), and the warnings."""
    paths, warnings = log_files(Path(directory), "predictions")
    rows = []
    for path in paths:
        answers, problems = read_records(path, PredictionRecord)
        warnings += problems
        for a in answers:
            if a.experiment != name:
                continue
            teams = a.teams or [a.arm] * len(a.items)
            head = (a.request_id, a.ts, a.user_id, a.model_version, a.arm)
            asked = a.shadow_of or a.request_id
            for rank, (item, team) in enumerate(zip(a.items, teams, strict=True), start=1):
                rows.append((*head, team, item, rank, a.latency_ms, asked))
    columns = ["request_id", "ts", "user_id", "model_version", "arm", "team", "item_id"]
    frame = pd.DataFrame(rows, columns=[*columns, "rank", "latency_ms", "request"])
    frame["ts"] = _ns(frame["ts"]) if len(frame) else pd.Series([], dtype=UTC_NS)
    return frame, warnings


def _answer(record: PredictionRecord) -> dict:
    """The answer-level columns of one record (repeated on each of its items' rows)."""
    row = {"request_id": record.request_id, "ts": record.ts, "user_id": record.user_id}
    row |= {"model_version": record.model_version, "cold_start": record.cold_start}
    return row | _flatten(record.user_features)


def _sources(record: PredictionRecord) -> list[str]:
    """Each item's source (``model`` or ``popular``); answers logged before sources were
    recorded count as the model's, a cold-start answer's items as popular."""
    if record.sources is not None:
        return record.sources
    return ["popular" if record.cold_start else "model"] * len(record.items)


def _flatten(features: dict) -> dict:
    """The scalar features as columns; lists (history, genre shares) do not fit one cell."""
    out = {}
    for name, value in features.items():
        column = name if name.startswith("user_") else f"user_{name}"
        if name == "last_items" and isinstance(value, list):
            out["user_history_len"] = len(value)
        elif column in PREDICTION_COLUMNS:  # a feature must never overwrite the request's id
            continue
        elif value is None or isinstance(value, bool | int | float | str):
            out[column] = value
    return out


def load_feedback(
    directory: str | Path, *, since: datetime | None = None, until: datetime | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """The accepted feedback events (``events-*.jsonl``; the ``rejected-*`` logs are ignored).

    Args:
        directory: the event log directory.
        since: keep events with ``timestamp >= since`` (a naive datetime is taken as UTC).
        until: keep events with ``timestamp < until``. To join predictions up to ``t`` with
            a window ``w``, load feedback until ``t + w``.

    Returns:
        A frame with ``FEEDBACK_COLUMNS`` (``rating`` float, ``timestamp`` UTC) and the
        warnings; a record that is not a valid ``EventRecord`` is skipped, counted by reason.
    """
    since, until = _utc(since), _utc(until)
    paths, warnings = log_files(Path(directory), "events")
    frames = []
    for path in paths:
        events, problems = read_records(path, EventRecord)
        warnings += problems
        frame = event_frame(events)
        frames.append(frame.loc[_within(frame[TS], since, until), list(FEEDBACK_COLUMNS)])
    frames = [f for f in frames if len(f)]  # concat warns about empty frames' dtypes
    return (pd.concat(frames, ignore_index=True) if frames else _empty(FEEDBACK_DTYPES)), warnings


def join_feedback(
    predictions: pd.DataFrame,
    feedback: pd.DataFrame,
    *,
    window: timedelta = timedelta(hours=24),
    positive: tuple[str, ...] = ("click", "rating", "purchase"),
    min_rating: float = 4.0,
) -> pd.DataFrame:
    """Labels each prediction row with whether the user acted on that item afterwards.

    ``target`` is 1 when the same user had an event of a ``positive`` type on the row's item
    strictly after the prediction's ``ts`` and at most ``window`` later; a ``rating`` event
    counts only when ``rating >= min_rating``. Views are not in the default ``positive``.
    Users with no feedback at all keep all-zero targets: whether they ignored the answer or
    their feedback was never logged cannot be told apart here (see ``sample_summary``).

    Args:
        predictions: from ``load_predictions`` (``user_id``, ``item_id``, ``ts`` are used).
        feedback: from ``load_feedback``.
        window: how long after a prediction an event still counts.
        positive: the event types that count.
        min_rating: the smallest rating that counts as positive.

    Returns:
        A copy of ``predictions`` (same index and order) with an int ``target`` column.
    """
    out = predictions.copy()
    target = np.zeros(len(out), dtype=np.int64)
    events = feedback[feedback["type"].isin(positive) & feedback["timestamp"].notna()]
    rating = pd.to_numeric(events["rating"], errors="coerce")
    events = events[(events["type"] != "rating") | (rating >= min_rating)]
    if len(out) and len(events):
        # merge_asof finds, per row, the first positive event after ts for the same user and
        # item: one output row per prediction however many events a pair has, where a plain
        # merge would multiply repeated recommendations by repeated clicks.
        left = _keyed(out, "ts", "ts").assign(row=np.arange(len(out)))
        left = left[left["ts"].notna()].sort_values("ts", kind="stable")
        right = _keyed(events, "timestamp", "event_ts").sort_values("event_ts", kind="stable")
        matched = pd.merge_asof(
            left,
            right,
            left_on="ts",
            right_on="event_ts",
            by=["user_id", "item_id"],
            direction="forward",
            tolerance=pd.Timedelta(window),
            allow_exact_matches=False,  # an event at the very instant of the answer predates it
        )
        target[matched["row"].to_numpy()] = matched["event_ts"].notna().to_numpy()
    out["target"] = target
    return out


def sample_summary(predictions: pd.DataFrame, feedback: pd.DataFrame) -> dict:
    """How much evidence there is, for the monitoring decision's minimum-sample check.

    Args:
        predictions: from ``load_predictions`` or ``join_feedback``; without a ``target``
            column the positives are counted with ``join_feedback``'s defaults.
        feedback: from ``load_feedback``.

    Returns:
        Ints: ``requests``, ``users``, ``prediction_rows``, ``feedback_events``,
        ``users_with_feedback`` (predicted users with at least one event of any type) and
        ``positives`` (prediction rows with ``target == 1``).
    """
    if "target" not in predictions.columns:
        predictions = join_feedback(predictions, feedback)
    users = predictions["user_id"].astype(str).unique()
    return {
        "requests": int(predictions["request_id"].nunique()),
        "users": len(users),
        "prediction_rows": len(predictions),
        "feedback_events": len(feedback),
        "users_with_feedback": int(np.isin(users, feedback["user_id"].astype(str)).sum()),
        "positives": int(predictions["target"].sum()),
    }


def _keyed(frame: pd.DataFrame, column: str, name: str) -> pd.DataFrame:
    """The join keys as strings and the time as ns UTC, on a fresh 0..n-1 index."""
    keys = {key: frame[key].astype(str).to_numpy() for key in ("user_id", "item_id")}
    return pd.DataFrame(keys | {name: _ns(frame[column]).array})


def _utc(when: datetime | None) -> datetime | None:
    """Naive times are UTC: the services write aware UTC times, people type naive ones."""
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _within(times: pd.Series, since: datetime | None, until: datetime | None) -> np.ndarray:
    keep = times.notna().to_numpy()
    if since is not None:
        keep &= (times >= since).to_numpy()
    if until is not None:
        keep &= (times < until).to_numpy()
    return keep


def _ns(times: pd.Series) -> pd.Series:
    # merge_asof refuses keys of different resolutions (us from one reader, ns from another)
    return pd.to_datetime(times, utc=True).astype(UTC_NS)


def _empty(dtypes: dict) -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=dtype) for column, dtype in dtypes.items()})
