"""Checks before the one irreversible step: the upload. Each failure names the offending values."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd
from numerai_tools.submissions import (
    CRYPTO_MIN_TICKERS,
    SIGNALS_MIN_TICKERS,
    validate_submission_crypto,
    validate_submission_numerai,
    validate_submission_signals,
)

from flows.errors import InvalidPredictions


@dataclass(frozen=True)
class PredictionSummary:
    """What was checked, for the report."""

    rows: int
    live_rows: int
    minimum: float
    maximum: float
    mean: float
    std: float

    @classmethod
    def of(cls, values: pd.Series, live_rows: int) -> PredictionSummary:
        """Summarise validated prediction values."""
        return cls(
            rows=len(values),
            live_rows=live_rows,
            minimum=float(values.min()),
            maximum=float(values.max()),
            mean=float(values.mean()),
            std=float(values.std()),
        )


def check_classic(predictions: pd.Series, live_ids: pd.Index) -> PredictionSummary:
    """Validate Classic predictions against the round's live ids, then with numerai-tools."""
    _check_values(predictions)
    _check_ids(predictions.index, live_ids)
    frame = pd.DataFrame({"id": predictions.index.astype(str), "prediction": predictions.values})
    try:
        validate_submission_numerai(pd.Series(live_ids.astype(str)), frame)
    except AssertionError as exc:
        raise InvalidPredictions(f"numerai-tools rejected the predictions: {exc}") from None
    return PredictionSummary.of(predictions, len(live_ids))


def check_signals(submission: pd.DataFrame, universe: Iterable[str]) -> PredictionSummary:
    """Validate a Signals submission (numerai_ticker, signal) against the live universe, then
    with numerai-tools: values in (0, 1), no duplicates, at least SIGNALS_MIN_TICKERS tickers,
    and no ticker outside the universe (Numerai would silently drop it)."""
    return _check_universe(
        submission, universe, "numerai_ticker", "tickers", SIGNALS_MIN_TICKERS, "Signals"
    )


def check_crypto(submission: pd.DataFrame, universe: Iterable[str]) -> PredictionSummary:
    """Validate a Crypto submission (symbol, signal) against the live universe, then with
    numerai-tools' `validate_submission_crypto`: the same rules, with CRYPTO_MIN_TICKERS
    symbols."""
    return _check_universe(submission, universe, "symbol", "symbols", CRYPTO_MIN_TICKERS, "Crypto")


# numerai-tools' validator of each tournament: (universe, submission), raising AssertionError.
_VALIDATORS: dict[str, Callable[[pd.DataFrame, pd.DataFrame], object]] = {
    "Signals": validate_submission_signals,
    "Crypto": validate_submission_crypto,
}


def _check_universe(
    submission: pd.DataFrame,
    universe: Iterable[str],
    id_column: str,
    what: str,
    minimum: int,
    tournament: str,
) -> PredictionSummary:
    if list(submission.columns) != [id_column, "signal"]:
        raise InvalidPredictions(
            f"The {tournament} predictions have columns {list(submission.columns)}; expected "
            f"['{id_column}', 'signal']. Nothing was uploaded."
        )
    signal = submission.set_index(id_column)["signal"]
    live = pd.Index(pd.unique(pd.Series(list(universe), dtype="str")))
    _check_values(signal)
    duplicated = signal.index[signal.index.duplicated()]
    if len(duplicated):
        raise InvalidPredictions(
            f"{len(duplicated)} {what} appear more than once ({_sample(duplicated)}). "
            "Nothing was uploaded."
        )
    outside = signal.index.difference(live)
    if len(outside):
        raise InvalidPredictions(
            f"{len(outside)} {what} are not in this round's live universe "
            f"({_sample(outside)}). Predict on this round's live universe. Nothing was uploaded."
        )
    if len(signal) < minimum:
        raise InvalidPredictions(
            f"Only {len(signal)} of the {len(live)} live {what} have a prediction; Numerai "
            f"needs at least {minimum}. Nothing was uploaded."
        )
    try:
        with warnings.catch_warnings():
            # numerai-tools' own pandas deprecation warnings are not ours to fix.
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"numerai_tools")
            _VALIDATORS[tournament](pd.DataFrame({id_column: live}), submission.copy())
    except AssertionError as exc:
        raise InvalidPredictions(f"numerai-tools rejected the predictions: {exc}") from None
    return PredictionSummary.of(signal, len(live))


def _check_values(predictions: pd.Series) -> None:
    if predictions.empty:
        raise InvalidPredictions("The model returned no predictions. Nothing was uploaded.")
    missing = predictions[predictions.isna()]
    if len(missing):
        raise InvalidPredictions(
            f"{len(missing)} of {len(predictions)} predictions are NaN"
            f" (ids {_sample(missing.index)})."
            " Fill or drop NaN in the model's predict before returning. Nothing was uploaded."
        )
    outside = predictions[(predictions < 0) | (predictions > 1)]
    if len(outside):
        raise InvalidPredictions(
            f"{len(outside)} predictions are outside [0, 1] (min {predictions.min():.4g}, max "
            f"{predictions.max():.4g}; ids {_sample(outside.index)}). Rank them into (0, 1], "
            "e.g. predictions.rank(pct=True). Nothing was uploaded."
        )
    if predictions.std() == 0 or pd.isna(predictions.std()):
        raise InvalidPredictions(
            "All predictions are equal. Numerai rejects constant predictions. Nothing was uploaded."
        )


def _check_ids(ids: pd.Index, live_ids: pd.Index) -> None:
    duplicated = ids[ids.duplicated()]
    if len(duplicated):
        raise InvalidPredictions(
            f"{len(duplicated)} ids appear more than once ({_sample(duplicated)}). "
            "Nothing was uploaded."
        )
    missing = live_ids.difference(ids)
    extra = ids.difference(live_ids)
    if len(missing) or len(extra):
        raise InvalidPredictions(
            f"The predictions' ids do not match this round's live ids: {len(missing)} live ids "
            f"have no prediction ({_sample(missing)}), {len(extra)} ids are not live "
            f"({_sample(extra)}). Predict on this round's live.parquet. Nothing was uploaded."
        )


def _sample(index: pd.Index, count: int = 3) -> str:
    shown = ", ".join(map(str, index[:count]))
    return shown + (", …" if len(index) > count else "") if len(index) else "none"
