"""Synthetic interactions with a known latent-factor ground truth, for scale and monitoring work.

The world a seed fixes: user factors ``U`` (n_users, d) and item factors ``V`` (n_items, d) with
N(0, 1/d) entries; ``affinity(u, i) = sqrt(d) * U[u]·V[i]`` has unit variance. Item popularity
is a power law over a random permutation of the items, user activity is mildly skewed
(lognormal). Each interaction draws a user by activity and :data:`N_CANDIDATES` items by
popularity, keeps the candidate with the largest ``CHOICE_SIGNAL * affinity + Gumbel`` noise, and
rates it ``clip(round(3 + 2 tanh(RATING_SCALE * affinity) + noise), 1, 5)``. Side features are
noisy projections of the factors, so a feature model has something real to use.

Ids are ``u0`` .. ``u{n_users-1}`` and ``i0`` .. ``i{n_items-1}``: the row of ``U`` or ``V``.
Timestamps are whole milliseconds, strictly increasing over the file, in ``[start, start+days)``.

``drift`` (0..1) moves that share of the popularity mass to a second permutation of the items,
makes users older and re-weights their occupations; ``U`` and ``V`` stay the same.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data.io import ITEM, RATING, TS, USER, DatasetInfo, dataset_paths, update_checksum
from recsys.data.movielens import GENRES as _ML_GENRES
from recsys.data.synthetic_config import SynthConfig
from recsys.files import atomic_path, write_json

N_CANDIDATES = 8
CHOICE_SIGNAL = 2.0  # logit per unit of affinity in the Gumbel-max choice
RATING_SCALE = 0.4
RATING_NOISE = 0.7
ACTIVITY_SIGMA = 0.75  # lognormal spread of user activity
AGE_DRIFT_YEARS = 15.0  # how much older users are at drift=1
BLOCK = 1 << 15  # rows per block of the affinity computation (keeps the gathers in cache)
GENRES = tuple(_ML_GENRES[1:])  # MovieLens names, without "unknown"
OCCUPATIONS = (  # MovieLens-100k's
    "administrator",
    "artist",
    "doctor",
    "educator",
    "engineer",
    "entertainment",
    "executive",
    "healthcare",
    "homemaker",
    "lawyer",
    "librarian",
    "marketing",
    "none",
    "other",
    "programmer",
    "retired",
    "salesman",
    "scientist",
    "student",
    "technician",
    "writer",
)
DRIFT_OCCUPATIONS = ("programmer", "retired", "healthcare")  # gain weight under drift
INTERACTION_SCHEMA = pa.schema(
    [
        (USER, pa.string()),
        (ITEM, pa.string()),
        (RATING, pa.float64()),
        (TS, pa.timestamp("ns", tz="UTC")),
    ]
)
_STREAMS = ("factors", "popularity", "popularity_drift", "activity", "users", "items", "events")


@dataclass
class World:
    """The ground truth a config fixes: O(n_users + n_items) memory, remade from the seed."""

    user_factors: np.ndarray  # (n_users, d) float32
    item_factors: np.ndarray  # (n_items, d) float32
    popularity: np.ndarray  # (n_items,) float64, sums to 1, after drift
    activity: np.ndarray  # (n_users,) float64, sums to 1

    def affinity(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``sqrt(d) * U[u]·V[i]`` (unit variance) for ``users`` (n,), ``items`` (n,) or (n, k)."""
        users, items = np.asarray(users), np.asarray(items)
        scale = np.float32(np.sqrt(self.user_factors.shape[1]))
        out = np.empty(items.shape, dtype=np.float32)
        for lo in range(0, len(items), BLOCK):
            u = self.user_factors[users[lo : lo + BLOCK]]  # (b, d)
            v = self.item_factors[items[lo : lo + BLOCK]]  # (b, d) or (b, k, d)
            if v.ndim == 3:
                u = u[:, None, :]  # (b, 1, d)
            out[lo : lo + BLOCK] = (u * v).sum(axis=-1) * scale
        return out


def make_world(config: SynthConfig) -> World:
    """Draw the factors, the popularity (drift applied) and the user activity for ``config``."""
    rngs = _rngs(config.seed)
    d = config.latent_dim
    user_factors = rngs["factors"].standard_normal((config.n_users, d)) / np.sqrt(d)
    item_factors = rngs["factors"].standard_normal((config.n_items, d)) / np.sqrt(d)
    base = _power_law(rngs["popularity"], config.n_items, config.popularity_exponent)
    moved = _power_law(rngs["popularity_drift"], config.n_items, config.popularity_exponent)
    activity = rngs["activity"].lognormal(0.0, ACTIVITY_SIGMA, config.n_users)
    return World(
        user_factors=user_factors.astype(np.float32),
        item_factors=item_factors.astype(np.float32),
        popularity=(1.0 - config.drift) * base + config.drift * moved,
        activity=activity / activity.sum(),
    )


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    # One independent stream per purpose: drift changes no draw that it does not mean to.
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.default_rng(c) for name, c in zip(_STREAMS, children, strict=True)}


