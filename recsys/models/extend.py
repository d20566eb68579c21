"""Items added after training (``POST /items``, ``recsys items add``): a model version that
reads item content scores them from their text, with no retraining.

:func:`with_new_items` returns a copy of the model whose catalog also holds the new items,
appended in the order given; the loaded version itself is left as it was (a request still
running on it finishes on it). A model that scores items from interactions alone
(``takes_new_items`` False) is returned unchanged: the items wait for its next training.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from recsys.data.io import ITEM
from recsys.models.base import Recommender
from recsys.models.vocabulary import genres_of

CACHES = ("_unit", "_unit_of", "_member", "_member_of")  # derived from the old catalog


def with_new_items(model: Recommender, items: pd.DataFrame) -> Recommender:
    """``model`` with the ``items`` its vocabulary lacks appended (their popularity 0, their
    genres and content from the table); ``model`` itself when it takes none or none is new.

    Args:
        items: new items (``item_id``, ``title``, ``genres`` as ``"a|b"``, ``release_year``,
            ``description``; :data:`recsys.data.new_items.ITEM_COLUMNS`).
    """
    if not model.takes_new_items or not len(items):
        return model
    ids = items[ITEM].astype(str)
    fresh = items.assign(**{ITEM: ids})[~ids.isin(model._item_index)]
    fresh = fresh.drop_duplicates(ITEM).reset_index(drop=True)
    if not len(fresh):
        return model
    out = copy.copy(model)
    for name in CACHES:
        out.__dict__.pop(name, None)
    new_ids = fresh[ITEM].to_numpy(dtype=object)
    out._set_items(np.concatenate([model.item_ids, new_ids]))
    zeros = np.zeros(len(fresh), dtype=model.item_popularity.dtype)
    out.item_popularity = np.concatenate([model.item_popularity, zeros])
    old = model.item_genres or [""] * len(model.item_ids)
    out.item_genres = [*old, *genres_of(new_ids, fresh)]
    out._add_items(fresh)
    return out
