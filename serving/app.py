"""The Ray Serve application: ``build_app(args)`` composes the deployments.

``composed`` (default): Ingress (``@serve.batch``) → CandidateGenerator → Ranker, each its own
deployment with its own autoscaling, called through DeploymentHandles once per batch: the
Ingress sends its batch to the CandidateGenerator, which hands it to the Ranker in one call,
and the Ingress orders the scored candidates into the lists itself (that stage's hop cost
far more CPU than its work: docs/serving.md). ``fused``: the Ingress runs the same three stages
in its own replica (no handle hops).
Both run :mod:`recsys.recommend.batch` (the one path for a batch of requests, cut at its stage
boundaries) on the users' states read from the online store; this module adds transport
(HTTP, handles, batching), telemetry and the prediction log, never logic. Every deployment
serves the model version named in its ``user_config``; changing it reloads the model in place
through ``reconfigure``.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations (the
# request body models) at runtime, after Serve has wrapped the class.
import asyncio
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi import HTTPException, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from ray import serve
from ray.serve import Application

from recsys import recommend
from recsys.config import recsys_home
from recsys.data.new_items import items_of_body
from recsys.features.events import EventIngestor, EventLog
from recsys.features.item_ingest import ItemIngestor
from recsys.recommend import batch
from recsys.recommend.batch import Ask, Served
from serving import arms, guard, openapi, telemetry, writes
from serving.http_api import (
    EVENT_BODY,
    ITEMS_ROUTE,
    PROBLEMS,
    EventAccepted,
    Health,
    Readiness,
    api,
)
from serving.predlog import PredictionLog, prediction_record
from serving.runtime import NotReady, Runtime, item_log, model_cache
from serving.schemas import (
    AppArgs,
    ModelSelection,
    Problem,
    RecommendRequest,
    RecommendResponse,
)
from serving.shadow import Mirror, Shadow

log = logging.getLogger("ray.serve")
STAGE_OPTIONS = {"ray_actor_options": {"num_cpus": 0.1}, "max_ongoing_requests": 64}
# Each @serve.batch starts with AppArgs' defaults; the replica then sets the app's own values.
BATCHING = {f: AppArgs.model_fields[f].default for f in ("max_batch_size", "batch_wait_timeout_s")}


def _selection(config: dict) -> ModelSelection:
    return ModelSelection.model_validate(config or {})


def _cause(exc: Exception) -> Exception:
    """The exception a stage raised: Ray delivers one raised in another deployment as a
    ``RayTaskError`` holding the original as ``cause``."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, Exception) else exc


class Stage:
    """A stage deployment's shared part: the versions it holds and the one it preloads."""

    def __init__(self, args: dict) -> None:
        self.models = model_cache(AppArgs.model_validate(args))
        self.version: str | None = None

    def reconfigure(self, config: dict) -> None:
        selection = _selection(config)
        for version in selection.versions():
            self.models.get(version)  # load before switching; the old one is kept
        self.version = selection.model_version

    def ready(self, version: str) -> str:
        self.models.get(version)
        return ""


@serve.deployment(**STAGE_OPTIONS)
class CandidateGenerator(Stage):
    """A batch of requests (the Ingress's): the users' states from Feast online (one read) →
    the model's candidate generators (one matrix operation) → the Ranker, called once for
    the batch. The Ingress gets each request's candidates without their feature rows (the
    Ranker's input, not the list's) and their scores."""

    def __init__(self, args: dict, ranker) -> None:
        self.runtime = Runtime(AppArgs.model_validate(args))
        self.models, self.version = self.runtime.models, None
        self.ranker = ranker

    async def __call__(self, requests: list[tuple[str, str, bool]]) -> list:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        stage1 = await loop.run_in_executor(None, self.runtime.candidates_batch, requests)
        t1 = time.perf_counter()
        ok = [j for j, got in enumerate(stage1) if not isinstance(got, Exception)]
        if ok:
            scores = await self.ranker.score.remote(
                [(requests[j][0], stage1[j]["candidates"]) for j in ok]
            )
            batch.with_scores(
                stage1, ok, scores, {"candidates": t1 - t0, "rank": time.perf_counter() - t1}
            )
            for j in ok:
                stage1[j]["candidates"] = dataclasses.replace(stage1[j]["candidates"], rows=None)
        return stage1

    async def ready(self, version: str) -> str:
        reason = self.runtime.not_ready(self.models.get(version))
        return reason or await self.ranker.ready.remote(version)


