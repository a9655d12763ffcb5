"""Alerts on the local stack: real automations on a real Prefect server send through a webhook
block to a loopback receiver standing in for Slack (a Slack-compatible incoming webhook).

The node runs come from webhooks through the gateway, like Numerai's; the shortcuts are the
round-at-risk window, shrunk to 30 s, and the stale-model event, posted as a node run sends it
(tests/flows/test_training.py has a node run send it). The module leaves the stack as it found
it: its channels removed, the sandbox's faults off.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from prefect.events import Event
from typer.testing import CliRunner

from deployments import alert_messages as messages
from deployments import alerts
from deployments.cli import app
from deployments.events import build_event
from deployments.webhooks import prefect_api
from flows import events
from flows.tournaments import CLASSIC
from tests.integration.local_stack import Stack

pytestmark = pytest.mark.integration
runner = CliRunner()

AT_RISK_MINUTES = 0.5
CHANNEL = "alerts-under-test"
PROBE_NODE = "alerts-probe"  # a node with a webhook but no deployment: nothing ever submits
STALE_NODE = "alerts-stale"  # a node with no deployment whose stale-model event is posted


class Receiver:
    """A threaded HTTP server on 127.0.0.1 that records every POSTed JSON body."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.token = secrets.token_urlsafe(16)  # the secret part of the URL, as Slack's has
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                receiver.received.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}/services/{self.token}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def about(self, text: str) -> list[dict]:
        return [body for body in self.received if text in body.get("text", "")]

    def wait_for(self, text: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if found := self.about(text):
                return found[0]
            time.sleep(0.5)
        raise AssertionError(f"no alert about {text!r} in {timeout:.0f} s: {self.received}")


def _faults(stack: Stack, **changes: object) -> None:
    answer = httpx.post(stack.url("sandbox", "_sandbox/faults"), json=changes, timeout=10)
    answer.raise_for_status()


def _round(stack: Stack) -> int:
    state = httpx.get(stack.url("sandbox", "_sandbox/state"), timeout=10).json()
    return int(state["rounds"][str(int(CLASSIC))]["number"])


def _channels(stack: Stack) -> list[alerts.Channel]:
    with prefect_api(stack.stack.prefect_api_url):
        return alerts.channels()


def _webhook(stack: Stack, trigger_id: str) -> None:
    answer = httpx.post(stack.webhook or "", json={"triggerId": trigger_id}, timeout=30)
    assert answer.status_code == 202, answer.text


@pytest.fixture(scope="module")
def alerting(stack: Stack) -> Iterator[tuple[Receiver, float]]:
    """The channel under test, added through the CLI, and the time a webhook came for a node that
    never submits (the round-at-risk test waits for it); everything removed afterwards.

    In-process commands talk to the stack's Prefect API, also when an earlier module's Prefect
    test server is this process's API (as in the full suite)."""
    receiver = Receiver()
    with prefect_api(stack.stack.prefect_api_url):
        try:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("NUMERAI_NODES_AT_RISK_MINUTES", str(AT_RISK_MINUTES))
                added = runner.invoke(
                    app, ["alerts", "add", "webhook", receiver.url, "--name", CHANNEL]
                )
            assert added.exit_code == 0, added.output
            probe = build_event(
                PROBE_NODE,
                {"triggerId": "probe-1", "roundNumber": _round(stack)},
                datetime.now(UTC),
            )
            # As the gateway would post it, for a node that has no deployment.
            posted = httpx.post(stack.url("prefect", "api/events"), json=[probe], timeout=30)
            assert posted.status_code == 204, posted.text
            yield receiver, time.monotonic()
        finally:
            _faults(stack, reject_uploads=False)
            for channel in _channels(stack):
                alerts.remove(channel.name)
            receiver.close()


def test_a_healthy_round_sends_no_alert(stack, alerting):
    receiver, _ = alerting
    trigger_id = f"alerts-ok-{uuid.uuid4()}"
    _webhook(stack, trigger_id)

    run = stack.wait_completed(trigger_id, timeout=120)

    assert run["state_type"] == "COMPLETED", run["state"]
    assert run["name"] == f"tournament-r{_round(stack)}-{trigger_id[:8]}"
    assert len(stack.submissions(trigger_id)) == 1
    time.sleep(2)  # a failure alert would be here by now; round at risk is checked last
    assert receiver.about(trigger_id) == []


def test_a_refused_upload_sends_one_alert_naming_the_node_round_and_cause(stack, alerting):
    receiver, _ = alerting
    trigger_id = f"alerts-refused-{uuid.uuid4()}"
    _faults(stack, reject_uploads=True)
    try:
        _webhook(stack, trigger_id)
        run = stack.wait_completed(trigger_id, timeout=120)
    finally:
        _faults(stack, reject_uploads=False)
    assert run["state_type"] == "FAILED", run["state"]

    alert = receiver.wait_for(trigger_id, timeout=60)

    round_number = _round(stack)
    assert alert["subject"] == (
        f"numerai-nodes: tournament failed in round {round_number} at upload-predictions"
    )
    assert f"failed at step upload-predictions in round {round_number}" in alert["body"]
    assert "Cause: Numerai's upload storage refused the predictions file (HTTP 403" in alert["body"]
    assert "Nothing was submitted" in alert["body"]
    assert f"flow run {run['name']}" in alert["body"]
    assert stack.submissions(trigger_id) == []
    time.sleep(3)
    assert len(receiver.about(trigger_id)) == 1


def test_a_run_for_a_round_that_is_over_sends_the_round_closed_alert_alone(stack, alerting):
    receiver, _ = alerting
    trigger_id = f"alerts-late-{uuid.uuid4()}"
    over = _round(stack) - 1
    answer = httpx.post(
        stack.webhook or "", json={"triggerId": trigger_id, "roundNumber": over}, timeout=30
    )
    assert answer.status_code == 202, answer.text
    assert stack.wait_completed(trigger_id, timeout=120)["state_type"] == "FAILED"

    alert = receiver.wait_for(trigger_id, timeout=60)

    assert alert["subject"] == f"numerai-nodes: round {over} closed before tournament submitted"
    assert f"Cause: Round {over} is over" in alert["body"]
    assert "Nothing more can be submitted for this round." in alert["body"]
    time.sleep(3)
    assert len(receiver.about(trigger_id)) == 1


def test_alerts_add_list_test_and_remove_through_the_cli(stack, alerting):
    receiver, _ = alerting
    other = f"{receiver.url}-other"
    added = runner.invoke(app, ["alerts", "add", "webhook", other, "--name", "cli-round-trip"])
    assert added.exit_code == 0, added.output
    assert "http://127.0.0.1" in added.output and receiver.token not in added.output

    listed = stack.cli("alerts", "list", "--json")  # the CLI as a user runs it
    assert listed.returncode == 0, listed.stderr
    channels = {c["name"]: c for c in json.loads(listed.stdout)}
    assert set(channels) == {CHANNEL, "cli-round-trip"}
    assert receiver.token not in listed.stdout
    for channel in channels.values():
        assert channel["kind"] == "custom-webhook"
        assert channel["target"] == f"http://127.0.0.1:{receiver.port}/****"
        assert len(channel["automations"]) == 6

    tested = runner.invoke(app, ["alerts", "test", "cli-round-trip"])
    assert tested.exit_code == 0, tested.output
    assert receiver.wait_for(messages.TEST_BODY, timeout=10)["subject"] == messages.TEST_SUBJECT

    slack = "https://hooks.slack.com/services/T000/B000/secretslacktoken"
    replaced = runner.invoke(app, ["alerts", "add", "slack", slack, "--name", "cli-round-trip"])
    assert replaced.exit_code == 0, replaced.output
    assert "secretslacktoken" not in replaced.output
    (channel,) = [c for c in _channels(stack) if c.name == "cli-round-trip"]
    assert (channel.kind, channel.target) == ("slack-webhook", "https://hooks.slack.com/****")
    blocks = stack.api("block_documents/filter").json()
    assert [b["block_type"]["slug"] for b in blocks if b["name"] == "cli-round-trip"] == [
        "slack-webhook"
    ]  # the webhook block it replaced is gone

    removed = runner.invoke(app, ["alerts", "remove", "cli-round-trip"])
    assert removed.exit_code == 0, removed.output
    names = [a["name"] for a in stack.api("automations/filter").json()]
    assert not [name for name in names if "(cli-round-trip)" in name]
    assert len([name for name in names if f"({CHANNEL})" in name]) == 6
    # The deployments' webhook triggers are named for what they do (prefect.yaml's `name:`).
    assert {"tournament: run on Numerai's webhook", "signals: run on Numerai's webhook"} <= set(
        names
    )
    missing = runner.invoke(app, ["alerts", "test", "cli-round-trip"])
    assert missing.exit_code == 1
    assert "No alert channel named 'cli-round-trip'" in " ".join(missing.output.split())


def test_a_stale_model_event_sends_one_alert_naming_the_spec_and_the_training_command(
    stack, alerting
):
    receiver, _ = alerting
    trigger_id = f"alerts-stale-{uuid.uuid4()}"
    round_number = _round(stack)
    stale = Event(
        event=events.MODEL_STALE,
        resource=events.node_resource(
            STALE_NODE, model="stale_model", round=round_number, trigger_id=trigger_id
        ),
        payload={
            "node": STALE_NODE,
            "model": "stale_model",
            "round": round_number,
            "trigger_id": trigger_id,
            "flow_run": f"{STALE_NODE}-r{round_number}-{trigger_id[:8]}",
            "spec": "fast-spec",
            "wanted_key": "model-wanted-0000",
            "used_key": "model-used-1111",
            "used_data_version": "v5.0",
        },
    )
    posted = httpx.post(
        stack.url("prefect", "api/events"), json=[stale.model_dump(mode="json")], timeout=30
    )
    assert posted.status_code == 204, posted.text

    alert = receiver.wait_for(trigger_id, timeout=60)

    assert alert["subject"] == (
        f"numerai-nodes: {STALE_NODE} submitted round {round_number} with a stale model of "
        "fast-spec"
    )
    assert "last good model model-used-1111 (data v5.0;" in alert["body"]
    assert "Next: `numerai-nodes train fast-spec`" in alert["body"]
    time.sleep(3)
    assert len(receiver.about(trigger_id)) == 1


def test_a_webhook_without_a_submission_is_a_round_at_risk_and_nothing_else_alerted(
    stack, alerting
):
    receiver, probe_posted = alerting
    window = AT_RISK_MINUTES * 60

    alert = receiver.wait_for(f"{PROBE_NODE} has not submitted", timeout=window + 45)

    assert time.monotonic() - probe_posted >= window
    assert "(round" in alert["subject"] and " UTC (trigger probe-1, round" in alert["body"]
    # The tournament node's webhooks each got an outcome in time: no round at risk for it, and
    # its failure alerted once; nothing else was sent.
    time.sleep(max(0.0, probe_posted + window + 10 - time.monotonic()))
    assert receiver.about("tournament has not submitted") == []
    keys = stack.stack.sandbox_keys() or {}
    token = (stack.webhook or "").rsplit("/", 1)[-1]
    for body in receiver.received:
        for secret in (keys.get("NUMERAI_SECRET_KEY"), keys.get("NUMERAI_PUBLIC_ID"), token):
            assert secret and secret not in json.dumps(body)
    subjects = sorted(body["subject"].split(":")[1].split()[0] for body in receiver.received)
    expected = sorted([PROBE_NODE, STALE_NODE, "round", "test", "tournament"])
    assert subjects == expected, [body["subject"] for body in receiver.received]
