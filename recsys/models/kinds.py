"""The model kinds by name: create a fresh model of a kind, load any model directory."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from recsys.config import RecsysError
from recsys.models.base import Recommender
from recsys.models.content import ContentKNN, GenreAffinity
from recsys.models.ease import EASE
from recsys.models.manifest import read_manifest
from recsys.models.multistage import MultiStageModel
from recsys.models.popularity import Popularity
from recsys.models.rp3beta import RP3beta
from recsys.models.two_tower import TwoTower

MODEL_KINDS: dict[str, type[Recommender]] = {
    cls.kind: cls
    for cls in (Popularity, EASE, RP3beta, TwoTower, MultiStageModel, ContentKNN, GenreAffinity)
}
# Kinds renamed since: a model directory written under the old name still loads.
RENAMED_KINDS = {"pipeline": "multistage"}
# What each kind learns for a split protocol (a training split's ``split.json`` names it), each
# chosen on that protocol's validation split (docs/benchmarks.md): on a temporal split the
# two-tower reads the user's latest items, and the multi-stage ranker is cross-fitted in the
# user's time and reads the recent window. The parameters a user passes win.
PROTOCOL_PARAMS: dict[str, dict[str, dict]] = {
    "temporal": {
        "two_tower": {"history_mode": "recent"},
        "multistage": {
            "crossfit": "user-time",
            # the two-tower source pays on this protocol (every seed, validation and test)
            # and not on the stratified one, where it costs far more than it adds
            "n_two_tower": 100,
            "two_tower": {
                "history_mode": "recent",
                "history_len": 200,
                "epochs": 12,
                "patience": 4,
            },
        },
    }
}


def create_model(kind: str, params: dict | None = None) -> Recommender:
    """A fresh model of ``kind`` with hyper-parameters overridden by ``params``."""
    kind = RENAMED_KINDS.get(kind, kind)
    if kind not in MODEL_KINDS:
        raise RecsysError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_KINDS)}")
    cls = MODEL_KINDS[kind]
    try:
        config = cls.config_type(**_coerce_ints(cls.config_type, params or {}))
    except TypeError as exc:
        raise RecsysError(f"{kind}: bad hyper-parameters {params}: {exc}") from exc
    return cls(config)


def protocol_params(kind: str, protocol: str | None, params: dict | None = None) -> dict:
    """``params`` over what ``kind`` learns for ``protocol`` (:data:`PROTOCOL_PARAMS`; nested
    dicts merged key by key)."""
    base = PROTOCOL_PARAMS.get(protocol or "", {}).get(RENAMED_KINDS.get(kind, kind), {})
    return _merge(base, params or {})


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


def _coerce_ints(config_type: type, params: dict) -> dict:
    """``16.0`` → ``16`` where the field is an int: JSON that crossed a protobuf Struct (KFP
    pipeline parameters) carries every number as a float."""
    hints = typing.get_type_hints(config_type)
    out = {}
    for key, value in params.items():
        hint = hints.get(key)
        if hint is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        elif dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = _coerce_ints(hint, value)
        out[key] = value
    return out


def load_model(directory: str | Path) -> Recommender:
    """Load any model version from its directory (the manifest names the kind)."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    kind = RENAMED_KINDS.get(manifest.kind, manifest.kind)
    if kind not in MODEL_KINDS:
        raise RecsysError(f"{directory}: unknown model kind {manifest.kind!r} in manifest")
    try:
        return MODEL_KINDS[kind]._from_directory(directory, manifest)
    except (OSError, ValueError) as exc:
        raise RecsysError(f"{directory}: cannot load {manifest.kind} model: {exc}") from exc
