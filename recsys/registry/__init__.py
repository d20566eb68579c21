"""The model registry: versioned model directories and a champion pointer at a URI."""

from recsys.registry.store import (
    Champion,
    Event,
    ModelVersion,
    Registry,
    champion_model,
    default_uri,
    register_champion,
)

__all__ = [
    "Champion",
    "Event",
    "ModelVersion",
    "Registry",
    "champion_model",
    "default_uri",
    "register_champion",
]
