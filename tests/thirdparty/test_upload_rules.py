"""The sandbox accepts and refuses uploads as numerai-tools' validators do, case for case.

numerai-tools' `validate_submission_numerai` and `validate_submission_signals` encode Numerai's
rules: each case below is a file, the verdict Numerai gives it, numerai-tools' verdict on the
file as pandas reads it, and the sandbox's verdict on the same bytes uploaded through numerapi.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import numerapi
import numerapi.base_api
import numpy as np
import pandas as pd
import pytest
from numerai_tools.submissions import validate_submission_numerai, validate_submission_signals

from flows.tournaments import SIGNALS
from sandbox.runner import Sandbox
from tests.thirdparty.conftest import quiet_numerai_tools

ACCEPT, REFUSE = "accept", "refuse"
Case = Callable[[list[str]], str]


def _csv(columns: dict[str, object]) -> str:
    return pd.DataFrame(columns).to_csv(index=False)


def _spread(n: int, low: float = 0.05, high: float = 0.95) -> np.ndarray:
    return np.linspace(low, high, n)


def _with(values: np.ndarray, first: object) -> list[object]:
    return [first, *values[1:]]


CLASSIC: dict[str, tuple[Case, str]] = {
    "ranked predictions": (lambda ids: _csv({"id": ids, "prediction": _spread(len(ids))}), ACCEPT),
    "a probability column": (
        lambda ids: _csv({"id": ids, "probability": _spread(len(ids))}),
        ACCEPT,
    ),
    "0 and 1 themselves": (
        lambda ids: _csv({"id": ids, "prediction": _spread(len(ids), 0, 1)}),
        ACCEPT,
    ),
    "a hair below 0": (
        lambda ids: _csv({"id": ids, "prediction": _with(_spread(len(ids)), -1e-9)}),
        ACCEPT,
    ),
    "a value below 0": (
        lambda ids: _csv({"id": ids, "prediction": _with(_spread(len(ids)), -0.01)}),
        REFUSE,
    ),
    "a value above 1": (
        lambda ids: _csv({"id": ids, "prediction": _with(_spread(len(ids)), 1.5)}),
        REFUSE,
    ),
    "constant predictions": (lambda ids: _csv({"id": ids, "prediction": 0.5}), REFUSE),
    "almost constant predictions": (
        lambda ids: _csv({"id": ids, "prediction": 0.5 + 1e-12 * np.arange(len(ids))}),
        REFUSE,
    ),
    "a NaN prediction": (
        lambda ids: _csv({"id": ids, "prediction": _with(_spread(len(ids)), np.nan)}),
        REFUSE,
    ),
    "a prediction that is text": (
        lambda ids: _csv({"id": ids, "prediction": _with(_spread(len(ids)), "high")}),
        REFUSE,
    ),
    "extra ids outside the live set": (
        lambda ids: _csv({"id": [*ids, "n000000000000000"], "prediction": _spread(len(ids) + 1)}),
        ACCEPT,
    ),
    "a NaN for an id outside the live set": (
        lambda ids: _csv(
            {"id": [*ids, "n000000000000000"], "prediction": [*_spread(len(ids)), np.nan]}
        ),
        ACCEPT,
    ),
    "a live id missing": (
        lambda ids: _csv({"id": ids[1:], "prediction": _spread(len(ids) - 1)}),
        REFUSE,
    ),
    "only ids outside the live set": (
        lambda ids: _csv({"id": [f"x{i}" for i in ids], "prediction": _spread(len(ids))}),
        REFUSE,
    ),
    "a live id twice": (
        lambda ids: _csv({"id": [*ids, ids[0]], "prediction": _spread(len(ids) + 1)}),
        REFUSE,
    ),
    "an outside id twice": (
        lambda ids: _csv({"id": [*ids, "x", "x"], "prediction": _spread(len(ids) + 2)}),
        ACCEPT,
    ),
    "a row without an id": (
        lambda ids: _csv({"id": [*ids, None], "prediction": _spread(len(ids) + 1)}),
        REFUSE,
    ),
    "an id with a space before it": (
        lambda ids: _csv({"id": [f" {ids[0]}", *ids[1:]], "prediction": _spread(len(ids))}),
        REFUSE,
    ),
    "rows in another order": (
        lambda ids: _csv({"id": ids[::-1], "prediction": _spread(len(ids))}),
        ACCEPT,
    ),
    "prediction before id": (
        lambda ids: _csv({"prediction": _spread(len(ids)), "id": ids}),
        REFUSE,
    ),
    "a column named pred": (lambda ids: _csv({"id": ids, "pred": _spread(len(ids))}), REFUSE),
    "an era column as well": (
        lambda ids: _csv({"id": ids, "era": "0001", "prediction": _spread(len(ids))}),
        REFUSE,
    ),
    "an upper-case ID": (lambda ids: _csv({"ID": ids, "prediction": _spread(len(ids))}), REFUSE),
    "a header and no rows": (lambda ids: "id,prediction\n", REFUSE),
}

SIGNALS_CASES: dict[str, tuple[Case, str]] = {
    "numerai_ticker and signal": (
        lambda t: _csv({"numerai_ticker": t, "signal": _spread(len(t))}),
        ACCEPT,
    ),
    "bloomberg_ticker": (
        lambda t: _csv({"bloomberg_ticker": t, "signal": _spread(len(t))}),
        ACCEPT,
    ),
    "a prediction column": (
        lambda t: _csv({"numerai_ticker": t, "prediction": _spread(len(t))}),
        ACCEPT,
    ),
    "a date column in between": (
        lambda t: _csv({"numerai_ticker": t, "date": "2025-06-06", "signal": _spread(len(t))}),
        ACCEPT,
    ),
    "a friday_date column first": (
        lambda t: _csv({"friday_date": 20250606, "numerai_ticker": t, "signal": _spread(len(t))}),
        ACCEPT,
    ),
    "a data_type column": (
        lambda t: _csv({"numerai_ticker": t, "signal": _spread(len(t)), "data_type": "live"}),
        ACCEPT,
    ),
    "validation rows as well": (
        lambda t: _csv(
            {
                "numerai_ticker": [*t, *t],
                "date": ["2025-05-30"] * len(t) + ["2025-06-06"] * len(t),
                "data_type": ["validation"] * len(t) + ["live"] * len(t),
                "signal": _spread(2 * len(t)),
            }
        ),
        REFUSE,
    ),
    "100 live tickers and some others": (
        lambda t: _csv({"numerai_ticker": [*t[:100], "NOPE US"], "signal": _spread(101)}),
        ACCEPT,
    ),
    "99 live tickers": (lambda t: _csv({"numerai_ticker": t[:99], "signal": _spread(99)}), REFUSE),
    "no live ticker": (
        lambda t: _csv({"numerai_ticker": [f"X{s}" for s in t], "signal": _spread(len(t))}),
        REFUSE,
    ),
    "a ticker kind the universe does not list": (
        lambda t: _csv({"ticker": t, "signal": _spread(len(t))}),
        REFUSE,
    ),
    "a composite_figi column": (
        lambda t: _csv({"composite_figi": t, "signal": _spread(len(t))}),
        REFUSE,
    ),
    "signal before the ticker": (
        lambda t: _csv({"signal": _spread(len(t)), "numerai_ticker": t}),
        REFUSE,
    ),
    "constant signals": (lambda t: _csv({"numerai_ticker": t, "signal": 0.5}), REFUSE),
    "a signal above 1": (
        lambda t: _csv({"numerai_ticker": t, "signal": _with(_spread(len(t)), 1.2)}),
        REFUSE,
    ),
    "a NaN signal": (
        lambda t: _csv({"numerai_ticker": t, "signal": _with(_spread(len(t)), np.nan)}),
        REFUSE,
    ),
    "a row without a ticker": (
        lambda t: _csv({"numerai_ticker": [*t, None], "signal": _spread(len(t) + 1)}),
        REFUSE,
    ),
    "a live ticker twice": (
        lambda t: _csv({"numerai_ticker": [*t, t[0]], "signal": _spread(len(t) + 1)}),
        REFUSE,
    ),
}

_REFUSALS = (AssertionError, KeyError, TypeError, ValueError)


def _numerai_tools(validate: Callable[[pd.DataFrame], object], data: str) -> str:
    try:
        with quiet_numerai_tools():
            validate(pd.read_csv(io.StringIO(data)))
    except _REFUSALS:
        return REFUSE
    return ACCEPT


@pytest.fixture(scope="module")
def sandbox(data_root: Path) -> Iterator[Sandbox]:
    """One sandbox for the table: a submission changes nothing the next case depends on."""
    with Sandbox(data_root) as running, pytest.MonkeyPatch.context() as patch:
        patch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", running.url)
        patch.delenv("TRIGGER_ID", raising=False)
        yield running


def _sandbox(api: numerapi.NumerAPI | numerapi.SignalsAPI, model_id: str, path: Path) -> str:
    try:
        api.upload_predictions(str(path), model_id=model_id)
    except ValueError:  # numerapi raises the GraphQL error's message
        return REFUSE
    return ACCEPT


@pytest.mark.parametrize("case", sorted(CLASSIC))
def test_classic_uploads(sandbox: Sandbox, tmp_path: Path, case: str):
    make, numerai = CLASSIC[case]
    live = sandbox.live_ids()
    data = make(live)
    path = tmp_path / "predictions.csv"
    path.write_text(data)
    api = numerapi.NumerAPI(sandbox.public_id, sandbox.secret_key, verbosity="critical")
    tools = _numerai_tools(lambda frame: validate_submission_numerai(pd.Series(live), frame), data)
    assert (tools, _sandbox(api, sandbox.models["sandbox_model"], path)) == (numerai, numerai)


@pytest.mark.parametrize("case", sorted(SIGNALS_CASES))
def test_signals_uploads(sandbox: Sandbox, tmp_path: Path, case: str):
    make, numerai = SIGNALS_CASES[case]
    tickers = sandbox.live_ids(SIGNALS)
    data = make(tickers)
    path = tmp_path / "signals.csv"
    path.write_text(data)
    api = numerapi.SignalsAPI(sandbox.public_id, sandbox.secret_key, verbosity="critical")
    universe = pd.DataFrame({"numerai_ticker": tickers, "bloomberg_ticker": tickers})
    tools = _numerai_tools(lambda frame: validate_submission_signals(universe, frame), data)
    assert (tools, _sandbox(api, sandbox.models["sandbox_signals"], path)) == (numerai, numerai)
