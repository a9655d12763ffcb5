"""Benchmark: Signals feature time and peak memory, old and new code side by side.

    uv run python benchmarks/signals_features.py [--tickers 5000] [--years 10] [--runs 3] [--quick]

Each run is a fresh process that makes synthetic daily prices (a random walk per ticker on
weekdays), then computes the features of every Friday with one implementation:
- old: `benchmarks.signals_old.compute_features_old` (pandas over whole wide frames);
- new: `models.signals.compute_features` (numpy, windows read only on the needed days).
Prints the median time, the process's peak RSS (ru_maxrss of the child, prices included) and
the peak above the RSS with the prices loaded. `--quick`: 500 tickers x 3 years, 1 run.

Then the node's own path, from the price cache: the same prices written as the cache's parquet
chunks (symbols as strings, as yfinance's batches store them), read and turned into features:
- cache-old: `benchmarks.signals_old.load_prices_old` (every column, pandas dedupe and sort);
- cache-new: `PriceCache.load(columns=PRICE_INPUTS, ordered=False)`, as flows/signals.py reads,
  and the features in two steps with the prices freed between them, as its features step does.
Time and peak RSS cover the load and the features.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_prices(tickers: int, years: int, seed: int = 0) -> pd.DataFrame:
    """Long daily prices (symbol, date, OHLCV): a random walk per ticker on weekdays."""
    rng = np.random.default_rng(seed)
    days = pd.bdate_range(end="2024-12-27", periods=years * 252)
    n = len(days)
    close = 100 * np.exp(np.cumsum(rng.normal(3e-4, 0.02, (tickers, n)), axis=1)).ravel()
    names = [f"T{i:05d}" for i in range(tickers)]
    prices = pd.DataFrame(
        {"symbol": pd.Categorical.from_codes(np.repeat(np.arange(tickers), n), names)}
    )
    # Column by column, so the frame is built without a second copy of every column.
    prices["date"] = np.tile(days.values, tickers)
    prices["open"] = close
    prices["high"] = close * 1.01
    prices["low"] = close * 0.99
    prices["close"] = close
    prices["volume"] = rng.lognormal(12, 1, tickers * n)
    return prices


def child(args: argparse.Namespace) -> None:
    """One feature computation in this process; prints JSON with time and memory."""
    import psutil

    if args.child == "write":
        write_cache(args.cache, args.tickers, args.years)
        print(json.dumps({}))
        return None
    if args.child.startswith("cache"):
        return _cache_child(args)
    if args.child == "old":
        from benchmarks.signals_old import compute_features_old as compute
    else:
        from models.signals import compute_features as compute

    prices = synthetic_prices(args.tickers, args.years)
    fridays = pd.date_range(prices["date"].min(), prices["date"].max(), freq="W-FRI")
    loaded = psutil.Process().memory_info().rss
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    features = compute(prices, fridays)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak": peak, "loaded": loaded, "before": before,
                      "rows": len(features), "prices_rows": len(prices)}))  # fmt: skip


def _cache_child(args: argparse.Namespace) -> None:
    """Load the cache at args.cache and compute the features, the old way or the node's."""
    from flows.prices import PriceCache, release_freed_prices
    from models.signals import PRICE_INPUTS, compute_features, daily_features, rank_features

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    if args.child == "cache-old":
        from benchmarks.signals_old import load_prices_old

        prices = load_prices_old(args.cache)
        loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        fridays = pd.date_range(prices["date"].min(), prices["date"].max(), freq="W-FRI")
        features, prices_rows = compute_features(prices, fridays), len(prices)
    else:  # as flows/signals.py does: the prices are freed before the features are ranked
        prices = PriceCache(args.cache).load(columns=PRICE_INPUTS, ordered=False)
        loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        fridays = pd.date_range(prices["date"].min(), prices["date"].max(), freq="W-FRI")
        prices_rows = len(prices)
        daily = daily_features(prices, fridays)
        del prices
        release_freed_prices()
        features = rank_features(daily)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak": peak, "loaded": loaded, "before": before,
                      "rows": len(features), "prices_rows": prices_rows}))  # fmt: skip


def write_cache(root: Path, tickers: int, years: int, chunks: int = 4) -> None:
    """The synthetic prices as the price cache holds them: `chunks` parquet files, str symbols."""
    from flows.prices import _atomic_parquet, _standard

    prices = synthetic_prices(tickers, years)
    prices["symbol"] = prices["symbol"].astype(str)
    size = -(-len(prices) // chunks)
    for i in range(chunks):
        part = _standard(prices.iloc[i * size : (i + 1) * size])
        _atomic_parquet(part, root / f"prices-{i:06d}.parquet")


def _run(kind: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", kind]
    command += ["--tickers", str(args.tickers), "--years", str(args.years)]
    if args.cache:
        command += ["--cache", str(args.cache)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"{kind} run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(args: argparse.Namespace) -> None:
    if args.quick:
        args.tickers, args.years, args.runs = 500, 3, 1
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}")  # fmt: skip
    results: dict[str, list[dict]] = {"old": [], "new": []}
    for i in range(args.runs):
        for kind in results:  # interleaved, so a busy machine slows both alike
            results[kind].append(_run(kind, args))
            print(f"  run {i + 1} {kind}: {results[kind][-1]['seconds']:.1f} s")
    first = results["new"][0]
    print(f"\n{args.tickers} tickers x {args.years} years: {first['prices_rows']:,} price rows -> "
          f"{first['rows']:,} feature rows; medians of {args.runs} runs")  # fmt: skip
    print(f"{'path':5} {'seconds':>8} {'peak MB':>8} {'loaded MB':>10} {'peak-loaded':>12}")
    for kind, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak"] for r in runs)
        loaded = statistics.median(r["loaded"] for r in runs)
        print(f"{kind:5} {seconds:8.2f} {peak / 1e6:8.0f} {loaded / 1e6:10.0f} "
              f"{(peak - loaded) / 1e6:12.0f}")  # fmt: skip
    old, new = (statistics.median(r["seconds"] for r in results[k]) for k in ("old", "new"))
    print(f"new is {old / new:.1f}x faster")

    with tempfile.TemporaryDirectory() as cache:
        args.cache = Path(cache)
        # In a child: a parent's peak would show in every later child's ru_maxrss (Linux keeps
        # the larger of the two over the exec of a vforked child).
        _run("write", args)
        cached: dict[str, list[dict]] = {"cache-old": [], "cache-new": []}
        for i in range(args.runs):
            for kind in cached:
                cached[kind].append(_run(kind, args))
                print(f"  run {i + 1} {kind}: {cached[kind][-1]['seconds']:.1f} s")
    print("\nfrom the price cache (load + features), medians:")
    print(f"{'path':9} {'seconds':>8} {'peak MB':>8} {'load peak MB':>13}")
    for kind, runs in cached.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = statistics.median(r["peak"] for r in runs)
        loaded = statistics.median(r["loaded"] for r in runs)
        print(f"{kind:9} {seconds:8.2f} {peak / 1e6:8.0f} {loaded / 1e6:13.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=5000)
    parser.add_argument("--years", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="500 tickers x 3 years, one run")
    parser.add_argument("--child", choices=["old", "new", "cache-old", "cache-new", "write"],
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    child(parsed) if parsed.child else main(parsed)
