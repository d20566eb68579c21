"""Processes racing to promote and roll back never tear the pointer or lose an update.

Six writer processes promote random versions and roll back while a reader process re-reads
``champion.json`` in a tight loop. The reader must always find a whole pointer naming a
registered version (this fails without the temp-file rename), and replaying the history must
give exactly the final pointer and its ``previous`` stack (this fails without the lock: two
racing read-modify-writes lose one update while both write an event).
"""

import json
import multiprocessing as mp
import random
from pathlib import Path

import pytest

from recsys.config import RecsysError
from recsys.registry import Champion, Registry

WORKERS = 6
PROMOTIONS = 15
ROLLBACKS = 4
VERSIONS = [f"v{i}" for i in range(5)]
TIMEOUT_S = 60


def _writer(root: str, seed: int, start, results) -> None:
    """Promote and roll back in random order; report the operations that changed the pointer."""
    reg = Registry(root)
    rng = random.Random(seed)
    ops = ["promote"] * PROMOTIONS + ["rollback"] * ROLLBACKS
    rng.shuffle(ops)
    start.wait()
    done = []
    for i, op in enumerate(ops):
        reason = f"w{seed}-{i}"  # unique: tells our change from a no-op returning another's
        if op == "promote":
            champion = reg.promote(rng.choice(VERSIONS), reason=reason)
        else:
            try:
                champion = reg.rollback(reason=reason)
            except RecsysError:
                continue  # nothing to roll back to just now
        if champion.reason == reason:
            done.append(reason)
    results.put(("writer", done))


def _reader(root: str, start, stop, results) -> None:
    """Read the pointer as fast as possible; report how many reads and every bad one."""
    path = Path(root) / "champion.json"
    start.wait()
    reads, bad = 0, []
    while not (stop.is_set() and reads):  # at least one read, however late this process runs
        try:
            text = path.read_text()
            champion = Champion.model_validate_json(text)
            if champion.version not in VERSIONS:
                bad.append(f"dangling: {champion.version}")
        except (OSError, ValueError) as exc:
            bad.append(f"{type(exc).__name__}: {str(exc).splitlines()[:2]}")
        reads += 1
    results.put(("reader", (reads, bad)))


@pytest.fixture
def root(tmp_path, interactions):
    # Imported here, not at the top: spawned processes import this module, and recsys.models
    # would make each of them import torch.
    from recsys.models.kinds import create_model

    reg = Registry(tmp_path / "reg")
    model = create_model("popularity").fit(interactions)
    for version in VERSIONS:
        reg.register(model.save(tmp_path / "models" / version, version=version))
    reg.promote(VERSIONS[0], reason="initial")
    return str(tmp_path / "reg")


def replay(events):
    """The pointer that the promote/rollback events describe, checking each one's ``previous``."""
    current, stack = None, []
    for e in events:
        assert e.previous == current, f"{e.action} {e.version} at {e.at}: lost update"
        if e.action == "promote":
            stack = [current, *stack][:50] if current else stack
        else:
            assert stack and stack[0] == e.version, f"rollback to {e.version} at {e.at}"
            stack = stack[1:]
        current = e.version
    return current, stack


def test_parallel_promotions_and_rollbacks_keep_pointer_and_history_consistent(root):
    ctx = mp.get_context("spawn")
    start, stop, results = ctx.Event(), ctx.Event(), ctx.Queue()
    writers = [ctx.Process(target=_writer, args=(root, s, start, results)) for s in range(WORKERS)]
    reader = ctx.Process(target=_reader, args=(root, start, stop, results))
    for p in [*writers, reader]:
        p.start()
    start.set()
    done, reads, bad = [], 0, []
    try:
        for _ in writers:
            kind, payload = results.get(timeout=TIMEOUT_S)
            assert kind == "writer"
            done += payload
        stop.set()
        kind, (reads, bad) = results.get(timeout=TIMEOUT_S)
        assert kind == "reader"
    finally:
        stop.set()
        for p in [*writers, reader]:
            p.join(timeout=TIMEOUT_S)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in [*writers, reader])
    assert not bad, f"{len(bad)} of {reads} reads saw a torn or dangling pointer: {bad[:3]}"
    assert reads > 0 and len(done) > WORKERS * PROMOTIONS // 2  # the processes did race

    reg = Registry(root)
    champion = reg.champion()
    assert champion is not None and champion.version in VERSIONS
    events = [e for e in reg.history() if e.action != "register"]
    assert sorted(e.reason for e in events) == sorted(["initial", *done])
    assert events[-1].version == champion.version
    assert replay(events) == (champion.version, champion.previous)
    on_disk = json.loads((Path(root) / "champion.json").read_text())
    assert Champion.model_validate(on_disk) == champion
