"""RP3beta's walk, computed a block of rows at a time: the same matrix as in one piece."""

import numpy as np
import pytest
import scipy.sparse as sp

from recsys.config import RecsysError
from recsys.models.rp3beta import RP3betaConfig, walk_weights


def binary(users: int, items: int, density: float, seed: int) -> sp.csr_matrix:
    x = sp.random(users, items, density=density, random_state=seed, format="csr")
    x.data[:] = 1.0
    return x


@pytest.mark.parametrize("rows_per_block", [1, 7, 120])
def test_the_walk_in_blocks_is_the_walk_in_one_piece(rows_per_block):
    x = binary(300, 120, 0.08, seed=1)
    whole = walk_weights(x, RP3betaConfig(top_k=20))
    blocks = walk_weights(x, RP3betaConfig(top_k=20, block_cells=rows_per_block * 120))
    assert (blocks != whole).nnz == 0 and blocks.shape == (120, 120)
    assert whole.diagonal().max() == 0.0  # no walk back to the item itself
    assert (np.diff(whole.indptr) <= 20).all()  # top_k neighbours per item


def test_a_catalog_over_the_limit_is_refused_with_the_numbers():
    with pytest.raises(RecsysError, match="120 items exceed max_items=100"):
        walk_weights(binary(30, 120, 0.1, seed=2), RP3betaConfig(max_items=100))
