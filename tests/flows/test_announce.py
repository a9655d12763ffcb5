"""What a node run tells the world: its name after the round, its events, what went wrong."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from prefect.client.orchestration import get_client

from flows import events
from flows.announce import NodeRun, describe_failure, one_line, run_title
from flows.errors import InvalidKeys, RoundClosed, UploadRejected
from flows.node import SubmissionOutcome
from flows.report import failure_summary
from flows.steps import mark_step, note_failed_step
from flows.tournament import TournamentNode, tournament_node
from tests.flows.prefect_runs import artifacts, run_events

FAST = {"n_estimators": 20, "learning_rate": 0.1}


def _node(name: str) -> TournamentNode:
    return TournamentNode(
        name=name, numerai_model="sandbox_model", params=FAST, score_validation=False
    )


# --- pure parts ---------------------------------------------------------------------------------


def test_a_run_is_named_after_its_node_round_and_trigger():
    assert run_title("tournament", 1001, "3f2a9c1b-77aa-4e0e") == "tournament-r1001-3f2a9c1b"
    assert run_title("signals", 7, None) == "signals-r7-manual"
    assert run_title("signals", 7, "") == "signals-r7-manual"


def test_a_message_is_one_line_and_never_holds_a_key():
    error = InvalidKeys("Numerai refused the keys\n  for model x (key SECRET123).")
    assert one_line(error, ("SECRET123",)) == "Numerai refused the keys for model x (key ****)."
    unexpected = ValueError("bad column\nmore detail")
    assert one_line(unexpected, ()) == "ValueError: bad column"
    assert one_line(ZeroDivisionError(), ()) == "ZeroDivisionError"
    assert len(one_line(InvalidKeys("x" * 5000), ())) == 1000


def _run(**changes) -> NodeRun:
    run = NodeRun("tournament", "my_model", "trig-1", 1001)
    run.closes_at = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)
    for name, value in changes.items():
        setattr(run, name, value)
    return run


def _failed_at(step: str, error: Exception) -> Exception:
    mark_step(error, step)  # as note_failed_step does for a failed task
    return error


def test_a_refused_upload_is_reported_with_its_step_and_what_was_not_uploaded():
    report = describe_failure(_run(), _failed_at("upload-predictions", UploadRejected("403")))
    assert report.reason == events.EXPECTED and report.step == "upload-predictions"
    assert report.uploaded == "Nothing was submitted: the predictions file was not uploaded."
    assert "before the round closes (it closes at 14:00 UTC)" in report.next_action
    assert "numerai-nodes node test tournament" in report.next_action


def test_a_round_that_closed_while_retrying_says_nothing_more_can_be_done():
    report = describe_failure(_run(), _failed_at("download", RoundClosed("Round 1001 closed.")))
    assert report.reason == events.ROUND_CLOSED
    assert report.next_action.startswith("Nothing more can be submitted for this round.")
    assert report.uploaded == "Nothing was uploaded or submitted."


def test_a_failure_after_the_submission_says_the_round_is_submitted():
    outcome = SubmissionOutcome(
        status="submitted",
        submission_id="sub-1",
        predictions_path=Path("p.csv"),
        model_name="my_model",
        round_number=1001,
    )
    report = describe_failure(_run(outcome=outcome), ValueError("bad scores"))
    assert report.reason == events.UNEXPECTED and report.step == "start"
    assert report.uploaded.startswith("Submitted: submission sub-1 was created")
    assert report.message == "ValueError: bad scores"
    assert "the run's logs hold the traceback" in report.next_action


def test_the_what_went_wrong_artifact_has_the_step_message_uploads_and_next_action():
    report = describe_failure(_run(), _failed_at("submit", UploadRejected("Storage said no.")))
    text = failure_summary(report)
    assert text.startswith("# tournament: round 1001 failed at `submit`")
    assert "**What went wrong:** Storage said no." in text
    assert "**Uploaded:** The predictions file was uploaded, but no submission" in text
    assert "**Next:** Fix what the message names" in text
    assert "| Trigger id | `trig-1` |" in text


def test_every_task_of_the_node_flows_names_its_step_when_it_fails():
    from flows import node, report, signals, tournament

    tasks = [
        value
        for module in (node, report, signals, tournament)
        for value in vars(module).values()
        if type(value).__name__ == "Task"
    ]
    assert len(tasks) >= 18
    assert all(note_failed_step in task.on_failure_hooks for task in tasks), [
        task.name for task in tasks if note_failed_step not in task.on_failure_hooks
    ]


# --- node runs ----------------------------------------------------------------------------------


def _events(run_id: str) -> list[dict]:
    """The run's node events (a run that trains also says so, on its spec's resource)."""
    return run_events(run_id, prefixes=("numerai.submission.",))


def _flow_run(state):
    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def test_a_submitting_run_is_renamed_after_its_round_and_says_it_submitted(sandbox):
    state = tournament_node(_node("named"), "a1b2c3d4e5f6", return_state=True)

    assert state.is_completed()
    run = _flow_run(state)
    assert run.name == f"named-r{sandbox.current_round()}-a1b2c3d4"
    (event,) = _events(str(run.id))
    assert event["event"] == events.SUBMISSION_CREATED
    (submission,) = sandbox.submissions("sandbox_model")
    assert event["resource"] == {
        "prefect.resource.id": "numerai.node.named",
        "prefect.resource.name": "named",
        "numerai.model": "sandbox_model",
        "numerai.round": str(sandbox.current_round()),
        "numerai.trigger-id": "a1b2c3d4e5f6",
        "numerai.submission-id": submission.id,
    }
    assert event["payload"]["status"] == "submitted"


def test_a_refused_upload_fails_with_an_artifact_and_one_failure_event(sandbox):
    sandbox.faults.reject_uploads = True
    state = tournament_node(_node("refused"), "f00dfeed99", return_state=True)

    assert state.is_failed()
    run = _flow_run(state)
    assert run.name == f"refused-r{sandbox.current_round()}-f00dfeed"
    summary = artifacts(state)["refused-summary"]
    assert "failed at `upload-predictions`" in summary.data
    assert "Nothing was submitted" in summary.data
    (event,) = _events(str(run.id))
    assert event["event"] == events.SUBMISSION_FAILED
    assert event["resource"][events.FAILURE_LABEL] == events.EXPECTED
    assert event["resource"][events.STEP_LABEL] == "upload-predictions"
    assert "refused the predictions file (HTTP 403" in event["payload"]["message"]
    assert sandbox.secret_key not in str(event) and sandbox.public_id not in str(event)
    assert event["payload"]["flow_run"] == run.name


def test_a_closed_round_sends_a_round_closed_failure(sandbox):
    sandbox.close_round()
    state = tournament_node(_node("late"), "late-1", return_state=True)

    assert state.is_failed()
    (event,) = _events(str(_flow_run(state).id))
    assert event["resource"][events.FAILURE_LABEL] == events.ROUND_CLOSED
    assert event["resource"][events.STEP_LABEL] == "resolve-round"
