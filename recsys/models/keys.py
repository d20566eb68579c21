"""String ids (a model's users) in one sorted fixed-width array, found by binary search.

A million user ids held as Python strings, twice (the two-tower's vocabulary and the feature
encoder's table), each with a pandas hash index, cost a serving replica a Python object and a
hash slot per id and copy; held here, as UTF-8 bytes of one width, they cost the ids' bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

BULK = 1 << 16  # more lookups than this at once: a transient hash index (training's rows)


def _utf8(values) -> np.ndarray:
    """``values`` (strings) as a numpy bytes array: one cast for ASCII, an encoding else."""
    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.dtype.kind == "S":
        return arr
    if arr.size == 0:
        return np.zeros(0, dtype="S1")
    try:
        return arr.astype("S")
    except UnicodeEncodeError:
        return np.char.encode(arr.astype(str), "utf-8")


class Keys:
    """Sorted unique string ids; :meth:`positions` finds many at once.

    Build it with :meth:`sorting` (any ids, and the order that sorts them) or :meth:`of`.
    Equal ids are one id: the positions are those of the sorted unique ids.
    """

    def __init__(self, sorted_bytes: np.ndarray):
        self._ids = sorted_bytes
        self._ids.setflags(write=False)

    @classmethod
    def sorting(cls, ids: Iterable[str]) -> tuple[Keys, np.ndarray]:
        """The keys of ``ids`` (unique), and the order that sorts ``ids`` into them: the
        positions, in ``ids``, of each key's first occurrence."""
        raw = _utf8(ids if isinstance(ids, np.ndarray) else list(ids))
        _, first = np.unique(raw, return_index=True)  # sorted, first occurrences
        return cls(raw[first]), first

    @classmethod
    def of(cls, ids: Iterable[str]) -> Keys:
        return cls.sorting(ids)[0]

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, position: int) -> str:
        return self._ids[position].decode("utf-8")

    def tolist(self) -> list[str]:
        return [v.decode("utf-8") for v in self._ids.tolist()]

    @property
    def nbytes(self) -> int:
        return self._ids.nbytes

    def positions(self, values) -> np.ndarray:
        """``(len(values),)`` int64: each value's position among the keys, -1 where absent.
        ``values``: strings, or another :class:`Keys`."""
        if not isinstance(values, Keys) and len(values) > BULK:
            index = pd.Index(self.tolist(), dtype=object)  # a hash: faster than a search per row
            return index.get_indexer(np.asarray(values, dtype=object)).astype(np.int64)
        query = values._ids if isinstance(values, Keys) else _utf8(values)
        if not len(self) or not len(query):
            return np.full(len(query), -1, dtype=np.int64)
        # a longer value would be cut to the keys' width by the cast: it is no key
        fits = np.char.str_len(query) <= self._ids.dtype.itemsize
        cut = query.astype(self._ids.dtype)
        at = np.searchsorted(self._ids, cut).clip(max=len(self) - 1)
        return np.where(fits & (self._ids[at] == cut), at, -1).astype(np.int64)
