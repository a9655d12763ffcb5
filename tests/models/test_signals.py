"""Unit tests of the Signals example model: features against hand-computed values, join, ranks."""

from __future__ import annotations

import weakref

import numpy as np
import pandas as pd
import pytest
from numerai_tools.submissions import validate_submission_signals

from models import signals

EXCHANGES = pd.DataFrame(
    {
        "bloomberg_code": ["US", "SW", "HK", "JP", "CH", "CH"],
        "root_prefix": ["", "", "", "", "6", "0"],
        "yahoo_suffix": ["", ".SW", ".HK", ".T", ".SS", ".SZ"],
        "zero_pad": [0, 0, 4, 0, 0, 0],
    }
)


def _prices(symbols, start="2021-01-01", end="2023-06-30", seed=0) -> pd.DataFrame:
    """Long daily prices: a seeded random walk per symbol on weekdays."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(start, end)
    frames = []
    for symbol in symbols:
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
        volume = rng.uniform(1e5, 1e6, len(days))
        frames.append(
            pd.DataFrame(
                {"symbol": symbol, "date": days, "open": close, "high": close, "low": close}
                | {"close": close, "volume": volume}
            )
        )
    return pd.concat(frames, ignore_index=True)


def _wide(values, index=None) -> pd.DataFrame:
    return pd.DataFrame({"A": values}, index=index)


# --- features against hand-computed values ----------------------------------------------------


def test_rsi_on_a_short_series_matches_hand_computation():
    # Daily changes: +1, -0.5, +1, +0.5, -1.
    close = _wide([10.0, 11.0, 10.5, 11.5, 12.0, 11.0])
    # Window 3 at day 3: gains (1, 0, 1) -> 2/3, losses (0, .5, 0) -> .5/3 -> 100*2/2.5 = 80.
    # Day 4: gains (0, 1, .5), losses (.5, 0, 0) -> 100*1.5/2 = 75.
    # Day 5: gains (1, .5, 0), losses (0, 0, 1) -> 100*1.5/2.5 = 60.
    result = signals.rsi(close, 3)["A"].tolist()
    assert np.isnan(result[:3]).all()
    assert result[3:] == pytest.approx([80.0, 75.0, 60.0])


def test_rsi_is_50_when_flat_and_100_when_only_rising():
    assert signals.rsi(_wide([5.0] * 5), 2)["A"].iloc[-1] == 50.0
    assert signals.rsi(_wide([1.0, 2.0, 3.0, 4.0]), 2)["A"].iloc[-1] == 100.0


def test_returns_momentum_and_volatility_match_hand_computation():
    close = _wide([100.0, 110.0, 99.0, 121.0, 133.1])
    assert signals.returns(close, 2)["A"].tolist()[2:] == pytest.approx(
        [-0.01, 0.1, 0.344444], abs=1e-6
    )
    # Momentum over 4 days skipping the last 1: close 1 day ago / close 4 days ago - 1.
    assert signals.momentum(close, 4, skip=1)["A"].iloc[-1] == pytest.approx(121 / 100 - 1)
    # Log returns of the last 2 days: ln(121/99), ln(1.1); sample std of two values = |a-b|/sqrt(2).
    a, b = np.log(121 / 99), np.log(1.1)
    assert signals.volatility(close, 2)["A"].iloc[-1] == pytest.approx(abs(a - b) / np.sqrt(2))


def test_relative_volume_is_short_mean_over_long_mean():
    volume = _wide([10.0, 20.0, 30.0, 40.0])
    # Last day: mean(30, 40) / mean(10, 20, 30, 40) = 35 / 25.
    assert signals.relative_volume(volume, 2, 4)["A"].iloc[-1] == pytest.approx(1.4)


def test_quintiles_rank_each_date_separately():
    frame = pd.DataFrame(
        [list(range(1, 11)), list(range(10, 0, -1))],
        columns=[f"S{i}" for i in range(10)],
    )
    result = signals.quintiles(frame)
    assert result.iloc[0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert result.iloc[1].tolist() == [4, 4, 3, 3, 2, 2, 1, 1, 0, 0]


def test_quintiles_keep_nan_and_share_ties():
    frame = pd.DataFrame([[1.0, np.nan, 2.0, 2.0, 3.0, 4.0]])
    # Five values; ranks 1, 2.5, 2.5, 4, 5 -> floor((rank-1)*5/5) = 0, 1, 1, 3, 4.
    result = signals.quintiles(frame).iloc[0]
    assert np.isnan(result.iloc[1])
    assert result.drop(1).tolist() == [0, 1, 1, 3, 4]


# --- compute_features -------------------------------------------------------------------------


def test_compute_features_shape_lags_and_diffs():
    prices = _prices([f"S{i}" for i in range(20)])
    fridays = pd.date_range("2022-06-03", "2023-06-30", freq="W-FRI")
    features = signals.compute_features(prices, fridays)
    assert list(features.columns) == signals.FEATURES
    assert features.index.names == ["date", "symbol"]
    assert set(features.index.get_level_values("date")) == set(fridays)
    assert features.to_numpy().dtype == np.float32
    current = features["feature_return_5"].unstack()
    lag1 = features["feature_return_5_lag1"].unstack()
    diff1 = features["feature_return_5_diff1"].unstack()
    pd.testing.assert_frame_equal(lag1.iloc[1:], current.shift(1).iloc[1:])
    pd.testing.assert_frame_equal(diff1.iloc[1:], (current - current.shift(1)).iloc[1:])
    assert set(np.unique(current)) == {0, 1, 2, 3, 4}


def test_the_daily_features_keep_no_hold_on_the_prices_and_are_ranked_once():
    # The node's features step frees the prices between the two steps (flows/signals.py); a
    # reference kept in DailyFeatures would hold them beside the ranked features again.
    prices = _prices([f"S{i}" for i in range(12)])
    fridays = pd.date_range("2022-06-03", "2023-06-30", freq="W-FRI")
    expected = signals.compute_features(prices.copy(), fridays)
    held = weakref.ref(prices)

    daily = signals.daily_features(prices, fridays)
    del prices
    assert held() is None

    pd.testing.assert_frame_equal(signals.rank_features(daily), expected)
    assert daily.raw == [None] * len(signals.BASE_FEATURES)  # each array freed once ranked
    with pytest.raises(ValueError, match="ranked already"):
        signals.rank_features(daily)


def test_a_friday_holiday_uses_thursday_and_a_stale_ticker_drops_out():
    prices = _prices(["A", "B", "C", "STALE"])
    holiday = pd.Timestamp("2023-04-07")  # Good Friday: nobody trades
    prices = prices[prices["date"] != holiday]
    prices = prices[(prices["symbol"] != "STALE") | (prices["date"] < "2023-03-01")]
    features = signals.compute_features(prices, [holiday, pd.Timestamp("2023-04-14")])
    at_holiday = features.xs(holiday, level="date")
    assert set(at_holiday.index) == {"A", "B", "C"}
    thursday = signals.compute_features(prices, [pd.Timestamp("2023-04-06")])
    base = signals.BASE_FEATURES
    pd.testing.assert_frame_equal(
        at_holiday[base], thursday.xs(pd.Timestamp("2023-04-06"), level="date")[base]
    )


def test_price_range_covers_the_longest_window():
    start, end = signals.price_range(pd.to_datetime(["2023-01-06", "2023-06-30"]))
    assert start <= pd.Timestamp("2023-01-06") - pd.Timedelta(days=365)
    assert end == pd.Timestamp("2023-07-01")


# --- tickers ----------------------------------------------------------------------------------


def test_map_tickers_counts_the_unmappable():
    tickers = ["AAPL US", "BRK/B US", "ABBN SW", "700 HK", "7203 JP", "600519 CH", "000001 CH"]
    unmappable = ["XYZ ZZ", "NOSPACE", "300750 CH"]
    mapped = signals.map_tickers([*tickers, *unmappable, "AAPL US"], EXCHANGES)
    assert mapped["numerai_ticker"].tolist() == [*tickers, *unmappable]
    yahoo = mapped.set_index("numerai_ticker")["yahoo"]
    assert yahoo[tickers].tolist() == [
        "AAPL", "BRK-B", "ABBN.SW", "0700.HK", "7203.T", "600519.SS", "000001.SZ"
    ]  # fmt: skip
    assert yahoo[unmappable].isna().all()


def test_map_tickers_overrides_win():
    mapped = signals.map_tickers(["RDSA LN", "AAPL US"], EXCHANGES, {"RDSA LN": "SHEL.L"})
    assert mapped["yahoo"].tolist() == ["SHEL.L", "AAPL"]


# --- training set, model, submission ----------------------------------------------------------


def _universe(n: int) -> tuple[list[str], pd.DataFrame]:
    symbols = [f"T{i:03d}" for i in range(n)]
    return symbols, signals.map_tickers([f"{s} US" for s in symbols], EXCHANGES)


def _targets(features: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Targets that partly follow one feature, so the model has something to learn."""
    rng = np.random.default_rng(seed)
    rows = features.reset_index()
    signal = rows["feature_momentum_126"].fillna(2) / 4
    return pd.DataFrame(
        {
            "numerai_ticker": rows["symbol"] + " US",
            "date": rows["date"].dt.strftime("%Y-%m-%d"),
            "target": (0.5 * signal + 0.5 * rng.uniform(size=len(rows))).round(2),
        }
    )


