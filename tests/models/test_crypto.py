"""The example Crypto model: symbols to Yahoo, daily features, the training join, live coverage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models import crypto
from models.signals import TooFewTickers


def _prices(symbols: list[str], days: pd.DatetimeIndex, seed: int = 0) -> pd.DataFrame:
    """Random-walk daily prices (PRICE_COLUMNS' long format) for symbols over days."""
    rng = np.random.default_rng(seed)
    frames = []
    for symbol in symbols:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.03, len(days))))
        volume = rng.uniform(1e5, 1e6, len(days))
        frames.append(
            pd.DataFrame({"symbol": symbol, "date": days, "close": close, "volume": volume})
        )
    return pd.concat(frames, ignore_index=True)


SYMBOLS = [f"C{i:03d}" for i in range(120)]
DAYS = pd.date_range("2025-01-01", "2025-04-30", freq="D")  # every day: coins trade at weekends


def test_symbols_map_to_yahoo_usd_pairs_unless_overridden_or_not_plain():
    mapping = crypto.map_symbols(["BTC", "UNI", "BTC", "W$T"], {"UNI": "UNI7083-USD"})
    assert mapping["symbol"].tolist() == ["BTC", "UNI", "W$T"]
    assert mapping["yahoo"].tolist()[:2] == ["BTC-USD", "UNI7083-USD"]
    assert mapping["yahoo"].isna().tolist() == [False, False, True]


def test_features_are_quintiles_per_date_on_weekends_too():
    prices = _prices([f"{s}-USD" for s in SYMBOLS], DAYS)
    dates = pd.date_range("2025-04-05", "2025-04-06", freq="D")  # a Saturday and a Sunday
    features = crypto.compute_features(prices, dates)
    assert list(features.columns) == crypto.FEATURES
    assert features.index.get_level_values("date").unique().tolist() == dates.tolist()
    assert len(features) == 2 * len(SYMBOLS)
    quintiles = features["feature_return_7"].groupby(level="date").value_counts()
    assert set(quintiles.index.get_level_values(1)) == {0, 1, 2, 3, 4}
    assert features.notna().all().all()


def test_a_symbol_without_recent_prices_gets_no_features():
    prices = _prices(["A-USD", "B-USD"], DAYS)
    prices = prices[~((prices["symbol"] == "B-USD") & (prices["date"] > "2025-04-10"))]
    features = crypto.compute_features(prices, [pd.Timestamp("2025-04-30")])
    assert features.index.get_level_values("symbol").tolist() == ["A-USD"]


def test_training_set_joins_targets_by_symbol_and_day_and_the_model_learns():
    prices = _prices([f"{s}-USD" for s in SYMBOLS], DAYS)
    dates = DAYS[60:-10]
    features = crypto.compute_features(prices, dates)
    close = prices.pivot(index="date", columns="symbol", values="close")
    # A target that follows last week's return: something the features can learn.
    past = (close / close.shift(7)).loc[dates].rank(axis=1, pct=True)
    targets = past.stack().rename("target").reset_index()
    targets["symbol"] = targets["symbol"].str.removesuffix("-USD")
    mapping = crypto.map_symbols(SYMBOLS)
    train = crypto.build_training_set(features, targets, mapping, "target")
    assert len(train) == len(dates) * len(SYMBOLS)
    assert {"symbol", "date", "target", *crypto.FEATURES} <= set(train.columns)
    model = crypto.fit(train, "target", {"n_estimators": 30})
    assert np.corrcoef(model.predict(train[crypto.FEATURES]), train["target"])[0, 1] > 0.5


def test_live_predictions_are_ranked_and_cover_the_universe_they_can():
    prices = _prices([f"{s}-USD" for s in SYMBOLS], DAYS)
    day = DAYS[-1]
    features = crypto.compute_features(prices, [day])
    train = features.reset_index().assign(target=np.linspace(0, 1, len(features)))
    model = crypto.fit(train, "target", {"n_estimators": 10})
    universe = [*SYMBOLS, "GONE", "W$T"]
    mapping = crypto.map_symbols(universe)
    submission, coverage = crypto.predict_live(model, features, universe, mapping, day)
    assert list(submission.columns) == ["symbol", "signal"]
    assert submission["signal"].between(0, 1, inclusive="neither").all()
    assert (coverage.universe, coverage.mapped, coverage.predicted) == (122, 121, 120)
    assert coverage.unmapped == ("W$T",) and coverage.unpriced == ("GONE",)
    with pytest.raises(TooFewTickers, match="Numerai needs at least 100"):
        crypto.predict_live(model, features, SYMBOLS[:99], mapping, day)
