"""The item tower's content: its input rows, saved and loaded with the model, and the items
added after training (:mod:`recsys.models.extend`), embedded from their text and features
and added to a copy of the index. A mixin of :class:`~recsys.models.two_tower.TwoTower`: it
reads the model's config, vocabulary, encoder, module, embeddings and index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from recsys.content import encode_items, load_encoder
from recsys.models.content import ENCODER_DIR as CONTENT_ENCODER
from recsys.models.content import configured_content
from recsys.models.encoding import MAX_GENRES

CONTENT_FILE = "item_content.npy"  # the item tower's content input, row 0 the unknown item


class ItemContent:
    """The content half of the two-tower model's item side."""

    _item_content: np.ndarray | None = None  # (n_items + 1, dim) when the tower reads content
    content_encoder = None  # what encoded it (items added later encode with it)

    def genres_from_table(self) -> list[str]:
        """Each item's genres (``"a|b"``) as the item tower reads them: for model directories
        written before the vocabulary kept them."""
        names = sorted(self.encoder.genres, key=self.encoder.genres.get)  # codes 1..n
        codes = self._item_table[1:, :MAX_GENRES]  # (n_items, MAX_GENRES), 0 = none
        return ["|".join(names[c - 1] for c in row if c > 0) for row in codes]

    def _content_rows(self, items: pd.DataFrame | None) -> None:
        """The item tower's content input: ``(n_items + 1, dim)`` unit vectors (row 0, the
        unknown item, zeros) and their encoder, when the config reads content."""
        cfg, self._item_content = self.config, None
        vectors, self.content_encoder = configured_content(
            items, self.item_ids, cfg.content, cfg.content_dim
        )
        if vectors is not None:
            self._item_content = np.vstack([np.zeros((1, vectors.shape[1]), np.float32), vectors])

    @property
    def takes_new_items(self) -> bool:
        """A tower that reads content embeds a new item from its text, genres and year (its
        id reads as unknown, as every untrained id does), and its index takes it."""
        return self._item_content is not None

    def _add_items(self, fresh: pd.DataFrame) -> None:
        """Append ``fresh`` to the item table, the content input, the embeddings and the index:
        copies, and a new module with the old weights (the new ids' rows zero)."""
        n = len(fresh)
        self._item_table = np.vstack(
            [self._item_table, self.encoder.item_table(self.item_ids[-n:], fresh)[1:]]
        )
        self._item_content = np.vstack(
            [self._item_content, encode_items(fresh, self.content_encoder)]
        )
        state = self.net.state_dict()
        for key in ("item_tower.id.weight", "user_tower.history.weight"):
            state[key] = torch.cat([state[key], state[key].new_zeros(n, state[key].shape[1])])
        self.net = self.build_net(seed=False)
        state["item_tower.table"] = self.net.item_tower.table  # the new rows' genres and year
        self.net.load_state_dict(state, assign=True)  # the tensors given: a table's precision
        self.net.eval()
        codes = torch.arange(len(self.item_ids) - n + 1, len(self.item_ids) + 1)
        with torch.no_grad():
            added = self.net.item_tower(codes).numpy()
        self.item_embeddings = np.vstack([self.item_embeddings, added])
        self.index = self.index.with_added(added)

    def _save_content(self, directory: Path) -> list[str]:
        if self._item_content is None:
            return []
        np.save(directory / CONTENT_FILE, self._item_content)
        self.content_encoder.save(directory / CONTENT_ENCODER)
        return [CONTENT_FILE, CONTENT_ENCODER]

    def _load_content(self, directory: Path) -> None:
        self._item_content = self.content_encoder = None  # a version without content input
        if (directory / CONTENT_FILE).exists():
            self._item_content = np.load(directory / CONTENT_FILE)
            self.content_encoder = load_encoder(directory / CONTENT_ENCODER)
