"""The Crypto node against a sandbox: real numerapi CryptoAPI calls, real yfinance on the Yahoo
fake (coins trade every day), uploads checked by numerai-tools' crypto rules."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from numerai_tools.submissions import validate_submission_crypto

from flows.crypto import CryptoNode, crypto_node, live_date
from flows.errors import InsufficientCoverage
from flows.numerai import RoundInfo
from flows.prices import PriceCache
from flows.settings import load_settings
from flows.tournaments import CRYPTO
from sandbox.runner import Sandbox
from tests.flows.prefect_runs import artifacts as _artifacts
from tests.flows.prefect_runs import task_states as _task_states

FAST = {"n_estimators": 20, "learning_rate": 0.1}
MODEL = "sandbox_crypto"


def _node(**overrides) -> CryptoNode:
    pinned = {"numerai_model": MODEL, "data_version": "crypto/v1.0", "params": FAST}
    return CryptoNode(**(pinned | overrides))


def _uploaded(sandbox: Sandbox, filename: str) -> pd.DataFrame:
    upload = sandbox.state.upload(filename.split("/", 1)[0])
    assert upload is not None and upload.data is not None
    return pd.read_csv(io.BytesIO(upload.data), keep_default_na=False)


def test_submits_once_with_the_trigger_id_then_loads_the_cached_model(sandbox):
    first = crypto_node(_node(), trigger_id="trigger-a", return_state=True)

    (submission,) = sandbox.submissions(MODEL)
    universe = sandbox.live_ids(CRYPTO)
    assert (submission.trigger_id, submission.tournament) == ("trigger-a", CRYPTO)
    assert first.result().submission_id == submission.id
    uploaded = _uploaded(sandbox, submission.filename)
    assert list(uploaded.columns) == ["symbol", "signal"]
    # What Numerai's own validator says of the file the node uploaded.
    _, _, accepted, invalid = validate_submission_crypto(
        pd.DataFrame({"symbol": universe}), uploaded
    )
    assert len(accepted) == len(uploaded) >= 100 and invalid == []
    unknown = set(sandbox.crypto.unknown_symbols)
    assert unknown <= set(universe) and not unknown & set(uploaded["symbol"])
    assert _task_states(first)["train"] == ["Completed"]
    coverage = {r["stage"]: r for r in json.loads(_artifacts(first)["crypto-coverage"].data)}
    assert coverage["live universe"]["tickers"] == len(universe)
    assert coverage["prices from Yahoo"]["dropped"] == len(unknown)
    assert coverage["predicted"]["tickers"] == len(uploaded)
    # Coins trade at weekends: the cached prices have every day of a week.
    days = PriceCache(load_settings().prices_dir).load(["BTC-USD"])["date"]
    assert set(days.dt.day_of_week) == set(range(7))

    sandbox.open_round(CRYPTO)
    again = crypto_node(_node(), trigger_id="trigger-b", return_state=True)

    assert _task_states(again)["train"] == ["Cached"]
    latest = sandbox.submissions(MODEL)[-1]
    assert (latest.round, latest.trigger_id) == (submission.round + 1, "trigger-b")
    assert again.result().status == "submitted" and len(sandbox.submissions(MODEL)) == 2


def test_too_few_priced_symbols_stop_before_upload_with_a_coverage_artifact(sandbox):
    symbols = sorted(sandbox.crypto.yahoo_symbols)
    sandbox.yahoo.failing.update({s: 10**6 for s in symbols[50:]})  # Yahoo fails most coins

    state = crypto_node(_node(price_retries=0), trigger_id="thin", return_state=True)

    error = state.result(raise_on_failure=False)
    assert isinstance(error, InsufficientCoverage)
    assert "symbols of live_universe.parquet have prices from Yahoo" in str(error)
    assert "Numerai needs at least 100" in str(error) and "Nothing was" in str(error)
    assert "train" not in _task_states(state) and sandbox.submissions() == []
    coverage = {r["stage"]: r for r in json.loads(_artifacts(state)["crypto-coverage"].data)}
    live = sandbox.live_ids(CRYPTO)
    answered = sum(f"{s}-USD" in symbols[:50] for s in live)
    assert coverage["live universe"]["tickers"] == len(live)
    assert coverage["prices from Yahoo"]["tickers"] == answered < 100
    assert coverage["predicted"]["tickers"] == 0


def test_the_live_date_is_the_last_whole_day_before_the_round_opened():
    opened = pd.Timestamp("2026-12-06 13:00", tz="UTC").to_pydatetime()  # a Sunday
    assert str(live_date(RoundInfo(7, opened, None))) == "2026-12-05"


def test_crypto_data_has_no_validation_to_score():
    with pytest.raises(ValueError, match="no validation data"):
        CryptoNode(score_validation=True)
