"""A shadow experiment: the Ingress's mirror (bounded, never waits or raises), the shadow
answer's record (logged, never read as served), and the status that pairs both arms' lists of
the same requests. The app over HTTP: tests/integration/test_serving.py."""

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from recsys.data.records import PredictionRecord, record_line
from recsys.experiments import metrics
from recsys.experiments.assignment import mirrored
from recsys.experiments.spec import Experiment
from recsys.models.base import Candidates
from recsys.monitoring.logs import load_experiment_answers, load_predictions
from recsys.recommend.batch import Served
from recsys.recommend.stages import Answer, Recommendation
from recsys.state.user import UserState
from serving import arms
from serving.predlog import prediction_record
from serving.schemas import ExperimentArm, RecommendRequest, RecommendResponse
from serving.shadow import Mirror, Mirrored, Replay, shadow_record

T0 = datetime(2026, 12, 1, tzinfo=UTC)
SHADOW = Experiment(name="s1", control="v1", challenger="v2", mode="shadow", share=1.0)
COLUMNS = [*metrics.ANSWER_COLUMNS, "request"]


def served(version: str, items: list[str]) -> Served:
    recs = [
        Recommendation(item_id=i, score=1.0, rank=n, reason=version) for n, i in enumerate(items, 1)
    ]
    candidates = Candidates(np.arange(len(items)), known=True)
    return Served(Answer("u1", recs, False), candidates, np.zeros(len(items)), {}, {"rank": 1e-3})


