"""The synthetic Signals data: Numerai's shape, tickers Yahoo knows, targets from its prices."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from flows.prices import load_exchange_table
from flows.tournaments import SIGNALS
from models.signals import map_tickers
from sandbox.runner import Sandbox
from sandbox.signals_data import SIGNALS_VERSION, TARGET_DAYS, SyntheticSignals
from sandbox.yahoo import FIRST_DAY, daily_prices, trading_days

ROUND = 1000


def _path(catalog: SyntheticSignals, name: str) -> Path:
    path = catalog.path(name, ROUND)
    assert path is not None, f"{name} is not served"
    return path


@pytest.fixture(scope="module")
def catalog(data_root: Path) -> SyntheticSignals:
    signals = SyntheticSignals(data_root / "data", size="tiny", seed=0)
    signals.prepare(ROUND)
    return signals


@pytest.fixture(scope="module")
def train(catalog: SyntheticSignals) -> pd.DataFrame:
    return pd.read_parquet(_path(catalog, f"{SIGNALS_VERSION}/train.parquet"))


def test_files_columns_and_fridays(catalog: SyntheticSignals, train: pd.DataFrame):
    assert catalog.files(ROUND) == [
        "signals/v2.0/live.parquet",
        "signals/v2.0/live_example_preds.csv",
        "signals/v2.0/live_example_preds.parquet",
        "signals/v2.0/train.parquet",
        "signals/v2.0/validation.parquet",
        "signals/v2.0/validation_example_preds.csv",
        "signals/v2.0/validation_example_preds.parquet",
    ]
    validation = pd.read_parquet(_path(catalog, "signals/v2.0/validation.parquet"))
    live = pd.read_parquet(_path(catalog, "signals/v2.0/live.parquet"))
    for frame, kind in ((train, "train"), (validation, "validation"), (live, "live")):
        assert list(frame.columns[:3]) == ["numerai_ticker", "date", "data_type"]
        assert (frame["data_type"] == kind).all()
        assert (frame["date"].dt.day_of_week == 4).all()
        assert {c for c in frame.columns if c.startswith("feature_")} and "target" in frame
    assert train["date"].max() < validation["date"].min()
    assert validation["date"].max() < pd.Timestamp(catalog.live_date(ROUND))
    assert set(live["date"]) == {pd.Timestamp(catalog.live_date(ROUND))}
    assert live["target"].isna().all() and not train["target"].isna().any()
    assert train.groupby("date").size().min() >= 250 and train["numerai_ticker"].nunique() == 300


def test_every_round_has_a_new_universe_a_week_later(catalog: SyntheticSignals):
    assert catalog.live_date(ROUND + 1) - catalog.live_date(ROUND) == dt.timedelta(weeks=1)
    this, next_ = catalog.live_ids(ROUND), catalog.live_ids(ROUND + 1)
    assert this != next_ and len(set(this) & set(next_)) > 0.85 * len(this)
    assert set(catalog.spec.broken_tickers) <= set(this)


def test_tickers_map_to_the_symbols_the_yahoo_fake_serves(catalog: SyntheticSignals):
    tickers = catalog.spec.tickers
    mapped = map_tickers(tickers["numerai_ticker"], load_exchange_table()).set_index(
        "numerai_ticker"
    )["yahoo"]
    expected = tickers.set_index("numerai_ticker")["yahoo"]
    assert mapped.fillna("").equals(expected.fillna("")[mapped.index])
    assert mapped.isna().sum() == 3  # no exchange rule: NOMAP0 ZZ, ...
    assert set(catalog.yahoo_symbols) == set(mapped.dropna()) - {"GONE0", "GONE1", "GONE2"}
    hong_kong = [s for s in catalog.yahoo_symbols if s.endswith(".HK")]
    assert hong_kong and all(len(s) == len("0700.HK") for s in hong_kong)  # zero-padded


def test_targets_are_binned_ranks_of_the_fakes_forward_returns(
    catalog: SyntheticSignals, train: pd.DataFrame
):
    friday = train["date"].iloc[-1]
    rows = train[train["date"] == friday].set_index("numerai_ticker")
    shares = rows["target"].value_counts(normalize=True).sort_index()
    assert shares.to_numpy() == pytest.approx([0.05, 0.2, 0.5, 0.2, 0.05], abs=0.01)
    days = trading_days(FIRST_DAY, catalog.live_date(ROUND))
    tickers = catalog.spec.tickers.set_index("numerai_ticker")
    symbol = tickers["yahoo"].fillna(tickers.index.to_series())  # unmappable: priced by name
    forward = {}
    for ticker in rows.index:
        close = daily_prices(symbol[ticker], 0, days)["close"]
        now = close.index.searchsorted(friday, side="right") - 1
        forward[ticker] = close.iloc[now + TARGET_DAYS] / close.iloc[now]
    ranks = pd.Series(forward).rank()
    by_bin = ranks.groupby(rows["target"]).agg(["min", "max"])
    assert list(by_bin.index) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert (by_bin["min"].iloc[1:].to_numpy() > by_bin["max"].iloc[:-1].to_numpy()).all()
    by_date = train.groupby("date")
    momentum = by_date.apply(lambda d: d["feature_momentum_12w_factor"].corr(d["target"]))
    assert momentum.mean() > 0.05  # recent returns say something about the next weeks'


def test_generation_is_deterministic(tmp_path: Path, catalog: SyntheticSignals):
    again = SyntheticSignals(tmp_path, size="tiny", seed=0)
    name = "signals/v2.0/live.parquet"
    assert _path(again, name).read_bytes() == _path(catalog, name).read_bytes()
    other = SyntheticSignals(tmp_path, size="tiny", seed=1)
    assert other.spec.yahoo_symbols != catalog.spec.yahoo_symbols


def test_the_sandbox_serves_signals_data_and_the_yahoo_fake(sandbox: Sandbox):
    assert "sandbox_signals" in sandbox.models
    assert sandbox.live_ids(SIGNALS) == sandbox.signals.live_ids(ROUND)
    symbol = sandbox.signals.yahoo_symbols[0]
    chart = httpx.get(f"{sandbox.yahoo_url}/v8/finance/chart/{symbol}", params={"range": "5d"})
    assert chart.status_code == 200
    assert chart.json()["chart"]["result"][0]["meta"]["symbol"] == symbol
    assert httpx.get(f"{sandbox.yahoo_url}/v8/finance/chart/GONE0").status_code == 404
    assert np.isfinite(chart.json()["chart"]["result"][0]["indicators"]["quote"][0]["close"]).all()
