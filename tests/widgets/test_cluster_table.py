"""The cluster table's number formats (the table itself is checked through the Cluster tab
in test_cluster_widget.py)."""

import numpy as np
import pytest

from napari_patchwork._widgets import cluster_table


@pytest.mark.parametrize(
    "centres, decimals", [([[127.4, 92.1, 61.1]], 0), ([[0.51, 0.2]], 3), ([[12.5]], 1)]
)
def test_centre_decimals(centres, decimals):
    assert cluster_table.centre_decimals(np.array(centres)) == decimals
