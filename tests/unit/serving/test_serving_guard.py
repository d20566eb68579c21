"""The guard in front of the routes (tokens, body size, counting) and the exact OpenAPI
document, on a real ASGI stack in-process (no Ray)."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from serving import guard, openapi, telemetry
from serving.guard import GuardSettings


@pytest.fixture
def app():
    api = FastAPI()
    api.add_middleware(guard.Guard)

    @api.post("/events")
    async def events(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    @api.post("/recommend")
    async def recommend(request: Request) -> dict:
        return {"bytes": len(await request.body())}

    @api.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    before = guard.settings()
    yield api
    guard.configure(before)


def metrics() -> str:
    return telemetry.for_this_process().render(None).decode()


def test_without_tokens_every_route_is_open(app):
    guard.configure(GuardSettings())
    client = TestClient(app)
    assert client.post("/events", content=b"{}").status_code == 200
    assert client.post("/recommend", content=b"{}").status_code == 200


def test_a_write_token_guards_writes_only_in_constant_time(app):
    guard.configure(GuardSettings(write_token="s3cret"))
    client = TestClient(app)
    for headers, reason in (
        ({}, "no Authorization header"),
        ({"Authorization": "Basic czNjcmV0"}, "not a bearer token"),
        ({"Authorization": "Bearer "}, "not a bearer token"),
        ({"Authorization": "Bearer s3cre"}, "wrong token"),
    ):
        answer = client.post("/events", content=b"{}", headers=headers)
        assert answer.status_code == 401 and reason in answer.json()["detail"], headers
        assert "RECSYS_WRITE_TOKEN" in answer.json()["detail"]
        assert answer.headers["www-authenticate"] == 'Bearer realm="recsys"'
    good = client.post("/events", content=b"{}", headers={"Authorization": "bearer s3cret"})
    assert good.status_code == 200
    assert client.post("/recommend", content=b"{}").status_code == 200  # reads stay open
    assert client.get("/healthz").status_code == 200
    text = metrics()
    assert 'recsys_auth_failures_total{reason="wrong token",route="/events"}' in text
    assert 'recsys_requests_total{route="/events",status="401"}' in text


def test_a_read_token_guards_recommendations(app):
    guard.configure(GuardSettings(read_token="r", write_token="w"))
    client = TestClient(app)
    assert client.post("/recommend", content=b"{}").status_code == 401
    assert (
        client.post("/recommend", content=b"{}", headers={"Authorization": "Bearer w"}).status_code
        == 401
    )
    ok = client.post("/recommend", content=b"{}", headers={"Authorization": "Bearer r"})
    assert ok.status_code == 200


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("RECSYS_WRITE_TOKEN", "w")
    monkeypatch.delenv("RECSYS_READ_TOKEN", raising=False)
    settings = GuardSettings.from_env(max_body_bytes=2048)
    assert (settings.write_token, settings.read_token, settings.max_body_bytes) == ("w", None, 2048)
    monkeypatch.setenv("RECSYS_WRITE_TOKEN", "")  # set but empty: no token, not an empty one
    assert GuardSettings.from_env().write_token is None


def test_a_body_over_the_limit_is_413_before_the_app_reads_it(app):
    guard.configure(GuardSettings(max_body_bytes=1024))
    client = TestClient(app)
    assert client.post("/events", content=b"x" * 1024).json() == {"bytes": 1024}
    declared = client.post("/events", content=b"x" * 1025)
    assert declared.status_code == 413 and "1024 bytes" in declared.json()["detail"]
    streamed = client.post("/events", content=iter([b"x" * 600, b"x" * 600]))  # chunked
    assert streamed.status_code == 413
    small = client.post("/events", content=iter([b"x" * 300, b"x" * 300]))
    assert small.json() == {"bytes": 600}  # handed on whole


def test_the_document_names_the_served_genres_and_the_tokens():
    api = FastAPI()

    @api.post("/events", responses={401: {"description": "token"}})
    def events() -> dict:
        return {}

    @api.post("/recommend", responses={401: {"description": "token"}})
    def recommend(body: dict) -> dict:
        return {}

    base = api.openapi()
    base.setdefault("components", {}).setdefault("schemas", {})["Filters"] = {
        "properties": {"include_genres": {"type": "array"}, "exclude_genres": {"type": "array"}}
    }
    doc = openapi.document(
        base,
        genres=["Comedy", "Drama"],
        settings=GuardSettings(write_token="w"),
        version="v1",
        kind="multistage",
    )
    filters = doc["components"]["schemas"]["Filters"]["properties"]
    assert filters["include_genres"]["items"]["enum"] == ["Comedy", "Drama"]
    assert doc["paths"]["/events"]["post"]["security"] == [{"bearer": []}]
    assert "security" not in doc["paths"]["/recommend"]["post"]
    assert "401" not in doc["paths"]["/recommend"]["post"]["responses"]  # it cannot happen
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "model version v1 (kind multistage)" in doc["info"]["description"]
    assert "enum" not in base["components"]["schemas"]["Filters"]["properties"]["include_genres"]
    none = openapi.document(base, genres=[], settings=GuardSettings(), version="v2", kind="ease")
    assert none["components"]["schemas"]["Filters"]["properties"]["exclude_genres"]["maxItems"] == 0
    assert "securitySchemes" not in none["components"]
