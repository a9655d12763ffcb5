"""The gateway's delivery loop: posts each outbox event until Prefect's events API shows it.

Prefect answers 204 to `POST /events` before it stores the event, and loses what it has not
stored yet when it stops; so an event counts as delivered only once `/events/filter` returns it.
Re-posting an event is safe: Prefect keeps one event per id, its triggers skip an id they have
seen in the last 30 minutes, and the flow's submit step skips a trigger already submitted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from deployments.gateway_settings import GatewaySettings
from deployments.outbox import Outbox, OutboxEntry, OutboxUnavailable
from flows.errors import NodeError

# Prefect's /events/filter returns at most 50 events a page.
BATCH = 50
CONFIRM_POLL_SECONDS = 1.0
FIRST_BACKOFF_SECONDS = 0.5
# With nothing to deliver the loop sleeps until a webhook wakes it, or this long (to prune).
IDLE_SECONDS = 3600.0
# The read-back asks for events around their own time, so clock skew cannot hide them.
OCCURRED_SLACK = timedelta(days=1)

logger = logging.getLogger("numerai_nodes.gateway")


class PrefectUnavailable(NodeError, ConnectionError):
    """Prefect's API did not answer, or answered 5xx or 429: the events wait in the outbox."""

    transient = True

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class PrefectRefused(NodeError, PermissionError):
    """Prefect's API refused a request with a 4xx: check the gateway's Prefect URL and key."""


@dataclass(frozen=True)
class DeliveryPass:
    """What one pass over the outbox did."""

    delivered: int
    posted: int
    refused: int
    undelivered: int


