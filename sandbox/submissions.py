"""Checking uploaded prediction CSVs the way Numerai does, with messages that name the problem.

The rules are those of numerai-tools' `validate_submission_numerai`,
`validate_submission_signals` and `validate_submission_crypto`, which encode what Numerai
accepts; tests/thirdparty compares the first two case by case, tests/sandbox the third. In
short: the columns are an id column then a prediction column, in that order; rows whose id is
not live are ignored; every live id has exactly one prediction (Signals and Crypto: at least
100 live tickers or symbols); the live predictions are numbers in [0, 1], not all equal.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sandbox.errors import SubmissionRejected

CLASSIC_ID_COLUMNS = ("id",)
CLASSIC_PREDICTION_COLUMNS = ("prediction", "probability")
SIGNALS_ID_COLUMNS = ("ticker", "sedol", "bloomberg_ticker", "composite_figi", "numerai_ticker")
SIGNALS_PREDICTION_COLUMNS = ("prediction", "signal")
SIGNALS_DATE_COLUMNS = ("friday_date", "date")
# The ticker kinds the sandbox's live universe lists (a numerai_ticker is Bloomberg's ticker);
# Numerai maps the other kinds through its ticker map, which the sandbox does not have.
SIGNALS_UNIVERSE_COLUMNS = ("numerai_ticker", "bloomberg_ticker")
SIGNALS_MIN_TICKERS = 100  # Numerai rejects a Signals submission with fewer live tickers
CRYPTO_ID_COLUMNS = ("symbol",)
CRYPTO_PREDICTION_COLUMNS = ("prediction", "signal")
CRYPTO_MIN_SYMBOLS = 100  # ... and a Crypto submission with fewer live symbols
_EXAMPLES = 3


@dataclass(frozen=True)
class CheckedPredictions:
    row_count: int
    ids: tuple[str, ...]


def _examples(values: Sequence[object]) -> str:
    shown = ", ".join(str(v) for v in list(values)[:_EXAMPLES])
    return shown + (", ..." if len(values) > _EXAMPLES else "")


def read_csv(data: bytes) -> pd.DataFrame:
    """Parse an uploaded CSV with every column as text, so ids stay exactly as written (empty
    and `NaN`-like cells are missing, as pandas reads them)."""
    if not data.strip():
        raise SubmissionRejected("the uploaded predictions file is empty")
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str)
    except ValueError as exc:  # pandas: not CSV (ParserError, EmptyDataError) or not text
        raise SubmissionRejected(f"the uploaded predictions are not a readable CSV: {exc}") from exc


def _check_headers(
    frame: pd.DataFrame, id_columns: Sequence[str], prediction_columns: Sequence[str], what: str
) -> tuple[str, str]:
    columns = [str(c) for c in frame.columns]
    if len(columns) != 2 or columns[0] not in id_columns or columns[1] not in prediction_columns:
        raise SubmissionRejected(
            f"{what} predictions need two columns, in this order: an id column "
            f"({', '.join(id_columns)}) then a prediction column "
            f"({', '.join(prediction_columns)}); got {columns}"
        )
    return columns[0], columns[1]


def _live_rows(
    frame: pd.DataFrame, id_column: str, live: set[str] | None, what: str
) -> pd.DataFrame:
    """The rows whose id is live (the others are ignored; all rows without a universe); no id
    may be missing, no live id repeated. Ids are compared exactly as written."""
    ids = frame[id_column]
    if ids.isna().any():
        raise SubmissionRejected(
            f"{int(ids.isna().sum())} rows have no {id_column} (rows "
            f"{_examples((ids.index[ids.isna()] + 1).tolist())})"
        )
    rows = frame[ids.isin(live)] if live is not None else frame
    repeated = rows[id_column][rows[id_column].duplicated()].unique().tolist()
    if repeated:
        raise SubmissionRejected(
            f"{len(repeated)} live {what} appear more than once: {_examples(repeated)}"
        )
    return rows


def _check_values(values: pd.Series, keys: pd.Series, column: str) -> None:
    """Numbers, all in [0, 1] (within floating-point closeness of the ends), not all equal."""
    numbers = pd.to_numeric(values.str.strip(), errors="coerce")
    missing = numbers.isna()
    if missing.any():
        raise SubmissionRejected(
            f"{int(missing.sum())} `{column}` values are missing or not numbers "
            f"(ids {_examples(keys[missing].tolist())})"
        )
    low, high = numbers.min(), numbers.max()
    low_ok, high_ok = numbers.ge(0).all() or np.isclose(low, 0), numbers.le(1).all()
    high_ok = high_ok or np.isclose(high, 1)
    if not (low_ok and high_ok):
        outside = (numbers < 0) | (numbers > 1)
        bad = [f"{k}={v}" for k, v in zip(keys[outside], numbers[outside], strict=True)]
        raise SubmissionRejected(
            f"{int(outside.sum())} `{column}` values are outside [0, 1]: {_examples(bad)}"
        )
    if np.isclose(0, numbers.std()):
        raise SubmissionRejected(
            f"every `{column}` value is {numbers.iloc[0]}: Numerai refuses constant predictions"
        )


def check_classic(data: bytes, live_ids: Sequence[str], round_number: int) -> CheckedPredictions:
    """`id` then `prediction` (or `probability`); every live id once; values in [0, 1]."""
    frame = read_csv(data)
    id_column, value_column = _check_headers(
        frame, CLASSIC_ID_COLUMNS, CLASSIC_PREDICTION_COLUMNS, "Classic"
    )
    live = set(live_ids)
    rows = _live_rows(frame, id_column, live, "ids")
    ids = rows[id_column]
    missing = sorted(live - set(ids))
    if missing:
        unknown = sorted(set(frame[id_column]) - live)
        raise SubmissionRejected(
            f"{len(missing)} of the {len(live)} live ids of round {round_number} have no "
            f"prediction ({_examples(missing)}); {len(unknown)} ids are not live "
            f"({_examples(unknown) or 'none'}): predict on this round's live data"
        )
    _check_values(rows[value_column], ids, value_column)
    return CheckedPredictions(len(frame), tuple(frame[id_column]))


def check_signals(data: bytes, universe: Sequence[str] | None) -> CheckedPredictions:
    """A ticker column then `signal` (or `prediction`), a date column and `data_type` aside;
    at least SIGNALS_MIN_TICKERS live tickers, each once; values in [0, 1]. Tickers outside
    the live universe are ignored, as Numerai does."""
    frame = read_csv(data).drop(columns=["data_type"], errors="ignore")
    date_column = next((c for c in frame.columns if c in SIGNALS_DATE_COLUMNS), None)
    if date_column is not None:
        frame = frame.drop(columns=[date_column])
    ticker_column, value_column = _check_headers(
        frame, SIGNALS_ID_COLUMNS, SIGNALS_PREDICTION_COLUMNS, "Signals"
    )
    if universe is not None and ticker_column not in SIGNALS_UNIVERSE_COLUMNS:
        raise SubmissionRejected(
            f"the live universe lists tickers as {' or '.join(SIGNALS_UNIVERSE_COLUMNS)}, "
            f"not {ticker_column}: name the tickers that way"
        )
    return _check_universe(
        frame, ticker_column, value_column, universe, "tickers", SIGNALS_MIN_TICKERS
    )


def check_crypto(data: bytes, universe: Sequence[str]) -> CheckedPredictions:
    """`symbol` then `signal` (or `prediction`); at least CRYPTO_MIN_SYMBOLS live symbols, each
    once; values in [0, 1]. Symbols outside the live universe are ignored, as Numerai does."""
    frame = read_csv(data)
    symbol_column, value_column = _check_headers(
        frame, CRYPTO_ID_COLUMNS, CRYPTO_PREDICTION_COLUMNS, "Crypto"
    )
    return _check_universe(
        frame, symbol_column, value_column, universe, "symbols", CRYPTO_MIN_SYMBOLS
    )


def _check_universe(
    frame: pd.DataFrame,
    id_column: str,
    value_column: str,
    universe: Sequence[str] | None,
    what: str,
    minimum: int,
) -> CheckedPredictions:
    """Signals and Crypto: at least `minimum` live ids, each once, with values in [0, 1]."""
    live = set(universe) if universe is not None else None
    rows = _live_rows(frame, id_column, live, what)
    if live is not None and len(rows) < minimum:
        outside = [t for t in frame[id_column] if t not in live]
        raise SubmissionRejected(
            f"only {len(rows)} of the {len(frame)} {what} are in the live universe of "
            f"{len(live)} {what}; Numerai needs at least {minimum} "
            f"(not in it: {_examples(outside) or 'none'})"
        )
    _check_values(rows[value_column], rows[id_column], value_column)
    return CheckedPredictions(len(frame), tuple(frame[id_column]))