def test_training_set_joins_targets_by_ticker_and_friday():
    symbols, ticker_map = _universe(5)
    fridays = pd.date_range("2023-01-06", "2023-03-31", freq="W-FRI")
    features = signals.compute_features(_prices(symbols), fridays)
    targets = _targets(features)
    targets = pd.concat(
        [
            targets,
            pd.DataFrame({"numerai_ticker": ["ZZZ ZZ"], "date": ["2023-01-06"], "target": [0.5]}),
        ]
    )
    train = signals.build_training_set(features, targets, ticker_map)
    assert len(train) == len(features)  # the unmappable ticker's target has no features
    row = train.iloc[7]
    expected = features.loc[(row["date"], row["numerai_ticker"].split()[0])]
    assert row[signals.FEATURES].astype(np.float32).tolist() == expected.tolist()


def test_training_set_rejects_targets_not_on_fridays():
    symbols, ticker_map = _universe(3)
    features = signals.compute_features(_prices(symbols), [pd.Timestamp("2023-03-08")])
    targets = pd.DataFrame({"numerai_ticker": ["T000 US"], "date": ["2023-03-08"], "target": [0.5]})
    with pytest.raises(ValueError, match="2023-03-08"):
        signals.build_training_set(features, targets, ticker_map)


def test_rank_01_is_strictly_inside_0_1_and_keeps_order():
    ranked = signals.rank_01([3.0, -1.0, 10.0, 3.0])
    assert ranked.tolist() == [0.5, 0.125, 0.875, 0.5]
    assert ((ranked > 0) & (ranked < 1)).all()


