"""Tests of the price source and cache: the real yfinance against the fake Yahoo on loopback."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import TypedDict, Unpack

import numpy as np
import pandas as pd
import pytest
import uvicorn
import yfinance as yf

from flows import prices
from flows.prices import PriceCache, YahooPriceSource
from flows.settings import YAHOO_URL_ENV
from models.signals import map_tickers
from sandbox.yahoo import FIRST_DAY, create_app, daily_prices, trading_days

TODAY = dt.date(2025, 1, 10)
SEED = 7
UNIVERSE = ["AAPL", "MSFT", "ABBN.SW", "7203.T", "STALE", "FLAKY", "FLAKY2", "DOWN", "HOLI"]


@pytest.fixture(scope="module")
def yahoo(tmp_path_factory):
    """The fake Yahoo served by uvicorn on a free loopback port; yields (base_url, its state)."""
    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yfinance-cache")))
    app = create_app(UNIVERSE, SEED, today=TODAY, stale={"STALE": dt.date(2024, 12, 10)})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the fake Yahoo did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", app.state.yahoo
    server.should_exit = True
    thread.join(timeout=10)


class _SourceOptions(TypedDict, total=False):
    retries: int
    batch_size: int


class _RecordingSource(YahooPriceSource):
    """A YahooPriceSource that records its backoff in `sleeps` instead of sleeping."""

    sleeps: list[float]


def _source(base_url: str, **options: Unpack[_SourceOptions]) -> _RecordingSource:
    sleeps: list[float] = []
    options.setdefault("retries", 1)
    source = _RecordingSource(base_url, backoff_seconds=0.001, sleep=sleeps.append, **options)
    source.sleeps = sleeps
    return source


def _expected(symbol: str, start: str, end: str) -> pd.DataFrame:
    bars = daily_prices(symbol, SEED, trading_days(FIRST_DAY, TODAY))
    return bars.loc[start:end].round(4)


def _chart_days(fake, symbol: str) -> list[dt.date]:
    """The period1 of each history request the fake saw for symbol, as exchange-local dates."""
    tz = fake.exchange(symbol)[0]
    return [
        pd.Timestamp(int(params["period1"]), unit="s", tz="UTC").tz_convert(tz).date()
        for seen, params in fake.requests
        if seen == symbol and "period1" in params
    ]


# --- the Yahoo source -------------------------------------------------------------------------


def test_history_returns_the_fakes_prices_in_long_format(yahoo):
    base_url, _ = yahoo
    frame = _source(base_url).history(
        ["AAPL", "ABBN.SW", "7203.T"], dt.date(2024, 12, 2), dt.date(2024, 12, 14)
    )
    assert list(frame.columns) == prices.PRICE_COLUMNS
    for symbol in ["AAPL", "ABBN.SW", "7203.T"]:
        got = frame[frame["symbol"] == symbol].set_index("date")
        expected = _expected(symbol, "2024-12-02", "2024-12-13")
        assert list(got.index) == list(expected.index)
        assert got["close"].to_numpy() == pytest.approx(expected["close"].to_numpy())
        assert got["volume"].to_numpy() == pytest.approx(expected["volume"].to_numpy())


def test_an_unknown_symbol_is_left_out_and_reported(yahoo):
    base_url, _ = yahoo
    source = _source(base_url)
    frame = source.history(["MSFT", "NOPE.XX"], dt.date(2024, 12, 2), dt.date(2024, 12, 7))
    assert set(frame["symbol"]) == {"MSFT"}
    assert source.missing == ["NOPE.XX"]
    assert source.sleeps == [0.001]  # one retry, then it gives up


def test_a_partial_batch_failure_is_retried_and_the_rest_reported(yahoo):
    base_url, fake = yahoo
    fake.failing.update({"FLAKY": 2, "FLAKY2": 2, "DOWN": 10**6})
    start, end = dt.date(2024, 12, 2), dt.date(2024, 12, 7)
    no_retry = _source(base_url, retries=0)
    assert set(no_retry.history(["MSFT", "FLAKY2"], start, end)["symbol"]) == {"MSFT"}
    source = _source(base_url, retries=3, batch_size=2)
    frame = source.history(["AAPL", "MSFT", "FLAKY", "DOWN"], start, end)
    assert set(frame["symbol"]) == {"AAPL", "MSFT", "FLAKY"}
    assert source.missing == ["DOWN"]
    assert source.sleeps == [0.001, 0.002, 0.004]  # exponential backoff
    fake.failing.clear()


@pytest.mark.filterwarnings("ignore::DeprecationWarning:yfinance.utils")
def test_point_yfinance_at_sends_plain_yfinance_to_the_fake(yahoo, monkeypatch):
    base_url, _ = yahoo
    monkeypatch.delenv(YAHOO_URL_ENV, raising=False)
    prices.point_yfinance_at(base_url)
    try:
        history = yf.Ticker("MSFT").history(start="2024-12-02", end="2024-12-07", auto_adjust=True)
    finally:
        prices.point_yfinance_at()  # back to the real Yahoo (no request is made)
    expected = _expected("MSFT", "2024-12-02", "2024-12-06")
    assert history["Close"].to_numpy() == pytest.approx(expected["close"].to_numpy())


def test_the_url_setting_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(YAHOO_URL_ENV, "http://127.0.0.1:9")
    assert prices.yahoo_url() == "http://127.0.0.1:9"
    assert prices.yahoo_url("http://other") == "http://other"
    monkeypatch.delenv(YAHOO_URL_ENV)
    assert prices.yahoo_url() is None


# --- the cache against the fake ---------------------------------------------------------------


def test_a_later_update_fetches_only_the_missing_days(yahoo, tmp_path):
    base_url, fake = yahoo
    cache = PriceCache(tmp_path, today=lambda: TODAY)
    source = _source(base_url)
    symbols = ["AAPL", "ABBN.SW"]
    first = cache.update(source, symbols, dt.date(2024, 11, 1), dt.date(2024, 12, 2))
    assert first.fetched == ("AAPL", "ABBN.SW") and first.not_found == ()

    fake.requests.clear()
    second = cache.update(source, symbols, dt.date(2024, 11, 1), dt.date(2024, 12, 14))
    assert second.rows_added == 2 * 10
    assert _chart_days(fake, "AAPL") == [dt.date(2024, 12, 2)]
    assert _chart_days(fake, "ABBN.SW") == [dt.date(2024, 12, 2)]

    fake.requests.clear()
    third = cache.update(source, symbols, dt.date(2024, 11, 1), dt.date(2024, 12, 14))
    assert fake.requests == [] and third.rows_added == 0

    cached = cache.load(symbols).set_index("date")
    direct = source.history(symbols, dt.date(2024, 11, 1), dt.date(2024, 12, 14)).set_index("date")
    for symbol in symbols:
        got, want = cached[cached["symbol"] == symbol], direct[direct["symbol"] == symbol]
        assert list(got.index) == list(want.index)
        assert got["close"].to_numpy() == pytest.approx(want["close"].to_numpy())


def test_a_market_holiday_is_not_an_error_and_is_asked_again(yahoo, tmp_path):
    base_url, _ = yahoo
    cache = PriceCache(tmp_path, today=lambda: TODAY)
    source = _source(base_url)
    cache.update(source, ["HOLI"], dt.date(2024, 12, 2), dt.date(2024, 12, 25))
    report = cache.update(source, ["HOLI"], dt.date(2024, 12, 2), dt.date(2024, 12, 26))
    assert report.rows_added == 0 and report.no_new_prices == ("HOLI",)
    assert report.stale == () and report.not_found == ()
    assert cache.missing_ranges(["HOLI"], dt.date(2024, 12, 2), dt.date(2024, 12, 27)) == {
        "HOLI": [(dt.date(2024, 12, 25), dt.date(2024, 12, 27))]
    }
    cache.update(source, ["HOLI"], dt.date(2024, 12, 2), dt.date(2024, 12, 27))
    days = cache.load(["HOLI"])["date"].dt.date
    assert dt.date(2024, 12, 25) not in set(days) and days.max() == dt.date(2024, 12, 26)


def test_stale_and_unknown_tickers_are_reported(yahoo, tmp_path):
    base_url, _ = yahoo
    cache = PriceCache(tmp_path, today=lambda: TODAY)
    source = _source(base_url)
    report = cache.update(
        source, ["AAPL", "STALE", "NOPE.XX"], dt.date(2024, 11, 1), dt.date(2024, 12, 31)
    )
    assert report.stale == ("STALE",)
    assert report.not_found == ("NOPE.XX",)
    assert report.priced == 2
    assert "2/3 symbols priced" in report.summary()
    later = cache.update(source, ["AAPL", "STALE"], dt.date(2024, 11, 1), dt.date(2025, 1, 8))
    assert later.no_new_prices == ("STALE",) and later.stale == ("STALE",)


# --- the cache's bookkeeping, with an in-memory source ----------------------------------------


class FrameSource:
    """A PriceSource over a DataFrame that records what it was asked."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.calls: list[tuple[tuple[str, ...], dt.date, dt.date]] = []

    def history(self, symbols, start, end) -> pd.DataFrame:
        self.calls.append((tuple(symbols), start, end))
        f = self.frame
        keep = f["symbol"].isin(symbols) & (f["date"] >= pd.Timestamp(start))
        return f[keep & (f["date"] < pd.Timestamp(end))].reset_index(drop=True)


