"""The multi-stage model's settings: candidate counts per source, the cross-fitting, the ranker
and each part's own settings (a partial dict overrides this model's defaults for the part)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from recsys.models.ease import EASEConfig
from recsys.models.rankers.dcn import RankerConfig
from recsys.models.rankers.gbdt import GBDTConfig
from recsys.models.rp3beta import RP3betaConfig
from recsys.models.two_tower import TwoTowerConfig

RANKERS = ("gbdt", "dcn")
CROSSFITS = ("random", "time", "user-time")
FULL_FITS = ("scratch", "continue")


@dataclass
class MultiStageConfig:
    """Candidate counts per source, the cross-fitting, the ranker and each part's settings."""

    n_ease: int = 100
    n_rp3: int = 100
    n_popular: int = 50
    n_two_tower: int = 0  # 0: no two-tower source (measured: it does not pay here, docs/models.md)
    # Item content (recsys.content): "auto" reads it whenever the items table has text (a
    # title, genres, a description), "off" never, or an encoder spec ("tfidf-svd",
    # "sentence-transformers:<name or path>"). It adds a candidate source (the items nearest
    # the user's history in content space, n_content of them) and the ranker's content
    # features, so an item nobody has rated is reached and scored.
    content: str = "auto"
    content_dim: int = 64
    n_content: int = 50
    # Above this many items the content source is searched in an item index (IVF, int8) for
    # each user's n_content nearest, instead of scoring the whole catalog per request (200k
    # items: docs/benchmarks.md, catalog scale); its rank feature is then the rank among those.
    content_exact_max_items: int = 50_000
    # The users' and items' mean ratings from the feature store as ranker features (measured
    # on the validation split: no gain, more spread over seeds; docs/models.md).
    store_context: bool = False
    folds: int = 5
    # ``random`` cross-fitting draws the folds this many times over, with other seeds: the
    # ranker learns from every draw's rows (draws x folds fits of the sources at training);
    # the first draw's fits alone score the candidates at serving, so a request costs the same.
    draws: int = 1
    # "random": folds drawn at random, every fold's fit scores the candidates at serving (what
    # a random held-out item looks like: the stratified protocol);
    # "user-time": each user's latest 1/folds of interactions labelled from the sources fitted
    # on everyone's earlier ones (what the user does next: the temporal protocol); its ranker
    # also reads the user's recent window (RECENT_FEATURES);
    # "time": the training span cut at global time quantiles, each window's items labelled
    # from the sources fitted on everything before it.
    # With "user-time" and "time" the full fit alone scores the candidates at serving.
    crossfit: str = "random"
    # The ranker learns from at most this many users per fold, a seeded sample (0: every
    # user): at 1M users every user's candidates would be 150M rows (benchmarks/scale.py
    # samples 30,000).
    ranker_users: int = 0
    ranker: str = "gbdt"  # "gbdt" (LightGBM, listwise) or "dcn" (DCN-v2 on Ray Train)
    seed: int = 42
    ease: EASEConfig = field(default_factory=EASEConfig)
    rp3: RP3betaConfig = field(default_factory=RP3betaConfig)
    # The full fit's two-tower (the one that serves) under "user-time" or "time": "scratch"
    # trains it on every row, beside the folds' (side by side where there are CPUs);
    # "continue" starts it from the last fold's weights and trains it on the rows that fold
    # did not see, after it: each row seen once per epoch all the same, one fit in memory at
    # a time and no more CPU time (the scale benchmark's setting, docs/models.md).
    two_tower_full_fit: str = "scratch"
    two_tower: TwoTowerConfig = field(
        default_factory=lambda: TwoTowerConfig(history_len=100, epochs=10)
    )
    gbdt: GBDTConfig = field(default_factory=GBDTConfig)
    dcn: RankerConfig = field(default_factory=lambda: RankerConfig(prior_weight=0.5, lr=1e-3))

    def __post_init__(self) -> None:
        # A partial dict overrides this model's defaults for the stage, not the stage class's.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict) and f.default_factory is not dataclasses.MISSING:
                setattr(self, f.name, dataclasses.replace(f.default_factory(), **value))
        if self.ranker not in RANKERS:
            raise ValueError(f"ranker must be one of {RANKERS}, got {self.ranker!r}")
        if self.draws < 1:
            raise ValueError(f"draws must be at least 1, got {self.draws}")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if self.ranker_users < 0:
            raise ValueError(f"ranker_users must be 0 (every user) or more: {self.ranker_users}")
        if self.two_tower_full_fit not in FULL_FITS:
            raise ValueError(
                f"two_tower_full_fit must be one of {FULL_FITS}, got {self.two_tower_full_fit!r}"
            )
        if self.crossfit not in CROSSFITS:
            raise ValueError(f"crossfit must be one of {CROSSFITS}, got {self.crossfit!r}")
        if self.two_tower_full_fit == "continue" and self.crossfit == "random":
            raise ValueError(
                "two_tower_full_fit='continue' needs crossfit 'user-time' or 'time' (a last "
                "fold in time to continue from); crossfit='random' fits from scratch"
            )
