"""New items at run time (``POST /items``, ``recsys items add``): validate, log durably, push
each item's profile to the online store.

The order is the event path's (:mod:`recsys.features.events`): the refused rows are
quarantined with their reasons and the accepted items appended to the item log, fsync'd,
before anything is acknowledged; the push comes after (a failed push is reported, the items
stay in the log). Encoding and adding an item to a version's index is each replica's own
fold of the log (:func:`recsys.recommend.added.with_added`), so every replica serves the
same catalog.
"""

from __future__ import annotations

import threading
from collections.abc import Container
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from recsys.data.io import ITEM, split_genres
from recsys.data.new_items import ItemLog, NewItem, Rejected, check_items
from recsys.state.user import EVENT_TS

PROFILE_PUSH = "item_profile_push"


@dataclass
class ItemsResult:
    """What became of one request's or file's rows."""

    accepted: list[str] = field(default_factory=list)  # the logged items' ids, in order
    rejected: list[Rejected] = field(default_factory=list)
    known: list[str] = field(default_factory=list)  # in the catalog already: left as they are
    pushed: bool = False  # their profiles reached the online store
    reason: str = ""  # why they were not pushed, or why nothing was kept
    unavailable: bool = False  # the log could not keep them (HTTP 503): nothing acknowledged


class ItemIngestor:
    """Checks new items against the catalog and the log, logs them, pushes their profiles.

    Args:
        log: the item log (the Serve app's ``items_dir``).
        store: the feature store (``recsys.features.FeatureStore``) whose online store gets
            the profiles, or None (the items are logged, not pushed).
    """

    def __init__(self, log: ItemLog, store=None) -> None:
        self.log, self.store = log, store
        self._logged: set[str] = set()
        self._offset = 0
        self._lock = threading.Lock()

    def ingest(
        self, rows: list[Any], catalog: Container[str] = (), whole: bool = False
    ) -> ItemsResult:
        """Handle a batch of rows; ``catalog``: the ids the served version already holds;
        ``whole``: a refused row refuses the batch (an HTTP request: the client sends it again
        mended), else the valid rows are kept (a file: the refused rows are in the quarantine).
        Never raises for a bad row (see ``rejected``) nor for a log that cannot keep them."""
        now = datetime.now(UTC)
        with self._lock:  # one writer here at a time: the log's ids are current for the check
            try:
                self._catch_up()
                checked = check_items(rows, _Either(catalog, self._logged))
                if whole and checked.rejected:
                    checked.items, checked.known = [], []
                self.log.reject(checked.rejected, rows, now)
                self.log.append(checked.items, now)
            except OSError as failure:
                why = f"the item log cannot keep items now ({type(failure).__name__}: {failure})"
                return ItemsResult(reason=why, unavailable=True)
            self._logged.update(i.item_id for i in checked.items)
        result = ItemsResult([i.item_id for i in checked.items], checked.rejected, checked.known)
        if checked.items and self.store is not None:
            try:
                self.store.push(PROFILE_PUSH, profiles(checked.items, now))
                result.pushed = True
            except Exception as exc:  # the items are safe in the log; report, do not fail
                result.reason = f"logged, but the online push failed: {exc}"
        return result

    def _catch_up(self) -> None:
        """The ids other writers (another replica, the CLI) logged since the last look."""
        items, self._offset = self.log.read(self._offset)
        self._logged.update(items[ITEM])


class _Either:
    def __init__(self, *sets: Container[str]) -> None:
        self.sets = sets

    def __contains__(self, item: object) -> bool:
        return any(item in s for s in self.sets)


def profiles(items: list[NewItem], now: datetime) -> pd.DataFrame:
    """The ``item_profile`` rows of new items (genres as names, the year, stamped ``now``)."""
    return pd.DataFrame(
        {
            ITEM: [i.item_id for i in items],
            "genres": [split_genres(i.genres) for i in items],
            "release_year": pd.array([i.release_year for i in items], dtype="Int64"),
            EVENT_TS: [now] * len(items),
        }
    )
