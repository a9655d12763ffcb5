"""A fake of Yahoo Finance's chart API: deterministic daily prices, so yfinance runs unmodified.

Stocks trade on weekdays that are not holidays; crypto symbols (`BTC-USD`) trade every day, in UTC.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

FIRST_DAY = dt.date(2005, 1, 3)
# Every year the fake market closes on these (month, day) dates, when they fall on a weekday.
HOLIDAYS = ((1, 1), (12, 25))
DEFAULT_UNIVERSE = ("AAPL", "MSFT", "ABBN.SW", "7203.T", "0700.HK", "BP.L")
# Yahoo suffix -> (exchange timezone, currency); anything else trades in New York in USD.
_EXCHANGES = {
    ".SW": ("Europe/Zurich", "CHF"),
    ".L": ("Europe/London", "GBP"),
    ".DE": ("Europe/Berlin", "EUR"),
    ".PA": ("Europe/Paris", "EUR"),
    ".AS": ("Europe/Amsterdam", "EUR"),
    ".T": ("Asia/Tokyo", "JPY"),
    ".HK": ("Asia/Hong_Kong", "HKD"),
    ".AX": ("Australia/Sydney", "AUD"),
    ".TO": ("America/Toronto", "CAD"),
}
CRYPTO_SUFFIX = "-USD"  # Yahoo's crypto symbols: BTC-USD, ETH-USD; they trade every day, in UTC
_RANGES = {"1d": 1, "5d": 7, "1mo": 31, "3mo": 92, "6mo": 183, "1y": 366, "2y": 731}
_RANGES |= {"5y": 1827, "10y": 3653, "max": 100 * 366}
_TREND_DAYS = 120  # trading days a trend shock lasts
_TREND_SD = 0.002  # standard deviation of the trend part of the daily log return


def trading_days(
    start: dt.date, end: dt.date, holidays: Iterable[dt.date] = ()
) -> pd.DatetimeIndex:
    """Weekdays in [start, end] that are not market holidays."""
    days = pd.bdate_range(start, end)
    closed = {pd.Timestamp(y, m, d) for y in range(start.year, end.year + 1) for m, d in HOLIDAYS}
    closed |= {pd.Timestamp(d) for d in holidays}
    return days[~days.isin(list(closed))]


def is_crypto(symbol: str) -> bool:
    """A Yahoo crypto symbol (`BTC-USD`): it trades every day of the week, holidays included."""
    return symbol.upper().endswith(CRYPTO_SUFFIX)


def market_days(
    symbol: str, start: dt.date, end: dt.date, holidays: Iterable[dt.date] = ()
) -> pd.DatetimeIndex:
    """The days in [start, end] that symbol trades: every day for crypto, else trading_days."""
    if is_crypto(symbol):
        return pd.date_range(start, end, freq="D")
    return trading_days(start, end, holidays)


def daily_prices(symbol: str, seed: int, days: pd.DatetimeIndex) -> pd.DataFrame:
    """Deterministic OHLCV for symbol: a geometric random walk over days (trading days from
    FIRST_DAY). Each day's price depends only on the seed, the symbol and the days before it,
    so a window of the history is the same whichever range a client asks for.

    The daily drift has a slowly changing part (a moving sum of its own shocks), so recent
    returns say a little about the next weeks': price features can learn the sandbox's
    Signals targets, which are ranks of forward returns of these prices.
    """
    n = len(days)
    rng = np.random.default_rng([seed, zlib.crc32(symbol.encode())])
    start_price, drift, vol = rng.uniform(5, 500), rng.uniform(-2e-4, 6e-4), rng.uniform(0.01, 0.03)
    base_volume = rng.uniform(1e4, 1e7)
    shocks = rng.standard_normal((n, 5))  # close, open gap, high/low wicks, trend
    trend = np.cumsum(shocks[:, 4])
    trend[_TREND_DAYS:] -= trend[:-_TREND_DAYS].copy()
    trend *= _TREND_SD / np.sqrt(_TREND_DAYS)
    close = start_price * np.exp(np.cumsum(drift + trend + vol * shocks[:, 0]))
    previous = np.concatenate([[start_price], close[:-1]])
    open_ = previous * np.exp(0.3 * vol * shocks[:, 1])
    high = np.maximum(open_, close) * np.exp(0.5 * vol * np.abs(shocks[:, 2]))
    low = np.minimum(open_, close) * np.exp(-0.5 * vol * np.abs(shocks[:, 3]))
    volume = np.round(base_volume * np.exp(0.4 * shocks[:, 2])).astype(np.int64)
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=days
    )


@dataclass
class YahooFake:
    """The fake's state: which symbols exist, how they misbehave, and every chart request seen."""

    universe: set[str]
    seed: int = 0
    today: dt.date | None = None
    holidays: tuple[dt.date, ...] = ()
    stale: dict[str, dt.date] = field(default_factory=dict)  # symbol -> its last day of prices
    failing: dict[str, int] = field(default_factory=dict)  # symbol -> chart requests left to fail
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def exchange(self, symbol: str) -> tuple[str, str]:
        if is_crypto(symbol):
            return "UTC", "USD"
        suffix = symbol[symbol.rfind(".") :] if "." in symbol else ""
        return _EXCHANGES.get(suffix, ("America/New_York", "USD"))

    def chart(self, symbol: str, params: Mapping[str, str]) -> Response:
        symbol = symbol.upper()
        with self._lock:
            self.requests.append((symbol, dict(params)))
            if self.failing.get(symbol, 0) > 0:
                self.failing[symbol] -= 1
                return _chart_error(500, "Internal Server Error", "Injected failure")
        if symbol not in self.universe:
            return _chart_error(404, "Not Found", "No data found, symbol may be delisted")
        if params.get("interval", "1d") != "1d":
            return _chart_error(400, "Bad Request", "Invalid interval: only 1d is faked")
        tz_name, currency = self.exchange(symbol)
        tz = ZoneInfo(tz_name)
        today = self.today or dt.datetime.now(tz).date()
        last_day = min(today, self.stale.get(symbol, today))
        bars, epoch = _bars(symbol, self.seed, last_day, self.holidays, tz_name)
        if "period1" in params or "period2" in params:
            start = int(params.get("period1", 0))
            end = int(params.get("period2", epoch[-1] + 1 if len(epoch) else 0))
        elif params.get("range", "1mo") in _RANGES:
            end = int(pd.Timestamp(today + dt.timedelta(days=1), tz=tz).timestamp())
            start = end - _RANGES[params.get("range", "1mo")] * 86400
        else:
            return _chart_error(400, "Bad Request", f"Invalid range: {params['range']}")
        keep = (epoch >= start) & (epoch < end)
        return JSONResponse(_chart_body(symbol, tz_name, currency, bars[keep], epoch[keep]))