def _frame(symbol: str, start: str, end: str) -> pd.DataFrame:
    days = pd.bdate_range(start, end)
    close = [float(i + 1) for i in range(len(days))]
    return pd.DataFrame(
        {"symbol": symbol, "date": days, "open": close, "high": close, "low": close}
        | {"close": close, "volume": 1000.0}
    )


def test_missing_ranges_before_and_after_the_cached_days(tmp_path):
    source = FrameSource(_frame("A", "2024-01-01", "2024-12-31"))
    cache = PriceCache(tmp_path, today=lambda: TODAY)
    d = dt.date
    cache.update(source, ["A"], pd.Timestamp("2024-03-01"), "2024-04-01")  # any date-like
    assert cache.missing_ranges(["A", "B"], d(2024, 1, 1), d(2024, 5, 1)) == {
        "A": [(d(2024, 1, 1), d(2024, 3, 1)), (d(2024, 4, 1), d(2024, 5, 1))],
        "B": [(d(2024, 1, 1), d(2024, 5, 1))],
    }
    assert cache.missing_ranges(["A"], d(2024, 3, 5), d(2024, 3, 20)) == {}


def test_a_range_apart_from_the_cached_days_also_fetches_the_gap(tmp_path):
    # Training dates years before the live date must not leave unfetched days marked cached.
    source = FrameSource(_frame("A", "2024-01-01", "2024-12-31"))
    cache = PriceCache(tmp_path, today=lambda: TODAY)
    d = dt.date
    cache.update(source, ["A"], d(2024, 9, 2), d(2024, 10, 1))
    assert cache.missing_ranges(["A"], d(2024, 1, 1), d(2024, 2, 1)) == {
        "A": [(d(2024, 1, 1), d(2024, 9, 2))]
    }
    cache.update(source, ["A"], d(2024, 1, 1), d(2024, 2, 1))
    cache.update(source, ["A"], d(2024, 11, 1), d(2024, 12, 2))
    days = cache.load(["A"])["date"]
    assert list(days) == list(pd.bdate_range("2024-01-01", "2024-11-29"))


