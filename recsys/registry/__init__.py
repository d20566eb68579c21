"""The model registry: versioned model directories and a champion pointer at a URI."""

from recsys.registry.store import Champion, Event, ModelVersion, Registry, default_uri

__all__ = ["Champion", "Event", "ModelVersion", "Registry", "default_uri"]
