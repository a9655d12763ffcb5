"""How `node test` turns a run's events and log records into lines: time order, states, names,
errors without tracebacks, and why a run failed."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import cast
from uuid import UUID, uuid4

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, Log, State, StateType
from prefect.events import Event

from deployments.watch import Failure, LogLine, StateChange, _Run
from flows import events as node_events

T0 = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)
TRACE = 'Boom\nTraceback (most recent call last):\n  File "x.py", line 1\nValueError: boom'


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _run() -> _Run:
    run = _Run(uuid4())
    state = State(type=StateType.SCHEDULED, name="Scheduled", timestamp=T0)
    run.know(FlowRun(id=run.id, name="wild-bulldog", flow_id=uuid4(), state=state))
    return run


def _log(run: _Run, seconds: float, message: str) -> Log:
    return Log(
        id=uuid4(), name="prefect.flow_runs", level=20, message=message,
        timestamp=_at(seconds), flow_run_id=run.id,
    )  # fmt: skip


def _state(run: _Run, seconds: float, name: str, kind: str, run_name: str, message: str = ""):
    resource = {
        "prefect.resource.id": f"prefect.flow-run.{run.id}",
        "prefect.resource.name": run_name,
        "prefect.state-name": name,
        "prefect.state-type": kind,
        "prefect.state-message": message,
    }
    return Event(occurred=_at(seconds), event=f"prefect.flow-run.{name}", resource=resource)


def _task_failed(seconds: float, name: str) -> Event:
    resource = {
        "prefect.resource.id": f"prefect.task-run.{uuid4()}",
        "prefect.resource.name": name,
        "prefect.state-type": "FAILED",
    }
    return Event(occurred=_at(seconds), event="prefect.task-run.Failed", resource=resource)


def _due(run: _Run, now: float, hold: float = 2.0) -> list:
    # Lines without a task run need no client: their names are known.
    return asyncio.run(run.due(cast(PrefectClient, None), now, hold))


def test_an_error_or_a_traceback_shows_its_first_line_unless_verbose():
    error = LogLine(T0, logging.ERROR, "Upload refused\nmore detail")
    warning = LogLine(T0, logging.WARNING, TRACE)
    table = LogLine(T0, logging.INFO, "era  corr\n1    0.02\n")
    assert error.shown() == "Upload refused" and warning.shown() == "Boom"
    assert error.shown(verbose=True) == "Upload refused\nmore detail"
    assert warning.shown(verbose=True) == TRACE
    assert table.shown() == "era  corr\n1    0.02"


def test_lines_sent_late_by_another_process_are_shown_in_time_order():
    run = _run()
    run.add_log(_log(run, 2, "flow: later"), now=0.0, streamed=True)
    run.add_log(_log(run, 1, "worker: earlier"), now=0.5, streamed=True)
    assert run.add_log(_log(run, 1, "dup"), now=0.6) is True  # another record, same time
    assert _due(run, now=1.0) == []  # held for earlier lines of other processes
    shown = [event.text for event in _due(run, now=2.1)]
    assert shown == ["worker: earlier", "dup", "flow: later"]


def test_a_state_of_a_new_type_is_shown_once_with_the_name_it_gives_the_run():
    run = _run()
    assert run.add_event(_state(run, 0, "Scheduled", "SCHEDULED", "wild-bulldog"), 0) is False
    run.add_event(_state(run, 1, "Pending", "PENDING", "wild-bulldog"), 0)
    run.add_event(_state(run, 2, "Submitting", "PENDING", "wild-bulldog"), 0)
    run.add_event(_state(run, 3, "Running", "RUNNING", "tournament-abc"), 0)
    run.add_event(_state(run, 4, "Completed", "COMPLETED", "tournament-r1-abc"), 0)
    shown = _due(run, now=10)
    assert shown == [
        StateChange(_at(1), "Pending", "PENDING", "wild-bulldog", renamed=False),
        StateChange(_at(3), "Running", "RUNNING", "tournament-abc", renamed=True),
        StateChange(_at(4), "Completed", "COMPLETED", "tournament-r1-abc", renamed=True),
    ]
    assert run.ended_at == 0 and run.end().name == "tournament-r1-abc"
    assert run.end().failure is None


def test_the_nodes_failure_event_says_which_step_failed_and_why():
    run = _run()
    failed = Event(
        occurred=_at(5),
        event=node_events.SUBMISSION_FAILED,
        resource={
            "prefect.resource.id": node_events.node_resource_id("tournament"),
            node_events.STEP_LABEL: "upload-predictions",
            node_events.FAILURE_LABEL: node_events.EXPECTED,
        },
        payload={"message": "Numerai refused the file. Nothing was submitted."},
    )
    run.add_event(failed, 0)
    run.add_event(_state(run, 6, "Failed", "FAILED", "tournament-r1-abc"), 0)
    assert run.end().failure == Failure(
        "upload-predictions", "Numerai refused the file. Nothing was submitted.", expected=True
    )


def test_without_that_event_the_first_failed_task_and_the_final_state_say_why():
    message = "Flow run encountered an exception: UploadRejected: Numerai refused   the file."
    run = _run()
    run.add_event(_task_failed(2, "train-1a2"), 0)
    run.add_event(_task_failed(1, "download-3b4"), 0)  # the innermost task fails first
    run.add_event(_state(run, 3, "Failed", "FAILED", "tournament-abc", message), 0)
    assert run.end().failure == Failure("download-3b4", "Numerai refused the file.", True)

    bug = _run()
    bug.add_event(_state(bug, 3, "Failed", "FAILED", "x", "Flow run encountered an exception: "
                         "KeyError: 'era'"), 0)  # fmt: skip
    assert bug.end().failure == Failure(None, "KeyError: 'era'", expected=False)


def test_a_line_of_another_run_or_seen_already_is_not_shown_again():
    run = _run()
    log = _log(run, 1, "once")
    assert run.add_log(log, 0) and not run.add_log(log, 0)
    other = log.model_copy(update={"id": uuid4(), "flow_run_id": UUID(int=1)})
    assert not run.add_log(other, 0)
