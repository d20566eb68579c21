"""The Serve app over real HTTP: every route, the bad inputs, the real-time event path, the
prediction log, and a model switch under load with no failed request."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import torch

from recsys import serve_ops
from recsys.config import WRITE_TOKEN_ENV, RecsysError, free_port
from recsys.data.io import interactions_checksum
from recsys.data.new_items import ItemLog
from recsys.experiments.sequential import srm_p_value
from recsys.experiments.spec import Experiment
from recsys.features.build import build_features
from recsys.features.store import FeatureStore
from recsys.models.kinds import load_model
from recsys.models.multistage import MultiStageConfig, MultiStageModel
from recsys.recommend import Request, prepare, recommend_frame
from recsys.recommend.added import with_added
from recsys.registry import Registry
from recsys.workflows import experiment as flow
from recsys.workflows.deploy import deploy
from recsys.workflows.rollout import running_rollout, users_decide
from serving.runtime import Runtime
from serving.schemas import AppArgs
from tests.helpers import TINY_MULTISTAGE, copy_feature_repo, make_interactions, side_tables

TINY = TINY_MULTISTAGE


WRITE_TOKEN = "integration-write-token"
BEARER = {"Authorization": f"Bearer {WRITE_TOKEN}"}


def app_config(**overrides) -> dict:
    """The app's Serve config with a write token in its replicas' environment (a user sets
    RECSYS_WRITE_TOKEN where Ray starts, or the chart's Secret; an app's runtime_env is the
    way to give one app its own)."""
    config = serve_ops.serve_config(**overrides)
    config["applications"][0]["runtime_env"] = {"env_vars": {WRITE_TOKEN_ENV: WRITE_TOKEN}}
    return config


@contextlib.contextmanager
def small_disk(path: Path, size: str = "32m"):
    """A size-limited tmpfs at ``path`` (root only); None where this process cannot mount."""
    path.mkdir(parents=True)
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )
    try:
        yield path if mounted else None
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def served(ray_session, tmp_path_factory):
    """Two tiny pipeline versions, a feature store, the composed app with no model yet; the
    event and prediction logs on a small disk of their own (where this process may mount)."""
    root = tmp_path_factory.mktemp("serving")
    with small_disk(root / "logs") as disk:
        yield from _served(root, disk)


def _served(root: Path, disk: Path | None):
    interactions = make_interactions()
    users, items = side_tables()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    checksum = interactions_checksum(interactions)  # the store below is built from these rows
    # v2 learns what a user does next: its ranker also reads the user's recent window
    for version, extra in (("v1", {"seed": 42}), ("v2", {"seed": 7, "crossfit": "user-time"})):
        config = MultiStageConfig(**TINY, **extra)
        model = MultiStageModel(config).fit(interactions, users, items)
        model.save(root / "models" / version, data_checksum=checksum)
    torch.set_num_threads(threads)
    repo = copy_feature_repo(root / "repo")
    FeatureStore(repo).refresh(interactions, users, items)
    port = free_port()
    args = {
        "model_root": str(root / "models"),
        "feature_repo": str(repo),
        "prediction_log_dir": str(root / "logs" / "predictions"),
        "events_dir": str(root / "logs" / "events"),
        "items_dir": str(root / "logs" / "items"),
    }
    serve_ops.apply(app_config(args=args, host="127.0.0.1", port=port))
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=60, headers=BEARER) as client:
        yield {
            "client": client,
            "url": url,
            "root": root,
            "args": args,
            "port": port,
            "disk": disk,
        }
    from ray import serve

    serve.shutdown()


def recommend(client, **body):
    return client.post("/recommend", json={"user_id": "u1", **body})


def test_before_a_model_is_named_it_is_not_ready_then_loads_in_place(served):
    client = served["client"]
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "no model loaded" in ready.json()["reason"]
    assert recommend(client).status_code == 503
    serve_ops.set_version("v1")
    assert serve_ops.wait_ready(served["url"])["model_version"] == "v1"
    # What a promotion over the Ray Client checks: the same probe, run on the head node.
    http = {"host": "127.0.0.1", "port": served["port"]}
    assert serve_ops.wait_ready_on_head(http, timeout_s=30)["model_version"] == "v1"


def test_recommend_returns_ranked_unseen_items_with_reasons(served):
    client = served["client"]
    body = recommend(client, k=5).json()
    assert body["user_id"] == "u1" and body["model_version"] == "v1"
    assert not body["cold_start"] and body["took_ms"] > 0
    items = body["items"]
    assert [i["rank"] for i in items] == [1, 2, 3, 4, 5]
    assert all(a["score"] >= b["score"] for a, b in zip(items, items[1:], strict=False))
    assert all(i["reason"].startswith("because you watched i") for i in items)
    history = set(make_interactions().query("user_id == 'u1'").item_id)
    assert not {i["item_id"] for i in items} & history
    with_seen = recommend(client, k=40, exclude_seen=False).json()["items"]
    assert {i["item_id"] for i in with_seen} & history
    no_g1 = recommend(client, k=5, filters={"exclude_genres": ["G1"]}).json()["items"]
    assert all(int(i["item_id"][1:]) % 4 != 1 for i in no_g1)
    diverse = recommend(client, k=5, diversity=0.9).json()["items"]
    assert len(diverse) == 5 and [i["rank"] for i in diverse] == [1, 2, 3, 4, 5]
    listed = sorted({f"i{n}" for n in range(40, 0, -7)} - history)  # across the graph's hops
    only = recommend(client, k=10, candidates=listed).json()["items"]
    assert sorted(i["item_id"] for i in only) == listed


def test_an_unknown_user_gets_popular_items_in_the_requested_genres(served):
    body = served["client"].post(
        "/recommend", json={"user_id": "stranger", "k": 3, "filters": {"include_genres": ["G2"]}}
    )
    assert body.status_code == 200
    answer = body.json()
    assert answer["cold_start"] and len(answer["items"]) == 3
    assert all(int(i["item_id"][1:]) % 4 == 2 for i in answer["items"])
    assert all(i["reason"] == "popular in G2" for i in answer["items"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"k": 5}, "user_id"),
        ({"user_id": "u1", "k": 0}, "k"),
        ({"user_id": "u1", "k": 101}, "k"),
        ({"user_id": "u1", "k": "5"}, "k"),
        ({"user_id": 7}, "user_id"),
        ({"user_id": "u1", "filters": {"colour": "red"}}, "colour"),
        ({"user_id": "u1", "shuffle": True}, "shuffle"),
        ({"user_id": "u1", "candidates": []}, "candidates"),
        ({"user_id": "u1", "candidates": [3]}, "candidates"),
    ],
)
def test_bad_requests_get_422_naming_the_field(served, body, field):
    response = served["client"].post("/recommend", json=body)
    assert response.status_code == 422
    assert any(field in map(str, err["loc"]) for err in response.json()["detail"])


def test_malformed_json_and_unknown_genres_get_422(served):
    client = served["client"]
    bad = client.post(
        "/recommend", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["type"] == "json_invalid"
    genre = recommend(client, filters={"include_genres": ["Nope"]})
    assert genre.status_code == 422
    assert genre.json()["detail"].startswith("filters.include_genres: unknown genre 'Nope'")


def test_nan_booleans_and_bytes_that_are_not_utf8_are_refused_and_counted(served):
    client = served["client"]
    nan = client.post(
        "/recommend",
        content=b'{"user_id": "u1", "diversity": NaN}',
        headers={"content-type": "application/json"},
    )
    assert nan.status_code == 422 and nan.json()["detail"][0]["loc"][-1] == "diversity"
    for value in (True, "0.5", float("inf")):
        body = {"user_id": "u1", "diversity": value}
        answer = client.post(
            "/recommend",
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 422, value
    garbled = client.post(
        "/recommend",
        content=b'{"user_id": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert garbled.status_code in (400, 422)
    metrics = client.get("/metrics").text
    count = re.search(r'recsys_requests_total\{route="/recommend",status="422"\} (\S+)', metrics)
    assert count and float(count.group(1)) >= 4
    document = client.get("/openapi.json").json()
    assert str(garbled.status_code) in document["paths"]["/recommend"]["post"]["responses"]


def test_the_openapi_document_names_every_body_and_status(served):
    paths = served["client"].get("/openapi.json").json()["paths"]
    events = paths["/events"]["post"]
    schema = events["requestBody"]["content"]["application/json"]["schema"]
    assert {"user_id", "item_id", "type"} <= set(schema["properties"])
    assert {"202", "422", "503"} <= set(events["responses"])
    assert {"200", "400", "422", "500", "503"} <= set(paths["/recommend"]["post"]["responses"])
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert "503" in paths["/readyz"]["get"]["responses"]


def test_a_store_that_cannot_serve_the_version_answers_503_with_the_reason(served):
    """A version trained on other data than the online store holds: never answered from
    another population's histories."""
    alien = served["root"] / "models" / "alien"
    shutil.copytree(served["root"] / "models" / "v1", alien)
    manifest = json.loads((alien / "manifest.json").read_text())
    manifest |= {"version": "alien", "data_checksum": "0" * 64, "data_lineage": ["0" * 64]}
    (alien / "manifest.json").write_text(json.dumps(manifest))
    client = served["client"]
    try:
        serve_ops.set_version("alien")
        deadline, ready = time.monotonic() + 60, None
        while time.monotonic() < deadline:
            ready = client.get("/readyz")
            if "alien" in ready.text:
                break
            time.sleep(0.3)
        assert ready.status_code == 503, ready.text
        assert "model alien was trained on 000000000000" in ready.json()["reason"]
        answer = recommend(client)
        assert answer.status_code == 503 and "holds data" in answer.json()["detail"]
    finally:
        serve_ops.set_version("v1")
    assert serve_ops.wait_ready(served["url"])["model_version"] == "v1"
    assert recommend(client).status_code == 200


