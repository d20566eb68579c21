"""The model kinds' names, known without importing the models (``recsys train`` lists them and
starts Ray before it imports what trains them)."""

from __future__ import annotations

KIND_NAMES = ("content", "ease", "genre", "multistage", "popularity", "rp3beta", "two_tower")
NEURAL_KINDS = ("two_tower", "multistage")  # trained on Ray Train
