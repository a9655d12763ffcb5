"""Validation before upload: each bad input is refused with a message naming the values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from flows.errors import InvalidPredictions
from flows.validation import check_classic, check_signals

IDS = pd.Index([f"n{i:015x}" for i in range(200)], name="id")


def _predictions(values=None, ids=IDS) -> pd.Series:
    values = np.linspace(0.01, 0.99, len(ids)) if values is None else values
    return pd.Series(values, index=ids, name="prediction")


def test_valid_predictions_pass_and_are_summarised():
    summary = check_classic(_predictions(), IDS)
    assert summary.rows == summary.live_rows == 200
    assert summary.minimum == pytest.approx(0.01)
    assert summary.maximum == pytest.approx(0.99)


def test_nan_predictions_are_refused_with_their_ids():
    values = np.linspace(0.01, 0.99, 200)
    values[[3, 7]] = np.nan
    with pytest.raises(InvalidPredictions, match=r"2 of 200 predictions are NaN.*n000000000000003"):
        check_classic(_predictions(values), IDS)


def test_out_of_range_predictions_are_refused_with_min_and_max():
    values = np.linspace(-0.5, 1.5, 200)
    with pytest.raises(InvalidPredictions, match=r"outside \[0, 1\] \(min -0.5, max 1.5"):
        check_classic(_predictions(values), IDS)


def test_constant_predictions_are_refused():
    with pytest.raises(InvalidPredictions, match="All predictions are equal"):
        check_classic(_predictions(np.full(200, 0.5)), IDS)


def test_ids_that_do_not_match_the_live_ids_are_refused():
    shifted = pd.Index([f"x{i:015x}" for i in range(10)]).append(IDS[10:])
    with pytest.raises(InvalidPredictions, match=r"10 live ids have no prediction.*10 ids are not"):
        check_classic(_predictions(ids=shifted), IDS)


def test_duplicate_ids_are_refused():
    duplicated = IDS[:199].append(IDS[:1])
    with pytest.raises(InvalidPredictions, match="appear more than once"):
        check_classic(_predictions(ids=duplicated), IDS)


def test_empty_predictions_are_refused():
    with pytest.raises(InvalidPredictions, match="no predictions"):
        check_classic(pd.Series([], dtype=float, index=pd.Index([], name="id")), IDS)


# --- Signals ------------------------------------------------------------------------------------

TICKERS = [f"T{i:03d} US" for i in range(150)]


def _signals(tickers=TICKERS, values=None) -> pd.DataFrame:
    values = np.linspace(0.01, 0.99, len(tickers)) if values is None else values
    return pd.DataFrame({"numerai_ticker": tickers, "signal": values})


@pytest.mark.parametrize("predicted", [150, 120])
def test_signals_covering_at_least_100_live_tickers_pass(predicted):
    checked = check_signals(_signals(TICKERS[:predicted]), TICKERS)
    assert (checked.rows, checked.live_rows) == (predicted, 150)


def test_signals_for_fewer_than_100_tickers_are_refused_with_the_counts():
    with pytest.raises(InvalidPredictions, match="Only 99 of the 150 live tickers"):
        check_signals(_signals(TICKERS[:99]), TICKERS)


def test_signals_for_tickers_outside_the_live_universe_are_refused():
    tickers = [*TICKERS[:120], "GONE US"]
    with pytest.raises(InvalidPredictions, match=r"1 tickers are not in .* \(GONE US\)"):
        check_signals(_signals(tickers), TICKERS)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (_signals(values=np.linspace(0, 2, 150)), r"outside \[0, 1\]"),
        (_signals(values=np.full(150, 0.5)), "All predictions are equal"),
        (_signals([*TICKERS[:149], TICKERS[0]]), "appear more than once"),
        (_signals().rename(columns={"signal": "prediction"}), "expected \\['numerai_ticker'"),
    ],
)
def test_bad_signals_are_refused(frame, message):
    with pytest.raises(InvalidPredictions, match=message):
        check_signals(frame, TICKERS)
