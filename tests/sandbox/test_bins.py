"""Binning by rank: equal-count feature bins and the 5/20/50/20/5 % target bins."""

from __future__ import annotations

import numpy as np

from sandbox.bins import FEATURE_EDGES, TARGET_BINS, rank_bins, target_bins


def test_rank_bins_are_equal_count_and_follow_the_order():
    values = np.random.default_rng(0).standard_normal((3, 100))
    bins = rank_bins(values, FEATURE_EDGES)
    for row, binned in zip(values, bins, strict=True):
        assert np.bincount(binned).tolist() == [20, 20, 20, 20, 20]
        order = np.argsort(row)
        assert (np.diff(binned[order]) >= 0).all()


def test_target_bins_have_numerais_shares():
    binned = target_bins(np.random.default_rng(1).standard_normal(200))
    assert binned.dtype == np.float32
    values, counts = np.unique(binned, return_counts=True)
    assert tuple(values) == TARGET_BINS and counts.tolist() == [10, 40, 100, 40, 10]
