"""Round day under trouble: one submission per model and round, retries that fit the round."""

from __future__ import annotations

import threading
import time

import pytest

from flows.errors import RoundClosed
from flows.tournament import TournamentNode, tournament_node
from tests.flows.prefect_runs import task_runs, task_states

FAST = {"n_estimators": 20, "learning_rate": 0.1}


def _node() -> TournamentNode:
    return TournamentNode(
        numerai_model="sandbox_model", data_version="v5.2", params=FAST, score_validation=False
    )


@pytest.mark.parametrize("order", [("fallback", "webhook"), ("webhook", "fallback")])
def test_a_run_without_a_trigger_and_a_webhook_run_make_one_submission_in_either_order(
    sandbox, order
):
    triggers = {"fallback": None, "webhook": "trigger-w"}
    first = tournament_node(_node(), trigger_id=triggers[order[0]])
    second = tournament_node(_node(), trigger_id=triggers[order[1]])

    (submission,) = sandbox.submissions("sandbox_model")
    assert submission.trigger_id == triggers[order[0]]
    assert (first.status, second.status) == ("submitted", "already-submitted")


def test_a_run_without_a_trigger_and_a_webhook_run_at_once_make_one_submission(sandbox):
    tournament_node(_node(), trigger_id="warm-up")  # trains once, so both runs race to submit
    sandbox.open_round()
    start = threading.Barrier(2)
    outcomes: dict[str | None, str] = {}

    def run(trigger_id: str | None) -> None:
        start.wait()
        outcomes[trigger_id] = tournament_node(_node(), trigger_id=trigger_id).status

    threads = [threading.Thread(target=run, args=(t,)) for t in (None, "trigger-now")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    round_now = sandbox.current_round()
    assert len([s for s in sandbox.submissions("sandbox_model") if s.round == round_now]) == 1
    assert sorted(outcomes.values()) == ["already-submitted", "submitted"]


def test_a_call_that_never_answers_times_out_is_retried_and_the_run_still_submits(
    sandbox, monkeypatch
):
    monkeypatch.setenv("NUMERAI_NODES_REQUEST_TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("NUMERAI_NODES_MAX_RETRIES", "50")
    monkeypatch.setenv("NUMERAI_NODES_RETRY_DELAY_SCALE", "0.05")
    sandbox.faults.update({"latency_s": 3})  # the API hangs past the 0.5 s timeout...
    threading.Timer(2.0, sandbox.faults.update, args=({"latency_s": 0},)).start()  # ...then heals

    state = tournament_node(_node(), trigger_id="after-the-hang", return_state=True)

    assert state.is_completed(), state.message
    (resolving,) = [run for run in task_runs(state) if run.name.startswith("resolve-round")]
    assert task_states(state)["resolve-round"] == ["Completed"] and resolving.run_count > 1
    (submission,) = sandbox.submissions("sandbox_model")
    assert submission.trigger_id == "after-the-hang"


def test_when_the_round_closes_while_the_upload_retries_no_put_follows_and_the_run_says_so(
    sandbox, monkeypatch
):
    from datetime import timedelta

    tournament_node(_node(), trigger_id="warm-up")  # the model is cached: the round is all upload
    monkeypatch.setenv("NUMERAI_NODES_MAX_RETRIES", "1000")
    monkeypatch.setenv("NUMERAI_NODES_RETRY_DELAY_SCALE", "0.1")
    window = 6.0
    sandbox.open_round(window=timedelta(seconds=window))
    opened = time.monotonic()
    sandbox.chaos.configure({"seed": 7, "put_fail": 1.0})  # the upload storage answers 5xx
    puts_at_close: list[int] = []
    threading.Timer(window, lambda: puts_at_close.append(_put_failures(sandbox))).start()

    state = tournament_node(_node(), trigger_id="too-late", return_state=True)

    error = state.result(raise_on_failure=False)
    assert isinstance(error, RoundClosed), error
    assert "closed while retrying" in str(error) and "upload-predictions" in str(error)
    assert "The last error" in str(error) and "HTTP 5" in str(error)
    assert time.monotonic() - opened < window + 15  # it ended with the round, not the retries
    time.sleep(max(0.0, opened + window + 0.5 - time.monotonic()))
    assert _put_failures(sandbox) > 1 and puts_at_close == [_put_failures(sandbox)]
    assert [s.trigger_id for s in sandbox.submissions("sandbox_model")] == ["warm-up"]


def _put_failures(sandbox) -> int:
    return int(sandbox.chaos.to_json()["counts"]["put_fail"])  # type: ignore[index]


def test_the_compute_id_setting_reaches_numerais_upload_storage(sandbox, monkeypatch):
    monkeypatch.setenv("NUMERAI_COMPUTE_ID", "compute-42")
    tournament_node(_node(), trigger_id="with-compute-id")
    stored = [upload for upload in sandbox.state.uploads() if upload.data is not None]
    assert [upload.compute_id for upload in stored] == ["compute-42"]
