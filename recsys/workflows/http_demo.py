"""The quickstart's serving part: start the champion's app locally, send it real HTTP
requests (known users, a cold-start visitor, an event, a bad request), print the answers; and
the JSON POST the closed loop sends its traffic with."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from recsys.config import local_ray
from recsys.data.io import read_titles
from recsys.serve_local import stop
from recsys.serve_ops import start_local


def serve_demo(
    workdir: Path,
    model_root: Path,
    model_version: str,
    feature_repo: Path | None,
    catalog: Path | None,
    users: list[str],
    port: int = 8000,
    log=print,
) -> dict:
    """Start the Serve app on ``model_version`` (under ``model_root``), send real HTTP
    requests (known users, a cold-start visitor, an event, a bad request), print the answers,
    shut Serve down.

    Returns:
        What the demo saw (answers, readiness time) for tests.
    """
    t0 = time.perf_counter()
    seen: dict = {}
    url = start_local(model_root, model_version, feature_repo, catalog, workdir, port, log)
    ours = local_ray() is not None  # this process started it (here or to train): it goes too
    try:
        seen["ready_s"] = round(time.perf_counter() - t0, 1)
        log(f"app ready at {url} in {seen['ready_s']}s (OpenAPI at {url}/docs)")
        titles = read_titles(catalog)
        for user in users:
            answer = post(url, "/recommend", {"user_id": user, "k": 5})[1]
            seen.setdefault("answers", []).append(answer)
            log(f"user {user} (took {answer['took_ms']:.0f} ms, model {answer['model_version']}):")
            for item in answer["items"]:
                name = titles.get(item["item_id"], item["item_id"])
                log(f"  {item['rank']}. {name} — {item['reason']}")
        visitor = {"user_id": "new-visitor", "k": 3, "filters": {"include_genres": ["Comedy"]}}
        cold = post(url, "/recommend", visitor)[1]
        seen["cold"] = cold
        names = ", ".join(titles.get(i["item_id"], i["item_id"]) for i in cold["items"])
        log(f"unknown visitor, comedies (cold_start={cold['cold_start']}): {names}")
        top = seen["answers"][0]["items"][0]["item_id"]
        status, _ = post(url, "/events", {"user_id": users[0], "item_id": top, "type": "click"})
        after = post(url, "/recommend", {"user_id": users[0], "k": 5})[1]
        seen["after_event"] = after
        gone = top not in [i["item_id"] for i in after["items"]]
        log(
            f"POST /events {users[0]} clicked {titles.get(top, top)} -> {status}; "
            f"next answer no longer lists it: {gone}"
        )
        status, body = post(url, "/recommend", {"user_id": users[0], "k": 0})
        log(f"a bad request (k=0) -> {status}: {body['detail'][0]['msg']}")
    finally:
        stop(local_ray=ours)
    log("Serve shut down" + (" (and the local Ray)" if ours else ""))
    return seen


def post(url: str, path: str, body: dict) -> tuple[int, dict]:
    """POST JSON; the status and the JSON answer (also for 4xx/5xx)."""
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
