"""Alert channels and their messages: blocks built from a URL, masking, and the templates as
Prefect renders them (the integration test sends them through a real server)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from uuid import uuid4

import pytest
from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    DiscordWebhook,
    SendgridEmail,
    SlackWebhook,
)
from prefect.events import Event
from prefect.server.events.actions import SendNotification as ServerSendNotification
from prefect.server.events.jinja_filters import all_filters
from prefect.server.utilities.user_templates import (
    register_user_template_filters,
    render_user_template_sync,
)

from deployments import alert_messages as messages
from deployments import alerts
from flows import events

SLACK = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX"
SECRET_PART = "XXXXXXXXXXXXXXXXXXXXXXXX"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (SLACK, "https://hooks.slack.com/****"),
        ("http://127.0.0.1:9999/hook?token=abc", "http://127.0.0.1:9999/****"),
        ("https://user:pw@example.org/x", "https://example.org/****"),
        ("not a url", "not/****"),
        ("", "****"),
    ],
)
def test_a_url_is_shown_with_everything_after_its_host_masked(url, shown):
    assert alerts.mask_url(url) == shown


def test_a_slack_channel_needs_a_slack_incoming_webhook_url():
    block = alerts.build_block("slack", SLACK, name="team")
    assert isinstance(block, SlackWebhook)
    assert block.url.get_secret_value() == SLACK
    with pytest.raises(alerts.AlertError, match="alerts add webhook URL"):
        alerts.build_block("slack", "https://example.org/hook", name="team")


def test_a_discord_url_becomes_its_id_and_token():
    block = alerts.build_block(
        "discord", "https://discord.com/api/webhooks/123456/abc-DEF_9", name="d"
    )
    assert isinstance(block, DiscordWebhook)
    assert block.webhook_id.get_secret_value() == "123456"
    assert block.webhook_token.get_secret_value() == "abc-DEF_9"
    with pytest.raises(alerts.AlertError, match="not a Discord webhook URL"):
        alerts.build_block("discord", "https://discord.com/channels/1/2", name="d")


def test_a_teams_url_is_checked_by_prefects_block():
    with pytest.raises(alerts.AlertError, match="Invalid teams target"):
        alerts.build_block("teams", "https://example.org/not-a-workflow", name="t")


def test_email_goes_through_sendgrid_and_needs_its_key():
    with pytest.raises(alerts.AlertError, match="SENDGRID_API_KEY"):
        alerts.build_block("email", "me@example.org", name="mail")
    with pytest.raises(alerts.AlertError, match="not an email address"):
        alerts.build_block("email", "me-at-example", name="mail", sendgrid_api_key="k")
    block = alerts.build_block("email", "me@example.org", name="mail", sendgrid_api_key="SG.k")
    assert isinstance(block, SendgridEmail)
    assert block.to_emails == ["me@example.org"] and block.sender_email == "me@example.org"


def test_a_channel_name_follows_prefects_block_name_rule():
    assert alerts.check_channel_name("team-slack") == "team-slack"
    with pytest.raises(alerts.AlertError, match="lowercase letters"):
        alerts.check_channel_name("Team Slack")


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_webhook_channel_posts_slack_compatible_json_and_keeps_its_url_secret():
    _Receiver.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hooks/secret-token"
        block = alerts.build_block("webhook", url, name="hook")
        assert isinstance(block, CustomWebhookNotificationBlock)
        assert "secret-token" not in block.url  # shown in the UI; the URL is among the secrets
        assert "secret-token" not in repr(block)

        block.notify(body="the body", subject="the subject")
    finally:
        server.shutdown()
        server.server_close()
    assert _Receiver.received == [
        {"text": "the subject\nthe body", "subject": "the subject", "body": "the body"}
    ]


# --- the messages --------------------------------------------------------------------------------


def _render(template: str, event: Event) -> str:
    register_user_template_filters(all_filters)
    return render_user_template_sync(template, {"event": event})


def _failure_event(**payload) -> Event:
    body = {
        "node": "tournament",
        "model": "my_model",
        "round": 1001,
        "trigger_id": "3f2a9c1b-aaaa",
        "flow_run": "tournament-r1001-3f2a9c1b",
        "step": "upload-predictions",
        "failure": events.EXPECTED,
        "error": "UploadRejected",
        "message": "Numerai's upload storage refused the predictions file (HTTP 403).",
        "uploaded": "Nothing was submitted: the predictions file was not uploaded.",
        "next_action": "Fix what the message names.",
        **payload,
    }
    return Event(
        event=events.SUBMISSION_FAILED,
        resource=events.node_resource("tournament", failure=body["failure"]),
        payload=body,
    )


def test_a_failure_alert_names_the_node_round_step_and_cause():
    event = _failure_event()
    subject = _render(messages.FAILED_SUBJECT, event)
    body = _render(messages.FAILED_BODY, event)
    assert subject == "numerai-nodes: tournament failed in round 1001 at upload-predictions"
    assert "failed at step upload-predictions in round 1001" in body
    assert "Cause: Numerai's upload storage refused the predictions file (HTTP 403)." in body
    assert "Nothing was submitted" in body and "Fix what the message names." in body
    assert "flow run tournament-r1001-3f2a9c1b." in body


def test_a_failure_before_the_round_is_known_says_so():
    event = _failure_event(round=None, trigger_id=None, step="start")
    assert "in round ?" in _render(messages.FAILED_SUBJECT, event)
    body = _render(messages.FAILED_BODY, event)
    assert "in round ? (not known yet)" in body and "none (a manual or scheduled run)" in body


def test_a_round_closed_alert_says_nothing_more_can_be_submitted():
    event = _failure_event(failure=events.ROUND_CLOSED, message="Round 1001 closed at 14:00.")
    subject = _render(messages.ROUND_CLOSED_SUBJECT, event)
    assert subject == "numerai-nodes: round 1001 closed before tournament submitted"
    assert "Cause: Round 1001 closed at 14:00." in _render(messages.ROUND_CLOSED_BODY, event)


def test_a_round_at_risk_alert_names_the_node_from_the_webhook_event():
    event = Event(
        event=events.WEBHOOK_RECEIVED,
        resource={
            "prefect.resource.id": events.node_resource_id("signals"),
            events.TRIGGER_ID_LABEL: "t-1",
        },
        payload={"triggerId": "t-1", "roundNumber": 1002},
        occurred=datetime(2026, 12, 1, 13, 0, tzinfo=UTC),
    )
    subject = _render(messages.at_risk_subject(30), event)
    body = _render(messages.at_risk_body(30), event)
    assert subject == (
        "numerai-nodes: signals has not submitted 30 minutes after its webhook (round 1002)"
    )
    assert "webhook of node signals at 2026-12-01 13:00:00 UTC" in body
    assert "(trigger t-1, round 1002), and in 30 minutes no submission" in body


def _stale_event(**payload) -> Event:
    body = {
        "node": "tournament",
        "model": "my_model",
        "round": 1001,
        "trigger_id": "3f2a9c1b-aaaa",
        "flow_run": "tournament-r1001-3f2a9c1b",
        "spec": "fast",
        "wanted_key": "fast-v5.2-new0000",
        "used_key": "fast-v5.0-old1111",
        "used_data_version": "v5.0",
        **payload,
    }
    return Event(
        event=events.MODEL_STALE,
        resource=events.node_resource(
            "tournament", model="my_model", round=body["round"], trigger_id=body["trigger_id"]
        ),
        payload=body,
    )


def test_a_stale_model_alert_names_the_model_used_and_the_training_command():
    event = _stale_event()
    subject = _render(messages.STALE_SUBJECT, event)
    body = _render(messages.STALE_BODY, event)
    assert subject == "numerai-nodes: tournament submitted round 1001 with a stale model of fast"
    assert "Node tournament (Numerai model my_model) submitted for round 1001" in body
    assert "spec fast's own model (fast-v5.2-new0000) is not trained yet" in body
    assert "last good model fast-v5.0-old1111 (data v5.0;" in body
    assert "Next: `numerai-nodes train fast` (or run the deployment train-fast)" in body
    assert "Trigger 3f2a9c1b-aaaa, flow run tournament-r1001-3f2a9c1b." in body


def test_a_stale_model_of_a_manual_run_says_so():
    body = _render(messages.STALE_BODY, _stale_event(trigger_id=None))
    assert "Trigger none (a manual or scheduled run)" in body


def test_each_channel_gets_one_automation_per_alert_kind_on_the_node_events():
    found = {a.name.split("): ", 1)[1]: a for a in alerts.automations("team", uuid4())}
    assert len(found) == 6
    stale = found["model stale: a node submits with an older model"]
    assert stale.trigger.expect == {events.MODEL_STALE}
    assert stale.trigger.match.model_dump() == {"prefect.resource.id": f"{events.RESOURCE_PREFIX}*"}
    assert [a.subject for a in stale.actions] == [messages.STALE_SUBJECT]


def test_every_template_is_one_prefects_server_accepts():
    block_id = uuid4()
    for automation in alerts.automations("team", block_id):
        for action in automation.actions:
            ServerSendNotification.model_validate(action.model_dump(mode="json"))
        assert automation.name.startswith(f"{alerts.ALERT_PREFIX} (team): ")


def test_the_at_risk_window_is_a_setting():
    settings = alerts.AlertSettings(at_risk_minutes=0.5, _env_file=None)
    (at_risk,) = [a for a in alerts.automations("t", uuid4(), settings) if "webhook" in a.name]
    assert at_risk.trigger.within.total_seconds() == 30
    assert "30 s" not in at_risk.name
    with pytest.raises(ValueError, match="at_risk_minutes"):
        alerts.AlertSettings(at_risk_minutes=0.1, _env_file=None)
