"""Daily prices for Signals: yfinance in batches with retries, a parquet cache, a ticker table."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yfinance as yf
from curl_cffi import requests as curl_requests
from yfinance.data import YfData

from flows import files
from flows.settings import load_settings

logger = logging.getLogger(__name__)

PRICE_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "volume"]
_KEYS = ("symbol", "date")
EXCHANGE_TABLE = Path(__file__).parent / "data" / "yahoo_exchanges.csv"


def load_exchange_table(path: Path | str | None = None) -> pd.DataFrame:
    """The Bloomberg exchange code -> Yahoo suffix table that models.signals.map_tickers reads."""
    table = pd.read_csv(path or EXCHANGE_TABLE, dtype=str, keep_default_na=False)
    return table.astype({"zero_pad": int})


# --- pointing yfinance at Yahoo or at a fake -------------------------------------------------


def yahoo_url(base_url: str | None = None) -> str | None:
    """The Yahoo base URL: base_url, else the `yahoo_url` setting, else None (real Yahoo)."""
    return base_url or load_settings().yahoo_url or None


class _RedirectedSession(curl_requests.Session):
    """A curl_cffi session that sends every request for a *.yahoo.com host to base_url instead.

    yfinance builds some URLs from module constants and hard-codes others (the cookie and crumb
    hosts), so rewriting at the session is the one place that catches them all.
    """

    def __init__(self, base_url: str):
        # HTTP/1.1: a plain-http server need not speak the h2c upgrade that curl would offer.
        super().__init__(impersonate="chrome", http_version="v1")
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        parts = urlsplit(url)
        if parts.hostname and (
            parts.hostname == "yahoo.com" or parts.hostname.endswith(".yahoo.com")
        ):
            url = self.base_url + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().request(method, url, *args, **kwargs)


def yahoo_session(base_url: str | None = None) -> curl_requests.Session:
    """A session for yfinance: to the real Yahoo, or to base_url (or the env setting) when set."""
    url = yahoo_url(base_url)
    return _RedirectedSession(url) if url else curl_requests.Session(impersonate="chrome")


def point_yfinance_at(base_url: str | None = None) -> None:
    """Send yfinance's requests to base_url (default: the `yahoo_url` setting, else real Yahoo).

    Note that yf.download() without session= resets this; YahooPriceSource always passes its own.
    """
    YfData(session=yahoo_session(base_url))


# --- the price source ------------------------------------------------------------------------


class PriceSource(Protocol):
    """Daily prices for symbols over [start, end); symbols without rows had no prices."""

    def history(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Long format: one row per symbol and day, with PRICE_COLUMNS."""
        ...


class YahooPriceSource:
    """Daily prices from Yahoo Finance through yf.download, in batches, retrying missing symbols."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        auto_adjust: bool = True,
        batch_size: int = 100,
        retries: int = 3,
        backoff_seconds: float = 2.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.session = yahoo_session(base_url)
        self.auto_adjust = auto_adjust
        self.batch_size = batch_size
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.timeout = timeout
        self.sleep = sleep
        self.missing: list[str] = []  # symbols the last history() call got nothing for

    def history(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Prices for symbols over [start, end). A symbol still missing after the retries is
        left out and listed in self.missing: Yahoo does not know it, has no prices for it in
        the range, or kept failing."""
        frames, pending = [], list(dict.fromkeys(symbols))
        for attempt in range(self.retries + 1):
            if attempt:
                self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            # yfinance memoises past-range answers in-process by Yahoo URL, failures included,
            # whichever host the session sent them to: always ask the source afresh.
            YfData.cache_get.cache_clear()
            for i in range(0, len(pending), self.batch_size):
                frames.append(self._download(pending[i : i + self.batch_size], start, end))
            found = set().union(*(set(f["symbol"]) for f in frames))
            pending = [s for s in pending if s not in found]
            if not pending:
                break
            logger.info("attempt %d: no prices yet for %d symbols", attempt + 1, len(pending))
        self.missing = pending
        if pending:
            shown = ", ".join(pending[:10]) + (" …" if len(pending) > 10 else "")
            logger.warning("yfinance found no prices for %d symbols: %s", len(pending), shown)
        return pd.concat(frames, ignore_index=True) if frames else _empty_prices()

    def _download(self, symbols: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        with warnings.catch_warnings():
            # yfinance's own pandas deprecation warnings are not ours to fix.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"yfinance\.")
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"yfinance\.")
            wide = yf.download(
                symbols,
                start=start,
                end=end,
                interval="1d",
                auto_adjust=self.auto_adjust,
                actions=False,
                group_by="ticker",
                multi_level_index=True,
                progress=False,
                threads=True,
                timeout=self.timeout,
                session=self.session,
            )
        by_upper = {s.upper(): s for s in symbols}
        return _to_long(wide).assign(symbol=lambda f: f["symbol"].map(by_upper))


