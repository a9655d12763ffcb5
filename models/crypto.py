"""The example Crypto model: daily price features per coin, LightGBM, ranked predictions.

Numerai Crypto names coins by symbol (`BTC`); Yahoo prices them as `BTC-USD`, every day of the
week. The steps, in the order a round runs them:
1. map_symbols: Numerai's symbols -> Yahoo symbols.
2. compute_features: daily prices -> per-date quintile features (returns, RSI, volatility, volume).
3. build_training_set: features joined to Numerai's daily targets by symbol and date.
4. fit, then predict_live: LightGBM, predictions ranked into (0, 1), with a coverage count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.signals import (
    MIN_TICKERS,
    PRICE_INPUTS,  # noqa: F401  # the price columns the Crypto features read too
    Coverage,
    TooFewTickers,
    pivot_prices,
    quintiles,
    rank_01,
    relative_volume,
    returns,
    rsi,
    volatility,
)

MIN_SYMBOLS = MIN_TICKERS  # Numerai rejects a Crypto submission with fewer live symbols, too.
YAHOO_SUFFIX = "-USD"
RETURN_DAYS = (1, 3, 7, 14, 30)  # windows in days: coins trade every day
RSI_DAYS = (7, 14)
VOLATILITY_DAYS = (7, 30)
VOLUME_DAYS = (3, 30)
HISTORY_DAYS = 45  # days of prices needed before the first feature date
FEATURES = [
    *(f"feature_return_{d}" for d in RETURN_DAYS),
    *(f"feature_rsi_{d}" for d in RSI_DAYS),
    *(f"feature_volatility_{d}" for d in VOLATILITY_DAYS),
    "feature_relative_volume_{}_{}".format(*VOLUME_DAYS),
]
DEFAULT_PARAMS = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "max_depth": 5,
    "num_leaves": 2**5 - 1,
    "colsample_bytree": 0.5,
    "verbose": -1,
}
_SYMBOL = re.compile(r"[A-Z0-9]+")


def map_symbols(symbols: Iterable[str], overrides: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The Yahoo symbol of each Numerai symbol (`BTC` -> `BTC-USD`); missing for a symbol that
    is not plain letters and digits, unless overrides names it."""
    overrides = overrides or {}
    names = list(dict.fromkeys(str(s) for s in symbols))
    yahoo = [
        overrides.get(s) or (s + YAHOO_SUFFIX if _SYMBOL.fullmatch(s) else None) for s in names
    ]
    return pd.DataFrame({"symbol": names, "yahoo": yahoo})


def _daily_features(close: pd.DataFrame, volume: pd.DataFrame):
    for d in RETURN_DAYS:
        yield returns(close, d)
    for d in RSI_DAYS:
        yield rsi(close, d)
    for d in VOLATILITY_DAYS:
        yield volatility(close, d)
    yield relative_volume(volume, *VOLUME_DAYS)


def compute_features(prices: pd.DataFrame, dates: Iterable) -> pd.DataFrame:
    """Quintile features (float32 FEATURES) indexed by (date, yahoo symbol), for every symbol
    with a price on that date (or at most a few days before it)."""
    close, volume = pivot_prices(prices)
    days = pd.DatetimeIndex(sorted(set(pd.to_datetime(list(dates)))))
    priced = close.reindex(days).notna().to_numpy(bool).ravel()
    columns = [
        quintiles(daily.reindex(days)).to_numpy(np.float32).ravel()[priced]
        for daily in _daily_features(close, volume)
    ]
    index = pd.MultiIndex.from_product([days, close.columns], names=["date", "symbol"])
    return pd.DataFrame(np.column_stack(columns), index=index[priced], columns=FEATURES)


def price_range(dates: Iterable) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the daily prices compute_features needs for these dates."""
    stamps = pd.to_datetime(list(dates))
    start = stamps.min() - pd.Timedelta(days=HISTORY_DAYS)
    return start.normalize(), stamps.max().normalize() + pd.Timedelta(days=1)


def build_training_set(
    features: pd.DataFrame, targets: pd.DataFrame, symbol_map: pd.DataFrame, target: str
) -> pd.DataFrame:
    """Numerai's targets (symbol, date, target) joined to the features of that day."""
    rows = targets[["symbol", "date", target]].dropna(subset=[target])
    rows = rows.assign(date=pd.to_datetime(rows["date"]).astype(features.index.levels[0].dtype))
    rows = rows.merge(symbol_map.dropna(subset=["yahoo"]), on="symbol")
    rows = rows.join(features, on=["date", "yahoo"], how="inner")
    return rows.drop(columns="yahoo").reset_index(drop=True)


def fit(train: pd.DataFrame, target: str = "target", params: dict | None = None):
    """A LightGBM regressor of target on FEATURES."""
    model = lgb.LGBMRegressor(**(DEFAULT_PARAMS | (params or {})))
    model.fit(train[FEATURES], train[target])
    return model


def predict_live(
    model, features: pd.DataFrame, universe: Iterable[str], symbol_map: pd.DataFrame, date
) -> tuple[pd.DataFrame, Coverage]:
    """The submission (symbol, signal) for the live universe at date, and its coverage.

    A symbol is predicted when it maps to Yahoo and has at least half its features at date.
    Below MIN_SYMBOLS it raises TooFewTickers rather than return a thin submission.
    """
    live = pd.Series(list(universe), dtype="str").dropna().drop_duplicates()
    mapped = symbol_map[symbol_map["symbol"].isin(live)].dropna(subset=["yahoo"])
    dated = features.index.get_level_values("date") == pd.Timestamp(date)
    rows = mapped.join(features[dated].droplevel("date"), on="yahoo", how="inner")
    usable = rows[rows[FEATURES].notna().mean(axis=1) >= 0.5]
    submission = pd.DataFrame({"symbol": usable["symbol"].to_numpy(), "signal": 0.5})
    if len(usable):
        submission["signal"] = rank_01(model.predict(usable[FEATURES]))
    coverage = Coverage(
        universe=len(live),
        mapped=len(mapped),
        priced=len(rows),
        predicted=len(submission),
        unmapped=tuple(sorted(set(live) - set(mapped["symbol"]))),
        unpriced=tuple(sorted(set(mapped["symbol"]) - set(rows["symbol"]))),
    )
    if coverage.predicted < MIN_SYMBOLS:
        raise TooFewTickers(coverage)
    return submission, coverage
