"""The serving adapters in-process: the model cache, the prediction log, the app's
internal-error handler and its answer counter. (The recommendation path itself:
``test_recommend.py``.) No Ray, no Serve, no network."""

import builtins
import json
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pytest
from fastapi import FastAPI

from recsys.data.new_items import ItemLog, NewItem
from recsys.data.records import PredictionRecord
from recsys.models.kinds import create_model
from recsys.recommend import PreparedModel, prepare
from serving import runtime, telemetry
from serving.guard import Guard
from serving.http_api import _internal_error
from serving.predlog import PredictionLog


@pytest.fixture(scope="module")
def served(tiny_multistage) -> PreparedModel:
    return prepare(tiny_multistage, "v1")


# -- model cache -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_root(tiny_multistage, tiny_train, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for version in ("v1", "v2", "v3"):
        tiny_multistage.save(root / version, data_checksum="abc")
    create_model("ease").fit(tiny_train).save(root / "ease")
    return root


def test_the_cache_loads_a_version_once_and_keeps_the_latest_two(model_root, served):
    cache = runtime.ModelCache(model_root, keep=2)
    v1 = cache.get("v1")
    assert isinstance(v1, PreparedModel) and v1.version == "v1" and v1.lineage == ["abc"]
    assert cache.get("v1") is v1
    np.testing.assert_array_equal(v1.item_ids, served.item_ids)
    np.testing.assert_allclose(v1.unit[:], served.unit[:], rtol=1e-6)
    v2, v3 = cache.get("v2"), cache.get("v3")  # v1 is the oldest: evicted
    assert cache.get("v3") is v3 and cache.get("v2") is v2
    again = cache.get("v1")
    assert again is not v1 and again.version == "v1"
    assert cache.get("v2") is v2  # used more recently than v3, which went instead
    assert cache.get("v3") is not v3


def test_the_cache_takes_an_absolute_path_as_the_version(model_root, tmp_path):
    cache = runtime.ModelCache(tmp_path / "elsewhere")
    assert cache.path("v1") == tmp_path / "elsewhere" / "v1"
    assert cache.path(str(model_root / "v2")) == model_root / "v2"
    assert cache.get(str(model_root / "v2")).version == str(model_root / "v2")


def test_a_loaded_version_is_warmed_before_it_serves(model_root):
    """What the multi-stage model builds on first use is built while the version loads: its
    EASE and RP3beta matrices joined (RP3beta dense), its trees compiled (a replica's first
    request paid 202 ms), in the replicas that run the candidates (a Runtime's cache)."""
    from recsys.models.kinds import load_model

    cold = load_model(model_root / "v1")
    assert not hasattr(cold.sources, "_products") and cold.ranker._forest is None
    assert runtime.ModelCache(model_root).get("v1").model.ranker._forest is None
    model = runtime.ModelCache(model_root, warm=True).get("v1").model
    assert all(hasattr(s, "_products") for s in [model.sources, *model.fold_sources])
    assert model.ranker._forest is not None and model.ranker._forest[0] is model.ranker.booster


def test_the_cache_serves_a_baseline_version_too(model_root):
    ease = runtime.ModelCache(model_root).get("ease")
    assert ease.model.kind == "ease" and ease.lineage == []


def test_each_version_is_served_with_the_items_logged_since_it_was_trained(model_root, tmp_path):
    """Every process folds the app's item log on its next ``get`` (one stat when nothing is
    new), in the log's order; a version loaded later folds all of it; a model of
    interactions alone (EASE) waits for its next training."""
    log = ItemLog(tmp_path / "items")
    cache = runtime.ModelCache(model_root, warm=True, new_items=log)
    v1 = cache.get("v1")
    assert cache.get("v1") is v1  # no log yet: nothing to fold
    log.append([NewItem(item_id="x1", title="Arrival", genres="Noir|G1")])  # a genre it never saw
    log.append([NewItem(item_id="x2", title="Second", genres="G2")])
    v1_new = cache.get("v1")
    assert v1_new is not v1 and v1_new.item_ids[-2:].tolist() == ["x1", "x2"]
    assert v1_new.title("x1") == "Arrival" and cache.get("v1") is v1_new
    assert len(v1.item_ids) == len(v1_new.item_ids) - 2  # the old one, as it was
    assert hasattr(v1_new.model.sources, "_products")  # warmed before its first request
    log.append(
        [NewItem(item_id="x1", title="Again"), NewItem(item_id="x3", title="T", genres="Noir")]
    )
    later = runtime.ModelCache(model_root, new_items=log).get("v2")  # folds the log whole
    assert cache.get("v1").item_ids[-3:].tolist() == later.item_ids[-3:].tolist()
    assert later.item_ids[-3:].tolist() == ["x1", "x2", "x3"] and later.title("x1") == "Arrival"
    assert len(cache.get("ease").item_ids) == len(
        runtime.ModelCache(model_root).get("ease").item_ids
    )