def _to_long(wide: pd.DataFrame | None) -> pd.DataFrame:
    """yf.download's (date) x (ticker, field) frame -> PRICE_COLUMNS rows with a close."""
    if wide is None or wide.empty or not isinstance(wide.columns, pd.MultiIndex):
        return _empty_prices()
    long = wide.stack(level="Ticker").rename_axis(["date", "symbol"]).reset_index()
    long.columns = [str(c).lower() for c in long.columns]
    return _standard(long.dropna(subset=["close"]))


def _standard(prices: pd.DataFrame) -> pd.DataFrame:
    """PRICE_COLUMNS in order with one set of dtypes, so parquet chunks always agree."""
    prices = prices[PRICE_COLUMNS].astype({c: "float64" for c in PRICE_COLUMNS[2:]})
    dates = pd.to_datetime(prices["date"]).dt.normalize().astype("datetime64[us]")
    return prices.assign(symbol=prices["symbol"].astype("str"), date=dates)


def _empty_prices() -> pd.DataFrame:
    return _standard(pd.DataFrame({c: [] for c in PRICE_COLUMNS}))


def _as_date(value) -> dt.date:
    return pd.Timestamp(value).date()


# --- the parquet cache -----------------------------------------------------------------------


@dataclass(frozen=True)
class PriceReport:
    """What one PriceCache.update did."""

    requested: int
    fetched: tuple[str, ...]  # symbols that got new days
    not_found: tuple[str, ...]  # no prices at all: unknown to Yahoo, or failing every retry
    no_new_prices: tuple[str, ...]  # cached symbols with nothing new: a holiday, stale, or failing
    stale: tuple[str, ...]  # last price more than stale_after_days before end
    rows_added: int

    @property
    def priced(self) -> int:
        return self.requested - len(self.not_found)

    def summary(self) -> str:
        return (
            f"{self.priced}/{self.requested} symbols priced, {len(self.fetched)} got new days "
            f"({self.rows_added} rows); not found: {len(self.not_found)}, "
            f"nothing new: {len(self.no_new_prices)}, stale: {len(self.stale)}"
        )


def release_freed_prices() -> None:
    """Hand back to the system the memory of loaded price frames that are gone.

    `PriceCache.load` converts without a copy, so a frame's arrays live in Arrow's memory pool,
    which keeps freed memory for its next allocation instead of returning it.
    """
    pa.default_memory_pool().release_unused()


