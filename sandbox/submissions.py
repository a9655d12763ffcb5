"""Checking uploaded prediction CSVs the way Numerai does, with messages that name the problem."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from sandbox.errors import SubmissionRejected

SIGNALS_TICKER_COLUMNS = ("numerai_ticker", "bloomberg_ticker", "ticker")
SIGNALS_VALUE_COLUMNS = ("signal", "prediction")
SIGNALS_MIN_TICKERS = 100  # Numerai rejects a Signals submission with fewer valid tickers
_EXAMPLES = 3


@dataclass(frozen=True)
class CheckedPredictions:
    row_count: int
    ids: tuple[str, ...]


def _examples(values: Sequence[object]) -> str:
    shown = ", ".join(str(v) for v in list(values)[:_EXAMPLES])
    return shown + (", ..." if len(values) > _EXAMPLES else "")


def read_csv(data: bytes) -> pd.DataFrame:
    """Parse an uploaded CSV with every column as text, so ids stay exactly as written."""
    if not data.strip():
        raise SubmissionRejected("the uploaded predictions file is empty")
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except ValueError as exc:  # pandas: not CSV (ParserError, EmptyDataError) or not text
        raise SubmissionRejected(f"the uploaded predictions are not a readable CSV: {exc}") from exc


def _check_values(values: pd.Series, keys: pd.Series, column: str) -> None:
    """Predictions must be numbers strictly between 0 and 1."""
    numbers = pd.to_numeric(values.str.strip().replace("", "nan"), errors="coerce")
    missing = numbers.isna()
    if missing.any():
        raise SubmissionRejected(
            f"{int(missing.sum())} `{column}` values are missing or not numbers "
            f"(ids {_examples(keys[missing].tolist())})"
        )
    outside = (numbers <= 0) | (numbers >= 1)
    if outside.any():
        bad = [f"{k}={v}" for k, v in zip(keys[outside], numbers[outside], strict=True)]
        raise SubmissionRejected(
            f"{int(outside.sum())} `{column}` values are outside (0, 1): {_examples(bad)}"
        )


def check_classic(data: bytes, live_ids: Sequence[str], round_number: int) -> CheckedPredictions:
    """Columns `id,prediction`; ids exactly the round's live ids; values in (0, 1)."""
    frame = read_csv(data)
    columns = list(frame.columns)
    if set(columns) != {"id", "prediction"}:
        raise SubmissionRejected(
            f"Classic predictions need exactly the columns id,prediction; got {columns}"
        )
    ids = frame["id"].str.strip()
    duplicated = ids[ids.duplicated()].unique().tolist()
    if duplicated:
        raise SubmissionRejected(f"{len(duplicated)} ids appear twice: {_examples(duplicated)}")
    expected = set(live_ids)
    given = set(ids)
    missing = sorted(expected - given)
    unknown = sorted(given - expected)
    if missing or unknown:
        raise SubmissionRejected(
            f"ids do not match the live ids of round {round_number}: "
            f"{len(missing)} missing ({_examples(missing)}), "
            f"{len(unknown)} not in live ({_examples(unknown)})"
        )
    _check_values(frame["prediction"], ids, "prediction")
    return CheckedPredictions(len(frame), tuple(ids))


def check_signals(data: bytes, universe: Sequence[str] | None) -> CheckedPredictions:
    """A ticker column and a `signal` column in (0, 1). With a live universe, at least
    SIGNALS_MIN_TICKERS tickers must be in it; like Numerai, tickers outside it are ignored."""
    frame = read_csv(data)
    ticker_col = next((c for c in SIGNALS_TICKER_COLUMNS if c in frame.columns), None)
    value_col = next((c for c in SIGNALS_VALUE_COLUMNS if c in frame.columns), None)
    if ticker_col is None or value_col is None:
        raise SubmissionRejected(
            f"Signals predictions need a ticker column ({', '.join(SIGNALS_TICKER_COLUMNS)}) "
            f"and a `signal` column; got {list(frame.columns)}"
        )
    if "data_type" in frame.columns:
        frame = frame[frame["data_type"].str.strip().isin(["live", ""])]
    tickers = frame[ticker_col].str.strip()
    duplicated = tickers[tickers.duplicated()].unique().tolist()
    if duplicated:
        raise SubmissionRejected(f"{len(duplicated)} tickers appear twice: {_examples(duplicated)}")
    _check_values(frame[value_col], tickers, value_col)
    if universe is not None:
        live = set(universe)
        valid = [t for t in tickers if t in live]
        if len(valid) < SIGNALS_MIN_TICKERS:
            outside = [t for t in tickers if t not in live]
            raise SubmissionRejected(
                f"only {len(valid)} of the {len(tickers)} tickers are in the live universe of "
                f"{len(live)} tickers; Numerai needs at least {SIGNALS_MIN_TICKERS} "
                f"(not in it: {_examples(outside) or 'none'})"
            )
    return CheckedPredictions(len(frame), tuple(tickers))
