"""Synthetic interactions with a known latent-factor ground truth, for scale and monitoring work.

The world a seed fixes: user factors ``U`` (n_users, d) and item factors ``V`` (n_items, d) with
N(0, 1/d) entries; ``affinity(u, i) = sqrt(d) * U[u]·V[i]`` has unit variance. Item popularity
is a power law over a random permutation of the items (Zipf-Mandelbrot with an exponential
cutoff: ``(rank + offset)^-a * exp(-decay * rank / n_items)``),
user activity is lognormal. Each interaction draws a user by activity and :data:`N_CANDIDATES`
items by popularity, keeps the candidate with the largest ``CHOICE_SIGNAL * affinity + Gumbel``
noise, and rates it ``clip(round(3 + 2 tanh(RATING_SCALE * affinity) + noise), 1, 5)``. Side
features are noisy projections of the factors, so a feature model has something real to use.

Two knobs make the world move as real data does (both 0 by default: each interaction then is
drawn on its own, as before). ``sequence`` adds ``sequence * sqrt(d) * V[prev]·V[i]`` to each
candidate's logit, ``prev`` the user's previous item: what a user takes next resembles what
they took last. ``trend`` moves popularity over time: at a share ``t`` of the time span, a
candidate is drawn from the second permutation with probability ``trend * t``. With either on,
rows are drawn in blocks small enough that a user rarely appears twice in one
(:func:`_sequence_block`).

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
import pyarrow.parquet as pq
from tqdm import tqdm

from recsys.data.io import ITEM, RATING, TS, USER, DatasetInfo, dataset_paths, update_checksum
from recsys.data.synthetic_config import SynthConfig
from recsys.data.synthetic_tables import (
    AGE_DRIFT_YEARS,
    DRIFT_OCCUPATIONS,
    GENRES,
    ids_of,
    items_table,
    users_table,
)
from recsys.files import atomic_path, write_json

N_CANDIDATES = 8
CHOICE_SIGNAL = 2.0  # logit per unit of affinity in the Gumbel-max choice
RATING_SCALE = 0.4
RATING_NOISE = 0.7
BLOCK = 1 << 15  # rows per block of the affinity computation (keeps the gathers in cache)
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
    moved: np.ndarray | None = None  # (n_items,) the second permutation's popularity

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
    shape = (
        config.n_items,
        config.popularity_exponent,
        config.popularity_offset,
        config.popularity_decay,
    )
    base = _power_law(rngs["popularity"], *shape)
    moved = _power_law(rngs["popularity_drift"], *shape)
    activity = rngs["activity"].lognormal(0.0, config.activity_sigma, config.n_users)
    return World(
        user_factors=user_factors.astype(np.float32),
        item_factors=item_factors.astype(np.float32),
        popularity=(1.0 - config.drift) * base + config.drift * moved,
        activity=activity / activity.sum(),
        moved=moved,
    )


def _rngs(seed: int) -> dict[str, np.random.Generator]:
    # One independent stream per purpose: drift changes no draw that it does not mean to.
    children = np.random.SeedSequence(seed).spawn(len(_STREAMS))
    return {name: np.random.default_rng(c) for name, c in zip(_STREAMS, children, strict=True)}


def _power_law(
    rng: np.random.Generator, n: int, exponent: float, offset: float = 0.0, decay: float = 0.0
) -> np.ndarray:
    """Popularity by rank ``r`` (1..n), ``(r + offset)^-exponent * exp(-decay * r / n)``, over
    a random permutation of the items; sums to 1."""
    rank = np.arange(1, n + 1, dtype=np.float64)
    weights = (rank + offset) ** -exponent
    if decay:
        weights *= np.exp(-decay * rank / n)
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
    _write_table(users_table(world, config, rngs["users"]), paths["users"])
    _write_table(items_table(world, rngs["items"]), paths["items"])
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
    user_ids, item_ids = ids_of("u", config.n_users), ids_of("i", config.n_items)
    user_cdf, item_cdf = _cdf(world.activity), _cdf(world.popularity)
    moved_cdf = _cdf(world.moved) if config.trend else None
    seen_users = np.zeros(config.n_users, dtype=bool)
    seen_items = np.zeros(config.n_items, dtype=bool)
    previous = np.full(config.n_users, -1, dtype=np.int64)  # each user's latest item
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
            if config.sequence or config.trend:
                cdfs = (user_cdf, item_cdf, moved_cdf)
                users, items, affinity = _draw_moving(world, config, cdfs, rng, lo, n, previous)
            else:  # the independent world: a chunk in one draw
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


def _draw_moving(
    world: World,
    config: SynthConfig,
    cdfs: tuple[np.ndarray, np.ndarray, np.ndarray | None],
    rng: np.random.Generator,
    lo: int,
    n: int,
    previous: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``lo .. lo + n`` of a world with ``sequence`` or ``trend``: users (n,), items (n,),
    affinity (n,), in blocks. ``cdfs``: the users', the items' and (with ``trend``) the second
    ranking's; ``previous`` (each user's latest item, -1 before the first) is read and
    updated."""
    user_cdf, base_cdf, moved_cdf = cdfs
    users, items = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    affinity = np.empty(n)
    step = _sequence_block(config.n_users)
    for a in range(0, n, step):
        b = min(n, a + step)
        u = _sample(user_cdf, rng, b - a)
        cands = _sample(base_cdf, rng, (b - a) * N_CANDIDATES).reshape(-1, N_CANDIDATES)
        if moved_cdf is not None:  # at a share t of the span: the moved ranking w.p. trend * t
            t = (lo + np.arange(a, b)) / config.n_interactions
            moved = rng.random(cands.shape) < config.trend * t[:, None]
            cands[moved] = _sample(moved_cdf, rng, int(moved.sum()))
        prev = previous[u]
        bonus = None
        if config.sequence:
            bonus = np.zeros(cands.shape, dtype=np.float32)
            has = prev >= 0
            bonus[has] = config.sequence * _similarity(world, prev[has], cands[has])
        users[a:b] = u
        items[a:b], affinity[a:b] = _choose(world, u, cands, rng, bonus)
        previous[u] = items[a:b]
    return users, items, affinity


