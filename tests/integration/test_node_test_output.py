"""`node test` output on the local stack: every log line the Prefect API holds for the run, in
order, under the name the UI shows, markup rendered; an expected failure in a few lines without
tracebacks, ending with the step and the cause; `--verbose` shows the tracebacks.

The module leaves the stack as it found it: the sandbox's upload fault is off again.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from uuid import uuid4

import httpx
import pytest
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.logging.clients import PrefectLogsSubscriber

from tests.integration.local_stack import Stack

pytestmark = pytest.mark.integration

# A log line as node test prints it: indent, time, level, then `task: ` (if any) and the text.
_LOG_LINE = re.compile(r"^    \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+(.*)$")
_TRIGGER = re.compile(r"trigger id ([0-9a-f-]{36})")


def _run(stack: Stack, output: str) -> dict:
    """The flow run `node test` started, found by the trigger id it printed."""
    found = _TRIGGER.search(output)
    assert found, output
    (run,) = stack.runs(found[1])
    return run


def _api_logs(stack: Stack, run_id: str) -> list[dict]:
    """Every log record the Prefect API holds for the run, oldest first."""
    logs: list[dict] = []
    while True:
        page = stack.api(
            "logs/filter",
            {
                "logs": {"flow_run_id": {"any_": [run_id]}},
                "sort": "TIMESTAMP_ASC",
                "limit": 200,
                "offset": len(logs),
            },
        ).json()
        logs += page
        if len(page) < 200:
            return logs


@pytest.fixture
def uploads_refused(stack: Stack) -> Iterator[None]:
    faults = stack.url("sandbox", "_sandbox/faults")
    httpx.post(faults, json={"reject_uploads": True}, timeout=10).raise_for_status()
    try:
        yield
    finally:
        httpx.post(faults, json={"reject_uploads": False}, timeout=10).raise_for_status()


def test_the_stacks_prefect_server_streams_run_logs_live(stack):
    """What node test follows: a line posted for a run comes out of /api/logs/out at once (a
    Prefect server streams logs only when told to; the local stack tells it)."""
    run_id = uuid4()
    line = {
        "name": "prefect.flow_runs", "level": 20, "message": "streamed",
        "timestamp": datetime.now(UTC).isoformat(), "flow_run_id": str(run_id),
    }  # fmt: skip
    only_the_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))

    async def receive():
        async with PrefectLogsSubscriber(stack.url("prefect", "api"), only_the_run) as logs:
            posted = httpx.post(stack.url("prefect", "api/logs/"), json=[line], timeout=10)
            assert posted.status_code == 201, posted.text
            return await asyncio.wait_for(anext(logs), 10)

    assert asyncio.run(receive()).message == "streamed"


def test_a_healthy_node_test_shows_every_log_line_under_the_runs_ui_name(stack):
    result = stack.cli("node", "test", "tournament")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = _run(stack, result.stdout)

    shown = [m[2] for line in result.stdout.splitlines() if (m := _LOG_LINE.match(line))]
    held = [log["message"].split("\n", 1)[0].rstrip() for log in _api_logs(stack, run["id"])]
    assert len(shown) == len(held), (shown, held)
    for printed, message in zip(shown, held, strict=True):
        assert printed.endswith(message), (printed, message)  # after `task: `, in order

    assert run["name"].startswith("tournament-r")  # renamed once the round was known
    assert f"flow run finished: {run['name']} Completed" in result.stdout
    assert f"state   Completed · run {run['name']}" in result.stdout
    assert "[dim]" not in result.stdout and "[/]" not in result.stdout


def test_a_refused_upload_ends_in_a_few_lines_naming_the_step_and_cause(stack, uploads_refused):
    result = stack.cli("node", "test", "tournament")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert len(output.splitlines()) <= 40, output
    assert "Traceback" not in output and "[/]" not in output
    run = _run(stack, result.stdout)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Node test failed: {run['name']} failed at step 'upload-predictions'")
    assert "refused the predictions file" in last, last

    verbose = stack.cli("node", "test", "tournament", "--verbose")
    assert verbose.returncode == 1, verbose.stderr[-3000:]
    assert "Traceback (most recent call last)" in verbose.stdout
    assert "step 'upload-predictions'" in verbose.stderr.strip().splitlines()[-1]