def test_an_event_is_accepted_and_the_item_leaves_the_next_answer(served):
    client = served["client"]
    top = recommend(client, k=3).json()["items"][0]["item_id"]
    accepted = client.post("/events", json={"user_id": "u1", "item_id": top, "type": "click"})
    assert accepted.status_code == 202 and accepted.json()["pushed"]
    assert top not in [i["item_id"] for i in recommend(client, k=10).json()["items"]]
    rejected = client.post("/events", json={"user_id": "u1", "item_id": top, "type": "like"})
    assert rejected.status_code == 422 and rejected.json()["detail"].startswith("type:")
    newbie = client.post("/events", json={"user_id": "fresh", "item_id": "i3", "type": "view"})
    assert newbie.status_code == 202 and newbie.json()["new_user"]
    log = (served["root"] / "logs" / "events").glob("events-*.jsonl")
    assert sum(len(p.read_text().splitlines()) for p in log) == 2


def test_writes_need_the_token_and_the_event_reaches_the_next_answer(served):
    client, url = served["client"], served["url"]
    top = recommend(client, user_id="u5", k=3).json()["items"][0]["item_id"]
    event = {"user_id": "u5", "item_id": top, "type": "click"}
    with httpx.Client(base_url=url, timeout=60) as anonymous:
        assert anonymous.get("/healthz").status_code == 200  # probes stay open
        assert anonymous.post("/recommend", json={"user_id": "u5"}).status_code == 200
        missing = anonymous.post("/events", json=event)
        wrong = anonymous.post("/events", json=event, headers={"Authorization": "Bearer nope"})
    for answer, reason in ((missing, "no Authorization header"), (wrong, "wrong token")):
        assert answer.status_code == 401, answer.text
        assert reason in answer.json()["detail"] and WRITE_TOKEN_ENV in answer.json()["detail"]
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert top in [i["item_id"] for i in recommend(client, user_id="u5", k=3).json()["items"]]
    accepted = client.post("/events", json=event)
    assert accepted.status_code == 202 and accepted.json()["pushed"], accepted.text
    assert top not in [i["item_id"] for i in recommend(client, user_id="u5", k=10).json()["items"]]
    metrics = client.get("/metrics").text
    assert 'recsys_requests_total{route="/events",status="401"} 2.0' in metrics
    assert 'recsys_auth_failures_total{reason="wrong token",route="/events"} 1.0' in metrics
    security = client.get("/openapi.json").json()["paths"]["/events"]["post"]["security"]
    assert security == [{"bearer": []}]


