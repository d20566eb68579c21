"""The prediction log: every answer, appended as JSON lines by a background thread.

A record is a :class:`recsys.data.records.PredictionRecord` (the schema the monitoring reads
back), made from the served answer by :func:`prediction_record`. ``log`` never blocks and never
raises: records go into a bounded queue; when it is full the record is dropped and counted.
Write errors (a full disk, an unwritable directory) are counted and kept for ``/metrics``; the
request that produced the record has long been answered.
Files rotate by size: ``predictions-<utc start>-<pid>-<n>.jsonl`` (monitoring reads them all).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import queue
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from recsys.data.records import PredictionRecord, record_line
from recsys.recommend.batch import Served
from serving.schemas import RecommendRequest, RecommendResponse


def prediction_record(
    request_id: str,
    body: RecommendRequest,
    response: RecommendResponse,
    served: Served,
    took_ms: float,
) -> dict:
    """The prediction-log record of one served answer: :class:`PredictionRecord`'s fields, in
    its order, as a plain dict. No model is built per answer (building one cost the replica
    CPU on every request, seen with ``benchmarks/serving_load.py``); every value is
    the app's own, already validated, and the candidate arrays stay numpy until the writer
    thread prints them. A unit test reads the written line back through the schema.
    """
    record = dict(
        request_id=request_id,
        ts=datetime.now(UTC),
        request=body.model_dump(),
        model_version=response.model_version,
        user_features=served.features,
        candidates=len(served.candidates.codes),
        candidate_codes=np.asarray(served.candidates.codes, dtype=np.int64),
        # rounded as float64: a float32 prints 17 digits (a longer line, slower to write)
        candidate_scores=np.round(np.asarray(served.scores, dtype=np.float64), 4),
        items=[i.item_id for i in response.items],
        scores=[i.score for i in response.items],
        sources=[i.source for i in response.items],
        cold_start=response.cold_start,
        latency_ms=round(took_ms, 3),
        stage_ms={k: round(v * 1000, 3) for k, v in served.timings.items()},
    )
    if response.experiment is not None:  # only then: other lines stay as they were written
        record |= {"experiment": response.experiment.name, "arm": response.experiment.arm}
        if response.experiment.teams is not None:
            record["teams"] = response.experiment.teams
    return record


class PredictionLog:
    def __init__(
        self, directory: str | Path, max_bytes: int = 64 * 2**20, capacity: int = 10_000
    ) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.written = self.dropped = self.errors = 0
        self.last_error = ""
        self.healthy = True  # False while writes fail
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._file = None
        self._size = 0
        self._n = 0
        # Record ids: a random prefix per log (per replica), then a counter (a uuid4 per request
        # read the kernel's random source on the request path).
        self._id_prefix, self._ids = uuid.uuid4().hex[:16], itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def new_id(self) -> str:
        """An id no other record of any replica's log carries."""
        return f"{self._id_prefix}-{next(self._ids):x}"

    def log(self, record: dict | PredictionRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def stats(self) -> dict:
        return {
            "written": self.written,
            "dropped": self.dropped,
            "errors": self.errors,
            "queued": self._queue.qsize(),
            "last_error": self.last_error,
            "healthy": self.healthy,
        }

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.flush()
        self._stop.set()
        self._thread.join(timeout=5)
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):  # the disk that failed the write may fail this
                self._file.close()
            self._file = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            while len(batch) < 1000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)
            for _ in batch:
                self._queue.task_done()

    def _write(self, batch: list[dict | PredictionRecord]) -> None:
        lines = []
        for record in batch:
            try:
                typed = isinstance(record, PredictionRecord)
                lines.append((record.line() if typed else record_line(record)) + "\n")
            except Exception as exc:  # a record JSON cannot hold: count, go on (the thread
                self.errors += 1  # must outlive any one record)
                self.last_error = f"unserialisable record: {type(exc).__name__}: {exc}"
        data = "".join(lines).encode()
        if not data:
            return
        try:
            if self._file is None or self._size >= self.max_bytes:
                self._rotate()
            view = memoryview(data)
            while view:  # an unbuffered file: a write may take part of the data
                view = view[self._file.write(view) :]
            self._size += len(data)
            self.written += len(lines)
            self.healthy = True
        except OSError as exc:  # full disk, permissions, a vanished directory
            self.errors += len(lines)
            self.last_error = f"{type(exc).__name__}: {exc}"
            self.healthy = False
            if self._file is not None:  # no half record stays behind for the readers
                with contextlib.suppress(OSError):
                    os.ftruncate(self._file.fileno(), self._size)
            self._close_file()

    def _rotate(self) -> None:
        self._close_file()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._n += 1
        name = f"predictions-{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}-{self._n}.jsonl"
        self._file = open(self.directory / name, "ab", buffering=0)  # noqa: SIM115
        self._size = 0