class PriceCache:
    """Daily prices kept under a directory as parquet chunks, plus coverage.json.

    coverage.json records, per symbol, the [start, end) range already fetched and its last
    price date, so a later update asks the source only for the missing days.
    """

    max_chunks = 32  # beyond this many files an update compacts them into one

    def __init__(
        self,
        root: Path | str,
        *,
        stale_after_days: int = 7,
        today: Callable[[], dt.date] = dt.date.today,
        lock_timeout: float = 1800.0,
    ):
        self.root = Path(root)
        self.stale_after_days = stale_after_days
        self.today = today
        self.lock_timeout = lock_timeout

    # coverage.json: {symbol: {"start": iso, "end": iso, "last": iso}}
    def coverage(self) -> dict[str, dict[str, str]]:
        path = self.root / "coverage.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def missing_ranges(
        self, symbols: Iterable[str], start, end
    ) -> dict[str, list[tuple[dt.date, dt.date]]]:
        """Per symbol, the days to fetch so the cache covers [start, end) (with any days between
        it and the cached range); fully cached symbols are left out."""
        coverage, gaps = self.coverage(), {}
        start, end = _as_date(start), _as_date(end)
        for symbol in symbols:
            if symbol not in coverage:
                gaps[symbol] = [(start, end)] if start < end else []
            else:
                lo = dt.date.fromisoformat(coverage[symbol]["start"])
                hi = dt.date.fromisoformat(coverage[symbol]["end"])
                # Coverage is one range per symbol, so a request beside it also fetches the
                # days between: the cached days stay contiguous.
                before = (start, lo) if start < lo else None
                after = (hi, end) if end > hi else None
                gaps[symbol] = [r for r in (before, after) if r and r[0] < r[1]]
        return {s: r for s, r in gaps.items() if r}

    def update(self, source: PriceSource, symbols: Sequence[str], start, end) -> PriceReport:
        """Fetch the missing days of [start, end) (dates, or anything pd.Timestamp reads) for
        symbols. end is capped at today, since today's bar is not final.

        Nodes sharing the cache update it one at a time (its lock): each sees what the others
        fetched, and chunk numbers and coverage never collide."""
        with files.locked(self.root / "prices", self.lock_timeout):
            return self._update(source, symbols, start, end)

    def _update(self, source: PriceSource, symbols: Sequence[str], start, end) -> PriceReport:
        start, end = _as_date(start), min(_as_date(end), self.today())
        symbols = list(dict.fromkeys(symbols))
        coverage = self.coverage()
        by_range: dict[tuple[dt.date, dt.date], list[str]] = {}
        for symbol, ranges in self.missing_ranges(symbols, start, end).items():
            for r in ranges:
                by_range.setdefault(r, []).append(symbol)
        frames, fetched = [], set()
        for (lo, hi), group in sorted(by_range.items()):
            frame = source.history(group, lo, hi)
            frames.append(frame)
            last_day = frame.groupby("symbol")["date"].max()
            fetched |= set(last_day.index)
            for symbol in group:
                backfill = symbol in coverage and hi.isoformat() <= coverage[symbol]["start"]
                if symbol in last_day.index or backfill:
                    # An empty answer for days before a symbol's cached history means it was
                    # not listed yet; for later days it may be a holiday or a failure: ask again.
                    _extend(coverage, symbol, lo, hi, last_day.get(symbol))
        new = pd.concat(frames, ignore_index=True) if frames else _empty_prices()
        if len(new):
            self._write_chunk(new)
        self._write_coverage(coverage)
        return self._report(symbols, coverage, fetched, by_range, len(new), end)

    def load(
        self,
        symbols: Iterable[str] | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
        columns: Sequence[str] | None = None,
        ordered: bool = True,
    ) -> pd.DataFrame:
        """Cached prices for symbols over [start, end), one row per (symbol, date), in that order.

        The columns are symbol, date and `columns` (all PRICE_COLUMNS by default). `symbol` is
        categorical, its categories sorted: thousands of rows per symbol keep one string each.
        `ordered=False` skips the sort and the de-duplication, which copy every row once more:
        rows come as the chunks hold them, a price fetched again later than the first.
        """
        # Under the lock: an update may be merging chunks into one and deleting the others.
        with files.locked(self.root / "prices", self.lock_timeout):
            return self._load(symbols, start, end, columns, ordered)

    def _load(
        self,
        symbols: Iterable[str] | None = None,
        start: dt.date | None = None,
        end: dt.date | None = None,
        columns: Sequence[str] | None = None,
        ordered: bool = True,
    ) -> pd.DataFrame:
        names = ["symbol", "date", *[c for c in columns or PRICE_COLUMNS if c not in _KEYS]]
        chunks = sorted(self.root.glob("prices-*.parquet"))
        if not chunks:
            return _empty_prices()[names]
        filters = []
        if symbols is not None:
            filters.append(("symbol", "in", list(symbols)))
        if start is not None:
            filters.append(("date", ">=", pd.Timestamp(start)))
        if end is not None:
            filters.append(("date", "<", pd.Timestamp(end)))
        table = pq.read_table(
            chunks,
            columns=names,
            filters=filters or None,
            read_dictionary=["symbol"],
            pre_buffer=False,  # pre-buffering holds each file's compressed columns beside the rest
        )
        # Each Arrow column is freed once converted, and Arrow's pool hands its memory back.
        prices = table.to_pandas(self_destruct=True, split_blocks=True)
        del table
        pa.default_memory_pool().release_unused()
        symbol = prices["symbol"].astype("category")
        # Chunks list their symbols in their own orders: sorted categories sort by name.
        prices["symbol"] = symbol.cat.reorder_categories(sorted(symbol.cat.categories))
        return _by_symbol_and_date(prices) if ordered else prices

    def _write_chunk(self, prices: pd.DataFrame) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        chunks = sorted(self.root.glob("prices-*.parquet"))
        number = int(chunks[-1].stem.split("-")[1]) + 1 if chunks else 0
        _atomic_parquet(_standard(prices), self.root / f"prices-{number:06d}.parquet")
        if len(chunks) + 1 > self.max_chunks:
            merged = self._load()
            _atomic_parquet(merged, self.root / f"prices-{number + 1:06d}.parquet")
            for path in [*chunks, self.root / f"prices-{number:06d}.parquet"]:
                path.unlink()

    def _write_coverage(self, coverage: dict) -> None:
        files.write_text(
            self.root / "coverage.json", json.dumps(coverage, indent=0, sort_keys=True)
        )

    def _report(self, symbols, coverage, fetched, by_range, rows, end) -> PriceReport:
        asked = {s for group in by_range.values() for s in group}
        cutoff = (end - dt.timedelta(days=self.stale_after_days)).isoformat()
        has_prices = {s for s in symbols if coverage.get(s, {}).get("last")}
        return PriceReport(
            requested=len(symbols),
            fetched=tuple(sorted(fetched)),
            not_found=tuple(sorted(set(symbols) - has_prices)),
            no_new_prices=tuple(sorted((asked & has_prices) - fetched)),
            stale=tuple(sorted(s for s in has_prices if coverage[s]["last"] < cutoff)),
            rows_added=rows,
        )


