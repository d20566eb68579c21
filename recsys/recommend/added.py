"""A version's catalog with the items added since it was trained (the item log,
:class:`recsys.data.new_items.ItemLog`): what every replica serves and what
``recsys recommend --new-items`` computes, one function for both."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.data.io import ITEM
from recsys.models.extend import with_new_items
from recsys.recommend.stages import PreparedModel


def with_added(prepared: PreparedModel, items: pd.DataFrame) -> PreparedModel:
    """``prepared`` with ``items`` (new items, in log order) in its catalog, their titles
    among its titles; ``prepared`` itself when the model takes none of them."""
    model = with_new_items(prepared.model, items)
    if model is prepared.model:
        return prepared
    new = set(model.item_ids[len(prepared.item_ids) :])
    named = items.assign(**{ITEM: items[ITEM].astype(str)}).drop_duplicates(ITEM)
    named = named[named[ITEM].isin(new) & named["title"].notna()] if "title" in named else named[:0]
    titles = {**prepared.titles, **dict(zip(named[ITEM], named["title"], strict=True))}
    out = PreparedModel(model, prepared.version, titles, prepared.lineage)
    if prepared.items is not None:  # the items' context: nothing is known of a new item yet
        n = len(out.item_ids) - len(prepared.item_ids)
        out.items = {k: np.concatenate([v, np.full(n, np.nan)]) for k, v in prepared.items.items()}
    return out