@pytest.fixture(scope="module")
def fitted():
    symbols, ticker_map = _universe(130)
    fridays = pd.date_range("2022-06-03", "2023-06-30", freq="W-FRI")
    features = signals.compute_features(_prices(symbols, seed=3), fridays)
    train = signals.build_training_set(features, _targets(features), ticker_map)
    model = signals.fit(train[train["date"] < "2023-06-01"], params={"n_estimators": 30})
    return model, features, ticker_map


@pytest.mark.filterwarnings("ignore::DeprecationWarning:numerai_tools")
def test_predictions_are_ranked_and_pass_numerai_validation(fitted):
    model, features, ticker_map = fitted
    live = [*ticker_map["numerai_ticker"], "NOPE ZZ"]
    submission, coverage = signals.predict_live(model, features, live, ticker_map, "2023-06-30")
    assert (coverage.universe, coverage.mapped, coverage.predicted) == (131, 130, 130)
    assert coverage.unmapped == ("NOPE ZZ",)
    assert submission["signal"].between(0, 1, inclusive="neither").all()
    universe = pd.DataFrame({"numerai_ticker": live})
    _, _, _, valid, invalid = validate_submission_signals(universe, submission.copy())
    assert len(valid) == 130 and invalid == []


def test_fewer_than_100_usable_tickers_is_a_clear_error(fitted):
    model, features, ticker_map = fitted
    stale = ticker_map["yahoo"].iloc[:40].tolist()
    recent = features.drop(index=stale, level="symbol")
    with pytest.raises(signals.TooFewTickers, match="Only 90 tickers") as error:
        signals.predict_live(model, recent, ticker_map["numerai_ticker"], ticker_map, "2023-06-30")
    assert error.value.coverage.priced == 90
    assert len(error.value.coverage.unpriced) == 40


def test_a_date_without_prices_is_too_few_tickers_not_an_empty_submission(fitted):
    model, features, ticker_map = fitted
    live = ticker_map["numerai_ticker"]
    with pytest.raises(signals.TooFewTickers, match="0 with recent prices"):
        signals.predict_live(model, features, live, ticker_map, "2023-07-07")


def test_no_prices_at_all_is_too_few_tickers(fitted):
    model, _, ticker_map = fitted
    empty = signals.compute_features(_prices(["X"]).iloc[:0], [pd.Timestamp("2023-06-30")])
    assert list(empty.columns) == signals.FEATURES and len(empty) == 0
    live = ticker_map["numerai_ticker"]
    with pytest.raises(signals.TooFewTickers, match="Only 0 tickers"):
        signals.predict_live(model, empty, live, ticker_map, "2023-06-30")
