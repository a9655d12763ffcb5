"""The vectorized Signals features equal the previous pandas implementation, cell for cell."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.signals_old import compute_features_old
from models import panel, signals


def _awkward_prices(seed: int = 7) -> pd.DataFrame:
    """Seeded prices with what real data has: holidays, gaps, a late listing, a stale ticker,
    flat stretches (RSI 50 and 100 ties), zero volume, and rows in no particular order."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2021-01-01", "2023-06-30")
    frames = []
    for i in range(40):
        close = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
        if i % 5 == 0:
            close[300:330] = close[300]  # flat: no gains, no losses
        if i % 7 == 0:
            close[400:420] = np.maximum.accumulate(close[400:420])  # only rising, or flat
        volume = rng.uniform(1e5, 1e6, len(days))
        volume[rng.random(len(days)) < 0.02] = 0
        frame = pd.DataFrame({"symbol": f"S{i:02d}", "date": days, "close": close})
        frame["volume"] = volume
        if i == 3:
            frame = frame[frame["date"] >= "2022-03-01"]  # listed late
        if i == 4:
            frame = frame[frame["date"] < "2023-02-01"]  # stale: stops trading
        if i == 5:
            frame = frame.drop(frame.index[rng.random(len(frame)) < 0.1])  # random gaps
        frames.append(frame)
    prices = pd.concat(frames, ignore_index=True)
    prices = prices[~prices["date"].isin(pd.to_datetime(["2022-04-15", "2023-04-07"]))]
    return prices.sample(frac=1, random_state=seed).reset_index(drop=True)


def test_compute_features_equal_the_previous_implementation():
    prices = _awkward_prices()
    fridays = pd.date_range("2022-01-07", "2023-06-30", freq="W-FRI")
    new = signals.compute_features(prices, fridays, block=16)  # several symbol blocks
    old = compute_features_old(prices, fridays)
    # Quintiles are whole numbers: "within float tolerance" is exact equality here.
    pd.testing.assert_frame_equal(new, old, check_exact=True)
    assert new[signals.BASE_FEATURES].notna().mean().min() > 0.5  # the test compares values


def test_quintiles_equal_pandas_with_ties_and_nan():
    rng = np.random.default_rng(1)
    values = rng.integers(0, 6, (30, 50)).astype(float)  # many ties
    values[rng.random(values.shape) < 0.1] = np.nan
    values[3] = np.nan  # a date nobody traded
    expected = signals.quintiles(pd.DataFrame(values)).to_numpy()
    np.testing.assert_array_equal(panel.quintiles(values, block=7), expected)


def test_ffill_carries_at_most_limit_rows_like_pandas():
    rng = np.random.default_rng(2)
    table = rng.normal(size=(60, 9))
    table[rng.random(table.shape) < 0.4] = np.nan
    table[:8, 0] = np.nan  # nothing to carry yet
    expected = pd.DataFrame(table).ffill(limit=3).to_numpy()
    np.testing.assert_array_equal(panel.ffill(table, 3), expected)
