"""The Signals node against a sandbox: real numerapi SignalsAPI, real yfinance on the Yahoo fake."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd

from flows.errors import InsufficientCoverage, InvalidPredictions
from flows.prices import PriceCache
from flows.settings import load_settings
from flows.signals import SignalsNode, signals_node
from sandbox.runner import Sandbox
from sandbox.state import SIGNALS
from tests.flows.prefect_runs import artifacts as _artifacts
from tests.flows.prefect_runs import task_states as _task_states

FAST = {"n_estimators": 20, "learning_rate": 0.1}


def _node(**overrides) -> SignalsNode:
    pinned = {"numerai_model": "sandbox_signals", "data_version": "signals/v2.0", "params": FAST}
    return SignalsNode(**(pinned | overrides))


def _coverage(artifacts: dict) -> dict[str, dict]:
    """The coverage table artifact, by stage."""
    return {row["stage"]: row for row in json.loads(artifacts["signals-coverage"].data)}


def _history_requests(sandbox: Sandbox) -> dict[str, list[dt.date]]:
    """Symbol -> first day (exchange-local) of each price-history request the fake received."""
    days: dict[str, list[dt.date]] = {}
    for symbol, params in sandbox.yahoo.requests:
        if "period1" in params:
            tz = sandbox.yahoo.exchange(symbol)[0]
            stamp = pd.Timestamp(int(params["period1"]), unit="s", tz="UTC").tz_convert(tz)
            days.setdefault(symbol, []).append(stamp.date())
    return days


def test_round_day_submits_once_then_reuses_the_model_and_fetches_only_new_days(sandbox):
    unknown = {"GONE0", "GONE1", "GONE2"}  # mapped, but the fake Yahoo has never heard of them
    live_day = sandbox.signals.live_date(sandbox.current_round(SIGNALS))
    symbols = sorted(sandbox.signals.yahoo_symbols)
    stale, flaky = symbols[:4], symbols[4:7]
    sandbox.yahoo.stale.update({s: live_day - dt.timedelta(days=30) for s in stale})
    sandbox.yahoo.failing.update({s: 1 for s in flaky})  # a partial batch failure, retried
    sandbox.yahoo.holidays = (live_day,)  # the live Friday is a market holiday: Thursday counts

    first = signals_node(_node(), trigger_id="trigger-a", return_state=True)

    (submission,) = sandbox.submissions("sandbox_signals")
    universe = set(sandbox.live_ids(SIGNALS))
    assert submission.trigger_id == "trigger-a" and submission.round == 1000
    assert submission.tournament == SIGNALS and first.result().submission_id == submission.id
    assert len(submission.ids) >= 100 and set(submission.ids) <= universe
    mapping = sandbox.signals.spec.tickers.set_index("yahoo")["numerai_ticker"]
    assert not set(mapping[stale]) & set(submission.ids)
    assert set(mapping[flaky]) & universe <= set(submission.ids)
    assert _task_states(first)["train"] == ["Completed"]
    artifacts = _artifacts(first)
    coverage = _coverage(artifacts)
    assert coverage["live universe"]["tickers"] == len(universe)
    assert coverage["mapped to a Yahoo symbol"]["dropped"] == 3  # NOMAP0 ZZ ...
    assert "GONE0 US" in coverage["prices from Yahoo"]["examples"]
    assert coverage["predicted"]["tickers"] == submission.row_count
    assert "Coverage" in artifacts["signals-summary"].data

    sandbox.yahoo.requests.clear()
    again = signals_node(_node(), trigger_id="trigger-a", return_state=True)
    assert again.result().status == "already-submitted"
    assert "train" not in _task_states(again) and "download" not in _task_states(again)
    assert sandbox.yahoo.requests == []  # the round was done: not one price asked for
    assert len(sandbox.submissions("sandbox_signals")) == 1

    sandbox.open_round(SIGNALS)
    sandbox.yahoo.requests.clear()
    cached = PriceCache(load_settings().prices_dir).coverage()
    next_round = signals_node(_node(), trigger_id="trigger-b", return_state=True)
    assert _task_states(next_round)["train"] == ["Cached"]
    asked = _history_requests(sandbox)
    assert asked.keys() - unknown, "the new week's prices were not fetched"
    for symbol in asked.keys() - unknown:  # each from the day after its cached prices
        assert set(asked[symbol]) == {dt.date.fromisoformat(cached[symbol]["end"])}
    assert cached[symbols[10]]["end"] == str(live_day + dt.timedelta(days=1))
    latest = sandbox.submissions("sandbox_signals")[-1]
    assert (latest.round, latest.trigger_id) == (1001, "trigger-b")
    assert set(latest.ids) <= set(sandbox.live_ids(SIGNALS)) and len(latest.ids) >= 100


def test_too_few_priced_tickers_stop_before_training_and_upload(sandbox):
    symbols = sorted(sandbox.signals.yahoo_symbols)
    sandbox.yahoo.failing.update({s: 10**6 for s in symbols[60:]})  # Yahoo fails most symbols
    tickers = sandbox.signals.spec.tickers
    live = tickers[tickers["numerai_ticker"].isin(sandbox.live_ids(SIGNALS))]
    answered = int(live["yahoo"].isin(symbols[:60]).sum())

    state = signals_node(_node(price_retries=0), trigger_id="thin", return_state=True)

    error = state.result(raise_on_failure=False)
    assert isinstance(error, InsufficientCoverage) and isinstance(error, InvalidPredictions)
    assert f"Only {answered} of the {len(live)} tickers of live.parquet" in str(error)
    assert "Nothing was trained or uploaded" in str(error)
    assert "train" not in _task_states(state)
    assert sandbox.submissions() == []
    coverage = _coverage(_artifacts(state))
    assert coverage["prices from Yahoo"]["tickers"] == answered
    assert coverage["predicted"]["tickers"] == 0