def test_a_large_body_is_413_and_a_422_echoes_only_a_prefix(served):
    client = served["client"]
    huge = client.post("/recommend", json={"user_id": "x" * 70_000})
    assert huge.status_code == 413 and "65536" in huge.json()["detail"]
    chunks = (b'{"user_id": "' + b"x" * 1000 for _ in range(80))  # no Content-Length
    streamed = client.post("/events", content=chunks, headers={"content-type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    long_id = "y" * 60_000
    echoed = client.post("/recommend", json={"user_id": long_id})
    assert echoed.status_code == 422 and len(echoed.text) < 1_000, len(echoed.text)
    event = client.post("/events", json={"user_id": long_id, "item_id": "i1", "type": "view"})
    assert event.status_code == 422 and len(event.text) < 1_000, len(event.text)
    assert "60002 characters" in event.json()["detail"]


def test_a_future_event_time_is_taken_as_received_with_a_warning(served):
    client = served["client"]
    event = {"user_id": "u6", "item_id": "i2", "type": "view", "timestamp": 4e10}
    answer = client.post("/events", json=event)
    assert answer.status_code == 202, answer.text
    assert "taken as received" in answer.json()["warning"]


def test_a_full_disk_refuses_events_with_503_and_recommendations_go_on(served):
    """The logs' disk fills: an event is 503 (never 202 for one it did not keep), answers go
    on, /metrics says so; the disk frees: events are kept again."""
    disk, client = served["disk"], served["client"]
    if disk is None:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    events = disk / "events"
    before = sum(len(p.read_bytes().splitlines()) for p in events.glob("events-*.jsonl"))
    filler = disk / "filler"
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(b"\0" * 4096)
            out.flush()
    # The log's last page may still hold a few lines: events are kept until a line needs a
    # new page, and each 202 before the first 503 must be a kept line.
    event = {"user_id": "u7" + "-" * 250, "item_id": "i2", "type": "view"}
    try:
        answers = []
        while len(answers) < 20 and (not answers or answers[-1].status_code == 202):
            answers.append(client.post("/events", json=event))
        refused = answers[-1]
        assert refused.status_code == 503, refused.text
        assert "event log cannot keep events" in refused.json()["detail"]
        assert recommend(client, user_id="u7").status_code == 200
        metrics = client.get("/metrics").text
        assert "recsys_event_log_healthy 0.0" in metrics
        assert "recsys_event_log_errors_total 1.0" in metrics
        lines = [p.read_bytes() for p in events.glob("events-*.jsonl")]
        kept = len(answers) - 1
        assert sum(len(b.splitlines()) for b in lines) == before + kept  # no 202 lost
        assert all(b.endswith(b"\n") for b in lines if b)  # no half line
    finally:
        filler.unlink()
    again = client.post("/events", json=event)
    assert again.status_code == 202, again.text
    assert "recsys_event_log_healthy 1.0" in client.get("/metrics").text
    after = sum(len(p.read_bytes().splitlines()) for p in events.glob("events-*.jsonl"))
    assert after == before + kept + 1


def test_schemathesis_finds_nothing_against_the_live_app(served, tmp_path):
    """Generated requests against /openapi.json, every check: no 5xx, every status, content
    type and body as documented, invalid input refused, every schema-valid request accepted
    (the document names the served version's genres, and a clock-skewed event time is taken
    as received), and a route whose token is set refuses a request without it."""
    st = Path(sys.executable).with_name("st")
    proc = subprocess.run(
        [
            str(st),
            "run",
            f"{served['url']}/openapi.json",
            "--checks",
            "all",
            "--max-examples",
            "25",
            "--seed",
            "7",
            "--workers",
            "1",
            "--header",
            f"Authorization: Bearer {WRITE_TOKEN}",
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
            "--no-color",
            "--report-dir",
            str(tmp_path / "schemathesis"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # its cache (.schemathesis/) lands here, not in the work tree
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_metrics_docs_and_the_prediction_log(served):
    client = served["client"]
    for _ in range(3):
        recommend(client, k=2)
    metrics = client.get("/metrics").text
    assert 'recsys_model_info{version="v1"} 1.0' in metrics
    assert 'recsys_requests_total{route="/recommend",status="200"}' in metrics
    assert 'recsys_stage_latency_seconds_count{stage="rank"}' in metrics
    assert "recsys_prediction_log_healthy 1.0" in metrics
    assert client.get("/docs").status_code == 200
    assert "/recommend" in client.get("/openapi.json").json()["paths"]
    deadline = time.monotonic() + 10
    records = []
    while time.monotonic() < deadline and len(records) < 3:
        files = sorted((served["root"] / "logs" / "predictions").glob("predictions-*.jsonl"))
        records = [json.loads(line) for p in files for line in p.read_text().splitlines()]
        time.sleep(0.2)
    last = records[-1]
    assert last["model_version"] == "v1" and last["request"]["user_id"] == "u1"
    assert len(last["items"]) == 2 and last["candidates"] == len(last["candidate_codes"])
    assert set(last["stage_ms"]) == {"candidates", "rank", "order"}


def replica_ids() -> dict[str, set[str]]:
    from ray.serve.context import _get_global_client

    app = _get_global_client().get_serve_details()["applications"]["recsys"]
    return {
        name: {r["replica_id"] for r in d["replicas"]} for name, d in app["deployments"].items()
    }


def test_an_experiment_splits_users_stickily_interleaves_and_reports_per_arm(served, cli_here):
    """Experiments on the live composed app: started through the registry (whose versions are
    the app's model root) and the app's user_config; every answer names its arm and the version
    that served it, a user keeps their arm, the shares pass the sample-ratio check, /readyz
    checks both versions; the status
    reads the prediction log and the clicks posted as events; interleaving mixes both arms'
    lists; a stop without a winner cannot promote, and the control serves again."""
    client, root = served["client"], served["root"]
    registry = root / "experiment-registry"
    registry.mkdir()
    (registry / "versions").symlink_to(root / "models")
    logs = {"predictions": root / "logs" / "predictions", "events": root / "logs" / "events"}
    split = Experiment(name="e1", control="v1", challenger="v2", share=0.5, min_users=20)
    flow.start(str(registry), split)
    assert serve_ops.wait_ready(served["url"])["model_version"] == "v1"  # both versions ready
    arms, versions = {}, {"control": "v1", "challenger": "v2"}
    for n in range(160):
        body = recommend(client, user_id=f"visitor{n}", k=5).json()
        arm = body["experiment"]["arm"]
        assert body["experiment"]["name"] == "e1" and body["model_version"] == versions[arm]
        arms[f"visitor{n}"] = arm
        if arm == "challenger" or n % 3 == 0:  # the challenger's users click more
            event = {"user_id": f"visitor{n}", "item_id": body["items"][0]["item_id"]}
            assert client.post("/events", json={**event, "type": "click"}).status_code == 202
    for user in list(arms)[:20]:  # sticky: the same arm on every request
        assert recommend(client, user_id=user).json()["experiment"]["arm"] == arms[user]
    users = {arm: list(arms.values()).count(arm) for arm in versions}
    assert srm_p_value(users, split.expected_shares()) > 0.001 and min(users.values()) > 50
    time.sleep(1.0)  # the prediction log's writer thread
    result = json.loads(
        cli_here(
            "experiment",
            "status",
            "e1",
            "--json",
            "--registry",
            registry,
            "--predictions",
            logs["predictions"],
            "--events",
            logs["events"],
            "--report",
            root / "e1-reports",
        ).stdout
    )
    for arm in versions:  # an Evidently report per arm, the challenger's beside the control's
        assert "NDCG" in Path(result["reports"][arm]).read_text()
    by_arm = {a["arm"]: a for a in result["arms"]}
    assert {a: by_arm[a]["users"] for a in versions} == users
    assert by_arm["challenger"]["ctr"] > by_arm["control"]["ctr"] > 0
    assert by_arm["challenger"]["model_version"] == "v2" and result["srm_p_value"] > 0.001
    flow.stop(str(registry), "e1", **logs)
    assert serve_ops.wait_ready(served["url"])["model_version"] == "v1"
    assert recommend(client).json()["experiment"] is None

    mixed = Experiment(name="e2", control="v1", challenger="v2", mode="interleave")
    flow.start(str(registry), mixed)
    body = recommend(client, user_id="u2", k=6).json()
    teams = body["experiment"]["teams"]
    assert body["experiment"]["arm"] == "interleaved" and len(teams) == len(body["items"]) == 6
    assert len({i["item_id"] for i in body["items"]}) == 6 and set(teams) <= set(versions)
    with pytest.raises(RecsysError, match="no winner yet"):
        flow.stop(str(registry), "e2", promote=True, **logs)
    stopped = flow.stop(str(registry), "e2", **logs)
    assert stopped["serving"] == "v1" and stopped["stopped_at"] is not None
    assert serve_ops.wait_ready(served["url"])["model_version"] == "v1"
    # declared in the app's config (the chart's serve.experiment): start records it as it runs
    declared = {"name": "e4", "control": "v1", "challenger": "v2", "share": 0.2}
    serve_ops.set_user_config({"model_version": "v1", "experiment": declared})
    with pytest.raises(RecsysError, match=r"share=0.2 \(asked: 0.5\)"):
        flow.start(str(registry), Experiment(name="e4", control="v1", challenger="v2"))
    assert flow.start(str(registry), Experiment(**declared))["declared"]
    assert flow.read(str(registry), "e4")[0].share == 0.2
    assert recommend(client).json()["experiment"]["name"] == "e4"
    flow.stop(str(registry), "e4", **logs)
    # the pipeline's deploy step with --rollout experiment: the gated v2 as the champion's
    # challenger, started on the live app
    Registry(registry).promote("v1")
    import ray

    address = ray.get_runtime_context().gcs_address
    done = deploy("v2", str(registry), root / "rollout.yaml", rollout="experiment", share=0.3)
    assert done["experiment"] == "rollout-v2" and not done["live"]  # no address: config only
    done = deploy(
        "v2",
        str(registry),
        root / "rollout.yaml",
        rollout="experiment",
        share=0.3,
        ray_address=address,
    )
    assert done["live"] and done["serving"] == "v1"
    assert recommend(client).json()["experiment"]["name"] == "rollout-v2"
    assert flow.read(str(registry), "rollout-v2")[0].share == 0.3
    # the closed loop's last step: later users decide the rollout (too few here: no winner,
    # the experiment stops and the champion keeps serving, under load, no request failed)
    assert running_rollout(str(registry)).challenger == "v2"
    items = [i["item_id"] for i in recommend(client, k=8).json()["items"]]
    later = pd.DataFrame(
        [(f"later{n}", item, 4.0) for n in range(24) for item in items[n % 4 : n % 4 + 4]],
        columns=["user_id", "item_id", "rating"],
    )
    lines = []
    stopped = users_decide(str(registry), served["url"], root / "logs", later, 4, lines.append)
    assert stopped["winner"] is None and stopped["serving"] == "v1" and stopped["stopped_at"]
    assert stopped["requests_during_stop"] > 0 and stopped["failed_during_stop"] == 0
    assert sum(a["users"] for a in stopped["arms"]) >= 24
    assert lines[0].startswith("experiment rollout-v2: challenger v2 on 30% of the users")
    assert lines[-1].startswith("no winner (") and "champion v1 keeps serving" in lines[-1]
    assert running_rollout(str(registry)) is None
    # a challenger the store cannot serve (trained on other data, an earlier test's) is not ready
    flow.start(str(registry), Experiment(name="e3", control="v1", challenger="alien"))
    ready = client.get("/readyz")
    assert ready.status_code == 503 and "model alien was trained on" in ready.json()["reason"]
    flow.stop(str(registry), "e3", **logs)
    assert serve_ops.wait_ready(served["url"])["model_version"] == "v1"


def shadow_records(root: Path, name: str) -> list[dict]:
    files = sorted((root / "logs" / "predictions").glob("predictions-*.jsonl"))
    lines = [json.loads(line) for p in files for line in p.read_text().splitlines()]
    return [r for r in lines if r.get("experiment") == name and r["arm"] == "shadow"]


def shadow_count(client, outcome: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f'recsys_shadow_requests_total{{outcome="{outcome}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_a_shadow_challenger_answers_in_the_background_and_never_fails_a_user(served):
    """A shadow experiment on the live app: users get the control's answers, unchanged; the
    Shadow deployment (no replica until the experiment's first request) answers the requests
    too and logs each answer (arm shadow, naming the returned one), at most 16 in flight from
    the Ingress, the rest dropped and counted; the status pairs both arms' lists. A challenger
    that fails every request (alien: the store cannot serve it) fails no user's request, and
    /metrics counts its failures."""
    client, root = served["client"], served["root"]
    registry = root / "experiment-registry"  # the experiment test's (this module's order)
    logs = {"predictions": root / "logs" / "predictions", "events": root / "logs" / "events"}
    users = [f"shadowed{n}" for n in range(40)]
    plain = {
        u: [i["item_id"] for i in recommend(client, user_id=u, k=5).json()["items"]] for u in users
    }
    shadow = Experiment(
        name="s1", control="v1", challenger="v2", mode="shadow", share=1.0, min_users=5
    )
    flow.start(str(registry), shadow)

    def round_of_requests() -> None:
        for user in users:
            body = recommend(client, user_id=user, k=5).json()
            assert body["model_version"] == "v1" and body["experiment"]["arm"] == "control"
            assert [i["item_id"] for i in body["items"]] == plain[user]

    round_of_requests()  # the Shadow's first replica starts now: some are dropped meanwhile
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and shadow_count(client, "answered") < 16:
        time.sleep(0.5)
    round_of_requests()
    settled = lambda: sum(shadow_count(client, o) for o in ("answered", "dropped"))  # noqa: E731
    while time.monotonic() < deadline and settled() < 2 * len(users):
        time.sleep(0.5)
    time.sleep(1.0)  # the Shadow's prediction log writer thread
    answered, dropped = shadow_count(client, "answered"), shadow_count(client, "dropped")
    assert answered >= 16 and answered + dropped == 2 * len(users)
    records = shadow_records(root, "s1")
    assert len(records) == answered and {r["model_version"] for r in records} == {"v2"}
    assert all(r["shadow_of"] and r["request_id"] == f"{r['shadow_of']}.shadow" for r in records)
    result = flow.status(str(registry), "s1", **logs)
    control, challenger = result["arms"]
    assert control["requests"] == 2 * len(users) and challenger["requests"] == answered
    assert 0.0 <= result["overlap_at_10"] <= 1.0
    flow.stop(str(registry), "s1", **logs)

    failing = Experiment(name="s2", control="v1", challenger="alien", mode="shadow", share=1.0)
    flow.start(str(registry), failing)
    round_of_requests()
    while time.monotonic() < deadline and shadow_count(client, "failed") < 16:
        time.sleep(0.5)
    assert shadow_count(client, "failed") >= 16 and not shadow_records(root, "s2")
    flow.stop(str(registry), "s2", **logs)
    assert serve_ops.wait_ready(served["url"])["model_version"] == "v1"


def test_a_model_switch_under_load_fails_no_request_and_restarts_no_replica(served):
    before = replica_ids()
    stop, results = threading.Event(), []

    def load():
        with httpx.Client(base_url=served["url"], timeout=60) as client:
            while not stop.is_set():
                r = client.post("/recommend", json={"user_id": "u2", "k": 5})
                results.append((r.status_code, r.json().get("model_version")))

    workers = [threading.Thread(target=load) for _ in range(4)]
    [w.start() for w in workers]
    time.sleep(1.0)
    serve_ops.set_version("v2")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(v == "v2" for _, v in results[-8:]):
        time.sleep(0.2)
    time.sleep(1.0)
    stop.set()
    [w.join() for w in workers]
    statuses = [s for s, _ in results]
    assert statuses.count(200) == len(statuses) > 20, set(statuses)
    versions = [v for _, v in results]
    assert versions[0] == "v1" and versions[-1] == "v2"
    assert replica_ids() == before  # reconfigured in place


def test_the_fused_topology_serves_the_same_and_an_unwritable_log_fails_no_request(served):
    blocked = served["root"] / "not-a-directory"
    blocked.write_text("a file where the prediction log directory should be")
    args = {**served["args"], "prediction_log_dir": str(blocked / "predictions")}
    config = app_config(
        args=args, model_version="v2", host="127.0.0.1", port=served["port"], topology="fused"
    )
    serve_ops.apply(config)
    assert serve_ops.wait_ready(served["url"])["model_version"] == "v2"
    assert set(replica_ids()) == {"Ingress", "Shadow"}  # one deployment runs every stage
    client = served["client"]
    answers = [recommend(client, k=4) for _ in range(5)]
    assert all(a.status_code == 200 for a in answers)
    assert [i["rank"] for i in answers[0].json()["items"]] == [1, 2, 3, 4]
    # What is served is what was evaluated: v2's ranker reads the recent window too; its
    # answers over HTTP are the offline path's on the interactions the store was built from.
    model = load_model(served["root"] / "models" / "v2")
    assert "recent_5" in model.feature_names()
    added = ItemLog(served["args"]["items_dir"]).read()[0]  # schemathesis's, if it added any
    model = with_added(prepare(model, "v2"), added)
    users = ["u3", "u4", "u9", "u17"]  # no event in these tests touches them
    offline = recommend_frame(model, users, Request(k=4), history=make_interactions())
    for user in users:
        items = recommend(client, user_id=user, k=4).json()["items"]
        mine = offline[offline.user_id == user].sort_values("rank")
        assert [i["item_id"] for i in items] == mine.item_id.tolist(), user
        np.testing.assert_allclose([i["score"] for i in items], mine.score, rtol=1e-5, atol=1e-6)
    assert recommend(client, filters={"include_genres": ["Nope"]}).status_code == 422
    # a request's candidate list (business rules; the cold-item protocol): the same path
    listed = Request(k=4, candidates=[f"i{n}" for n in range(0, 40, 3)] + ["gone"])
    offline = recommend_frame(model, users, listed, history=make_interactions())
    for user in users:
        items = recommend(client, user_id=user, k=4, candidates=listed.candidates).json()["items"]
        mine = offline[offline.user_id == user].sort_values("rank")
        assert [i["item_id"] for i in items] == mine.item_id.tolist(), user
        assert {i["item_id"] for i in items} <= set(listed.candidates)
        assert recommend(client, user_id=user, candidates=["gone"]).json()["items"] == []
    unknown = recommend(client, candidates=["gone", "away"]).json()
    assert unknown["items"] == [] and unknown["unknown_candidates"] == 2
    deadline, metrics = time.monotonic() + 10, ""
    while time.monotonic() < deadline and "recsys_prediction_log_healthy 0.0" not in metrics:
        time.sleep(0.3)
        metrics = client.get("/metrics").text
    assert "recsys_prediction_log_healthy 0.0" in metrics
    errors = re.search(r'recsys_prediction_log_records\{state="errors"\} (\S+)', metrics)
    assert float(errors.group(1)) >= 1


def test_a_missing_or_unmaterialized_store_is_not_ready(served):
    """Never answer silently from an empty history: no store is a 503 that says so (over
    HTTP), and so is a store whose build was never materialized (the replica's own check, in
    this process, on a real Feast store)."""
    client, root = served["client"], served["root"]
    empty = copy_feature_repo(root / "empty_repo")  # definitions only: never built
    config = app_config(
        args={**served["args"], "feature_repo": str(empty)},
        model_version="v1",
        host="127.0.0.1",
        port=served["port"],
        topology="fused",
    )
    serve_ops.apply(config)
    reason = "is not a built Feast repository"
    ready = client.get("/readyz")
    assert ready.status_code == 503 and reason in ready.json()["reason"], ready.text
    answer = recommend(client)
    assert answer.status_code == 503 and reason in answer.json()["detail"]

    built = copy_feature_repo(root / "built_repo")  # built and applied, never materialized
    build_features(make_interactions(), *side_tables(), built / "data")
    FeatureStore(built).apply()
    runtime = Runtime(AppArgs(**{**served["args"], "feature_repo": str(built)}))
    assert "holds no state" in runtime.not_ready(runtime.models.get("v1"))


def test_new_items_are_served_by_every_replica_under_load_as_the_offline_path_ranks_them(served):
    """``POST /items`` (last in this module: it grows the served catalog): validated (the bad
    rows named, the good ones kept), logged, pushed to the online store, and recommendable on
    the next request of every replica, with no restart and no failed request; the answers are
    ``recsys recommend --new-items``'s (the one path, the same log)."""
    client, url, root = served["client"], served["url"], served["root"]
    config = app_config(
        args=served["args"], model_version="v1", host="127.0.0.1", port=served["port"]
    )
    serve_ops.apply(config)  # composed again: the log reaches three deployments' processes
    assert serve_ops.wait_ready(url)["model_version"] == "v1"
    before = replica_ids()
    stop, statuses = threading.Event(), []

    def load():
        with httpx.Client(base_url=url, timeout=60) as anyone:
            while not stop.is_set():
                statuses.append(anyone.post("/recommend", json={"user_id": "u2"}).status_code)

    worker = threading.Thread(target=load)
    worker.start()
    rows = [
        {"item_id": "x1", "title": "The first", "genres": ["G1", "Drama"], "release_year": 1985},
        {"item_id": "x3", "title": "The third", "genres": "G3|Drama", "release_year": 1995},
        {"item_id": "x9", "genres": "G1"},
        {"item_id": "i3", "title": "Known"},
    ]
    try:
        with httpx.Client(base_url=url, timeout=60) as anonymous:
            assert anonymous.post("/items", json={"items": rows}).status_code == 401
        refused = client.post(
            "/items", json=[rows[2], {**rows[0], "release_year": "1985"}, rows[1]]
        )
        assert refused.status_code == 422, refused.text
        detail = refused.json()["detail"]
        assert detail.startswith(
            "nothing kept: row 0 ('x9'): missing title; row 1 ('x1'): release_year:"
        )
        assert not ItemLog(root / "logs" / "items").ids() & {"x1", "x3"}  # the good row waits too
        listed = ["x1", "x3"]
        assert recommend(client, user_id="u9", candidates=listed).json()["unknown_candidates"] == 2
        t0 = time.monotonic()
        answer = client.post("/items", json={"items": [rows[0], rows[1], rows[3]]})
        assert answer.status_code == 202, answer.text
        body = answer.json()
        assert body == {"accepted": listed, "known": ["i3"], "pushed": True}
        retry = client.post("/items", json={"items": rows[:2]}).json()  # a client's retry
        assert retry["accepted"] == [] and retry["known"] == listed
        got = {}
        while time.monotonic() - t0 < 60 and not got.get("items"):
            got = recommend(client, user_id="u9", k=1, candidates=listed).json()
        print(f"new item served {time.monotonic() - t0:.2f} s after its POST")
        assert [i["item_id"] for i in got["items"]] == ["x1"]  # cluster 1's
        assert got["items"][0]["reason"].startswith("because you watched ")
    finally:
        stop.set()
        worker.join()
    assert statuses and set(statuses) == {200}
    assert replica_ids() == before  # no restart
    store = FeatureStore(Path(served["args"]["feature_repo"])).open()
    profile = store.get_online_features(["item_profile:genres"], [{"item_id": "x1"}]).to_dict()
    assert profile["genres"] == [["G1", "Drama"]]
    # what is served is what was evaluated: the offline path on the same log
    model = load_model(root / "models" / "v1")
    prepared = with_added(prepare(model, "v1"), ItemLog(root / "logs" / "items").read()[0])
    users = ["u3", "u4", "u9", "u17"]  # no event in these tests touches them
    for request in (Request(k=2, candidates=[*listed, "i0", "i4"]), Request(k=6)):
        offline = recommend_frame(prepared, users, request, history=make_interactions())
        for user in users:
            sent = {"user_id": user, "k": request.k, "candidates": request.candidates}
            items = client.post("/recommend", json=sent).json()["items"]
            mine = offline[offline.user_id == user].sort_values("rank")
            assert [i["item_id"] for i in items] == mine.item_id.tolist(), (user, request)
            np.testing.assert_allclose(
                [i["score"] for i in items], mine.score, rtol=1e-5, atol=1e-6
            )