# -- prediction log --------------------------------------------------------------------------
def read_records(directory) -> list[dict]:
    files = sorted(directory.glob("predictions-*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


def record(request_id, **fields) -> PredictionRecord:
    """A record as ``prediction_record`` makes one (unvalidated, numpy arrays and all)."""
    required = {"ts": datetime.now(UTC), "request": {"user_id": "u"}, "model_version": "v"}
    required |= {"items": [], "scores": [], "cold_start": False}
    return PredictionRecord.model_construct(request_id=request_id, **(required | fields))


def test_the_log_writes_json_lines_with_arrays_as_lists(tmp_path):
    log = PredictionLog(tmp_path / "predictions")
    log.log(record("a", candidate_codes=np.array([3, 1, 2]), scores=[np.float32(0.5)]))
    log.log(record("b", candidate_scores=np.array([0.25, 1.0]), candidates=np.int64(7)))
    log.flush()
    a, b = read_records(tmp_path / "predictions")
    assert list(a) == list(PredictionRecord.model_fields)  # every field, in the schema's order
    assert a["candidate_codes"] == [3, 1, 2] and a["scores"] == [0.5]
    assert b["candidate_scores"] == [0.25, 1.0] and b["candidates"] == 7
    assert log.stats() == {
        "written": 2,
        "dropped": 0,
        "errors": 0,
        "queued": 0,
        "last_error": "",
        "healthy": True,
    }
    log.log(PredictionRecord.model_construct(request_id="c"))  # a record missing fields
    log.log(record("d"))
    log.flush()
    assert [r["request_id"] for r in read_records(tmp_path / "predictions")] == ["a", "b", "d"]
    assert log.stats()["errors"] == 1 and "AttributeError" in log.stats()["last_error"]
    log.close()
    assert not log._thread.is_alive()


def test_the_log_rotates_by_size(tmp_path):
    log = PredictionLog(tmp_path, max_bytes=1)
    for n in range(3):
        log.log(record(str(n)))
        log.flush()  # one batch each: every write finds the file full
    log.close()
    files = sorted(tmp_path.glob("predictions-*.jsonl"))
    assert len(files) == 3
    assert all(len(f.read_text().splitlines()) == 1 for f in files)
    assert sorted(r["request_id"] for r in read_records(tmp_path)) == ["0", "1", "2"]


def test_an_unwritable_directory_is_counted_never_raised(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    log = PredictionLog(blocker / "predictions")
    for n in range(3):
        log.log(record(str(n)))  # never raises
    log.flush()
    stats = log.stats()
    assert stats["errors"] == 3 and stats["written"] == 0 and not stats["healthy"]
    name = stats["last_error"].split(":")[0]
    assert issubclass(getattr(builtins, name), OSError), stats["last_error"]
    log.close()
    assert not log._thread.is_alive()


def test_a_full_queue_drops_and_counts(tmp_path):
    log = PredictionLog(tmp_path, capacity=1)
    log._stop.set()  # the writer stops taking records: the queue stays full
    log._thread.join(timeout=5)
    for n in range(3):
        log.log(record(str(n)))
    assert log.stats()["dropped"] == 2 and log.stats()["queued"] == 1


# -- the app's internal-error handler --------------------------------------------------------
@pytest.mark.filterwarnings("ignore::starlette.exceptions.StarletteDeprecationWarning")
def test_an_internal_error_hides_the_details_from_the_client():
    from starlette.testclient import TestClient  # its import warns about httpx

    app = FastAPI()
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    assert response.status_code == 500
    body = response.json()
    assert body["detail"] == "internal error"
    assert isinstance(body["error_id"], str) and len(body["error_id"]) == 12
    assert "secret detail" not in response.text and "Traceback" not in response.text


@pytest.mark.filterwarnings("ignore::starlette.exceptions.StarletteDeprecationWarning")
def test_every_answer_is_counted_by_route_and_status_500_included():
    from starlette.testclient import TestClient

    app = FastAPI()
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(Guard)

    @app.post("/recommend")
    def answer(k: int):
        if k < 0:
            raise RuntimeError("boom")
        return {"k": k}

    counted = telemetry.for_this_process().requests

    def count(route, status):
        return counted.labels(route, status)._value.get()

    before = {s: count("/recommend", s) for s in ("200", "422", "500")}
    other = count("other", "404")
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/recommend?k=3").status_code == 200
        assert client.post("/recommend?k=3").status_code == 200
        assert client.post("/recommend?k=x").status_code == 422
        assert client.post("/recommend?k=-1").status_code == 500
        assert client.get("/nowhere").status_code == 404
    assert count("/recommend", "200") == before["200"] + 2
    assert count("/recommend", "422") == before["422"] + 1
    assert count("/recommend", "500") == before["500"] + 1
    assert count("other", "404") == other + 1


# -- the serving processes' imports ----------------------------------------------------------
def _feast_checked(*first: str) -> bool:
    """Whether Feast's classes carry typeguard's checks in a fresh process that imports
    ``first`` before Feast."""
    code = "; ".join(
        [*(f"import {m}" for m in first), "import feast.entity as e"]
        + ["print('typeguard' in e.Entity.__init__.__code__.co_names)"]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip() == "True"


def test_a_serving_process_imports_feast_without_recompiling_its_classes():
    # A replica imports the serving package first, a pipeline task or the CLI the feature
    # store (the package recsys.features, as the apply of definitions checked before does):
    # Feast's classes are taken as written (typeguard's recompiling of them is what a new
    # replica waits for) ...
    assert not _feast_checked("serving")
    assert not _feast_checked("recsys.features.feast_cli")
    # ... while Feast's own CLI, which `feast_apply` runs on definitions new to the machine,
    # keeps them.
    assert _feast_checked("feast.cli.cli", "recsys.features.store")
