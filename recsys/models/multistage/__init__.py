"""The multi-stage recommender: candidate sources → a learned ranker → the list.

``config`` (:class:`MultiStageConfig`), ``sources`` (the candidate generators, one fit),
``candidates`` (each source's top and their union), ``ranker_inputs`` (the ranker's features
of the candidates), ``crossfit`` (the training: cross-fitted sources, the ranker's rows,
the ranker), ``context`` (the user's and item's side features), ``model``
(:class:`MultiStageModel`).
"""

from recsys.models.multistage.config import MultiStageConfig
from recsys.models.multistage.model import MultiStageModel

__all__ = ["MultiStageConfig", "MultiStageModel"]
