"""The previous Signals feature engineering (pandas on whole wide frames), kept for comparison.

`benchmarks/signals_features.py` times it beside `models.signals.compute_features`, and
`tests/models/test_signals_features.py` checks that the two give the same features. It reuses
the per-day pandas functions of models/signals.py, which did not change. Do not import it from
models/ or flows/.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from models.signals import (
    BASE_FEATURES,
    DIFFS,
    FEATURES,
    LAGS,
    MOMENTUM_HORIZONS,
    RETURN_HORIZONS,
    RSI_WINDOWS,
    VOLATILITY_WINDOWS,
    VOLUME_WINDOWS,
    momentum,
    pivot_prices,
    quintiles,
    relative_volume,
    returns,
    rsi,
    volatility,
)


def _daily_features(close: pd.DataFrame, volume: pd.DataFrame):
    """Yield (name, daily feature frame) one at a time, in BASE_FEATURES order, to save memory."""
    for w in RSI_WINDOWS:
        yield f"feature_rsi_{w}", rsi(close, w)
    for h in RETURN_HORIZONS:
        yield f"feature_return_{h}", returns(close, h)
    for h in MOMENTUM_HORIZONS:
        yield f"feature_momentum_{h}", momentum(close, h)
    for w in VOLATILITY_WINDOWS:
        yield f"feature_volatility_{w}", volatility(close, w)
    yield BASE_FEATURES[-1], relative_volume(volume, *VOLUME_WINDOWS)


def _at(frame: pd.DataFrame, dates: pd.DatetimeIndex) -> pd.DataFrame:
    """The row for each date: the last trading day on or before it, if at most a week before."""
    return frame.reindex(dates, method="ffill", tolerance=pd.Timedelta(days=7))


def compute_features_old(prices: pd.DataFrame, dates: Iterable) -> pd.DataFrame:
    """Quintile features for every symbol with a recent price at each date.

    Returns float32 FEATURES columns indexed by (date, symbol). A date that is not a trading
    day (a Friday holiday) takes the last trading day before it.
    """
    close, volume = pivot_prices(prices)
    days = pd.DatetimeIndex(sorted(set(pd.to_datetime(list(dates)))))
    past = {k: days - pd.Timedelta(weeks=k) for k in sorted({*LAGS, *DIFFS})}
    sample = days.append(list(past.values())).unique().sort_values()
    priced = _at(close, sample).notna()
    keep = priced.reindex(days).to_numpy(bool).ravel()  # (date, symbol) cells with a recent price
    values = np.empty((int(keep.sum()), len(FEATURES)), dtype=np.float32)
    column = {name: i for i, name in enumerate(FEATURES)}

    def put(name: str, frame: pd.DataFrame) -> None:
        values[:, column[name]] = frame.to_numpy(np.float32).ravel()[keep]

    for name, daily in _daily_features(close, volume):
        ranked = quintiles(_at(daily, sample).where(priced))
        now = ranked.reindex(days)
        put(name, now)
        for k in LAGS:
            put(f"{name}_lag{k}", ranked.reindex(past[k]))
        for k in DIFFS:
            put(f"{name}_diff{k}", now - ranked.reindex(past[k]).set_axis(days))
    index = pd.MultiIndex.from_product([days, close.columns], names=["date", "symbol"])
    return pd.DataFrame(values, index=index[keep], columns=FEATURES)


def load_prices_old(root, symbols=None, start=None, end=None) -> pd.DataFrame:
    """The previous PriceCache.load: every column, symbols as strings, pandas dedupe and sort."""
    from pathlib import Path

    from flows.prices import PRICE_COLUMNS

    chunks = sorted(Path(root).glob("prices-*.parquet"))
    filters = []
    if symbols is not None:
        filters.append(("symbol", "in", list(symbols)))
    if start is not None:
        filters.append(("date", ">=", pd.Timestamp(start)))
    if end is not None:
        filters.append(("date", "<", pd.Timestamp(end)))
    prices = pd.read_parquet(chunks, filters=filters or None)
    prices = prices.drop_duplicates(["symbol", "date"], keep="last")
    return prices.sort_values(["symbol", "date"], ignore_index=True)[PRICE_COLUMNS]
