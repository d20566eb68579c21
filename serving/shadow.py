"""A shadow experiment's challenger: it answers a share of the requests in the background; its
answers are logged (arm ``shadow``), never returned.

Two parts. ``Shadow`` is its own deployment, with no replica until a shadow experiment sends it
a request (``min_replicas: 0``; Serve starts one at once on the first), whose replica runs at
Linux's idle scheduling class: on a busy node it gets only the CPU that users' answers leave.
It runs the one path (:mod:`recsys.recommend.batch`, the fused topology's) on the challenger and
writes the prediction records itself. ``Mirror`` is the Ingress's side: after the user's answer
is made it queues the request and sends the queue in batches, keeps at most ``capacity``
waiting or in flight and drops the rest, and never waits for or raises from the challenger;
``/metrics`` counts each outcome
(``recsys_shadow_requests{outcome="answered|dropped|failed|timeout"}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ray import serve

from recsys.config import recsys_home
from recsys.experiments.assignment import mirrored
from recsys.experiments.spec import Experiment
from recsys.recommend.batch import Ask, Served, recommend_batch
from recsys.state.user import UserState
from serving.predlog import PredictionLog, prediction_record
from serving.runtime import Runtime
from serving.schemas import AppArgs, ModelSelection, RecommendRequest, RecommendResponse

log = logging.getLogger("ray.serve")
OUTCOMES = ("answered", "dropped", "failed", "timeout")


@dataclass(frozen=True)
class Mirrored:
    """A request the challenger answers too: what the user asked, the returned answer's id
    and time (a shadow answer is judged from the same instant as the control's), and the
    user's state and features the control's answer was made from (the challenger answers from
    the same inputs, however late it runs: not from a store that holds what the user did
    since)."""

    experiment: str
    version: str
    body: RecommendRequest
    request_id: str
    ts: datetime
    state: UserState | None = None
    features: dict | None = None


@serve.deployment(ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=4)
class Shadow:
    def __init__(self, args: dict, cpu: float | None = None) -> None:
        idle_priority()
        # The CPU time it may use: what it reserved from Ray (ray_actor_options.num_cpus).
        self.budget = CpuBudget(cpu if cpu is not None else reserved_cpus())
        self.args = AppArgs.model_validate(args)
        self.runtime = Runtime(self.args)
        directory = self.args.prediction_log_dir or recsys_home() / "predictions"
        self.predictions = PredictionLog(directory)

    def reconfigure(self, config: dict) -> None:
        version = ModelSelection.model_validate(config or {}).shadow()
        if version is not None:
            self.runtime.models.get(version)  # load before the first mirrored request

    async def __call__(self, batch: list[Mirrored]) -> list[str]:
        """Answer a batch of mirrored requests through the one path; log each answer.
        Returns each request's outcome, ``answered`` or ``failed``."""
        async with self.budget:
            t0 = time.perf_counter()
            asks = [Ask(m.version, m.body.user_id, m.body.request()) for m in batch]
            source = Replay(self.runtime, batch)
            loop = asyncio.get_running_loop()
            served = await loop.run_in_executor(
                None, recommend_batch, self.runtime.models, source, asks
            )
            took_ms = (time.perf_counter() - t0) * 1000
        outcomes = []
        for request, answer in zip(batch, served, strict=True):
            if isinstance(answer, Exception):
                outcomes.append("failed")
                continue
            self.predictions.log(shadow_record(request, answer, took_ms))
            outcomes.append("answered")
        return outcomes


class Replay:
    """The state source of a batch of mirrored requests: each user's state as the control's
    answer read it (the store's own read where a request carries none); the items' context
    and the readiness check are the store's."""

    def __init__(self, runtime: Runtime, batch: list[Mirrored]) -> None:
        self.runtime = runtime
        self.states = {m.body.user_id: (m.state, m.features or {}) for m in batch if m.state}

    def read_users(self, user_ids: list[str]) -> list[tuple[UserState, dict]]:
        missing = [u for u in user_ids if u not in self.states]
        read = dict(zip(missing, self.runtime.read_users(missing), strict=True)) if missing else {}
        return [self.states.get(u) or read[u] for u in user_ids]

    def item_context(self, prepared):
        return self.runtime.item_context(prepared)

    def require_ready(self, prepared) -> None:
        self.runtime.require_ready(prepared)


def reserved_cpus() -> float:
    """The CPUs this replica reserved from Ray (1 outside Ray)."""
    import ray

    if not ray.is_initialized():
        return 1.0
    return float(ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)) or 1.0


