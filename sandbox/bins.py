"""Binning by rank within an era, shared by the Classic and Signals generators."""

from __future__ import annotations

import numpy as np

TARGET_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)
TARGET_SHARES = (0.05, 0.20, 0.50, 0.20, 0.05)
FEATURE_EDGES = np.arange(1, 5) / 5.0  # five equal-count feature bins, 0..4


def rank_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index by rank along the last axis; `edges` are the cumulative shares of the bins."""
    n = values.shape[-1]
    order = np.argsort(values, axis=-1)
    cuts = np.floor(np.asarray(edges) * n + 0.5).astype(np.int64)
    bin_of_rank = np.searchsorted(cuts, np.arange(n), side="right").astype(np.int8)
    bins = np.empty(values.shape, dtype=np.int8)
    np.put_along_axis(bins, order, np.broadcast_to(bin_of_rank, values.shape), axis=-1)
    return bins


def target_bins(values: np.ndarray) -> np.ndarray:
    """Values binned 5/20/50/20/5 % by rank along the last axis, into TARGET_BINS (float32)."""
    edges = np.cumsum(TARGET_SHARES)[:-1]
    return np.asarray(TARGET_BINS, dtype=np.float32)[rank_bins(values, edges)]