@serve.deployment(**STAGE_OPTIONS)
class Ranker(Stage):
    """The final scores of a batch of candidates (the CandidateGenerator's batch, one call)."""

    async def score(self, requests: list[tuple]) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, batch.rank_batch, self.models, requests)


@serve.deployment(**STAGE_OPTIONS)
@serve.ingress(api)
class Ingress:
    """HTTP: ``/recommend``, ``/events``, ``/items``, ``/healthz``, ``/readyz``, ``/metrics``,
    ``/docs``."""

    def __init__(self, args: dict, candidate_generator=None, shadow=None) -> None:
        self.args = AppArgs.model_validate(args)
        self.fused = Runtime(self.args) if candidate_generator is None else None
        # composed: the lists are made here (the graph's third stage was not worth a hop)
        self.models = self.fused.models if self.fused is not None else model_cache(self.args)
        # One compute thread: requests queue on the event loop instead of several threads
        # taking turns on the GIL mid-request.
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stages")
        self.generator = candidate_generator
        self.telemetry = telemetry.for_this_process()
        count = lambda outcome: self.telemetry.shadow.labels(outcome).inc()  # noqa: E731
        self.mirror = Mirror(shadow, count) if shadow is not None else None
        directory = self.args.prediction_log_dir or recsys_home() / "predictions"
        self.predictions = PredictionLog(directory)
        self.selection = ModelSelection()  # the version served, and its experiment if any
        self.load_error = ""
        self._events = self._items = None
        self._batch.set_max_batch_size(self.args.max_batch_size)
        self._batch.set_batch_wait_timeout_s(self.args.batch_wait_timeout_s)
        guard.configure(guard.GuardSettings.from_env(self.args.max_body_bytes))

    def reconfigure(self, config: dict) -> None:
        selection = _selection(config)
        try:
            for version in selection.versions():
                self.models.get(version)
            self.load_error = ""
        except Exception as exc:  # keep serving the old version; /readyz says why
            self.load_error = f"model {version}: {exc}"
            log.exception("cannot load model %s", version)
            return
        self.selection = selection
        self.telemetry.set_version(selection.model_version)

    # -- routes ------------------------------------------------------------------------
    @api.get("/openapi.json", include_in_schema=False)
    def openapi_document(self, request: Request) -> JSONResponse:
        version = self.selection.model_version
        prepared = self.models.get(version) if version else None
        doc = openapi.document(
            request.app.openapi(),
            genres=prepared.genres if prepared else None,
            settings=guard.settings(),
            version=version,
            kind=prepared.model.kind if prepared else None,
        )
        return JSONResponse(doc)

    @api.get("/docs", include_in_schema=False)
    def docs(self) -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="recsys")

    @api.get("/healthz", response_model=Health)
    def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz(self) -> JSONResponse:
        selection, reason = self.selection, self.load_error
        if not reason and selection.model_version is None:
            reason = "no model loaded yet (set model_version in user_config)"
        for version in selection.versions():  # the challenger serves users too
            reason = reason or await self._not_ready(version)
        if reason:
            return JSONResponse({"ready": False, "reason": reason}, status_code=503)
        return JSONResponse({"ready": True, "model_version": selection.model_version})

    @api.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    def metrics(self) -> Response:
        body = self.telemetry.render(self.predictions.stats())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @api.post(
        "/recommend",
        response_model=RecommendResponse,
        responses={400: {"model": Problem, "description": "an unreadable body"}, **PROBLEMS},
    )
    async def recommend(self, body: RecommendRequest) -> RecommendResponse:
        t0 = time.perf_counter()
        version, experiment = self.selection.model_version, self.selection.experiment
        if version is None:
            raise HTTPException(503, "no model loaded yet")
        request_id = self.predictions.new_id()
        try:
            version, served, arm = await arms.serve(
                self._run_stages, version, experiment, body, request_id
            )
        except Exception as exc:
            cause = _cause(exc)  # one raised in another deployment arrives wrapped
            if isinstance(cause, recommend.BadRequest):
                raise HTTPException(422, str(cause)) from None
            if isinstance(cause, NotReady):
                raise HTTPException(503, str(cause)) from None
            self.telemetry.errors.labels("/recommend", type(cause).__name__).inc()
            raise
        took_ms = (time.perf_counter() - t0) * 1000
        response = RecommendResponse.of(served.answer, version, took_ms, arm)
        self._observe(request_id, body, response, served, took_ms)
        if self.mirror is not None:
            self.mirror.offer(experiment, body, request_id, served)
        return response

    @api.post(
        "/events",
        status_code=202,
        response_model=EventAccepted,
        responses=PROBLEMS,
        openapi_extra={"requestBody": {"required": True, "content": EVENT_BODY}},
    )
    async def events(self, request: Request) -> JSONResponse:
        ingestor = self._ingestor()
        if ingestor is None:
            return JSONResponse({"detail": "no feature store configured"}, status_code=503)
        payload = await request.body()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, ingestor.ingest, payload)
        self.telemetry.event_log_ok.set(0 if result.unavailable else 1)
        if result.unavailable:
            self.telemetry.event_log_errors.inc()
        return writes.event_answer(result)

    @api.post("/items", **ITEMS_ROUTE)
    async def items(self, request: Request) -> JSONResponse:
        """New items with their text: logged durably, then recommendable by every replica
        of the versions that read content, on its next request (no retraining)."""
        try:
            rows = items_of_body(await request.body())
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        version = self.selection.model_version
        catalog = self.models.get(version).position if version else {}
        if self._items is None:
            runtime = self.fused or Runtime(self.args)
            self._items = ItemIngestor(item_log(self.args), runtime.store)
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, self._items.ingest, rows, catalog, True)
        return writes.items_answer(result)

    # -- helpers -----------------------------------------------------------------------
    async def _not_ready(self, version: str) -> str:
        if self.fused is not None:
            loop = asyncio.get_running_loop()
            prepared = self.models.get(version)
            return await loop.run_in_executor(self._compute, self.fused.not_ready, prepared)
        return await self.generator.ready.remote(version)

    async def _run_stages(self, ask: Ask) -> Served:
        out = await self._batch(ask)
        if isinstance(out, Exception):
            raise out
        return out

    @serve.batch(**BATCHING)
    async def _batch(self, asks: list[Ask]) -> list:
        """The requests that arrived together, as one batch through the stages (one compute
        thread: they queue on the event loop rather than taking turns on the GIL). Fused: the
        three stages here. Composed: one call to the CandidateGenerator for the batch (which
        calls the Ranker once for it), then each list here."""
        loop = asyncio.get_running_loop()
        if self.fused is not None:
            return await loop.run_in_executor(self._compute, self.fused.recommend_batch, asks)
        results, valid = batch.admit(self.models, asks)
        stage1 = []
        if valid:
            stage1 = await self.generator.remote([batch.stage1_key(asks[n]) for n in valid])
        return await loop.run_in_executor(
            self._compute, batch.finish, self.models, asks, results, valid, stage1
        )

    def _observe(self, request_id: str, body, response, served: Served, took_ms: float) -> None:
        t = self.telemetry
        t.latency.labels("/recommend").observe(took_ms / 1000)
        for stage, seconds in served.timings.items():
            t.stage.labels(stage).observe(seconds)
        if response.cold_start:
            t.cold_start.inc()
        record = prediction_record(request_id, body, response, served, took_ms)
        self.predictions.log(record)

    def _ingestor(self):
        if self._events is None:
            runtime = self.fused or Runtime(self.args)
            if runtime.store is None:
                return None
            events_dir = self.args.events_dir or recsys_home() / "events"
            self._events = EventIngestor(runtime.store, EventLog(events_dir))
        return self._events


def build_app(args: AppArgs) -> Application:
    """The application for ``serve run serving/config.yaml`` and a KubeRay RayService."""
    args = AppArgs.model_validate(args) if isinstance(args, dict) else args
    plain = args.model_dump()
    shadow = Shadow.bind(plain)  # no replica until a shadow experiment runs
    if args.topology == "fused":
        return Ingress.bind(plain, None, shadow)
    return Ingress.bind(plain, CandidateGenerator.bind(plain, Ranker.bind(plain)), shadow)
