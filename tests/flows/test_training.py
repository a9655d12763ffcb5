"""Training apart from round day: the training flow, the model store, ready, stale and missing
models, against a sandbox with the real numerapi and a real Prefect API."""

from __future__ import annotations

import time

from flows import events
from flows.errors import ModelNotReady
from flows.settings import load_settings
from flows.store import model_store
from flows.tournament import TournamentNode, tournament_node
from flows.training import ClassicSpec, train_spec
from tests.flows.prefect_runs import artifacts, run_events, task_states

FAST = {"n_estimators": 20, "learning_rate": 0.1}


def _spec(name: str = "fast", **overrides) -> ClassicSpec:
    return ClassicSpec(**({"name": name, "data_version": "v5.2", "params": FAST} | overrides))


def _node(name: str, spec: ClassicSpec, **overrides) -> TournamentNode:
    settings = {
        "name": name,
        "numerai_model": "sandbox_model",
        "spec": spec.name,
        "data_version": spec.data_version,
        "params": spec.params,
        "train": False,
    }
    return TournamentNode(**(settings | overrides))


def _failure(state) -> BaseException:
    assert state.is_failed(), f"expected the run to fail, it ended {state.name}"
    return state.result(raise_on_failure=False)


def test_a_spec_trains_once_into_the_store_and_a_second_run_ends_without_training(sandbox):
    first = train_spec(_spec(), return_state=True)
    again = train_spec(_spec(), return_state=True)

    record = first.result()
    assert task_states(first)["train"] == ["Completed"]
    assert "train" not in task_states(again) and again.result().key == record.key
    (stored,) = model_store().records()
    assert stored.key == record.key and stored.family == "fast"
    assert stored.size_bytes > 0 and stored.validation is not None
    assert stored.features and stored.data_version == "v5.2"


def test_a_node_that_may_not_train_predicts_with_the_trained_model_and_does_not_train(sandbox):
    record = train_spec(_spec())
    state = tournament_node(_node("reader", _spec()), trigger_id="t-ready", return_state=True)

    assert state.is_completed()
    states = task_states(state)
    assert "train" not in states and states["load-model"] == ["Completed"]
    (submission,) = sandbox.submissions("sandbox_model")
    assert submission.trigger_id == "t-ready"
    assert record.key[:18] in artifacts(state)["reader-summary"].data


def test_a_changed_spec_with_no_training_yet_submits_with_the_last_good_model_and_says_so(
    sandbox,
):
    old = train_spec(_spec())
    changed = _spec(params={**FAST, "num_leaves": 7})
    state = tournament_node(_node("stale", changed), trigger_id="t-stale", return_state=True)

    assert state.is_completed()
    assert "train" not in task_states(state)
    (submission,) = sandbox.submissions("sandbox_model")
    assert submission.trigger_id == "t-stale"
    summary = artifacts(state)["stale-summary"].data
    assert "stale model" in summary and old.key[:18] in summary
    assert "numerai-nodes train fast" in summary
    flow_run_id = str(state.state_details.flow_run_id)
    names = [event["event"] for event in run_events(flow_run_id)]
    assert events.MODEL_STALE in names and events.SUBMISSION_CREATED in names
    (stale,) = [e for e in run_events(flow_run_id) if e["event"] == events.MODEL_STALE]
    assert stale["payload"]["used_key"] == old.key and stale["payload"]["spec"] == "fast"


def test_with_no_model_at_all_a_node_fails_in_seconds_naming_the_training_command(sandbox):
    started = time.monotonic()
    state = tournament_node(_node("empty", _spec("never-trained")), "t-none", return_state=True)
    took = time.monotonic() - started

    error = _failure(state)
    assert isinstance(error, ModelNotReady)
    assert "numerai-nodes train never-trained" in str(error)
    assert took < 10, f"the run took {took:.1f} s to fail"
    assert sandbox.submissions() == []
    assert not list(load_settings().data_dir.rglob("*.parquet")), "nothing was downloaded"


def test_two_nodes_of_one_spec_share_its_model_and_a_node_that_may_train_stores_it(sandbox):
    spec = _spec("shared")
    first = tournament_node(_node("one", spec, train=True), "t-one", return_state=True)
    second = tournament_node(
        _node("two", spec, numerai_model="other_model"), "t-two", return_state=True
    )

    assert task_states(first)["train"] == ["Completed"]
    assert "train" not in task_states(second)
    assert len(model_store().records()) == 1
    assert [s.trigger_id for s in sandbox.submissions("sandbox_model")] == ["t-one"]
    assert [s.trigger_id for s in sandbox.submissions("other_model")] == ["t-two"]
