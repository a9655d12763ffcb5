"""The example Signals model: price features per ticker, LightGBM, predictions ranked into (0, 1).

The steps, in the order a round runs them:
1. map_tickers: Numerai's tickers ("AAPL US") -> Yahoo symbols ("AAPL").
2. compute_features: daily prices -> per-date quintile features, with lags and differences
   (daily_features, then rank_features).
3. build_training_set: features joined to Numerai's targets by ticker and Friday.
4. fit, then predict_live: LightGBM, predictions ranked into (0, 1), with a coverage count.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd

from models import panel

MIN_TICKERS = 100  # Numerai rejects a Signals submission with fewer valid tickers.

# Feature windows, in trading days.
RSI_WINDOWS = (5, 14, 21)
RETURN_HORIZONS = (5, 21, 63)
MOMENTUM_HORIZONS = (126, 252)  # momentum skips the latest month, where returns tend to revert
MOMENTUM_SKIP = 21
VOLATILITY_WINDOWS = (21, 63)
VOLUME_WINDOWS = (5, 63)  # recent average volume relative to the longer average
LAGS = (1, 2)  # in weeks; every feature also gets its value LAGS weeks earlier ...
DIFFS = (1,)  # ... and its change over DIFFS weeks
_WEEKS = tuple(sorted({*LAGS, *DIFFS}))  # the past weeks a feature date also needs
FILL_LIMIT = 5  # trading days a price is carried over a gap (a holiday) before it counts as stale
PRICE_INPUTS = ("close", "volume")  # the price columns compute_features reads
HISTORY_DAYS = 400  # calendar days of prices needed before the first feature date

DEFAULT_PARAMS = {
    "n_estimators": 2000,
    "learning_rate": 0.01,
    "max_depth": 5,
    "num_leaves": 2**5 - 1,
    "colsample_bytree": 0.1,
    "verbose": -1,
}


def _base_feature_names() -> list[str]:
    return [
        *(f"feature_rsi_{w}" for w in RSI_WINDOWS),
        *(f"feature_return_{h}" for h in RETURN_HORIZONS),
        *(f"feature_momentum_{h}" for h in MOMENTUM_HORIZONS),
        *(f"feature_volatility_{w}" for w in VOLATILITY_WINDOWS),
        "feature_relative_volume_{}_{}".format(*VOLUME_WINDOWS),
    ]


BASE_FEATURES = _base_feature_names()
FEATURES = [
    *BASE_FEATURES,
    *(f"{name}_lag{lag}" for name in BASE_FEATURES for lag in LAGS),
    *(f"{name}_diff{d}" for name in BASE_FEATURES for d in DIFFS),
]


@dataclass(frozen=True)
class Coverage:
    """How much of the live universe made it into the submission, and who fell out where."""

    universe: int
    mapped: int
    priced: int
    predicted: int
    unmapped: tuple[str, ...]  # no Yahoo symbol for these Numerai tickers
    unpriced: tuple[str, ...]  # mapped, but no recent prices (unknown to Yahoo, or stale)

    def summary(self) -> str:
        return (
            f"{self.universe} live tickers: {self.mapped} mapped to Yahoo, "
            f"{self.priced} with recent prices, {self.predicted} predicted"
        )


class TooFewTickers(ValueError):
    """Fewer than MIN_TICKERS live tickers could be predicted: Numerai would reject it."""

    def __init__(self, coverage: Coverage):
        self.coverage = coverage
        super().__init__(
            f"Only {coverage.predicted} tickers can be predicted; Numerai needs at least "
            f"{MIN_TICKERS}. {coverage.summary()}. Check the ticker map and the price source."
        )


# --- 1. tickers -------------------------------------------------------------------------------


def map_tickers(
    numerai_tickers: Iterable[str],
    exchanges: pd.DataFrame,
    overrides: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Yahoo symbol for each Numerai ticker; missing when its exchange is not in the table.

    A Numerai ticker is a Bloomberg ticker, "<root> <exchange code>". The exchanges table
    (columns bloomberg_code, root_prefix, yahoo_suffix, zero_pad) gives the Yahoo suffix per
    exchange code; overrides maps single tickers that the rules get wrong.
    """
    rules: dict[str, list] = {}
    for row in exchanges.itertuples():
        rules.setdefault(row.bloomberg_code, []).append(row)
    overrides = overrides or {}
    tickers = list(dict.fromkeys(numerai_tickers))
    yahoo = [overrides.get(t) or _to_yahoo(t, rules) for t in tickers]
    return pd.DataFrame({"numerai_ticker": tickers, "yahoo": yahoo})


