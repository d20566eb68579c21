"""The Ray Serve application: ``build_app(args)`` composes the deployments.

``composed`` (default): Ingress → CandidateGenerator → Ranker (``@serve.batch``) → Ordering,
each its own deployment with its own autoscaling, called through DeploymentHandles.
``fused``: the Ingress runs the same three stages in its own replica (no handle hops).
Every deployment serves the model version named in its ``user_config``; changing it reloads
the model in place through ``reconfigure``.
"""

# No `from __future__ import annotations` here: FastAPI reads the route annotations (the
# request body models) at runtime, after Serve has wrapped the class.
import asyncio
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from ray import serve
from ray.serve import Application

from recsys.config import recsys_home
from recsys.data.io import read_titles
from recsys.features.online import OnlineFeatures
from recsys.features.store import default_repo, open_store
from serving import stages
from serving.predlog import PredictionLog
from serving.schemas import AppArgs, ModelSelection, RecommendRequest, RecommendResponse
from serving.telemetry import Telemetry

log = logging.getLogger("ray.serve")
api = FastAPI(
    title="recsys",
    description="Multi-stage recommendations (two-tower + EASE candidates, DCN ranker) and "
    "real-time interaction events.",
)
STAGE_OPTIONS = {"ray_actor_options": {"num_cpus": 0.1}, "max_ongoing_requests": 64}


class Runtime:
    """What a replica holds: the loaded model versions and the online feature reader."""

    def __init__(self, args: AppArgs) -> None:
        self.args = args
        root = args.model_root or recsys_home() / "models"
        self.models = stages.ModelCache(root, read_titles(args.catalog))
        repo = Path(args.feature_repo) if args.feature_repo else default_repo()
        self.store = None
        if (repo / "feature_store.yaml").exists() and (repo / "data").exists():
            self.store = open_store(repo, args.online_store)
        self._reader = None

    def user_features(self, user_id: str) -> dict:
        """The user's online features (empty without a feature store or for unknown users)."""
        if self.store is None:
            return {}
        if self._reader is None:
            self._reader = OnlineFeatures(self.store)
        return self._reader.read(user_id).user

    def candidates(self, version: str, user_id: str, exclude_seen: bool) -> dict:
        t0 = time.perf_counter()
        features = self.user_features(user_id)
        history = list(features.get("last_items") or [])
        out = stages.candidates(self.models.get(version), user_id, history, exclude_seen)
        ms = (time.perf_counter() - t0) * 1000
        return out | {"history": history, "user_features": features, "took_ms": ms}


def _selection(config: dict) -> str | None:
    return ModelSelection.model_validate(config or {}).model_version


class Stage:
    """A stage deployment's shared part: its runtime and the version it preloads."""

    def __init__(self, args: dict) -> None:
        self.runtime = Runtime(AppArgs.model_validate(args))
        self.version: str | None = None

    def reconfigure(self, config: dict) -> None:
        version = _selection(config)
        if version:
            self.runtime.models.get(version)  # load before switching; old one kept
        self.version = version

    def ready(self, version: str) -> bool:
        self.runtime.models.get(version)
        return True


@serve.deployment(**STAGE_OPTIONS)
class CandidateGenerator(Stage):
    """User features from Feast online → user tower → FAISS top-N, plus EASE and popular."""

    def __call__(self, version: str, user_id: str, exclude_seen: bool) -> dict:
        return self.runtime.candidates(version, user_id, exclude_seen)


@serve.deployment(**STAGE_OPTIONS)
class Ranker(Stage):
    """The DCN ranker over candidate rows, batched across concurrent requests."""

    def __init__(self, args: dict) -> None:
        super().__init__(args)
        parsed = self.runtime.args
        self.score.set_max_batch_size(parsed.max_batch_size)
        self.score.set_batch_wait_timeout_s(parsed.batch_wait_timeout_s)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
    async def score(self, requests: list[tuple[str, dict]]) -> list[np.ndarray]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._score_batch, requests)

    def _score_batch(self, requests: list[tuple[str, dict]]) -> list[np.ndarray]:
        out: list = [None] * len(requests)
        for version in {v for v, _ in requests}:  # a switch may mix versions in one batch
            mine = [n for n, (v, _) in enumerate(requests) if v == version]
            scores = stages.rank(self.runtime.models.get(version), [requests[n][1] for n in mine])
            for n, s in zip(mine, scores, strict=True):
                out[n] = s
        return out


