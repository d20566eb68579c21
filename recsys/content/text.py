"""An item's text, the input of every text encoder: its title, genres, release year and any
description, read from the items table in the catalog's row order."""

from __future__ import annotations

import pandas as pd

from recsys.config import RecsysError
from recsys.data.io import GENRE_SEP

TITLE, GENRES, YEAR, DESCRIPTION = "title", "genres", "release_year", "description"
TEXT_COLUMNS = (TITLE, GENRES, DESCRIPTION)  # a table needs one of these to have content


def item_text(items: pd.DataFrame) -> pd.Series:
    """One text per item row: ``"title. genre genre. year. description"``.

    Missing parts (null, empty, absent columns) are skipped; genres ``"a|b"`` read as
    ``"a b"``; a year reads as a whole number (``1995``, not ``1995.0``).

    Args:
        items: the items table (MovieLens-like: ``title``, ``genres``, ``release_year``,
            optionally ``description``).

    Returns:
        A str Series aligned with ``items.index`` ("" for an item with no text at all).

    Raises:
        RecsysError: the table has none of the text columns, naming them and those it has.
    """
    if not any(c in items.columns for c in TEXT_COLUMNS):
        raise RecsysError(
            f"items: no text column; expected one of {list(TEXT_COLUMNS)}, "
            f"found {list(items.columns)}"
        )
    parts = [
        _strings(items, TITLE),
        _strings(items, GENRES).str.replace(GENRE_SEP, " ", regex=False).str.strip(),
        _years(items),
        _strings(items, DESCRIPTION),
    ]
    texts = [". ".join(p for p in row if p) for row in zip(*parts, strict=True)]
    return pd.Series(texts, index=items.index, dtype=object, name="text")


def has_text(items: pd.DataFrame | None) -> bool:
    """Whether ``items`` has a text column (title, genres or description) with at least one
    non-empty value; False for no table."""
    if items is None:
        return False
    return any(_strings(items, c).ne("").any() for c in TEXT_COLUMNS if c in items.columns)


def _strings(items: pd.DataFrame, column: str) -> pd.Series:
    """A column as stripped str, missing values (and an absent column) as ""."""
    if column not in items.columns:
        return pd.Series("", index=items.index, dtype=object)
    values = items[column]
    return values.astype(object).where(values.notna(), "").astype(str).str.strip()


def _years(items: pd.DataFrame) -> pd.Series:
    """The release year as a whole number's text; missing or unreadable years as ""."""
    if YEAR not in items.columns:
        return pd.Series("", index=items.index, dtype=object)
    years = pd.to_numeric(items[YEAR], errors="coerce").round()
    return years.astype("Int64").astype(str).where(years.notna(), "")