def _extend(coverage: dict, symbol: str, lo: dt.date, hi: dt.date, last_day) -> None:
    """Widen symbol's covered range by the fetched [lo, hi) and note its latest price date."""
    entry = coverage.setdefault(symbol, {"start": lo.isoformat(), "end": hi.isoformat()})
    entry["start"] = min(entry["start"], lo.isoformat())
    entry["end"] = max(entry["end"], hi.isoformat())
    if last_day is not None:
        last = last_day.date().isoformat()
        entry["last"] = max(entry.get("last", last), last)


def _by_symbol_and_date(prices: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by symbol name and date; of a repeated (symbol, date), the last row read.

    One stable sort of integer keys and one take: pandas' drop_duplicates and sort_values on
    millions of rows each hash or copy the whole frame again.
    """
    codes = prices["symbol"].cat.codes.to_numpy()
    days = prices["date"].to_numpy().view(np.int64)
    order = np.lexsort((days, codes))  # stable: a repeat's last read row stays last
    codes, days = codes[order], days[order]
    last = np.append((codes[1:] != codes[:-1]) | (days[1:] != days[:-1]), True)
    return prices.take(order[last]).reset_index(drop=True)


def _atomic_parquet(frame: pd.DataFrame, path: Path) -> None:
    with files.atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
