"""Webhook delivery like Numerai's: POST {triggerId, roundNumber, dataVersion}, with retries."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from sandbox.state import TriggerRecord

_RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0)


@dataclass
class Delivery:
    """One webhook call and what came of it."""

    trigger_id: str
    model_id: str
    round: int
    url: str
    fired_at: datetime
    attempts: int = 0
    status_code: int | None = None
    delivered_at: datetime | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    def to_json(self) -> dict:
        return {
            "trigger_id": self.trigger_id,
            "model_id": self.model_id,
            "round": self.round,
            "fired_at": self.fired_at.isoformat(),
            "attempts": self.attempts,
            "status_code": self.status_code,
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "error": self.error,
        }


class WebhookDelivery:
    """Sends webhooks in the background; retries connection errors and 5xx, like a real sender.

    `data_version(tournament)` is asked at each trigger: the body names the version served then.
    """

    def __init__(
        self,
        data_version: Callable[[int], str | None],
        retry_delays_s: tuple[float, ...] = _RETRY_DELAYS_S,
    ):
        self.data_version = data_version
        self.retry_delays_s = retry_delays_s
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="sandbox-webhook")
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []

    def send(self, trigger: TriggerRecord) -> None:
        """Queue the POST for a trigger; a model without a webhook gets nothing."""
        if not trigger.webhook:
            return
        delivery = Delivery(
            trigger_id=trigger.id,
            model_id=trigger.model_id,
            round=trigger.round,
            url=trigger.webhook,
            fired_at=datetime.now(UTC),
        )
        with self._lock:
            self._deliveries.append(delivery)
        body = {
            "triggerId": trigger.id,
            "roundNumber": trigger.round,
            "dataVersion": self.data_version(trigger.tournament),
        }
        self._pool.submit(self._deliver, delivery, body)

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def wait(self, timeout: float = 30) -> bool:
        """Wait until every queued delivery finished (delivered or given up)."""
        deadline = time.monotonic() + timeout
        return all(d.done.wait(max(0.0, deadline - time.monotonic())) for d in self.deliveries)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _deliver(self, delivery: Delivery, body: dict) -> None:
        delays = (0.0, *self.retry_delays_s)
        try:
            for delay in delays:
                time.sleep(delay)
                delivery.attempts += 1
                try:
                    response = httpx.post(delivery.url, json=body, timeout=10)
                except httpx.HTTPError as exc:
                    delivery.error = f"{type(exc).__name__}"
                    continue
                delivery.status_code = response.status_code
                if response.status_code < 500:
                    delivery.error = None if response.is_success else response.text[:200]
                    if response.is_success:
                        delivery.delivered_at = datetime.now(UTC)
                    return
                delivery.error = response.text[:200]
        finally:
            delivery.done.set()
