"""Alerts: a Prefect notification block per channel, and automations that send through it.

`numerai-nodes alerts add slack URL` saves the channel as a Prefect notification block (Slack,
Discord, Microsoft Teams, SendGrid email, or any webhook: Prefect ships them all) and creates,
for that channel, one automation per thing that goes wrong, each with a send-notification action:

- **node run failed**: a node run failed for a reason other than the round's close (the node's
  failure event: the node, round, failing step and one-line message);
- **node run crashed**: a flow run tagged `numerai-node` crashed (its process died); crash
  recovery runs it again;
- **round closed**: a node run ended because the round closed (often while a step was
  retrying): nothing more can be submitted for that round;
- **round at risk**: Numerai called a node's webhook and, within `at_risk_minutes`, no outcome
  followed (no submission, no failure): the run is stuck, waiting for a worker, or retrying;
- **round at risk (watchdog)**: the watchdog flow found a round about to close without a
  submission of a node's model (also when no webhook came at all).
- **model stale**: a node submits with its spec family's last good model (an older data
  version or code) because its own spec's model is not trained yet: `numerai-nodes train SPEC`.

Each event that can alert names the node as its resource (flows/events.py), so one failure makes
one alert. The webhook URLs are secrets: they live in the blocks (as Prefect secret fields) and
are only ever shown masked.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, cast
from uuid import UUID

import httpx
from prefect import get_client
from prefect.blocks.abstract import NotificationBlock, NotificationError
from prefect.blocks.core import Block
from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    DiscordWebhook,
    MicrosoftTeamsWebhook,
    SendgridEmail,
    SlackWebhook,
)
from prefect.client.schemas.objects import BlockDocument
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from prefect.exceptions import ObjectNotFound
from pydantic import BaseModel, Field, SecretStr

from deployments.alert_messages import (
    CRASHED_BODY,
    CRASHED_SUBJECT,
    FAILED_BODY,
    FAILED_SUBJECT,
    ROUND_CLOSED_BODY,
    ROUND_CLOSED_SUBJECT,
    STALE_BODY,
    STALE_SUBJECT,
    TEST_BODY,
    TEST_SUBJECT,
    WATCHDOG_BODY,
    WATCHDOG_SUBJECT,
    at_risk_body,
    at_risk_subject,
    minutes_text,
)
from deployments.automations import upsert
from flows import events
from flows.errors import NodeError
from flows.events import NODE_TAG
from flows.settings import HomeSettings

ALERT_PREFIX = "numerai-nodes alert"
KINDS = ("slack", "discord", "teams", "email", "webhook")
MASK = "****"
# Block document names: lowercase letters, digits and dashes (Prefect's rule).
_BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_SLACK_URL = re.compile(r"https://hooks\.slack(-gov)?\.com/services/[A-Za-z0-9/]+")
_DISCORD_URL = re.compile(
    r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/(\d+)/([\w-]+)/?"
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
# A crashed run is reported twice by a process worker, seconds apart: one alert per run.
_CRASH_QUIET = timedelta(minutes=5)


class AlertError(NodeError, ValueError):
    """An alert channel could not be set up, found or reached; the message says why."""


class AlertSettings(HomeSettings):
    """When alerts fire (env `NUMERAI_NODES_*`)."""

    at_risk_minutes: float = Field(
        30,
        ge=1 / 6,
        description="A round is at risk when no submission (and no failure) of a node follows "
        "its webhook for this many minutes (Prefect's proactive triggers wait at least 10 s).",
    )


class Channel(BaseModel):
    """An alert channel as `alerts list` shows it: never a secret."""

    name: str = Field(description="The channel's name: its block's and its automations'.")
    kind: str = Field(description="The Prefect block type, e.g. slack-webhook.")
    target: str = Field(description="Where alerts go, masked.")
    automations: list[str] = Field(default_factory=list, description="Its automations' names.")
    block_id: str | None = Field(None, description="Its block document's id.")


# --- automations --------------------------------------------------------------------------------


def automation_name(channel: str, what: str) -> str:
    return f"{ALERT_PREFIX} ({channel}): {what}"


def automations(
    channel: str, block_id: UUID, settings: AlertSettings | None = None
) -> list[AutomationCore]:
    """The automations that alert through the channel's block, as Prefect's API takes them."""
    settings = settings or AlertSettings()
    nodes = {"prefect.resource.id": f"{events.RESOURCE_PREFIX}*"}

    def notify(subject: str, body: str) -> list[SendNotification]:
        return [SendNotification(block_document_id=block_id, subject=subject, body=body)]

    def on_each(event: str, **match: str) -> EventTrigger:
        """A trigger that fires on every `event` of a node (its resource labels matching)."""
        return EventTrigger(
            expect={event}, match={**nodes, **match}, posture=Posture.Reactive, threshold=1
        )

    within = timedelta(minutes=settings.at_risk_minutes)
    return [
        AutomationCore(
            name=automation_name(channel, "node run failed"),
            description="A node run failed (not because its round closed): the node, round, "
            "failing step and one-line cause.",
            trigger=on_each(
                events.SUBMISSION_FAILED, **{events.FAILURE_LABEL: f"!{events.ROUND_CLOSED}"}
            ),
            actions=notify(FAILED_SUBJECT, FAILED_BODY),
        ),
        AutomationCore(
            name=automation_name(channel, "node run crashed"),
            description=f"A flow run tagged {NODE_TAG} crashed (its process died); one alert "
            "per run. Crash recovery runs it again.",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Crashed"},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related={
                    "prefect.resource.role": "tag",
                    "prefect.resource.id": f"prefect.tag.{NODE_TAG}",
                },
                for_each={"prefect.resource.id"},
                posture=Posture.Reactive,
                threshold=1,
                within=_CRASH_QUIET,
            ),
            actions=notify(CRASHED_SUBJECT, CRASHED_BODY),
        ),
        AutomationCore(
            name=automation_name(channel, "round closed before a node submitted"),
            description="A node run ended because its round closed, often while a step was "
            "retrying: nothing more can be submitted for that round.",
            trigger=on_each(
                events.SUBMISSION_FAILED, **{events.FAILURE_LABEL: events.ROUND_CLOSED}
            ),
            actions=notify(ROUND_CLOSED_SUBJECT, ROUND_CLOSED_BODY),
        ),
        AutomationCore(
            name=automation_name(channel, "round at risk: no submission after the webhook"),
            description=f"Numerai called a node's webhook and no submission or failure of "
            f"that node followed within {minutes_text(settings.at_risk_minutes)}.",
            trigger=EventTrigger(
                after={events.WEBHOOK_RECEIVED},
                expect=set(events.RUN_OUTCOMES),
                match=nodes,
                # One window per webhook delivery: a node's runs each answer their own trigger.
                for_each={"prefect.resource.id", events.TRIGGER_ID_LABEL},
                posture=Posture.Proactive,
                threshold=1,
                within=within,
            ),
            actions=notify(
                at_risk_subject(settings.at_risk_minutes), at_risk_body(settings.at_risk_minutes)
            ),
        ),
        AutomationCore(
            name=automation_name(channel, "round at risk: no submission before the close"),
            description="The watchdog found a round about to close without a submission of a "
            "node's model, with or without a webhook.",
            trigger=on_each(events.ROUND_AT_RISK),
            actions=notify(WATCHDOG_SUBJECT, WATCHDOG_BODY),
        ),
        AutomationCore(
            name=automation_name(channel, "model stale: a node submits with an older model"),
            description="A node's spec has no trained model yet, so the node submits with its "
            "spec family's last good model (an older data version or code); `numerai-nodes "
            "train SPEC` trains it.",
            trigger=on_each(events.MODEL_STALE),
            actions=notify(STALE_SUBJECT, STALE_BODY),
        ),
    ]


# --- blocks -------------------------------------------------------------------------------------


def check_channel_name(name: str) -> str:
    if not _BLOCK_NAME.fullmatch(name):
        raise AlertError(
            f"Invalid alert name {name!r}: use lowercase letters, digits and dashes (Prefect's "
            "rule for block names)."
        )
    return name


def build_block(
    kind: str,
    target: str,
    *,
    name: str,
    sender: str | None = None,
    sendgrid_api_key: str | None = None,
) -> NotificationBlock:
    """The notification block of `kind` that sends to `target` (a URL, or an email address)."""
    target = target.strip()
    try:
        if kind == "slack":
            if not _SLACK_URL.fullmatch(target):
                raise AlertError(
                    "That is not a Slack incoming-webhook URL (https://hooks.slack.com/services/"
                    "…). For another endpoint, use `alerts add webhook URL`."
                )
            return SlackWebhook(url=target)
        if kind == "discord":
            found = _DISCORD_URL.fullmatch(target)
            if not found:
                raise AlertError(
                    "That is not a Discord webhook URL (https://discord.com/api/webhooks/ID/TOKEN)."
                )
            return DiscordWebhook(webhook_id=found[1], webhook_token=found[2])
        if kind == "teams":
            return MicrosoftTeamsWebhook(url=_http_url(target))
        if kind == "email":
            return _email_block(target, sender, sendgrid_api_key)
        if kind == "webhook":
            return _webhook_block(name, _http_url(target))
    except ValueError as exc:  # the block's own check (Teams' workflow URL) or ours above
        if isinstance(exc, AlertError):
            raise
        raise AlertError(f"Invalid {kind} target: {_first_line(exc)}") from None
    raise AlertError(f"Unknown alert kind {kind!r}: use one of {', '.join(KINDS)}.")


def _email_block(address: str, sender: str | None, api_key: str | None) -> SendgridEmail:
    if not _EMAIL.fullmatch(address):
        raise AlertError(f"{address!r} is not an email address.")
    if not api_key:
        raise AlertError(
            "Email alerts go through SendGrid (Prefect's email notification block): set "
            "SENDGRID_API_KEY (or pass --sendgrid-api-key) to a SendGrid API key."
        )
    return SendgridEmail(api_key=api_key, sender_email=sender or address, to_emails=[address])


def _webhook_block(name: str, url: str) -> CustomWebhookNotificationBlock:
    """A webhook that POSTs Slack-compatible JSON (`text`, plus `subject` and `body`); the URL is
    kept among the block's secrets, so the block never shows it."""
    return CustomWebhookNotificationBlock(
        name=name,
        url="{{url}}",
        method="POST",
        json_data={"text": "{{subject}}\n{{body}}", "subject": "{{subject}}", "body": "{{body}}"},
        secrets={"url": url},
    )