def test_days_before_a_listing_are_asked_once(tmp_path):
    source = FrameSource(_frame("NEW", "2024-06-03", "2024-12-31"))
    cache = PriceCache(tmp_path, today=lambda: TODAY)
    d = dt.date
    cache.update(source, ["NEW"], d(2024, 7, 1), d(2024, 8, 1))
    cache.update(source, ["NEW"], d(2024, 1, 1), d(2024, 8, 1))  # backfill: only June exists
    source.calls.clear()
    cache.update(source, ["NEW"], d(2024, 1, 1), d(2024, 8, 1))
    assert source.calls == []
    assert cache.load(["NEW"])["date"].min() == pd.Timestamp("2024-06-03")


def test_update_stops_at_today_and_compacts_its_files(tmp_path):
    source = FrameSource(_frame("A", "2024-01-01", "2024-12-31"))
    today = [dt.date(2024, 2, 1)]
    cache = PriceCache(tmp_path, today=lambda: today[0])
    cache.max_chunks = 3
    cache.update(source, ["A"], dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    assert cache.load()["date"].max() < pd.Timestamp("2024-02-01")
    for month in range(3, 8):
        today[0] = dt.date(2024, month, 1)
        cache.update(source, ["A"], dt.date(2024, 1, 1), dt.date(2024, 12, 31))
    assert len(list(tmp_path.glob("prices-*.parquet"))) <= 3
    loaded = cache.load(["A"], start=dt.date(2024, 1, 1), end=dt.date(2024, 7, 1))
    assert loaded["date"].is_unique
    assert list(loaded["date"]) == list(pd.bdate_range("2024-01-01", "2024-06-30"))


def test_a_price_fetched_again_replaces_the_first_and_rows_come_by_symbol_and_date(tmp_path):
    cache = PriceCache(tmp_path, today=lambda: TODAY)
    first = pd.concat(
        [_frame("B", "2024-01-01", "2024-01-05"), _frame("A", "2024-01-01", "2024-01-05")]
    )
    again = _frame("A", "2024-01-04", "2024-01-09").assign(close=lambda f: f["close"] + 100)
    cache._write_chunk(first)
    cache._write_chunk(again)  # an update that fetched A's last days again

    loaded = cache.load()
    assert list(loaded.columns) == prices.PRICE_COLUMNS
    assert list(loaded["symbol"].cat.categories) == ["A", "B"]
    assert list(zip(loaded["symbol"], loaded["date"].dt.day, strict=True)) == [
        *[("A", d) for d in (1, 2, 3, 4, 5, 8, 9)],
        *[("B", d) for d in (1, 2, 3, 4, 5)],
    ]
    a = loaded[loaded["symbol"] == "A"]
    closes = dict(zip(a["date"].dt.day, a["close"], strict=True))
    assert closes == {1: 1.0, 2: 2.0, 3: 3.0, 4: 101.0, 5: 102.0, 8: 103.0, 9: 104.0}

    narrow = cache.load(["A"], columns=["close"])
    assert list(narrow.columns) == ["symbol", "date", "close"]
    assert narrow["close"].tolist() == list(closes.values())


def test_unordered_prices_make_the_same_panel_as_ordered_ones(tmp_path):
    from models.panel import pivot_blocks

    cache = PriceCache(tmp_path, today=lambda: TODAY)
    cache._write_chunk(
        pd.concat(
            [_frame("B", "2024-01-01", "2024-02-09"), _frame("A", "2024-01-15", "2024-02-09")]
        )
    )
    cache._write_chunk(_frame("A", "2024-02-01", "2024-02-16").assign(close=-1.0))
    cache._write_chunk(_frame("C", "2024-01-01", "2024-01-31"))

    def panel(frame):
        days, symbols, blocks = pivot_blocks(frame, ["close", "volume"], block=2)
        return days, symbols, [table for _, tables in blocks for table in tables]

    ordered = cache.load(columns=["close", "volume"])
    unordered = cache.load(columns=["close", "volume"], ordered=False)
    assert len(unordered) > len(ordered)  # the repeated days are still there
    (days, symbols, tables), (days2, symbols2, tables2) = panel(ordered), panel(unordered)
    assert days.equals(days2) and list(symbols) == list(symbols2) == ["A", "B", "C"]
    for table, table2 in zip(tables, tables2, strict=True):
        np.testing.assert_array_equal(table, table2)
    assert tables[0][days.get_loc(pd.Timestamp("2024-02-05")), 0] == -1.0  # A's refetched close


def test_the_shipped_exchange_table_maps_common_tickers():
    table = prices.load_exchange_table()
    assert table["bloomberg_code"].notna().all()
    mapped = map_tickers(["AAPL US", "ABBN SW", "700 HK", "VOD LN", "XXX QQ"], table)
    assert mapped["yahoo"].tolist()[:4] == ["AAPL", "ABBN.SW", "0700.HK", "VOD.L"]
    assert mapped["yahoo"].isna().sum() == 1


@pytest.mark.live
def test_real_yahoo_prices_for_two_tickers(monkeypatch):
    monkeypatch.delenv(YAHOO_URL_ENV, raising=False)
    today = dt.date.today()
    source = YahooPriceSource(retries=1)
    frame = source.history(["AAPL", "MSFT"], today - dt.timedelta(days=14), today)
    assert set(frame["symbol"]) == {"AAPL", "MSFT"}
    assert (frame["close"] > 0).all()
