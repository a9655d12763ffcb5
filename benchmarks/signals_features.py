"""Benchmark: Signals feature time and peak memory on 5,000 tickers x 10 years of prices."""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import threading
import time

import numpy as np
import pandas as pd
import psutil

from models.signals import FEATURES, compute_features


def synthetic_prices(tickers: int, years: int, seed: int = 0) -> pd.DataFrame:
    """Long daily prices (symbol, date, OHLCV): a random walk per ticker on weekdays."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(end="2024-12-27", periods=years * 252)
    n = len(days)
    close = 100 * np.exp(np.cumsum(rng.normal(3e-4, 0.02, (tickers, n)), axis=1))
    symbols = pd.Categorical(np.repeat([f"T{i:05d}" for i in range(tickers)], n))
    flat = close.ravel()
    return pd.DataFrame(
        {
            "symbol": symbols,
            "date": np.tile(days.values, tickers),
            "open": flat,
            "high": flat * 1.01,
            "low": flat * 0.99,
            "close": flat,
            "volume": rng.lognormal(12, 1, tickers * n),
        }
    )


def _peak_rss_mb() -> float:
    """The process's peak resident memory so far."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class _RssSampler(threading.Thread):
    """Samples this process's RSS every few milliseconds; .peak_mb is the highest seen."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_mb, self._stop_event = 0.0, threading.Event()

    def run(self) -> None:
        process = psutil.Process()
        while not self._stop_event.wait(0.005):
            self.peak_mb = max(self.peak_mb, process.memory_info().rss / 2**20)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak_mb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickers", type=int, default=5000)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    prices = synthetic_prices(args.tickers, args.years)
    fridays = pd.date_range(prices["date"].min(), prices["date"].max(), freq="W-FRI")
    rss_input = psutil.Process().memory_info().rss / 2**20
    print(f"prices: {len(prices):,} rows, {prices.memory_usage(deep=True).sum() / 2**20:.0f} MB")
    print(f"RSS with the prices loaded: {rss_input:.0f} MB")

    timings, peaks = [], []
    for _ in range(args.runs):
        sampler = _RssSampler()
        sampler.start()
        start = time.perf_counter()
        features = compute_features(prices, fridays)
        timings.append(time.perf_counter() - start)
        peaks.append(sampler.stop())
        rows, out_mb = len(features), features.memory_usage(deep=True).sum() / 2**20
        del features
    print(f"features: {rows:,} rows x {len(FEATURES)} columns, {out_mb:.0f} MB")
    print(f"time: median {statistics.median(timings):.1f} s over {args.runs} runs")
    print(f"peak RSS while computing: {max(peaks):.0f} MB (+{max(peaks) - rss_input:.0f} MB)")
    print(f"peak RSS of the process: {_peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
