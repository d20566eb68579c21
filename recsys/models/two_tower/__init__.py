"""The two-tower retrieval model: the towers, their loss and the settings (``towers``), and the
model as a :class:`~recsys.models.base.Recommender` (``model``: vocabularies, examples, fit,
score, save). The side-feature encoding and the epoch loop it shares with the DCN ranker stay
in ``recsys.models.encoding`` and ``recsys.models.neural``.
"""

from recsys.models.two_tower.model import TwoTower
from recsys.models.two_tower.towers import TwoTowerConfig

__all__ = ["TwoTower", "TwoTowerConfig"]