@functools.lru_cache(maxsize=1024)
def _bars(
    symbol: str, seed: int, last_day: dt.date, holidays: tuple[dt.date, ...], tz_name: str
) -> tuple[pd.DataFrame, np.ndarray]:
    """A symbol's bars through last_day and their epoch stamps, kept: clients ask for the same
    symbol many times, and the whole history is generated for every answer."""
    bars = daily_prices(symbol, seed, market_days(symbol, FIRST_DAY, last_day, holidays))
    # Yahoo stamps a daily bar with the exchange's opening time (crypto: midnight UTC).
    opening = pd.Timedelta(0) if is_crypto(symbol) else pd.Timedelta(hours=9, minutes=30)
    stamps = (bars.index + opening).tz_localize(ZoneInfo(tz_name))
    return bars, stamps.as_unit("s").asi8


def _chart_body(symbol, tz_name, currency, bars, epoch) -> dict:
    meta = {
        "currency": currency,
        "symbol": symbol,
        "exchangeName": "FAKE",
        "instrumentType": "CRYPTOCURRENCY" if is_crypto(symbol) else "EQUITY",
        "exchangeTimezoneName": tz_name,
        "timezone": ZoneInfo(tz_name).tzname(dt.datetime.now()),
        "priceHint": 2,
        "dataGranularity": "1d",
        "validRanges": [*_RANGES, "ytd"],
    }
    result: dict = {"meta": meta, "indicators": {"quote": [{}], "adjclose": [{}]}}
    if len(bars):
        result["timestamp"] = epoch.tolist()
        result["indicators"] = {
            "quote": [{c: bars[c].round(4).tolist() for c in ("open", "high", "low", "close")}],
            "adjclose": [{"adjclose": bars["close"].round(4).tolist()}],
        }
        result["indicators"]["quote"][0]["volume"] = bars["volume"].tolist()
    return {"chart": {"result": [result], "error": None}}


def _chart_error(status: int, code: str, description: str) -> JSONResponse:
    body = {"chart": {"result": None, "error": {"code": code, "description": description}}}
    return JSONResponse(body, status_code=status)


def create_app(
    universe: Iterable[str] = DEFAULT_UNIVERSE,
    seed: int = 0,
    *,
    today: dt.date | None = None,
    holidays: Iterable[dt.date] = (),
    stale: Mapping[str, dt.date] | None = None,
    failing: Mapping[str, int] | None = None,
) -> Starlette:
    """The fake Yahoo as an ASGI app; its state (a YahooFake) is at app.state.yahoo.

    stale: symbols whose prices stop at a date. failing: symbols whose next n chart requests
    answer HTTP 500. Both can be changed on app.state.yahoo while the app runs.
    """
    fake = YahooFake(
        universe={s.upper() for s in universe},
        seed=seed,
        today=today,
        holidays=tuple(holidays),
        stale={k.upper(): v for k, v in (stale or {}).items()},
        failing={k.upper(): v for k, v in (failing or {}).items()},
    )

    async def chart(request: Request) -> Response:
        return fake.chart(request.path_params["symbol"], request.query_params)

    async def cookie(request: Request) -> Response:
        # fc.yahoo.com: yfinance only wants a cookie from it.
        response = PlainTextResponse("ok")
        response.set_cookie("A3", "fake-yahoo-cookie")
        return response

    async def crumb(request: Request) -> Response:
        return PlainTextResponse("fake-crumb")

    async def consent(request: Request) -> Response:
        # guce.yahoo.com: a page without a csrfToken makes yfinance fall back to the basic cookie.
        return PlainTextResponse("<html><body>no consent needed</body></html>")

    # yfinance asks these about a symbol whose chart is missing, hunting for its timezone.
    async def quote_summary(request: Request) -> Response:
        error = {"code": "Not Found", "description": "Quote not found for symbol"}
        return JSONResponse({"quoteSummary": {"result": None, "error": error}}, status_code=404)

    async def quote(request: Request) -> Response:
        return JSONResponse({"quoteResponse": {"result": [], "error": None}})

    async def timeseries(request: Request) -> Response:
        return JSONResponse({"timeseries": {"result": [], "error": None}})

    app = Starlette(
        routes=[
            Route("/", cookie),
            Route("/v1/test/getcrumb", crumb),
            Route("/consent", consent),
            Route("/v8/finance/chart/{symbol}", chart),
            Route("/v10/finance/quoteSummary/{symbol}", quote_summary),
            Route("/v7/finance/quote", quote),
            Route("/ws/fundamentals-timeseries/v1/finance/timeseries/{symbol}", timeseries),
        ]
    )
    app.state.yahoo = fake
    return app


app = create_app()
