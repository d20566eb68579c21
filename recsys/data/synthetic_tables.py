"""A synthetic world's side tables: users (age, gender, occupation, zip code) and items
(genres, release year), noisy projections of the latent factors, so that a feature model has
something real to use; ``drift`` makes users older and re-weights their occupations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.data.io import ITEM, USER
from recsys.data.movielens import GENRES as _ML_GENRES
from recsys.data.synthetic_config import SynthConfig

if TYPE_CHECKING:
    from recsys.data.synthetic import World

AGE_DRIFT_YEARS = 15.0  # how much older users are at drift=1
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


def _projections(factors: np.ndarray, rng: np.random.Generator, k: int) -> np.ndarray:
    """``k`` random linear views of the factors (n, d) -> (n, k), unit variance (rows ~ norm 1)."""
    return factors @ rng.standard_normal((factors.shape[1], k)).astype(np.float32)


def users_table(world: World, config: SynthConfig, rng: np.random.Generator) -> pa.Table:
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
            USER: ids_of("u", n),
            "age": pa.array(np.clip(np.rint(age), 7, 80).astype(np.int64)),
            "gender": pc.if_else(pa.array(male), "M", "F"),
            "occupation": pa.array(OCCUPATIONS).take(pa.array(occ_logits.argmax(axis=1))),
            "zip_code": pc.utf8_lpad(pc.cast(pa.array(zip_code), pa.string()), 5, "0"),
        }
    )


def items_table(world: World, rng: np.random.Generator) -> pa.Table:
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
    ids = ids_of("i", n)
    return pa.table(
        {
            ITEM: ids,
            "title": pc.binary_join_element_wise("Synthetic item ", ids, ""),
            "genres": genres,
            "release_year": pa.array(np.clip(np.rint(year), 1920, 2023).astype(np.int64)),
        }
    )


def ids_of(prefix: str, n: int) -> pa.Array:
    """``prefix0`` .. ``prefix{n-1}``: the row of the factors."""
    return pc.binary_join_element_wise(prefix, pc.cast(pa.array(np.arange(n)), pa.string()), "")