def _sequence_block(n_users: int) -> int:
    """Rows drawn together in a moving world: few enough that a user rarely appears twice in a
    block (their previous item would be an older one), many enough to stay vectorised."""
    return int(np.clip(n_users // 16, 64, 4096))


def _similarity(world: World, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``sqrt(d) * V[a]·V[b]`` (unit variance) for items ``a`` (n,) and ``b`` (n, k)."""
    scale = np.float32(np.sqrt(world.item_factors.shape[1]))
    v = world.item_factors
    return np.einsum("nd,nkd->nk", v[a], v[b]) * scale


def _choose(
    world: World,
    users: np.ndarray,
    cands: np.ndarray,
    rng: np.random.Generator,
    bonus: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gumbel-max over the candidates (``bonus``: added to their logits): the chosen items
    (n,) and their affinity (n,)."""
    affinity = world.affinity(users, cands)  # (n, k)
    logits = CHOICE_SIGNAL * affinity + rng.gumbel(size=cands.shape)  # (n, k)
    if bonus is not None:
        logits += bonus
    pick = logits.argmax(axis=1)[:, None]  # (n, 1)
    items = np.take_along_axis(cands, pick, axis=1)[:, 0]
    return items, np.take_along_axis(affinity, pick, axis=1)[:, 0].astype(np.float64)


def _cdf(p: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(p)
    return cdf / cdf[-1]


def _sample(cdf: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    idx = np.searchsorted(cdf, rng.random(n), side="right")
    return np.minimum(idx, len(cdf) - 1)


def _write_table(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        pq.write_table(table, f)


def _ground_truth(config: SynthConfig) -> dict[str, str]:
    return {
        "regenerate": "recsys.data.synthetic.make_world(SynthConfig(**extra['config']))",
        "ids": "users u0..u{n_users-1}, items i0..i{n_items-1}: the row of U / V",
        "factors": "U (n_users, d), V (n_items, d), entries N(0, 1/d)",
        "affinity": "sqrt(d) * U[u].V[i], unit variance",
        "user_activity": f"lognormal(0, {config.activity_sigma}) weights",
        "item_popularity": (
            f"(rank + {config.popularity_offset})^-{config.popularity_exponent} * "
            f"exp(-{config.popularity_decay} rank / n_items) over a random permutation; a share "
            f"{config.drift} of the mass on a second permutation, and "
            f"{config.trend} * t more at a share t of the time span"
        ),
        "choice": (
            f"{N_CANDIDATES} candidates by popularity; Gumbel-max over {CHOICE_SIGNAL} * affinity"
            f" + {config.sequence} * sqrt(d) V[previous item].V[i]"
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
