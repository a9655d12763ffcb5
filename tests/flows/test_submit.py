"""The submit step: separately retried steps, one submission per model and round, early ends."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.states import Crashed, Pending, Running, Scheduled, State

from flows.errors import TooManyRestarts
from flows.node import (
    DataSource,
    SubmissionOutcome,
    Submitter,
    check_restarts,
    skipping_submission,
    submit,
    upload_predictions,
)
from flows.numerai import Submission
from flows.settings import load_settings
from flows.signals import SignalsNode, signals_node
from flows.tournament import TournamentNode, tournament_node
from flows.tournaments import CLASSIC
from sandbox.chaos import Chaos, ChaosProfile
from sandbox.classic_spec import DATA_VERSION
from tests.flows.prefect_runs import task_runs, task_states

FAST = {"n_estimators": 20, "learning_rate": 0.1}


def _node(**overrides) -> TournamentNode:
    return TournamentNode(
        **{
            "numerai_model": "sandbox_model",
            "data_version": "v5.2",  # pinned, as prefect.yaml pins it: no version look-up
            "params": FAST,
            "score_validation": False,
            **overrides,
        }
    )


def _admin(sandbox, what: str) -> dict:
    """A sandbox counter: GraphQL calls per top-level field, or fetches per dataset file."""
    return httpx.get(f"{sandbox.url}_sandbox/{what}", timeout=30).json()


def _delta(after: dict, before: dict) -> dict:
    return {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key)}


# --- the one rule -----------------------------------------------------------------------------


def _submission(round_number: int, trigger_id: str | None) -> Submission:
    return Submission(f"s-{trigger_id}", "f.csv", round_number, trigger_id, None)


@pytest.mark.parametrize(
    ("found", "trigger_id", "skips_for"),
    [
        ([_submission(7, "a")], "a", "a"),  # this run's trigger id
        ([_submission(7, None)], "a", None),  # a run without a trigger id submitted
        ([_submission(7, "b")], None, "b"),  # a run without one skips for any
        ([_submission(7, "b")], "a", "none"),  # another trigger: Numerai asked again
        ([_submission(6, "a"), _submission(6, None)], "a", "none"),  # another round
    ],
)
def test_one_rule_says_which_submission_of_the_round_a_run_skips_for(found, trigger_id, skips_for):
    earlier = skipping_submission(found, 7, trigger_id)
    assert (earlier.trigger_id if earlier else "none") == skips_for


# --- whole runs -------------------------------------------------------------------------------


def test_a_run_without_a_trigger_after_the_webhook_run_ends_before_downloading_anything(sandbox):
    webhook = tournament_node(_node(), trigger_id="from-webhook")
    fetched, called = _admin(sandbox, "downloads"), _admin(sandbox, "calls")

    state = tournament_node(_node(), trigger_id=None, return_state=True)

    outcome = state.result()
    assert outcome.status == "already-submitted"
    assert outcome.submission_id == webhook.submission_id
    assert _admin(sandbox, "downloads") == fetched  # not the live file, nor any other
    assert set(task_states(state)) == {"resolve-round", "check-account", "find-submission"}
    assert _delta(_admin(sandbox, "calls"), called) == {"rounds": 1, "account": 1, "submissions": 1}
    assert [s.trigger_id for s in sandbox.submissions("sandbox_model")] == ["from-webhook"]


def test_a_run_looks_the_model_id_up_once_and_each_submit_call_is_made_once(sandbox):
    before = _admin(sandbox, "calls")

    state = tournament_node(_node(), trigger_id="once", return_state=True)

    calls = _delta(_admin(sandbox, "calls"), before)
    assert calls["account"] == 1  # check-account's look-up, passed on to the later steps
    assert calls["submission_upload_auth"] == calls["create_submission"] == 1
    assert calls["submissions"] == 3  # after check-account, before the upload, before the create
    states = task_states(state)
    assert states["upload-predictions"] == states["submit"] == ["Completed"]
    assert state.result().status == "submitted"


# --- one step retried, the others not ---------------------------------------------------------


@flow
def _upload_then_submit(
    source: DataSource, who: Submitter, predictions: Path, chaos_url: str, chaos: dict
) -> SubmissionOutcome:
    """The node's last two steps, with seeded chaos turned on between them."""
    filename = upload_predictions(source, who, predictions)
    httpx.post(chaos_url, json=chaos, timeout=30).raise_for_status()
    return submit(source, who, filename, predictions)


