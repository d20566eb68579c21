"""The quickstart's serving part: start the champion's app locally, send it real HTTP
requests (known users, a cold-start visitor, an event, new items, a bad request), print the
answers; and
the JSON POST the closed loop sends its traffic with."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from recsys.config import local_ray
from recsys.data.io import read_titles
from recsys.serve_local import stop
from recsys.serve_ops import start_local


class AppStart:
    """The Serve app on ``model_version`` (under ``model_root``), started locally in a thread
    (:func:`~recsys.serve_ops.start_local`) so that its replicas load while the caller goes on
    (the quickstart's temporal run); its lines are kept until :meth:`wait` prints them."""

    def __init__(
        self,
        workdir: Path,
        model_root: Path,
        model_version: str,
        feature_repo: Path | None,
        catalog: Path | None,
        port: int = 8000,
    ) -> None:
        self.lines: list[str] = []
        self.url: str | None = None
        self.error: BaseException | None = None
        self.ready_s = 0.0
        args = (model_root, model_version, feature_repo, catalog, workdir, port, self.lines.append)
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._start, args=args, daemon=True)
        self._thread.start()

    def _start(self, *args) -> None:
        try:
            self.url = start_local(*args)
        except BaseException as exc:  # raised to the caller by wait()
            self.error = exc
        self.ready_s = round(time.perf_counter() - self._t0, 1)

    def wait(self, log=print) -> str:
        """The app's URL once it is ready, after printing its lines.

        Raises:
            What the start raised (nothing of it is left running: ``start_local``'s own rule).
        """
        self._thread.join()
        for line in self.lines:
            log(line)
        if self.error is not None:
            raise self.error
        return self.url

    def abandon(self) -> None:
        """The caller failed before :meth:`wait`: wait for the start, then stop what it
        started (Serve, and the local Ray when this process started it)."""
        self._thread.join()
        stop(local_ray=local_ray() is not None)


def serve_demo(app: AppStart, catalog: Path | None, users: list[str], log=print) -> dict:
    """Wait for ``app`` (:class:`AppStart`), send it real HTTP requests (known users, a
    cold-start visitor, an event, new items, a bad request), print the answers, shut Serve
    down.

    Returns:
        What the demo saw (answers, readiness time) for tests.
    """
    url = app.wait(log)
    ours = local_ray() is not None  # this process started it (here or to train): it goes too
    seen: dict = {"ready_s": app.ready_s}
    try:
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
        seen["new_items"] = new_items_demo(url, users, log)
        status, body = post(url, "/recommend", {"user_id": users[0], "k": 0})
        log(f"a bad request (k=0) -> {status}: {body['detail'][0]['msg']}")
    finally:
        stop(local_ray=ours)
    log("Serve shut down" + (" (and the local Ray)" if ours else ""))
    return seen


def new_items_demo(url: str, users: list[str], log=print) -> dict:
    """``POST /items`` with :data:`NEW_ITEMS` (nobody has rated them; a second run finds them
    known), then each user's pick among them, with the time from the POST to the answer."""
    t0 = time.perf_counter()
    status, body = post(url, "/items", {"items": NEW_ITEMS})
    added = len(body.get("accepted", [])) + len(body.get("known", []))
    where = "pushed to the online store" if body.get("pushed") else "logged"
    if body.get("known") and not body.get("accepted"):
        where = "in the catalog since an earlier run"
    log(f"POST /items: {added} new items nobody has rated ({where}) -> {status}")
    listed = [item["item_id"] for item in NEW_ITEMS]
    names = {item["item_id"]: item["title"] for item in NEW_ITEMS}
    picks = {}
    for user in users:
        answer = post(url, "/recommend", {"user_id": user, "k": 1, "candidates": listed})[1]
        took = time.perf_counter() - t0
        picks[user] = answer["items"][0] if answer.get("items") else None
        pick = picks[user]
        shown = f"{names[pick['item_id']]} — {pick['reason']}" if pick else "none yet"
        log(f"  new for user {user} ({took:.1f} s after the POST): {shown}")
    return {"status": status, "body": body, "picks": picks}


# Items the demo adds at run time: their text is all the model knows of them.
NEW_ITEMS = [
    {
        "item_id": "new-galaxy-patrol",
        "title": "Galaxy Patrol",
        "genres": ["Action", "Adventure", "Sci-Fi"],
        "release_year": 1998,
        "description": "A starship crew fights the empire across the galaxy.",
    },
    {
        "item_id": "new-wedding-bells",
        "title": "Wedding Bells for Two",
        "genres": ["Comedy", "Romance"],
        "release_year": 1998,
        "description": "Two rival wedding planners fall in love.",
    },
    {
        "item_id": "new-long-winter",
        "title": "The Long Winter",
        "genres": ["Drama", "War"],
        "release_year": 1998,
        "description": "A family survives the siege of a city in wartime.",
    },
    {
        "item_id": "new-little-dragon",
        "title": "The Little Dragon",
        "genres": ["Animation", "Children's"],
        "release_year": 1998,
        "description": "A young dragon learns to fly.",
    },
]


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