@serve.deployment(**STAGE_OPTIONS)
class Ordering(Stage):
    """Seen items out, genre filters, optional MMR, reasons, the cold-start answer."""

    def __call__(self, version, request: dict, codes, scores, known: bool, history) -> dict:
        body = RecommendRequest.model_validate(request)
        items, cold = stages.order(
            self.runtime.models.get(version), body, codes, scores, known, history
        )
        return {"items": [i.model_dump() for i in items], "cold_start": cold}


@serve.deployment(**STAGE_OPTIONS)
@serve.ingress(api)
class Ingress:
    """HTTP: ``/recommend``, ``/events``, ``/healthz``, ``/readyz``, ``/metrics``, ``/docs``."""

    def __init__(self, args: dict, candidate_generator=None, ranker=None, ordering=None) -> None:
        self.args = AppArgs.model_validate(args)
        self.fused = Runtime(self.args) if candidate_generator is None else None
        # One compute thread: requests queue on the event loop instead of several threads
        # taking turns on the GIL mid-request.
        self._compute = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stages")
        self.handles = (candidate_generator, ranker, ordering)
        self.telemetry = Telemetry()
        directory = self.args.prediction_log_dir or recsys_home() / "predictions"
        self.predictions = PredictionLog(directory)
        self.version: str | None = None
        self.load_error = ""
        self._events = None

    def reconfigure(self, config: dict) -> None:
        version = _selection(config)
        try:
            if version and self.fused is not None:
                self.fused.models.get(version)
            self.load_error = ""
        except Exception as exc:  # keep serving the old version; /readyz says why
            self.load_error = f"model {version}: {exc}"
            log.exception("cannot load model %s", version)
            return
        self.version = version
        self.telemetry.set_version(version)

    # -- routes ------------------------------------------------------------------------
    @api.get("/healthz")
    def healthz(self) -> dict:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> JSONResponse:
        if self.load_error or self.version is None:
            reason = self.load_error or "no model loaded yet (set model_version in user_config)"
            return JSONResponse({"ready": False, "reason": reason}, status_code=503)
        if self.fused is None:
            await self.handles[0].ready.remote(self.version)
            await self.handles[1].ready.remote(self.version)
            await self.handles[2].ready.remote(self.version)
        return JSONResponse({"ready": True, "model_version": self.version})

    @api.get("/metrics")
    def metrics(self) -> Response:
        body = self.telemetry.render(self.predictions.stats())
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, body: RecommendRequest) -> RecommendResponse:
        t0 = time.perf_counter()
        version = self.version
        if version is None:
            self.telemetry.requests.labels("/recommend", "503").inc()
            raise HTTPException(503, "no model loaded yet")
        try:
            result, cand, timings = await self._run_stages(version, body)
        except stages.BadRequest as exc:
            self.telemetry.requests.labels("/recommend", "422").inc()
            cause = getattr(exc, "cause", None) or exc  # a stage's error arrives wrapped
            raise HTTPException(422, str(cause)) from None
        except Exception as exc:
            self.telemetry.requests.labels("/recommend", "500").inc()
            self.telemetry.errors.labels("/recommend", type(exc).__name__).inc()
            raise
        took_ms = (time.perf_counter() - t0) * 1000
        response = RecommendResponse(
            user_id=body.user_id,
            model_version=version,
            items=result["items"],
            cold_start=result["cold_start"],
            took_ms=round(took_ms, 3),
        )
        self._observe(body, response, cand, timings, took_ms)
        return response

    @api.post("/events", status_code=202)
    async def events(self, request: Request) -> JSONResponse:
        ingestor = self._ingestor()
        if ingestor is None:
            self.telemetry.requests.labels("/events", "503").inc()
            return JSONResponse({"detail": "no feature store configured"}, status_code=503)
        payload = await request.body()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, ingestor.ingest, payload)
        if not result.accepted:
            self.telemetry.requests.labels("/events", "422").inc()
            return JSONResponse({"detail": result.reason}, status_code=422)
        self.telemetry.requests.labels("/events", "202").inc()
        body = {"accepted": True, "new_user": result.new_user, "pushed": result.pushed}
        if result.reason:
            body["warning"] = result.reason
        return JSONResponse(body, status_code=202)

    # -- helpers -----------------------------------------------------------------------
    async def _run_stages(self, version: str, body: RecommendRequest):
        timings = {}
        t0 = time.perf_counter()
        if self.fused is not None:
            loop = asyncio.get_running_loop()
            result, cand, timings = await loop.run_in_executor(
                self._compute, self._fused, version, body
            )
            return result, cand, timings
        generator, ranker, ordering = self.handles
        cand = await generator.remote(version, body.user_id, body.exclude_seen)
        t1 = time.perf_counter()
        scores = await ranker.score.remote((version, cand["rows"]))
        t2 = time.perf_counter()
        result = await ordering.remote(
            version, body.model_dump(), cand["rows"]["iid"], scores, cand["known"], cand["history"]
        )
        t3 = time.perf_counter()
        timings = {"candidates": t1 - t0, "rank": t2 - t1, "order": t3 - t2}
        cand["scores"] = scores
        return result, cand, timings

    def _fused(self, version: str, body: RecommendRequest):
        runtime, t0 = self.fused, time.perf_counter()
        cand = runtime.candidates(version, body.user_id, body.exclude_seen)
        t1 = time.perf_counter()
        served = runtime.models.get(version)
        scores = stages.rank(served, [cand["rows"]])[0]
        t2 = time.perf_counter()
        items, cold = stages.order(
            served, body, cand["rows"]["iid"], scores, cand["known"], cand["history"]
        )
        t3 = time.perf_counter()
        cand["scores"] = scores
        result = {"items": [i.model_dump() for i in items], "cold_start": cold}
        return result, cand, {"candidates": t1 - t0, "rank": t2 - t1, "order": t3 - t2}

    def _observe(self, body, response, cand, timings, took_ms) -> None:
        t = self.telemetry
        t.requests.labels("/recommend", "200").inc()
        t.latency.labels("/recommend").observe(took_ms / 1000)
        for stage, seconds in timings.items():
            t.stage.labels(stage).observe(seconds)
        if response.cold_start:
            t.cold_start.inc()
        codes = np.asarray(cand["rows"]["iid"], dtype=np.int64)
        self.predictions.log(
            {
                "request_id": uuid.uuid4().hex,
                "ts": datetime.now(UTC).isoformat(),
                "request": body.model_dump(),
                "model_version": response.model_version,
                "user_features": cand.get("user_features", {}),
                "candidates": len(codes),
                "candidate_codes": codes,
                "candidate_scores": np.round(np.asarray(cand["scores"], dtype=np.float32), 4),
                "items": [i.item_id for i in response.items],
                "scores": [i.score for i in response.items],
                "cold_start": response.cold_start,
                "latency_ms": round(took_ms, 3),
                "stage_ms": {k: round(v * 1000, 3) for k, v in timings.items()},
            }
        )

    def _ingestor(self):
        if self._events is None:
            from recsys.features.events import EventIngestor, EventLog

            runtime = self.fused or Runtime(self.args)
            if runtime.store is None:
                return None
            events_dir = self.args.events_dir or recsys_home() / "events"
            self._events = EventIngestor(runtime.store, EventLog(events_dir))
        return self._events


@api.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """An unexpected failure: logged with its stack here, never sent to the client."""
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s on %s", error_id, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "internal error", "error_id": error_id}, status_code=500)


def build_app(args: AppArgs) -> Application:
    """The application for ``serve run serving/config.yaml`` and a KubeRay RayService."""
    args = AppArgs.model_validate(args) if isinstance(args, dict) else args
    plain = args.model_dump()
    if args.topology == "fused":
        return Ingress.bind(plain)
    return Ingress.bind(
        plain, CandidateGenerator.bind(plain), Ranker.bind(plain), Ordering.bind(plain)
    )