class Delivery:
    """Delivers the outbox to Prefect; `run()` loops until cancelled, `wake()` hurries it."""

    def __init__(self, outbox: Outbox, client: httpx.AsyncClient, settings: GatewaySettings):
        self._outbox = outbox
        self._client = client
        self._settings = settings
        self._wake = asyncio.Event()
        self._outage: str | None = None

    def wake(self) -> None:
        """A new event is in the outbox: deliver it now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver, back off while Prefect is unreachable, prune delivered events; forever."""
        backoff = FIRST_BACKOFF_SECONDS
        poll = CONFIRM_POLL_SECONDS
        next_prune = 0.0
        longest = self._settings.delivery_backoff_max_seconds
        while True:
            self._wake.clear()
            try:
                if time.monotonic() >= next_prune:
                    await self._prune()
                    next_prune = time.monotonic() + IDLE_SECONDS
                result = await self.deliver_once()
            except PrefectUnavailable as exc:
                self._note_outage(str(exc))
                delay = min(exc.retry_after or backoff, longest)
                backoff = min(2 * backoff, longest)
            except OutboxUnavailable as exc:
                logger.error("%s", exc)
                delay, backoff = backoff, min(2 * backoff, longest)
            else:
                self._note_recovery()
                if result.refused:
                    delay, backoff = backoff, min(2 * backoff, longest)
                elif result.undelivered:
                    backoff = FIRST_BACKOFF_SECONDS
                    # Poll often while events move, less while Prefect sits on one.
                    moved = result.delivered or result.posted
                    poll = CONFIRM_POLL_SECONDS if moved else min(2 * poll, self._slowest_poll)
                    delay = poll
                else:
                    backoff, poll, delay = FIRST_BACKOFF_SECONDS, CONFIRM_POLL_SECONDS, IDLE_SECONDS
            await self._sleep(delay)

    @property
    def _slowest_poll(self) -> float:
        return max(CONFIRM_POLL_SECONDS, self._settings.redeliver_after_seconds)

    async def deliver_once(self) -> DeliveryPass:
        """Confirm what Prefect has stored, then post what is due (oldest first)."""
        delivered = await self._confirm()
        due = await asyncio.to_thread(
            self._outbox.claim,
            redeliver_after=self._settings.redeliver_after_seconds,
            limit=BATCH,
        )
        refused = 0
        for index, entry in enumerate(due):
            try:
                await self._post(entry)
            except PrefectUnavailable as exc:
                rest = [later.event_id for later in due[index:]]
                await asyncio.to_thread(self._outbox.release, rest, str(exc))
                raise
            except PrefectRefused as exc:
                refused += 1
                logger.error("Prefect refused event %s: %s", entry.event_id, exc)
                await asyncio.to_thread(self._outbox.release, [entry.event_id], str(exc))
        counts = await asyncio.to_thread(self._outbox.counts)
        return DeliveryPass(delivered, len(due) - refused, refused, counts["undelivered"])

    async def _confirm(self) -> int:
        awaiting = await asyncio.to_thread(self._outbox.awaiting_confirmation, BATCH)
        if not awaiting:
            return 0
        try:
            stored = await self._stored_ids(awaiting)
        except PrefectRefused as exc:
            logger.error("Prefect refused to list events: %s", exc)
            ids = [entry.event_id for entry in awaiting]
            await asyncio.to_thread(self._outbox.note, ids, str(exc))
            return 0
        confirmed = [entry for entry in awaiting if entry.event_id in stored]
        if confirmed:
            await asyncio.to_thread(
                self._outbox.mark_delivered, [entry.event_id for entry in confirmed]
            )
        for entry in confirmed:
            logger.info(
                "Node %s: event %s is stored in Prefect (posted %d time(s))",
                entry.node,
                entry.event_id,
                entry.attempts,
            )
        return len(confirmed)

    async def _stored_ids(self, entries: list[OutboxEntry]) -> set[str]:
        occurred = [datetime.fromisoformat(entry.event["occurred"]) for entry in entries]
        query = {
            "filter": {
                "id": {"id": [entry.event_id for entry in entries]},
                "occurred": {
                    "since": (min(occurred) - OCCURRED_SLACK).isoformat(),
                    "until": (max(occurred) + OCCURRED_SLACK).isoformat(),
                },
            },
            "limit": BATCH,
        }
        response = await self._request(self._settings.events_filter_url, json.dumps(query))
        try:
            return {str(event["id"]) for event in response.json()["events"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise PrefectRefused(
                f"{self._settings.events_filter_url} answered something that is not an event "
                f"page ({type(exc).__name__}); is the gateway's Prefect API URL right?"
            ) from exc

    async def _post(self, entry: OutboxEntry) -> None:
        await self._request(self._settings.events_url, json.dumps([entry.event]))
        logger.debug("Event %s posted to Prefect (attempt %d)", entry.event_id, entry.attempts)

    async def _request(self, url: str, content: str) -> httpx.Response:
        try:
            response = await self._client.post(
                url, content=content, headers={"content-type": "application/json"}
            )
        except httpx.HTTPError as exc:
            reason = f"Prefect API unreachable at {url}: {type(exc).__name__}"
            raise PrefectUnavailable(reason) from exc
        if response.is_success:
            return response
        status = response.status_code
        if status >= 500 or status in (408, 429):
            raise PrefectUnavailable(
                f"Prefect API answered HTTP {status} at {url}",
                _retry_after(response.headers.get("retry-after")),
            )
        raise PrefectRefused(
            f"Prefect API answered HTTP {status} at {url}; check the gateway's Prefect API URL "
            "and credentials (the events wait in the outbox)"
        )

    async def _prune(self) -> None:
        retention = self._settings.outbox_retention_days * 86400
        pruned = await asyncio.to_thread(self._outbox.prune, retention)
        if pruned:
            logger.info("Pruned %d delivered event(s) from the outbox", pruned)

    def _note_outage(self, reason: str) -> None:
        if self._outage is None:
            logger.warning("%s; the events wait in the outbox and are retried", reason)
        else:
            logger.debug("%s", reason)
        self._outage = reason

    def _note_recovery(self) -> None:
        if self._outage is not None:
            logger.info("Prefect API answers again; delivering the outbox")
        self._outage = None

    async def _sleep(self, seconds: float) -> None:
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds > 0 else None