class Handle:
    """A DeploymentHandle's shape: ``remote`` returns an awaitable response (the Shadow's
    outcome per request of the batch)."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour, self.release, self.cancelled = behaviour, asyncio.Event(), 0
        self.batches: list[int] = []

    def remote(self, batch: list[Mirrored]):
        handle = self
        handle.batches.append(len(batch))

        class Response:
            def __await__(self):
                return self._wait().__await__()

            async def _wait(self):
                if handle.behaviour == "raise":
                    raise RuntimeError("the challenger failed")
                await handle.release.wait()
                return ["answered"] * (len(batch) - 1) + ["failed"]

            def cancel(self):
                handle.cancelled += 1

        return Response()


def mirror_run(behaviour: str, sends: int, timeout_s: float = 5.0, **sizes) -> tuple:
    counts: dict[str, int] = {}

    async def go():
        handle = Handle(behaviour)
        count = lambda o: counts.__setitem__(o, counts.get(o, 0) + 1)  # noqa: E731
        mirror = Mirror(handle, count, timeout_s=timeout_s, **sizes)
        body = RecommendRequest(user_id="u1", k=3)
        for n in range(sends):
            mirror.send(Mirrored("s1", "v2", body, f"r{n}", T0))
        await asyncio.sleep(0.1)  # the wait for a batch to fill ends
        held = (len(mirror.waiting), mirror.in_flight)
        handle.release.set()
        while mirror.in_flight or mirror.waiting:
            await asyncio.sleep(0.01)
        return held, handle

    held, handle = asyncio.run(go())
    return counts, held, handle


def test_the_mirror_sends_batches_keeps_a_bounded_number_and_counts_every_outcome():
    sizes = {"capacity": 10, "batch": 4, "batches": 2, "wait_s": 0.02}
    counts, held, handle = mirror_run("wait", sends=13, **sizes)
    # two calls of 4 in flight, 2 waiting (capacity 10), 3 dropped; then the rest in one call
    assert held == (2, 8) and handle.batches == [4, 4, 2]
    assert counts == {"dropped": 3, "answered": 3 + 3 + 1, "failed": 3}
    counts, _, handle = mirror_run("raise", sends=3, **sizes)  # never raised to the caller
    assert counts == {"failed": 3} and handle.batches == [3]  # what the wait gathered
    counts, _, handle = mirror_run("wait", sends=2, timeout_s=0.01, **sizes)
    assert counts == {"timeout": 2} and handle.cancelled == 1


def test_the_mirror_sends_a_shadow_experiments_share_of_the_requests_only():
    sent = []

    class Recorder(Mirror):
        def send(self, m):
            sent.append(m.request_id)

    mirror = Recorder(None, lambda o: None)  # no event loop needed: send is replaced
    body = RecommendRequest(user_id="u1", k=3)
    half = SHADOW.model_copy(update={"share": 0.5})
    answer = served("v1", ["a"])
    for n in range(400):
        mirror.offer(half, body, f"r{n}", answer)
        mirror.offer(half.model_copy(update={"mode": "split"}), body, f"r{n}", answer)
        mirror.offer(None, body, f"r{n}", answer)
    assert sent == [f"r{n}" for n in range(400) if mirrored("s1", f"r{n}", 0.5)]
    assert 150 < len(sent) < 250


def test_the_challenger_answers_from_the_users_state_the_controls_answer_was_made_from():
    """However late the Shadow runs, it replays the state the control read (not the store's,
    which may hold the clicks on the control's answer by then); a request without one reads
    the store."""
    sent = []

    class Recorder(Mirror):
        def send(self, m):
            sent.append(m)

    then = UserState("u1", seen=("a", "b"), recent=("b", "a"))
    answer = dataclasses.replace(
        served("v1", ["c"]), state=then, features={"x": 1, "history_len": 2}
    )
    Recorder(None, lambda o: None).offer(SHADOW, RecommendRequest(user_id="u1"), "r1", answer)
    (request,) = sent
    assert request.state == then and request.features == {"x": 1}

    class Store:
        def read_users(self, users):
            return [(UserState(u, seen=("a", "b", "c")), {"x": 2}) for u in users]

    unknown = Mirrored("s1", "v2", RecommendRequest(user_id="u2"), "r2", T0)
    replay = Replay(Store(), [request, unknown])
    (u1, f1), (u2, f2) = replay.read_users(["u1", "u2"])
    assert (u1, f1) == (then, {"x": 1}) and u2.seen == ("a", "b", "c") and f2 == {"x": 2}


def test_a_shadow_experiments_user_gets_the_controls_answer():
    asked = []

    async def run(ask):
        asked.append(ask.version)
        return served(ask.version, ["a", "b"])

    version, answer, arm = asyncio.run(
        arms.serve(run, "v1", SHADOW, RecommendRequest(user_id="u1"), "r1")
    )
    assert (version, arm.arm, asked) == ("v1", "control", ["v1"])


def test_a_shadow_answer_is_logged_as_the_challengers_and_never_read_as_served(tmp_path):
    body = RecommendRequest(user_id="u1", k=3)
    control = served("v1", ["a", "b", "c"])
    response = RecommendResponse(
        user_id="u1",
        model_version="v1",
        items=control.answer.items,
        cold_start=False,
        took_ms=2.0,
        experiment=ExperimentArm(name="s1", arm="control"),
    )
    returned = prediction_record("r1", body, response, control, 2.0)
    shadow = shadow_record(Mirrored("s1", "v2", body, "r1", T0), served("v2", ["c", "x", "y"]), 4.0)
    parsed = PredictionRecord.model_validate_json(record_line(shadow))
    assert (parsed.arm, parsed.shadow_of, parsed.model_version, parsed.ts) == (
        "shadow",
        "r1",
        "v2",
        T0,
    )
    with pytest.raises(ValueError, match="names the answer it shadows"):
        PredictionRecord.model_validate_json(record_line(shadow | {"shadow_of": None}))
    (tmp_path / "predictions-1.jsonl").write_text(
        f"{record_line(returned)}\n{record_line(shadow)}\n"
    )
    served_rows, _ = load_predictions(tmp_path)
    assert set(served_rows["request_id"]) == {"r1"}  # monitoring sees what users got
    rows, warnings = load_experiment_answers(tmp_path, "s1")
    assert not warnings and list(rows["arm"]) == ["control"] * 3 + ["shadow"] * 3
    assert set(rows["request"]) == {"r1"}


def shadow_rows(n_users: int, hit: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """Per user one returned answer and its shadow; each list's first item is what the user
    did next with the arm's probability (an offline replay for the shadow)."""
    rng = np.random.default_rng(seed)
    rows = []
    for n in range(n_users):
        ts = T0 + timedelta(seconds=n)
        for arm, version, rid in (("control", "v1", f"r{n}"), ("shadow", "v2", f"r{n}.shadow")):
            target = rng.random() < hit[arm]
            items = ["a", "b", "c"] if arm == "control" else ["c", "d", "e"]
            for rank, item in enumerate(items, start=1):
                row = (rid, ts, f"u{n}", version, arm, arm, item, rank, 3.0)
                rows.append((*row, int(target and rank == 1), f"r{n}"))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_a_shadow_is_judged_by_its_paired_lists_against_what_users_did_next():
    spec = SHADOW.model_copy(update={"min_users": 50})
    result = metrics.status(spec, shadow_rows(800, {"control": 0.1, "shadow": 0.3}))
    control, challenger = result["arms"]
    assert (control["arm"], challenger["arm"]) == ("control", "challenger")
    assert control["requests"] == challenger["requests"] == 800
    assert challenger["hit_at_10"] > control["hit_at_10"]
    assert result["overlap_at_10"] == pytest.approx(1 / 3)  # "c" in both lists
    decision = result["decision"]
    assert (
        decision["winner"] == "challenger" and decision["method"] == "mSPRT, shadow (paired lists)"
    )
    same = metrics.status(spec, shadow_rows(800, {"control": 0.2, "shadow": 0.2}, seed=1))
    assert same["decision"]["winner"] is None
    lists = metrics.arm_lists(shadow_rows(20, {"control": 0.5, "shadow": 0.5}))
    assert set(lists) == {"control", "challenger"}


def test_the_shadows_budget_spaces_its_batches_by_the_cpu_they_used(monkeypatch):
    from serving import shadow

    clock = {"wall": 100.0, "cpu": 5.0}
    slept = []

    async def sleep(seconds):
        slept.append(round(seconds, 6))
        clock["wall"] += seconds

    monkeypatch.setattr(shadow.time, "monotonic", lambda: clock["wall"])
    monkeypatch.setattr(shadow.time, "process_time", lambda: clock["cpu"])
    monkeypatch.setattr(shadow.asyncio, "sleep", sleep)
    budget = shadow.CpuBudget(0.1)  # a tenth of a CPU, as the replica reserved from Ray

    async def batches():
        for _ in range(2):
            async with budget:
                clock["cpu"] += 0.02  # 20 ms of CPU in 25 ms of wall time
                clock["wall"] += 0.025

    asyncio.run(batches())
    # the first starts at once; the second 0.2 s after the first began (0.02 / 0.1)
    assert slept == [0.0, pytest.approx(0.175)]
