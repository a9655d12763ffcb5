"""A node's settings are checked before the work: a wrong one fails early, naming what would do.

And a manual re-submission is an explicit choice (`resubmit`), never an accident.
"""

from __future__ import annotations

import httpx
import pytest

from flows.errors import ConfigurationError, DatasetNotFound
from flows.spec import check_params
from flows.tournament import TournamentNode, tournament_node
from models import tournament as example_model

FAST = {"n_estimators": 20, "learning_rate": 0.1}


def _node(**overrides) -> TournamentNode:
    settings = {
        "numerai_model": "sandbox_model",
        "data_version": "v5.2",
        "params": FAST,
        "score_validation": False,
    }
    return TournamentNode(**(settings | overrides))


def _counts(sandbox, what: str) -> dict:
    return httpx.get(f"{sandbox.url}_sandbox/{what}", timeout=30).json()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"model": "models.nope"}, "Cannot import the model module 'models.nope'"),
        ({"params": {"n_estimators": "abc"}}, "'n_estimators' of models.tournament must be an "),
        ({"params": {"learning_rate": "fast"}}, "'learning_rate' of models.tournament must be a "),
        ({"params": {"n_estimator": 10}}, "has no parameter 'n_estimator'. Its parameters: "),
    ],
)
def test_a_wrong_model_or_parameter_fails_before_numerai_is_asked_anything(
    sandbox, settings, message
):
    calls, fetched = _counts(sandbox, "calls"), _counts(sandbox, "downloads")

    state = tournament_node(_node(**settings), "early", return_state=True)

    error = state.result(raise_on_failure=False)
    assert isinstance(error, ConfigurationError) and message in str(error)
    assert _counts(sandbox, "calls") == calls and _counts(sandbox, "downloads") == fetched
    assert sandbox.submissions() == []


@pytest.mark.parametrize(
    ("settings", "error_type", "message"),
    [
        ({"target": "target_nope"}, ConfigurationError, "has no target 'target_nope'; choose"),
        ({"feature_set": "huge"}, ConfigurationError, "has no feature set 'huge'; choose"),
        ({"data_version": "v9.9"}, DatasetNotFound, "serves no data version 'v9.9'. Set the"),
    ],
)
def test_a_wrong_target_feature_set_or_version_fails_before_the_training_data_is_fetched(
    sandbox, settings, error_type, message
):
    state = tournament_node(_node(**settings), "early", return_state=True)

    error = state.result(raise_on_failure=False)
    assert isinstance(error, error_type) and message in str(error)
    fetched = _counts(sandbox, "downloads")
    assert not any("train" in name or "live" in name for name in fetched), fetched
    assert sandbox.submissions() == []


def test_parameters_given_as_text_become_the_type_of_the_model_default():
    checked = check_params(example_model, {"n_estimators": "300", "learning_rate": 1})
    assert checked == {"n_estimators": 300, "learning_rate": 1.0}


def test_a_manual_run_resubmits_only_when_asked(sandbox):
    first = tournament_node(_node(), "webhook-1")
    again = tournament_node(_node(), None)
    forced = tournament_node(_node(params={**FAST, "n_estimators": 21}), None, resubmit=True)

    assert (first.status, again.status, forced.status) == (
        "submitted",
        "already-submitted",
        "submitted",
    )
    trigger_ids = sorted(str(s.trigger_id) for s in sandbox.submissions("sandbox_model"))
    assert trigger_ids == ["None", "webhook-1"]


def test_a_node_that_pins_no_data_version_takes_the_newest_numerai_serves(sandbox):
    outcome = tournament_node(_node(data_version=None), "newest")
    assert outcome.status == "submitted"
    assert "/v5.2/" in outcome.predictions_path.as_posix()  # the sandbox serves v5.2 only


def test_data_versions_sort_as_versions():
    from flows.numerai import version_key

    versions = ["v5.10", "v4.3", "v5.9", "signals/v2.0", "v5.2", "signals/v1.0"]
    assert sorted(versions, key=version_key) == [
        "v4.3",
        "v5.2",
        "v5.9",
        "v5.10",
        "signals/v1.0",
        "signals/v2.0",
    ]