def _power_law(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
    out = np.empty(n)
    out[rng.permutation(n)] = weights
    return out / out.sum()


def generate(config: SynthConfig, out: str | Path, *, progress: bool = True) -> DatasetInfo:
    """Write a synthetic dataset directory, chunk by chunk in bounded memory.

    Args:
        config: sizes, seed, drift and time window; checked before anything is written.
        out: the dataset directory (created; its dataset files are replaced).
        progress: show a tqdm bar over the interactions.

    Returns:
        The :class:`DatasetInfo` written to ``dataset.json``. ``n_users``/``n_items`` count
        those that occur in the interactions; the tables hold all ``config.n_users``/``n_items``.
    """
    config.validate()
    paths = dataset_paths(out)
    paths["info"].parent.mkdir(parents=True, exist_ok=True)
    paths["info"].unlink(missing_ok=True)  # its presence marks a complete set
    world, rngs = make_world(config), _rngs(config.seed)
    _write_table(_users_table(world, config, rngs["users"]), paths["users"])
    _write_table(_items_table(world, rngs["items"]), paths["items"])
    checksum, n_users, n_items = _write_interactions(
        world, config, rngs["events"], paths["interactions"], progress
    )
    info = DatasetInfo(
        name="synthetic",
        n_interactions=config.n_interactions,
        n_users=n_users,
        n_items=n_items,
        checksum=checksum,
        source="synthetic",
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        extra={
            "config": asdict(config),
            "ground_truth": _ground_truth(config),
            "rating_scale": [1, 5],
            "genres": list(GENRES),
        },
    )
    write_json(info.model_dump(), paths["info"])  # last
    return info


def _write_interactions(
    world: World, config: SynthConfig, rng: np.random.Generator, path: Path, progress: bool
) -> tuple[str, int, int]:
    user_ids, item_ids = _ids("u", config.n_users), _ids("i", config.n_items)
    user_cdf, item_cdf = _cdf(world.activity), _cdf(world.popularity)
    seen_users = np.zeros(config.n_users, dtype=bool)
    seen_items = np.zeros(config.n_items, dtype=bool)
    first_ms, end_ms = config.window_ms()
    total, h = config.n_interactions, hashlib.sha256()
    bar = tqdm(total=total, unit="rows", desc="synthetic", disable=not progress)
    with (
        atomic_path(path) as tmp,
        open(tmp, "wb") as f,  # a file object: pyarrow takes a str path as strict UTF-8
        pq.ParquetWriter(f, INTERACTION_SCHEMA) as writer,
    ):
        for lo in range(0, total, config.chunk_size):
            n = min(config.chunk_size, total - lo)
            users = _sample(user_cdf, rng, n)  # (n,)
            cands = _sample(item_cdf, rng, n * N_CANDIDATES).reshape(n, N_CANDIDATES)
            items, affinity = _choose(world, users, cands, rng)  # (n,), (n,)
            noise = rng.normal(0.0, RATING_NOISE, n)
            ratings = np.clip(np.rint(3 + 2 * np.tanh(RATING_SCALE * affinity) + noise), 1, 5)
            span = end_ms - first_ms  # the chunk owns [t0, t1): chunks never overlap
            t0, t1 = first_ms + span * lo // total, first_ms + span * (lo + n) // total
            ts_ms = t0 + np.sort(rng.integers(0, t1 - t0 - n + 1, n)) + np.arange(n)
            table = pa.Table.from_arrays(
                [
                    user_ids.take(pa.array(users)),
                    item_ids.take(pa.array(items)),
                    pa.array(ratings, pa.float64()),
                    pa.array(ts_ms * 1_000_000, pa.timestamp("ns", tz="UTC")),
                ],
                schema=INTERACTION_SCHEMA,
            )
            writer.write_table(table)
            update_checksum(h, table.to_pandas())
            seen_users[users], seen_items[items] = True, True
            bar.update(n)
    bar.close()
    return h.hexdigest(), int(seen_users.sum()), int(seen_items.sum())


def _choose(
    world: World, users: np.ndarray, cands: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel-max over the candidates: the chosen items (n,) and their affinity (n,)."""
    affinity = world.affinity(users, cands)  # (n, k)
    logits = CHOICE_SIGNAL * affinity + rng.gumbel(size=cands.shape)  # (n, k)
    pick = logits.argmax(axis=1)[:, None]  # (n, 1)
    items = np.take_along_axis(cands, pick, axis=1)[:, 0]
    return items, np.take_along_axis(affinity, pick, axis=1)[:, 0].astype(np.float64)


def _cdf(p: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(p)
    return cdf / cdf[-1]


def _sample(cdf: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    idx = np.searchsorted(cdf, rng.random(n), side="right")
    return np.minimum(idx, len(cdf) - 1)


def _ids(prefix: str, n: int) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(np.arange(n)), pa.string()), "")


def _projections(factors: np.ndarray, rng: np.random.Generator, k: int) -> np.ndarray:
    """``k`` random linear views of the factors (n, d) -> (n, k), unit variance (rows ~ norm 1)."""
    return factors @ rng.standard_normal((factors.shape[1], k)).astype(np.float32)


def _users_table(world: World, config: SynthConfig, rng: np.random.Generator) -> pa.Table:
    n, drift = config.n_users, config.drift
    view = _projections(world.user_factors, rng, 3 + len(OCCUPATIONS))  # (n, 3 + n_occ)
    age = 33 + 9 * view[:, 0] + 4 * rng.standard_normal(n) + AGE_DRIFT_YEARS * drift
    male = view[:, 1] + 0.5 * rng.standard_normal(n) > 0
    occ_bias = np.array([2.5 * drift if o in DRIFT_OCCUPATIONS else 0.0 for o in OCCUPATIONS])
    occ_logits = 1.5 * view[:, 3:] + occ_bias + rng.gumbel(size=(n, len(OCCUPATIONS)))
    region = np.clip(np.floor(5 + 2 * view[:, 2]), 0, 9).astype(np.int64)
    zip_code = region * 10_000 + rng.integers(0, 10_000, n)
    return pa.table(
        {
            USER: _ids("u", n),
            "age": pa.array(np.clip(np.rint(age), 7, 80).astype(np.int64)),
            "gender": pc.if_else(pa.array(male), "M", "F"),
            "occupation": pa.array(OCCUPATIONS).take(pa.array(occ_logits.argmax(axis=1))),
            "zip_code": pc.utf8_lpad(pc.cast(pa.array(zip_code), pa.string()), 5, "0"),
        }
    )


def _items_table(world: World, rng: np.random.Generator) -> pa.Table:
    n = len(world.item_factors)
    view = _projections(world.item_factors, rng, 1 + len(GENRES))  # (n, 1 + n_genres)
    scores = view[:, 1:] + 0.3 * rng.standard_normal((n, len(GENRES)))  # (n, n_genres)
    top = np.argsort(-scores, axis=1)[:, :3]  # (n, 3)
    # The best genre always; the next two where they score high too. Listed in GENRES order.
    keep = np.take_along_axis(scores, top, axis=1) > 1.5
    keep[:, 0] = True
    top = np.sort(np.where(keep, top, len(GENRES)), axis=1)  # (n, 3); len(GENRES) = absent
    names = pa.array([*GENRES, None])
    genres = pc.binary_join_element_wise(
        *(names.take(pa.array(top[:, j])) for j in range(3)), "|", null_handling="skip"
    )
    year = 1995 + 12 * view[:, 0] + 5 * rng.standard_normal(n)
    ids = _ids("i", n)
    return pa.table(
        {
            ITEM: ids,
            "title": pc.binary_join_element_wise("Synthetic item ", ids, ""),
            "genres": genres,
            "release_year": pa.array(np.clip(np.rint(year), 1920, 2023).astype(np.int64)),
        }
    )


def _write_table(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pq.write_table(table, f)


def _ground_truth(config: SynthConfig) -> dict[str, str]:
    return {
        "regenerate": "recsys.data.synthetic.make_world(SynthConfig(**extra['config']))",
        "ids": "users u0..u{n_users-1}, items i0..i{n_items-1}: the row of U / V",
        "factors": "U (n_users, d), V (n_items, d), entries N(0, 1/d)",
        "affinity": "sqrt(d) * U[u].V[i], unit variance",
        "user_activity": f"lognormal(0, {ACTIVITY_SIGMA}) weights",
        "item_popularity": (
            f"rank^-{config.popularity_exponent} over a random permutation; "
            f"a share {config.drift} of the mass on a second permutation"
        ),
        "choice": (
            f"{N_CANDIDATES} candidates by popularity; Gumbel-max over {CHOICE_SIGNAL} * affinity"
        ),
        "rating": (
            f"clip(round(3 + 2 tanh({RATING_SCALE} affinity) + N(0, {RATING_NOISE}^2)), 1, 5)"
        ),
        "timestamps": "whole milliseconds, strictly increasing, in [start, start + days)",
        "user_features": (
            f"age, gender, occupation, zip_code region: noisy projections of U; "
            f"drift adds {AGE_DRIFT_YEARS} * drift years and favours "
            f"{', '.join(DRIFT_OCCUPATIONS)}"
        ),
        "item_features": "genres (best 1-3 of a projection of V), release_year (projection)",
    }
