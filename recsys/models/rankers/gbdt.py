"""A gradient-boosted ranker (LightGBM) over the multi-stage model's feature rows.

The objective is listwise (``rank_xendcg`` by default, LambdaRank as an option): each user's
candidates form one query group and the model learns their order. Validation users are held
out for early stopping. Training runs wherever the injected fit function says: in-process
for small data and tests, on Ray Train's ``LightGBMTrainer`` in the multi-stage model
(``recsys.training.gbdt``).

Scoring runs the trees compiled to native code (lleaves, LLVM): the same trees and
thresholds as LightGBM's ``predict``, the sum of the trees' outputs in another order (they
differ by at most about 1e-15), several times faster, which is most of the ranker's cost per
request at serving. Every caller scores through :meth:`GBDTRanker.score`, so what is evaluated
is what is served. A compiled forest is cached per machine under ``$RECSYS_HOME/cache``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from recsys.config import recsys_home
from recsys.files import atomic_path

MODEL_FILE = "gbdt.txt"
META_FILE = "gbdt.json"


@dataclass
class GBDTConfig:
    """LightGBM's settings for the ranker (chosen on a validation split carved from train)."""

    objective: str = "rank_xendcg"  # or "lambdarank"
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    # 60 rounds on every user, no early stopping: on a validation split carved from the
    # training data (benchmarks/quality_movielens.py) early stopping on a tenth of the users
    # stopped at rounds that varied widely by seed and cost nDCG@10 against fixed rounds.
    rounds: int = 60
    patience: int = 100  # rounds without a better validation nDCG@10 (with val_share > 0)
    val_share: float = 0.0  # users held out for early stopping
    threads: int = 2  # fixed: the same trees on every machine
    seed: int = 42

    def params(self) -> dict:
        return {
            "objective": self.objective,
            "metric": "ndcg",
            "eval_at": [10],
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "num_threads": self.threads,
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }


@dataclass
class RankingRows:
    """Feature rows grouped by query (a user's candidates, contiguous), with labels."""

    x: np.ndarray  # (rows, features) float32
    label: np.ndarray  # (rows,) 0/1
    group: np.ndarray  # (rows,) query id, non-decreasing
    user: np.ndarray  # (rows,) the user a query belongs to (one user has a query per fold)

    def sizes(self) -> np.ndarray:
        """Rows per query, in order (what LightGBM's ``group`` takes)."""
        _, counts = np.unique(self.group, return_counts=True)
        return counts

    def take(self, mask: np.ndarray) -> RankingRows:
        return RankingRows(self.x[mask], self.label[mask], self.group[mask], self.user[mask])


class GBDTRanker:
    """The boosted trees and how they were chosen."""

    def __init__(self, config: GBDTConfig, features: tuple[str, ...]) -> None:
        self.config, self.features = config, tuple(features)
        self.booster = None
        self.training_log: dict = {}
        self._forest: tuple | None = None  # (the booster it was compiled from, the forest)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_forest": None}  # native code does not travel; recompiled

    def split(self, rows: RankingRows) -> tuple[RankingRows, RankingRows | None]:
        """Hold out ``val_share`` of the users (every fold's query of each) for early
        stopping: a user's other folds would tell the trees about the held-out one."""
        users = np.unique(rows.user)
        rng = np.random.default_rng(self.config.seed)
        n_val = int(len(users) * self.config.val_share)
        if n_val == 0:
            return rows, None
        is_val = np.isin(rows.user, rng.choice(users, n_val, replace=False))
        return rows.take(~is_val), rows.take(is_val)

    def fit_in_process(self, fit: RankingRows, val: RankingRows | None) -> GBDTRanker:
        """Train here (small data, tests); the multi-stage model trains on Ray Train instead."""
        import lightgbm as lgb

        booster, log = train_booster(lgb, self.config, self.features, fit, val)
        self.booster, self.training_log = booster, log
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        """The trees' raw scores of the rows ``x``, in this thread."""
        if not len(x):
            return np.zeros(0)
        if self._forest is None or self._forest[0] is not self.booster:
            self._forest = (self.booster, compiled_forest(self.booster.model_to_string()))
        return self._forest[1].predict(np.asarray(x, dtype=np.float64), n_jobs=1)

    def save(self, directory: Path) -> list[str]:
        self.booster.save_model(str(directory / MODEL_FILE))
        meta = {"config": asdict(self.config), "features": list(self.features)}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2))
        return [MODEL_FILE, META_FILE]

    @classmethod
    def load(cls, directory: Path) -> GBDTRanker:
        import lightgbm as lgb

        meta = json.loads((directory / META_FILE).read_text())
        ranker = cls(GBDTConfig(**meta["config"]), tuple(meta["features"]))
        ranker.booster = lgb.Booster(model_file=str(directory / MODEL_FILE))
        return ranker


def train_booster(lgb, config: GBDTConfig, features, fit: RankingRows, val, **extra):
    """``lgb.train`` with early stopping on the validation queries' nDCG@10.

    Returns:
        The booster cut at its best round, and the log (best round, validation nDCG@10).
    """
    params = {**config.params(), **extra.pop("params", {})}
    names = list(features)
    train_set = lgb.Dataset(fit.x, fit.label, group=fit.sizes(), feature_name=names)
    valid, callbacks = [], list(extra.pop("callbacks", []))
    if val is not None and len(val.x):
        valid = [lgb.Dataset(val.x, val.label, group=val.sizes(), reference=train_set)]
        callbacks.append(lgb.early_stopping(config.patience, verbose=False))
    booster = lgb.train(
        params, train_set, config.rounds, valid_sets=valid, callbacks=callbacks, **extra
    )
    best = booster.best_iteration or booster.current_iteration()
    score = booster.best_score.get("valid_0", {}).get("ndcg@10") if valid else None
    booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    return booster, {"best_round": int(best), "val_ndcg_at_10": score}


def compiled_forest(model_text: str, cache: Path | None = None):
    """A LightGBM model (its text) compiled to native code for this machine's CPU: a
    ``lleaves.Model`` whose ``predict`` gives the booster's raw scores.

    Compiling a 60-tree ranker takes about a second, so the object code is kept in ``cache``
    (default ``$RECSYS_HOME/cache/forests``), named by the model's text, the compiler's version and
    the CPU it was compiled for, written temp-then-rename; a replica that restarts loads it.
    """
    from importlib.metadata import version

    import lleaves
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    tools = f"lleaves {version('lleaves')}, llvmlite {version('llvmlite')}"
    cpu = f"{llvm.get_host_cpu_name()} {llvm.get_host_cpu_features().flatten()}"
    key = hashlib.sha256(f"{model_text}\n{tools}\n{cpu}".encode()).hexdigest()[:32]
    cache = cache or recsys_home() / "cache" / "forests"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: compile every time, in a private folder
        cache = Path(tempfile.mkdtemp(prefix="recsys-forests-"))
    text, code = cache / f"{key}.txt", cache / f"{key}.o"
    if not text.exists():
        with atomic_path(text) as tmp:
            tmp.write_text(model_text)
    model = lleaves.Model(model_file=str(text))
    if code.exists():
        model.compile(cache=str(code))
    else:
        with atomic_path(code) as tmp:  # two processes compiling one model each write their own
            tmp.unlink()  # lleaves writes its object code only where no file is
            model.compile(cache=str(tmp))
    return model
