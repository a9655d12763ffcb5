"""The tournament node against a sandbox: the real numerapi over HTTP, a real Prefect API."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from flows.errors import (
    InvalidKeys,
    InvalidPredictions,
    MissingKeys,
    NumeraiUnavailable,
    RoundClosed,
    UnknownModel,
    UploadRejected,
)
from flows.tournament import TournamentNode, tournament_node
from tests.flows.prefect_runs import all_artifacts, artifacts, task_runs
from tests.flows.prefect_runs import task_states as _task_states

FAST = {"n_estimators": 20, "learning_rate": 0.1}


def _node(**overrides) -> TournamentNode:
    # Pinned, as prefect.yaml pins it: the call counts below hold no version look-up.
    pinned = {"numerai_model": "sandbox_model", "data_version": "v5.2", "params": FAST}
    return TournamentNode(**(pinned | overrides))


def _failure(state) -> BaseException:
    assert state.is_failed(), f"expected the run to fail, it ended {state.name}"
    return state.result(raise_on_failure=False)


def test_a_round_submits_once_with_the_trigger_id_covering_every_live_id(sandbox):
    outcome = tournament_node(_node(), trigger_id="trigger-a")

    (submission,) = sandbox.submissions("sandbox_model")
    assert submission.trigger_id == "trigger-a"
    assert submission.round == sandbox.current_round()
    assert set(submission.ids) == set(sandbox.live_ids())
    assert submission.row_count == len(sandbox.live_ids())
    assert outcome.status == "submitted" and outcome.submission_id == submission.id
    written = pd.read_csv(outcome.predictions_path)
    assert list(written.columns) == ["id", "prediction"] and len(written) == submission.row_count


def test_a_second_run_of_the_round_ends_after_the_account_check_and_does_not_submit_again(
    sandbox,
):
    first = tournament_node(_node(), trigger_id="trigger-b", return_state=True)
    second = tournament_node(_node(), trigger_id="trigger-b", return_state=True)

    assert _task_states(first)["train"] == ["Completed"]
    assert set(_task_states(second)) == {"resolve-round", "check-account", "find-submission"}
    assert second.result().status == "already-submitted"
    assert second.result().submission_id == first.result().submission_id
    assert len(sandbox.submissions("sandbox_model")) == 1


def test_a_changed_parameter_retrains(sandbox):
    tournament_node(_node(), trigger_id="trigger-c")
    changed = tournament_node(
        _node(params={**FAST, "num_leaves": 7}), trigger_id="trigger-c2", return_state=True
    )
    assert _task_states(changed)["train"] == ["Completed"]


def test_a_new_round_submits_again_without_retraining(sandbox):
    tournament_node(_node(), trigger_id="round-1")
    new_round = sandbox.open_round()
    state = tournament_node(_node(), trigger_id="round-2", return_state=True)

    states = _task_states(state)
    assert "train" not in states and "score-validation" not in states
    assert states["find-model"] == states["load-model"] == ["Completed"]
    rounds = sorted((s.round, s.trigger_id) for s in sandbox.submissions("sandbox_model"))
    assert rounds == [(new_round - 1, "round-1"), (new_round, "round-2")]
    assert set(sandbox.submissions("sandbox_model")[-1].ids) == set(sandbox.live_ids())


def test_a_scheduled_run_after_the_webhook_run_skips_the_round(sandbox):
    tournament_node(_node(), trigger_id="from-webhook")
    outcome = tournament_node(_node(), trigger_id=None)
    assert outcome.status == "already-submitted"
    assert [s.trigger_id for s in sandbox.submissions("sandbox_model")] == ["from-webhook"]


def test_a_run_for_a_round_that_is_over_submits_nothing(sandbox):
    stale_round = sandbox.current_round()
    sandbox.open_round()
    error = _failure(tournament_node(_node(), "late", stale_round, return_state=True))
    assert isinstance(error, RoundClosed) and f"Round {stale_round} is over" in str(error)
    assert sandbox.submissions() == []


def test_a_closed_round_fails_with_round_closed_and_submits_nothing(sandbox):
    sandbox.close_round()
    error = _failure(tournament_node(_node(), "closed", return_state=True))
    assert isinstance(error, RoundClosed)
    assert "closed for submissions" in str(error)
    assert sandbox.submissions() == []


def test_wrong_keys_fail_before_any_work_without_leaking_the_key(sandbox, monkeypatch):
    monkeypatch.setenv("NUMERAI_SECRET_KEY", "wrong-secret-value")
    state = tournament_node(_node(), "bad-keys", return_state=True)
    error = _failure(state)
    assert isinstance(error, InvalidKeys)
    assert "wrong-secret-value" not in str(error) and sandbox.secret_key not in str(error)
    assert "train" not in _task_states(state)
    assert sandbox.submissions() == []


def test_missing_keys_name_both_ways_to_provide_them(sandbox, monkeypatch):
    monkeypatch.delenv("NUMERAI_PUBLIC_ID")
    monkeypatch.delenv("NUMERAI_SECRET_KEY")
    error = _failure(tournament_node(_node(), "no-keys", return_state=True))
    assert isinstance(error, MissingKeys)
    assert "NUMERAI_PUBLIC_ID" in str(error) and "Secret blocks" in str(error)


def test_without_upload_the_predictions_are_written_and_nothing_is_sent(sandbox, monkeypatch):
    monkeypatch.delenv("NUMERAI_PUBLIC_ID")
    monkeypatch.delenv("NUMERAI_SECRET_KEY")
    outcome = tournament_node(_node(upload=False), "local")
    assert outcome.status == "not-uploaded" and outcome.submission_id is None
    assert len(pd.read_csv(outcome.predictions_path)) == len(sandbox.live_ids())
    assert sandbox.submissions() == []


def test_an_unknown_model_lists_the_models_the_account_has(sandbox):
    error = _failure(tournament_node(_node(numerai_model="nope"), "x", return_state=True))
    assert isinstance(error, UnknownModel)
    assert "'nope'" in str(error) and "other_model, sandbox_model" in str(error)


def test_an_unreachable_api_is_retried_then_fails_clearly(sandbox, monkeypatch):
    monkeypatch.setenv("NUMERAI_API_URL", "http://127.0.0.1:9/")
    state = tournament_node(_node(), "dead-api", return_state=True)
    error = _failure(state)
    assert isinstance(error, NumeraiUnavailable) and "127.0.0.1:9" in str(error)
    assert _task_states(state)["resolve-round"] == ["Failed"]
    (run,) = [r for r in task_runs(state) if r.name.startswith("resolve-round")]
    assert run.run_count == 4  # the first try and three retries


def test_a_rejected_upload_is_not_retried_and_creates_no_submission(sandbox):
    sandbox.faults.reject_uploads = True
    error = _failure(tournament_node(_node(), "rejected", return_state=True))
    assert isinstance(error, UploadRejected) and "HTTP 403" in str(error)
    assert sandbox.submissions() == []


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("tests.flows.broken_models", "predictions are NaN"),
        ("tests.flows.unranked_model", r"outside \[0, 1\]"),
        ("tests.flows.stale_ids_model", "do not match this round's live ids"),
    ],
)
def test_bad_predictions_are_stopped_before_upload(sandbox, module, message):
    error = _failure(tournament_node(_node(model=module), "bad", return_state=True))
    assert isinstance(error, InvalidPredictions)
    assert re.search(message, str(error))
    assert sandbox.submissions() == []


def test_the_run_leaves_a_summary_a_chart_and_a_submission_table(sandbox):
    state = tournament_node(_node(name="artifact-node"), "with-artifacts", return_state=True)
    by_key = artifacts(state)
    assert {"artifact-node-summary", "artifact-node-era-corr", "artifact-node-submission"} <= set(
        by_key
    )
    assert "with-artifacts" in by_key["artifact-node-summary"].data
    assert "sharpe" in by_key["artifact-node-summary"].data
    assert "| 0" in by_key["artifact-node-era-corr"].data
    assert "with-artifacts" in str(by_key["artifact-node-submission"].data)
    assert any(a.type == "progress" for a in all_artifacts(state))