class CpuBudget:
    """One batch at a time, and no more CPU time than ``cpus`` of the wall clock: after a
    batch that took ``c`` seconds of the process's CPU, the next starts ``c / cpus`` seconds
    after this one started at the earliest. What waits meanwhile fills the Ingress's mirror,
    which drops what does not fit."""

    def __init__(self, cpus: float) -> None:
        self.cpus = cpus
        self._lock = asyncio.Lock()
        self._next = 0.0  # the monotonic time the next batch may start

    async def __aenter__(self) -> None:
        await self._lock.acquire()
        await asyncio.sleep(max(0.0, self._next - time.monotonic()))
        self._start, self._cpu = time.monotonic(), time.process_time()

    async def __aexit__(self, *exc) -> None:
        used = time.process_time() - self._cpu
        self._next = self._start + used / self.cpus
        self._lock.release()


def idle_priority() -> None:
    """Every thread of this process (and those it starts later, which inherit it) at Linux's
    idle scheduling class (``SCHED_IDLE``; else nice 19): it runs only on CPU nothing else
    wants. Linux keeps the policy per thread, so each existing thread is set."""
    for task in Path("/proc/self/task").glob("*"):
        tid = int(task.name)
        try:
            os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, tid, 19)


def shadow_record(mirrored: Mirrored, served: Served, took_ms: float) -> dict:
    """The prediction record of a shadow answer: arm ``shadow``, at the returned answer's
    time, naming it (``shadow_of``)."""
    response = RecommendResponse.of(served.answer, mirrored.version, took_ms)
    record = prediction_record("", mirrored.body, response, served, took_ms)
    return record | {
        "request_id": f"{mirrored.request_id}.shadow",
        "ts": mirrored.ts,
        "experiment": mirrored.experiment,
        "arm": "shadow",
        "shadow_of": mirrored.request_id,
    }


class Mirror:
    """The Ingress's sender to the Shadow deployment. Mirrored requests wait in a list and go
    in batches (one handle call for up to ``batch`` requests, or for what ``wait_s`` gathered:
    a call costs the Ingress about a millisecond of CPU, a request's share of a batch little);
    at most ``batches`` calls are in flight, each given up after ``timeout_s``. A request that
    finds ``capacity`` requests waiting or in flight is dropped. ``count(outcome)`` is called
    once per request. Nothing here waits for the challenger or raises."""

    def __init__(
        self,
        handle,
        count,
        *,
        capacity: int = 256,
        batch: int = 32,
        wait_s: float = 0.05,
        batches: int = 2,
        timeout_s: float = 30.0,
    ) -> None:
        self.handle, self.count = handle, count
        self.capacity, self.batch, self.wait_s = capacity, batch, wait_s
        self.batches, self.timeout_s = batches, timeout_s
        self.waiting: list[Mirrored] = []
        self.in_flight = 0  # requests in calls not yet answered
        self.calls = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    def offer(
        self,
        experiment: Experiment | None,
        body: RecommendRequest,
        request_id: str,
        served: Served,
    ) -> None:
        """Send the request just answered (``served``) when a shadow experiment mirrors it."""
        if experiment is None or experiment.serves_challenger():
            return
        if mirrored(experiment.name, request_id, experiment.share):
            features = {k: v for k, v in served.features.items() if k != "history_len"}
            now = datetime.now(UTC)
            e = experiment
            self.send(Mirrored(e.name, e.challenger, body, request_id, now, served.state, features))

    def send(self, request: Mirrored) -> None:
        if len(self.waiting) + self.in_flight >= self.capacity:
            self.count("dropped")
            return
        self.waiting.append(request)
        if len(self.waiting) >= self.batch:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.wait_s, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self.waiting and self.calls < self.batches:
            batch, self.waiting = self.waiting[: self.batch], self.waiting[self.batch :]
            self.calls += 1
            self.in_flight += len(batch)
            task = asyncio.get_running_loop().create_task(self._call(batch))
            self._tasks.add(task)  # a task nothing refers to may be collected before it ends
            task.add_done_callback(self._tasks.discard)
        if self.waiting and self._timer is None:  # the rest goes when a call returns
            self._timer = asyncio.get_running_loop().call_later(self.wait_s, self._flush)

    async def _call(self, batch: list[Mirrored]) -> None:
        response = None
        try:
            response = self.handle.remote(batch)
            outcomes = await asyncio.wait_for(_result(response), self.timeout_s)
        except TimeoutError:
            if response is not None:
                response.cancel()
            outcomes = ["timeout"] * len(batch)
        except Exception as exc:  # the challenger's failure is logged, never the user's
            log.warning("shadow %s: %s", batch[0].experiment, type(exc).__name__)
            outcomes = ["failed"] * len(batch)
        finally:
            self.calls -= 1
            self.in_flight -= len(batch)
        for outcome in outcomes:
            self.count(outcome)


async def _result(response):
    return await response