def _to_yahoo(ticker: str, rules: dict[str, list]) -> str | None:
    root, _, code = ticker.strip().rpartition(" ")
    for rule in rules.get(code, []):
        if root and root.startswith(rule.root_prefix):
            if root.isdigit():
                root = root.zfill(rule.zero_pad)  # Hong Kong: "700" -> "0700"
            return root.replace("/", "-") + rule.yahoo_suffix  # share classes: "BRK/B" -> "BRK-B"
    return None


# --- 2. features ------------------------------------------------------------------------------
# Each function takes a wide frame (one row per trading day, one column per symbol), so a
# rolling window runs over all symbols at once.


def rsi(close: pd.DataFrame, window: int) -> pd.DataFrame:
    """Relative strength index, 0-100, from simple moving averages of daily gains and losses.

    RSI = 100 * average gain / (average gain + average loss); 50 when the price did not move.
    """
    change = close.diff()
    gain = change.clip(lower=0).rolling(window).mean()
    loss = (-change).clip(lower=0).rolling(window).mean()
    total = gain + loss
    return (100 * gain / total).where(total > 0, 50.0).where(total.notna())


def returns(close: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Return over the last horizon trading days."""
    return close / close.shift(horizon) - 1


def momentum(close: pd.DataFrame, horizon: int, skip: int = MOMENTUM_SKIP) -> pd.DataFrame:
    """Return from horizon trading days ago up to skip trading days ago."""
    return close.shift(skip) / close.shift(horizon) - 1


def volatility(close: pd.DataFrame, window: int) -> pd.DataFrame:
    """Standard deviation of daily log returns over window trading days."""
    return np.log(close).diff().rolling(window).std()


def relative_volume(volume: pd.DataFrame, short: int, long: int) -> pd.DataFrame:
    """Average volume over short days divided by average volume over long days."""
    return volume.rolling(short).mean() / volume.rolling(long).mean()


def quintiles(frame: pd.DataFrame) -> pd.DataFrame:
    """Rank each row (a date) across its columns (symbols) into quintiles 0-4; NaN stays NaN."""
    rank = frame.rank(axis=1)  # 1..n, ties share their average rank
    count = frame.count(axis=1)
    return np.floor((rank - 1).mul(5).div(count, axis=0))


def pivot_prices(prices: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long prices (symbol, date, close, volume) -> wide close and volume, gaps carried forward.

    A symbol missing a day that others traded (a holiday on its exchange) keeps its last price
    for up to FILL_LIMIT days; after that its close is NaN, i.e. stale.
    """
    row, dates = pd.factorize(prices["date"], sort=True)
    col, symbols = pd.factorize(prices["symbol"], sort=True)

    def wide(values) -> pd.DataFrame:
        # Column-major ("F") storage keeps each symbol's days together: rolling windows run faster.
        table = np.full((len(dates), len(symbols)), np.nan, order="F")
        table[row, col] = values
        return pd.DataFrame(
            table, index=pd.DatetimeIndex(dates), columns=pd.Index(np.asarray(symbols))
        )

    close = wide(prices["close"]).ffill(limit=FILL_LIMIT)
    return close, wide(prices["volume"]).fillna(0).where(close.notna())


def compute_features(prices: pd.DataFrame, dates: Iterable, block: int = 256) -> pd.DataFrame:
    """Quintile features for every symbol with a recent price at each date.

    Returns float32 FEATURES columns indexed by (date, symbol). A date that is not a trading
    day (a Friday holiday) takes the last trading day before it, if at most a week before.
    The same numbers as the pandas functions above (rsi, returns, ...) ranked by quintiles(),
    but each window is read only at the dates needed, `block` symbols at a time.

    In two steps, `rank_features(daily_features(prices, dates))`: a caller that hands the
    prices straight to daily_features (as the node's features step does) frees them before the
    ranked features are built, so the two never exist at once.
    """
    return rank_features(daily_features(prices, dates, block))


@dataclass
class DailyFeatures:
    """The BASE_FEATURES of each symbol at the days compute_features needs, before ranking.

    `raw[i]` is a (sample day, symbol) array of BASE_FEATURES[i]; `priced` marks the cells with
    a recent price. It holds no reference to the prices it came from.
    """

    days: pd.DatetimeIndex  # the dates asked for
    sample: pd.DatetimeIndex  # those dates and the dates of their lags and differences
    symbols: pd.Index
    raw: list[np.ndarray | None]
    priced: np.ndarray


def daily_features(prices: pd.DataFrame, dates: Iterable, block: int = 256) -> DailyFeatures:
    """The first step of compute_features: each base feature at the needed days, unranked."""
    trading, symbols, blocks = panel.pivot_blocks(prices, ["close", "volume"], block)
    days = pd.DatetimeIndex(sorted(set(pd.to_datetime(list(dates)))))
    sample = days.append([days - pd.Timedelta(weeks=k) for k in _WEEKS]).unique().sort_values()
    at = trading.get_indexer(sample, method="ffill", tolerance=pd.Timedelta(days=7))
    raw: list[np.ndarray | None] = [np.empty((len(sample), len(symbols))) for _ in BASE_FEATURES]
    priced = np.empty((len(sample), len(symbols)), dtype=bool)
    for cols, (close, volume) in blocks:
        close = panel.ffill(close, FILL_LIMIT)
        volume = np.where(np.isnan(close), np.nan, np.nan_to_num(volume, nan=0.0))
        priced[:, cols] = (at >= 0)[:, None] & ~np.isnan(close[at])
        for i, values in enumerate(_daily_at(close, volume, at)):
            raw[i][:, cols] = values  # type: ignore[index]  # none is None yet
    return DailyFeatures(days, pd.DatetimeIndex(sample), symbols, raw, priced)


def rank_features(daily: DailyFeatures) -> pd.DataFrame:
    """The second step of compute_features: rank each base feature per day into quintiles, with
    its lags and differences. Frees `daily`'s arrays as it goes (it cannot be ranked twice)."""
    days, sample, priced = daily.days, daily.sample, daily.priced
    now_rows = sample.get_indexer(days)
    past_rows = {k: sample.get_indexer(days - pd.Timedelta(weeks=k)) for k in _WEEKS}
    keep = priced[now_rows].ravel()  # (date, symbol) cells with a recent price
    pick = slice(None) if keep.all() else np.flatnonzero(keep)
    # Column-major: a column's pages are touched only when it is written, as raw is freed.
    values = np.empty((int(keep.sum()), len(FEATURES)), dtype=np.float32, order="F")
    column = {name: i for i, name in enumerate(FEATURES)}
    for i, name in enumerate(BASE_FEATURES):
        raw, daily.raw[i] = daily.raw[i], None  # freed as it is ranked
        if raw is None:
            raise ValueError("these daily features were ranked already")
        raw[~priced] = np.nan
        ranked = panel.quintiles(raw)
        del raw
        now = ranked[now_rows]
        values[:, column[name]] = now.ravel()[pick]
        for k in LAGS:
            values[:, column[f"{name}_lag{k}"]] = ranked[past_rows[k]].ravel()[pick]
        for k in DIFFS:
            change = now - ranked[past_rows[k]]
            values[:, column[f"{name}_diff{k}"]] = change.ravel()[pick]
    index = pd.MultiIndex.from_product([days, daily.symbols], names=["date", "symbol"])
    index = index if isinstance(pick, slice) else index[pick]
    return pd.DataFrame(values, index=index, columns=FEATURES, copy=False)


def _daily_at(close: np.ndarray, volume: np.ndarray, at: np.ndarray):
    """The BASE_FEATURES of (day, symbol) close and volume at rows `at`, in order."""
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.diff(close, axis=0, prepend=np.nan)
        gains = panel.Windows(np.clip(change, 0, None), at)
        losses = panel.Windows(np.clip(-change, 0, None), at)
        del change
        for w in RSI_WINDOWS:
            gain, loss = gains.mean(w), losses.mean(w)
            total = gain + loss
            yield np.where(np.isnan(total), np.nan, np.where(total > 0, 100 * gain / total, 50.0))
        del gains, losses
        now = close[at]
        for h in RETURN_HORIZONS:
            yield now / panel.shifted(close, at, h) - 1
        for h in MOMENTUM_HORIZONS:
            yield panel.shifted(close, at, MOMENTUM_SKIP) / panel.shifted(close, at, h) - 1
        log_returns = panel.Windows(np.diff(np.log(close), axis=0, prepend=np.nan), at, True)
        for w in VOLATILITY_WINDOWS:
            yield log_returns.std(w)
        del log_returns
        volumes = panel.Windows(volume, at)
        short, long = VOLUME_WINDOWS
        yield volumes.mean(short) / volumes.mean(long)


def price_range(dates: Iterable) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of the daily prices compute_features needs for these dates."""
    stamps = pd.to_datetime(list(dates))
    start = stamps.min() - pd.Timedelta(days=HISTORY_DAYS) - pd.Timedelta(weeks=max(LAGS))
    return start.normalize(), stamps.max().normalize() + pd.Timedelta(days=1)


# --- 3. training set --------------------------------------------------------------------------


def build_training_set(
    features: pd.DataFrame,
    targets: pd.DataFrame,
    ticker_map: pd.DataFrame,
    target: str = "target",
) -> pd.DataFrame:
    """Numerai's targets (numerai_ticker, date, target) joined to the features on that Friday."""
    rows = targets[["numerai_ticker", "date", target]].dropna(subset=[target])
    rows = rows.assign(date=pd.to_datetime(rows["date"]))
    not_friday = rows.loc[rows["date"].dt.day_of_week != 4, "date"].unique()
    if len(not_friday):
        shown = ", ".join(str(d.date()) for d in not_friday[:5])
        raise ValueError(f"Signals targets are dated on Fridays; these dates are not: {shown}")
    rows = rows.merge(ticker_map.dropna(subset=["yahoo"]), on="numerai_ticker")
    rows = rows.astype({"date": features.index.levels[0].dtype})
    rows = rows.join(features, on=["date", "yahoo"], how="inner")
    return rows.drop(columns="yahoo").reset_index(drop=True)


# --- 4. model ---------------------------------------------------------------------------------


def fit(
    train: pd.DataFrame, target: str = "target", params: dict | None = None
) -> lgb.LGBMRegressor:
    """A LightGBM regressor of target on FEATURES."""
    model = lgb.LGBMRegressor(**(DEFAULT_PARAMS | (params or {})))
    model.fit(train[FEATURES], train[target])
    return model


def rank_01(values) -> np.ndarray:
    """Ranks scaled into the open interval (0, 1): (rank - 0.5) / n, ties sharing a rank."""
    ranks = pd.Series(np.asarray(values, dtype=float)).rank(method="average")
    return ((ranks - 0.5) / len(ranks)).to_numpy()


def predict_live(
    model,
    features: pd.DataFrame,
    live_tickers: Iterable[str],
    ticker_map: pd.DataFrame,
    date,
) -> tuple[pd.DataFrame, Coverage]:
    """The submission (numerai_ticker, signal) for the live universe at date, and its coverage.

    A ticker is predicted when it maps to Yahoo, has features at date (so a recent price) and
    at least half of the current ones. Below MIN_TICKERS it raises TooFewTickers rather than
    return a thin submission: also when compute_features was not given this date.
    """
    universe = pd.Series(list(live_tickers), dtype="str").dropna().drop_duplicates()
    mapping = ticker_map[ticker_map["numerai_ticker"].isin(universe)]
    mapped = mapping.dropna(subset=["yahoo"])
    dated = features.index.get_level_values("date") == pd.Timestamp(date)
    rows = mapped.join(features[dated].droplevel("date"), on="yahoo", how="inner")
    usable = rows[rows[BASE_FEATURES].notna().mean(axis=1) >= 0.5]
    submission = pd.DataFrame(
        {"numerai_ticker": usable["numerai_ticker"].to_numpy(), "signal": 0.5}
    )
    if len(usable):
        submission["signal"] = rank_01(model.predict(usable[FEATURES]))
    coverage = Coverage(
        universe=len(universe),
        mapped=len(mapped),
        priced=len(rows),
        predicted=len(submission),
        unmapped=tuple(sorted(set(universe) - set(mapped["numerai_ticker"]))),
        unpriced=tuple(sorted(set(mapped["numerai_ticker"]) - set(rows["numerai_ticker"]))),
    )
    if coverage.predicted < MIN_TICKERS:
        raise TooFewTickers(coverage)
    return submission, coverage
