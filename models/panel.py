"""Price panels as (day x symbol) numpy arrays: pivot, gap fill, windows at chosen days, quintiles.

The pandas versions in models/signals.py (`rsi`, `volatility`, `quintiles`, ...) compute every
day of a wide frame; a Signals model needs a few hundred Fridays, so these read each window
only at the rows asked for (`at`), from running sums, a block of symbols at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd


def pivot_blocks(
    prices: pd.DataFrame, columns: list[str], block: int
) -> tuple[pd.Index, pd.Index, Iterator[tuple[slice, list[np.ndarray]]]]:
    """Long prices (symbol, date, ...) -> trading days, symbols, and their (day, symbol) arrays.

    The arrays come `block` symbols at a time, (symbols slice, one array per column), NaN where
    a symbol did not trade, so the whole wide table never exists. A repeated (date, symbol)
    keeps its last row, as an assignment into a wide table would.
    """
    row, days = pd.factorize(prices["date"], sort=True)
    col, symbols = pd.factorize(prices["symbol"], sort=True)
    order = np.argsort(col, kind="stable").astype(np.int32)
    row, col = row.astype(np.int32), col.astype(np.int32)
    bounds = np.searchsorted(col[order], np.arange(0, len(symbols) + block, block))
    sources = [prices[name].to_numpy(dtype=np.float64) for name in columns]

    def blocks() -> Iterator[tuple[slice, list[np.ndarray]]]:
        for i, first in enumerate(range(0, len(symbols), block)):
            take = order[bounds[i] : bounds[i + 1]]
            width = min(block, len(symbols) - first)
            tables = []
            for source in sources:
                table = np.full((len(days), width), np.nan)
                table[row[take], col[take] - first] = source[take]
                tables.append(table)
            yield slice(first, first + width), tables

    return pd.Index(days), pd.Index(np.asarray(symbols)), blocks()


def ffill(table: np.ndarray, limit: int) -> np.ndarray:
    """Carry each column's last value down over at most `limit` missing rows (pandas' ffill)."""
    valid = ~np.isnan(table)
    rows = np.arange(len(table), dtype=np.int32)[:, None]
    last = np.where(valid, rows, -1).astype(np.int32)
    np.maximum.accumulate(last, axis=0, out=last)
    fill = ~valid & (last >= 0) & (rows - last <= limit)
    filled = table.copy(order="K")
    filled[fill] = table[last[fill], np.nonzero(fill)[1]]
    return filled


def shifted(table: np.ndarray, at: np.ndarray, lag: int) -> np.ndarray:
    """`table` `lag` rows before each row of `at`; NaN before the first row."""
    rows = at - lag
    out = table[np.maximum(rows, 0)]
    out[rows < 0] = np.nan
    return out


class Windows:
    """Running sums of one (day, symbol) array, to read windowed means and stds at rows `at`.

    A window holding a NaN is NaN, as in pandas' `rolling(window)` with its default min_periods.
    """

    def __init__(self, values: np.ndarray, at: np.ndarray, squares: bool = False):
        missing = np.isnan(values)
        clean = np.where(missing, 0.0, values)
        self.at = at
        self.sums = _prefix(clean)
        self.gaps = _prefix(missing.astype(np.int32))
        self.squares = _prefix(clean * clean) if squares else None

    def _total(self, prefix: np.ndarray, window: int) -> np.ndarray:
        start = self.at + 1 - window
        total = prefix[self.at + 1] - prefix[np.maximum(start, 0)]
        return total.astype(np.float64)

    def _valid(self, window: int) -> np.ndarray:
        start = self.at + 1 - window
        return (self._total(self.gaps, window) == 0) & (start >= 0)[:, None]

    def mean(self, window: int) -> np.ndarray:
        return np.where(self._valid(window), self._total(self.sums, window) / window, np.nan)

    def std(self, window: int) -> np.ndarray:
        """Sample standard deviation (ddof 1)."""
        assert self.squares is not None, "Windows(..., squares=True) reads standard deviations"
        total = self._total(self.sums, window)
        spread = self._total(self.squares, window) - total * total / window
        variance = np.maximum(spread, 0.0) / (window - 1)
        return np.where(self._valid(window), np.sqrt(variance), np.nan)


def _prefix(values: np.ndarray) -> np.ndarray:
    """Running sums with a zero first row: rows i..j sum to prefix[j + 1] - prefix[i]."""
    out = np.zeros((len(values) + 1, values.shape[1]), dtype=values.dtype)
    np.cumsum(values, axis=0, out=out[1:])
    return out


def quintiles(values: np.ndarray, block: int = 64) -> np.ndarray:
    """Each row ranked across its columns into quintiles 0-4 (ties share their average rank).

    The same numbers as models.signals.quintiles on a DataFrame: floor((rank - 1) * 5 / count).
    """
    out = np.full(values.shape, np.nan)
    for start in range(0, len(values), block):
        rows = values[start : start + block]
        order = np.argsort(rows, axis=1)  # NaN sorts last; ties are averaged, so any order
        ordered = np.take_along_axis(rows, order, axis=1)
        count = (~np.isnan(rows)).sum(axis=1, keepdims=True)
        position = np.broadcast_to(np.arange(rows.shape[1]), rows.shape)
        first = np.ones(rows.shape, dtype=bool)
        first[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
        last = np.ones(rows.shape, dtype=bool)
        last[:, :-1] = first[:, 1:]
        run_start = np.maximum.accumulate(np.where(first, position, 0), axis=1)
        run_end = np.minimum.accumulate(np.where(last, position, rows.shape[1])[:, ::-1], axis=1)[
            :, ::-1
        ]
        rank = (run_start + run_end) / 2 + 1  # 1-based, ties averaged
        with np.errstate(invalid="ignore", divide="ignore"):
            ranked = np.floor((rank - 1) * 5 / count)
        ranked[np.isnan(ordered)] = np.nan
        np.put_along_axis(out[start : start + block], order, ranked, axis=1)
    return out