def _http_url(url: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+\S*", url):
        raise AlertError(f"{mask_url(url)} is not an http(s) URL.")
    return url


def mask_url(url: str) -> str:
    """A URL with everything after its host masked: `https://hooks.slack.com/****`."""
    found = re.match(r"([a-z][a-z0-9+.-]*://)?([^/?#@\s]*@)?([^/?#\s]*)", url.strip(), re.I)
    if not found or not found[3]:
        return MASK
    return f"{found[1] or ''}{found[3]}/{MASK}"


def describe_block(document: BlockDocument) -> tuple[str, str]:
    """(block type, masked target) of a notification block document read with its secrets."""
    slug = document.block_type.slug if document.block_type else "?"
    data = document.data
    if slug == "sendgrid-email":
        return slug, ", ".join(data.get("to_emails") or []) or MASK
    if slug == "discord-webhook":
        return slug, f"https://discord.com/api/webhooks/{MASK}"
    url = data.get("url")
    if slug == "custom-webhook":
        url = (data.get("secrets") or {}).get("url", url)
    if isinstance(url, SecretStr):
        url = url.get_secret_value()
    return slug, mask_url(str(url)) if url else MASK


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- the API: add, list, test, remove -----------------------------------------------------------


def add(name: str, block: NotificationBlock, settings: AlertSettings | None = None) -> Channel:
    """Save the channel's block (see `build_block`) and create (or update) its automations on
    the current Prefect API. Adding a channel of the same name again replaces it."""
    name = check_channel_name(name)
    replaced = _channel_blocks(name)
    block_id = block.save(name, overwrite=True)
    assert isinstance(block_id, UUID), "outside an event loop, save returns the id"
    wanted = automations(name, block_id, settings)
    with get_client(sync_client=True) as client:
        upsert(client, wanted)
        for old in replaced - {block_id}:  # the same name, another kind: the old block goes
            client.delete_block_document(old)
        document = client.read_block_document(block_id, include_secrets=True)
    slug, shown = describe_block(document)
    return Channel(
        name=name,
        kind=slug,
        target=shown,
        automations=[a.name for a in wanted],
        block_id=str(block_id),
    )


def channels() -> list[Channel]:
    """Every alert channel on the current Prefect API, with its automations; no secrets."""
    found: dict[str, Channel] = {}
    with get_client(sync_client=True) as client:
        for automation in _alert_automations(client):
            channel = automation.name.split("(", 1)[1].split("):", 1)[0]
            entry = found.setdefault(channel, Channel(name=channel, kind="?", target=MASK))
            entry.automations.append(automation.name)
            for block_id in _block_ids(automation):
                entry.block_id = str(block_id)
        for entry in found.values():
            if entry.block_id is None:
                continue
            try:
                document = client.read_block_document(UUID(entry.block_id), include_secrets=True)
            except ObjectNotFound:  # deleted by hand: the automations send nowhere
                entry.kind, entry.target = "missing", "the block was deleted"
                continue
            entry.kind, entry.target = describe_block(document)
    return sorted(found.values(), key=lambda entry: entry.name)


def send_test(name: str | None = None) -> list[Channel]:
    """Send a test notification through each channel (or the one named); returns them."""
    chosen = [c for c in channels() if name is None or c.name == name]
    if not chosen:
        raise AlertError(_no_channel(name))
    for channel in chosen:
        if channel.block_id is None or channel.kind == "missing":
            raise AlertError(f"Alert channel {channel.name!r} has no block: add it again.")
        block = Block.load_from_ref(channel.block_id)
        if not isinstance(block, NotificationBlock):
            raise AlertError(f"Block {channel.name!r} is not a notification block.")
        try:
            with block.raise_on_failure():
                # The shipped blocks' notify runs synchronously outside an event loop.
                cast(Any, block).notify(body=TEST_BODY, subject=TEST_SUBJECT)
        except (NotificationError, httpx.HTTPError) as exc:  # say which channel, masked
            raise AlertError(
                f"The test alert through {channel.name!r} ({channel.target}) failed: "
                f"{type(exc).__name__}. Check the URL (add the channel again to change it)."
            ) from None
    return chosen


def remove(name: str) -> Channel:
    """Delete the channel's automations and its block; returns what was removed."""
    chosen = [c for c in channels() if c.name == name]
    if not chosen:
        raise AlertError(_no_channel(name))
    (channel,) = chosen
    with get_client(sync_client=True) as client:
        for automation in _alert_automations(client):
            if automation.name in channel.automations:
                client.delete_automation(automation.id)
        for block_id in _channel_blocks(name):
            client.delete_block_document(block_id)
    return channel


def _alert_automations(client: Any) -> list[Any]:
    return [a for a in client.read_automations() if a.name.startswith(f"{ALERT_PREFIX} (")]


def _block_ids(automation: Any) -> set[UUID]:
    return {a.block_document_id for a in automation.actions if isinstance(a, SendNotification)}


def _channel_blocks(name: str) -> set[UUID]:
    """The block ids the channel's automations send through."""
    with get_client(sync_client=True) as client:
        return {
            block_id
            for automation in _alert_automations(client)
            if automation.name.startswith(automation_name(name, ""))
            for block_id in _block_ids(automation)
        }


def _no_channel(name: str | None) -> str:
    if name is None:
        return "No alert channel is set up: add one with `numerai-nodes alerts add slack URL`."
    return f"No alert channel named {name!r}: `numerai-nodes alerts list` shows them."
