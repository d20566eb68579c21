"""The closed loop's simulated users: MovieLens-100k's held-out users replayed, a drifted
synthetic population (its first users before the retraining, the rest after it: the users of
the rollout's experiment), and a steady background load that counts every failed request."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from recsys.data.io import ITEM, USER
from recsys.data.synthetic import generate
from recsys.data.synthetic_config import SynthConfig
from recsys.workflows.http_demo import post


def replay_heldout(url: str, test: pd.DataFrame, n: int, threads: int) -> tuple[list[str], int]:
    """Each of ``n`` sampled held-out users asks for 10 items, clicks those it really watched
    and views one it watched that the list missed (feedback either way: the list is judged).

    Returns:
        The users replayed, and the clicks."""
    watched = test.groupby(USER)[ITEM].agg(set)
    users = random.Random(7).sample(sorted(watched.index), min(n, len(watched)))

    def one(user: str) -> int:
        answer = post(url, "/recommend", {"user_id": user, "k": 10})[1]
        shown = {i["item_id"] for i in answer["items"]}
        hits, missed = sorted(shown & watched[user]), sorted(watched[user] - shown)
        for item in hits:
            post(url, "/events", {"user_id": user, "item_id": item, "type": "click"})
        if missed:
            post(url, "/events", {"user_id": user, "item_id": missed[0], "type": "view"})
        return len(hits)

    with ThreadPoolExecutor(threads) as pool:
        clicks = sum(pool.map(one, users))
    return users, clicks


def drifted_population(
    catalog: list[str], out: Path, users: int, events_per_user: int, later_users: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The synthetic generator with drift on, over the catalog's item ids: older users, other
    occupations, popularity moved to other items; users new to the service. One world for
    ``users + later_users`` users, split by user: the first ``users`` and the rest (the same
    drifted tastes, people the retrained model has never seen).

    Returns:
        The two populations' rows, each in time order (the second empty without
        ``later_users``)."""
    everyone = users + later_users
    config = SynthConfig(
        n_users=everyone,
        n_items=len(catalog),
        n_interactions=everyone * events_per_user,
        drift=1.0,
        seed=11,
        days=30.0,
    )
    generate(config, out, progress=False)
    rows = pd.read_parquet(out / "interactions.parquet")
    later = rows[USER].str[1:].astype(int) >= users  # u<k>: the k-th user of the world
    # i<k> is the k-th catalog item (for MovieLens, i0 is "1")
    rows[ITEM] = pd.Series(catalog).iloc[rows[ITEM].str[1:].astype(int)].to_numpy()
    rows[USER] = "drift-" + rows[USER]
    rows = rows.sort_values("timestamp", kind="stable")
    return rows[~later].reset_index(drop=True), rows[later].reset_index(drop=True)


def replay_drifted(url: str, rows: pd.DataFrame, threads: int) -> tuple[int, int]:
    """Each drifted user rates the first half of its items (events), asks for 10 items, then
    clicks those of its second half the list contains (the generator's ground truth decides).

    Returns:
        The users (one request each), and the events sent."""

    def one(group: pd.DataFrame) -> int:
        user = group[USER].iloc[0]
        half = len(group) // 2
        for item, rating in zip(group[ITEM][:half], group["rating"][:half], strict=True):
            post(
                url,
                "/events",
                {"user_id": user, "item_id": item, "type": "rating", "rating": float(rating)},
            )
        answer = post(url, "/recommend", {"user_id": user, "k": 10})[1]
        later = set(group[ITEM][half:])
        hits = [i["item_id"] for i in answer["items"] if i["item_id"] in later]
        for item in hits:
            post(url, "/events", {"user_id": user, "item_id": item, "type": "click"})
        return half + len(hits)

    groups = [g for _, g in rows.groupby(USER, sort=False)]
    with ThreadPoolExecutor(threads) as pool:
        events = sum(pool.map(one, groups))
    return len(groups), events


class LoadThread:
    """Steady /recommend traffic in the background; counts what fails."""

    def __init__(self, url: str, users: list[str], rate_per_s: float = 20.0) -> None:
        self.url, self.users, self.pause = url, users, 1.0 / rate_per_s
        self.sent = self.failed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def __enter__(self) -> LoadThread:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        rng = random.Random(3)
        while not self._stop.is_set():
            try:
                status = post(self.url, "/recommend", {"user_id": rng.choice(self.users)})[0]
            except Exception:  # a refused connection is a failed request too
                status = 0
            self.sent += 1
            self.failed += status != 200
            time.sleep(self.pause)