def _seed_faulting_only(kind: str, request: int, fault: object) -> int:
    """A chaos seed under which, with `kind` at 50%, only the `request`-th request (from 1) of
    the Numerai surface meets the fault, as `fault` (the sandbox's own seeded decisions)."""
    for seed in itertools.count():
        profile = ChaosProfile(drop=0.5) if kind == "drop" else ChaosProfile(graphql_5xx=0.5)
        chaos = Chaos(profile, seed=seed, enabled=True)
        draw = chaos.drop if kind == "drop" else chaos.graphql_5xx
        decided = [draw() for _ in range(request + 3)]
        if decided[request - 1] == fault and decided.count(None) == len(decided) - 1:
            return seed
    raise AssertionError("unreachable: itertools.count() never ends")


@pytest.mark.parametrize(
    ("kind", "fault", "counted"),
    [
        ("drop", "after", "drop_after"),  # the create was made; its answer was lost
        ("graphql_5xx", 503, "graphql_5xx"),  # the create never reached Numerai
    ],
)
def test_under_a_seeded_fault_on_the_create_call_the_run_makes_exactly_one_submission(
    sandbox, tmp_path, kind, fault, counted
):
    live_ids = sandbox.live_ids()
    predictions = tmp_path / "predictions.csv"
    ranks = np.linspace(0.01, 0.99, len(live_ids))
    pd.DataFrame({"id": live_ids, "prediction": ranks}).to_csv(predictions, index=False)
    who = Submitter(
        model_name="sandbox_model",
        model_id=sandbox.models["sandbox_model"],
        round_number=sandbox.current_round(),
        trigger_id="faulted-create",
    )
    source = DataSource.from_settings(CLASSIC, DATA_VERSION)
    # The submit task reads the submissions (request 1), then creates (request 2).
    chaos = {"seed": _seed_faulting_only(kind, 2, fault), kind: 0.5}

    state = _upload_then_submit(
        source, who, predictions, f"{sandbox.url}_sandbox/chaos", chaos, return_state=True
    )

    (submission,) = sandbox.submissions("sandbox_model")
    outcome = state.result()
    assert (outcome.status, outcome.submission_id) == ("submitted", submission.id)
    assert submission.trigger_id == "faulted-create"
    assert sandbox.chaos.to_json()["counts"][counted] == 1  # type: ignore[index]
    runs = {run.name.rsplit("-", 1)[0]: run.run_count for run in task_runs(state)}
    assert runs == {"upload-predictions": 1, "submit": 2}  # the retry did not upload again
    assert len([u for u in sandbox.state.uploads() if u.data is not None]) == 1


# --- crashed runs started again ---------------------------------------------------------------


def _started(flow_fn, parameters: dict, times: int) -> State:
    """Run `flow_fn` in a flow run of the session's Prefect server that already started and
    crashed `times - 1` times, each crash set back to Scheduled as the recovery automation does."""
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(flow_fn, parameters=parameters, state=Scheduled())
        for _ in range(times - 1):
            cycle: tuple[State, ...] = (Pending(), Running(), Crashed(), Scheduled())
            for next_state in cycle:
                client.set_flow_run_state(run.id, next_state, force=True)
        run = client.read_flow_run(run.id)
    state = run_flow(flow_fn, flow_run=run, parameters=parameters, return_type="state")
    assert isinstance(state, State), "a sync flow's engine returns its final state"
    return state


@pytest.mark.parametrize(
    ("flow_fn", "node"),
    [(tournament_node, _node()), (signals_node, SignalsNode(numerai_model="sandbox_signals"))],
    ids=["tournament", "signals"],
)
def test_a_run_started_more_than_max_restarts_times_fails_at_once_naming_the_cause(
    sandbox, flow_fn, node
):
    state = _started(flow_fn, {"node": node, "trigger_id": "out-of-memory"}, times=5)

    error = state.result(raise_on_failure=False)
    assert state.is_failed() and isinstance(error, TooManyRestarts)
    message = str(error)
    assert "started 5 times" in message and "3 restarts" in message
    assert "out of memory" in message and "size preset" in message and "fewer features" in message
    assert task_runs(state) == [] and _admin(sandbox, "calls") == {}
    assert sandbox.submissions() == []


def test_a_run_restarted_within_the_bound_runs_and_submits(sandbox, monkeypatch):
    monkeypatch.setenv("NUMERAI_NODES_MAX_RESTARTS", "1")
    state = _started(tournament_node, {"node": _node(), "trigger_id": "restarted"}, times=2)

    assert state.is_completed(), state.message
    assert [s.trigger_id for s in sandbox.submissions("sandbox_model")] == ["restarted"]


def test_the_restart_bound_counts_the_first_start_and_defaults_to_three_restarts(monkeypatch):
    monkeypatch.delenv("NUMERAI_NODES_MAX_RESTARTS", raising=False)
    assert load_settings().max_restarts == 3
    check_restarts(4, 3)  # the first start and three restarts
    with pytest.raises(TooManyRestarts, match="started 5 times"):
        check_restarts(5, 3)
