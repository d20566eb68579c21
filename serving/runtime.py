"""The serving side of the one recommendation path: loading versions for the replicas, and
reading a user's state from the online store, with the readiness check that guards it.
Recommending itself is :mod:`recsys.recommend`'s; nothing here decides what a user gets.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from pathlib import Path

from recsys.config import RecsysError, recsys_home
from recsys.data.io import read_titles
from recsys.data.new_items import ItemLog
from recsys.features.repository import default_repo
from recsys.features.store import FeatureStore
from recsys.models.kinds import load_model
from recsys.models.manifest import read_manifest
from recsys.recommend import PreparedModel, Request, batch, check_store, prepare, recommend
from recsys.recommend.added import with_added
from recsys.recommend.batch import Ask, Stage1Key
from recsys.recommend.readiness import unmaterialized, unreadable
from recsys.registry import Registry
from recsys.state.user import UserState
from serving.schemas import AppArgs


class NotReady(RecsysError):
    """The version cannot be served from this online store (HTTP 503, the reason named)."""


class ModelCache:
    """Loaded versions by name, the latest two kept: a request that started on the old version
    finishes on it while the replicas switch (no request sees a half-switched pipeline).

    With ``new_items`` (the app's item log), each version is served with the items logged
    since it was trained: every ``get`` looks at the log's size (one ``stat``) and folds what
    was appended into a new prepared version (:func:`recsys.recommend.added.with_added`), so
    every process of the app serves the same catalog, in the log's order."""

    def __init__(
        self,
        root: str | Path,
        titles: dict[str, str] | None = None,
        keep: int = 2,
        warm: bool = False,
        new_items: ItemLog | None = None,
    ) -> None:
        # A registry on an object store (s3://, gs://): versions are downloaded on first use.
        self.registry = Registry(root) if "://" in str(root) else None
        self.root = None if self.registry else Path(root)
        self.titles, self.keep, self.warm = titles or {}, keep, warm  # warm: see warm_up
        self._models: OrderedDict[str, PreparedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.new_items = new_items
        self._folded: dict[str, int] = {}  # per version: the log's bytes folded into it

    def path(self, version: str) -> Path:
        if self.registry is not None:
            return self.registry.local_path(version)
        path = Path(version)
        return path if path.is_absolute() else self.root / version

    def get(self, version: str) -> PreparedModel:
        with self._lock:
            if version in self._models:
                self._models.move_to_end(version)
                return self._with_new_items(version, self._models[version])
            path = self.path(version)
            model, manifest = load_model(path), read_manifest(path)
            prepared = prepare(model, version, self.titles, manifest.lineage())
            self._folded[version] = 0
            prepared = self._with_new_items(version, prepared, warm=False)
            if self.warm:
                warm_up(prepared)
            self._models[version] = prepared
            while len(self._models) > self.keep:
                self._folded.pop(self._models.popitem(last=False)[0], None)
            release_freed_memory()
            return prepared

    def _with_new_items(self, version: str, prepared: PreparedModel, warm: bool = True):
        """``prepared`` with the items logged since it last looked (itself when none)."""
        done = self._folded.get(version, 0)
        if self.new_items is None or self.new_items.size() <= done:
            return prepared
        items, self._folded[version] = self.new_items.read(done)
        extended = with_added(prepared, items)
        if extended is not prepared:
            if warm and self.warm:
                warm_up(extended)
            self._models[version] = extended
        return extended


def release_freed_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``): loading a
    version frees millions of small objects (a large vocabulary read from JSON) that would
    stay in the replica's resident memory otherwise. Nothing where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    libc.malloc_trim(0)


def model_cache(args: AppArgs, warm: bool = False) -> ModelCache:
    """The versions a replica holds: under the app's ``model_root`` (default
    ``$RECSYS_HOME/models``), with the catalog's titles for the reasons."""
    root = args.model_root or recsys_home() / "models"
    return ModelCache(root, read_titles(args.catalog), warm=warm, new_items=item_log(args))


def item_log(args: AppArgs) -> ItemLog:
    """The app's log of new items: ``items_dir``, default ``$RECSYS_HOME/items``."""
    return ItemLog(args.items_dir)


def warm_up(prepared: PreparedModel) -> None:
    """One recommendation, through the one path, for a made-up user who saw the most popular
    item: what a model builds on first use (RP3beta's dense matrices, the compiled trees'
    load) is built while the version loads, not in a user's request (docs/serving.md: a
    replica's first request). A model that reads the items' context from the
    store is warmed by its first request instead."""
    if not len(prepared.item_ids) or prepared.model.state_spec().context:
        return
    item = str(prepared.item_ids[prepared.popular[0]])
    recommend(prepared, [UserState("warm-up", (item,), (item,))], Request())


class Runtime:
    """What a replica that reads the store holds: the loaded versions, the online reader,
    and the readiness verdict per (version, feature build)."""

    def __init__(self, args: AppArgs) -> None:
        self.args = args
        self.models = model_cache(args, warm=True)
        self.repo = Path(args.feature_repo) if args.feature_repo else default_repo()
        store = FeatureStore(self.repo, args.online_store)
        self.store = store.open() if store.built else None  # None: not a built repository
        self._verdicts: dict[tuple[str, float], str] = {}
        self._meta = None
        self._probed: set[str] = set()
        self._items: dict[tuple, dict] = {}

    @property
    def reader(self):
        """The online reads of the default feature service (``FeatureStore.online``)."""
        return self.store.online()

    def read_user(self, user_id: str) -> tuple[UserState, dict]:
        return self.reader.read_user(user_id)

    def read_users(self, user_ids) -> list[tuple[UserState, dict]]:
        return self.reader.read_users(user_ids)

    def candidates_batch(self, keys: list[Stage1Key]) -> list:
        """Stage 1 of the one path (:func:`recsys.recommend.batch.candidates_batch`) for
        concurrent requests, their users' states read from the online store at once."""
        return batch.candidates_batch(self.models, self, keys)

    def recommend_batch(self, asks: list[Ask]) -> list:
        """The one path for concurrent requests, all in this process (the fused topology):
        :func:`recsys.recommend.batch.recommend_batch` over the online store."""
        return batch.recommend_batch(self.models, self, asks)

    def item_context(self, prepared: PreparedModel) -> dict | None:
        """The items' context the version reads, from the online store: one batched read of
        the catalog per (version, feature build), kept while the build stands (events move
        users' rows, not items')."""
        if not prepared.model.state_spec().context:
            return None
        build = self._meta.build_id if self._meta else None
        key = (prepared.version, build, len(prepared.item_ids))  # new items: a longer catalog
        if key not in self._items:
            if len(self._items) > 4:
                self._items.clear()
            self._items[key] = self.reader.item_context(prepared.item_ids)
        return self._items[key]

    def not_ready(self, prepared: PreparedModel) -> str:
        """Why ``prepared`` cannot be served from the online store now ('' when it can).

        Re-checked whenever the feature build's metadata changes (one ``stat`` a request)."""
        if self.store is None:
            return (
                f"no online store: {self.repo} is not a built Feast repository (set "
                "feature_repo; the pipeline's materialize step builds it)"
            )
        key = (prepared.version, self.store.meta_stamp())
        if key not in self._verdicts:
            if len(self._verdicts) > 8:  # versions come and go; builds replace each other
                self._verdicts.clear()
            self._meta = self.store.meta()
            self._verdicts[key] = check_store(prepared, self._meta) or self._unreadable(prepared)
        return self._verdicts[key] or self._probe(self._meta)

    def _unreadable(self, prepared: PreparedModel) -> str:
        readable = {*self.reader.user_features, *self.reader.item_features}
        return unreadable(prepared, readable, self.reader.service.name)

    def require_ready(self, prepared: PreparedModel) -> None:
        if reason := self.not_ready(prepared):
            raise NotReady(reason)

    def _probe(self, meta) -> str:
        """The store must hold the build's probe user: else it was never materialized. A
        success is remembered per build; a failure is asked again (materializing takes a
        while, and then the store is ready without anything else changing)."""
        if meta is None or meta.probe_user is None or meta.build_id in self._probed:
            return ""
        state, _ = self.read_user(meta.probe_user)
        reason = unmaterialized(meta, state.empty)
        if not reason:
            self._probed.add(meta.build_id)
        return reason
