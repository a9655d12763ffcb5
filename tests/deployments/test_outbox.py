"""The gateway's outbox on real SQLite files: idempotent, ordered, durable, safe to share."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deployments.events import build_event
from deployments.outbox import Outbox, OutboxUnavailable
from flows.errors import NodeError

PROJECT = Path(__file__).parents[2]


class _Clock:
    """A settable wall clock, in Unix seconds."""

    def __init__(self, now: float = 1_750_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _event(trigger_id: str, node: str = "alpha", **payload: Any) -> dict[str, Any]:
    body = {"triggerId": trigger_id, **payload}
    return build_event(node, body, datetime(2025, 6, 1, 12, 0, tzinfo=UTC))


def _outbox(tmp_path: Path, clock: _Clock | None = None, **kwargs: Any) -> Outbox:
    return Outbox(tmp_path / "gateway" / "outbox.sqlite", clock=clock or _Clock(), **kwargs).open()


def test_record_is_idempotent_by_event_id(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path)
    first = _event("t-1", roundNumber=1)

    assert outbox.record(first) is True
    assert outbox.record(_event("t-1", roundNumber=2)) is False  # the same webhook, redelivered

    (entry,) = outbox.pending()
    assert (entry.event_id, entry.node, entry.event) == (first["id"], "alpha", first)
    assert (entry.attempts, entry.posted_at, entry.delivered_at) == (0, None, None)
    assert outbox.counts() == {"undelivered": 1, "delivered": 0}


def test_pending_is_oldest_first_and_delivered_events_leave_it(tmp_path: Path) -> None:
    clock = _Clock()
    outbox = _outbox(tmp_path, clock)
    events = [_event(f"t-{n}") for n in range(3)]
    for event in reversed(events):  # received newest first
        outbox.record(event)
        clock.now += 1

    assert [entry.event_id for entry in outbox.pending()] == [e["id"] for e in reversed(events)]
    assert outbox.mark_delivered([events[1]["id"], "not-an-event"]) == 1
    assert outbox.mark_delivered([events[1]["id"]]) == 0
    assert [entry.event_id for entry in outbox.pending()] == [events[2]["id"], events[0]["id"]]
    delivered = outbox.get(events[1]["id"])
    assert delivered is not None and delivered.delivered_at == clock.now


def test_claim_posts_each_event_once_until_redelivery_is_due(tmp_path: Path) -> None:
    clock = _Clock()
    outbox = _outbox(tmp_path, clock)
    event = _event("t-claim")
    outbox.record(event)

    (claimed,) = outbox.claim(redeliver_after=30, limit=10)
    assert (claimed.event_id, claimed.attempts, claimed.posted_at) == (event["id"], 1, clock.now)
    assert outbox.claim(redeliver_after=30, limit=10) == []
    assert [e.event_id for e in outbox.awaiting_confirmation(10)] == [event["id"]]

    clock.now += 31  # Prefect took the POST but never showed the event: post it again
    (again,) = outbox.claim(redeliver_after=30, limit=10)
    assert again.attempts == 2

    outbox.release([event["id"]], "Prefect API unreachable: ConnectError")
    assert outbox.awaiting_confirmation(10) == []
    (retried,) = outbox.claim(redeliver_after=30, limit=10)  # a failed POST is due at once
    assert (retried.attempts, retried.last_error) == (3, "Prefect API unreachable: ConnectError")

    outbox.mark_delivered([event["id"]])
    clock.now += 3600
    assert outbox.claim(redeliver_after=30, limit=10) == []
    assert outbox.pending() == []


def test_prune_deletes_only_delivered_events_past_the_retention(tmp_path: Path) -> None:
    clock = _Clock()
    outbox = _outbox(tmp_path, clock)
    old, recent, undelivered = _event("old"), _event("recent"), _event("undelivered")
    for event in (old, recent, undelivered):
        outbox.record(event)
    outbox.mark_delivered([old["id"]])
    clock.now += 6 * 86400
    outbox.mark_delivered([recent["id"]])
    clock.now += 2 * 86400

    assert outbox.prune(7 * 86400) == 1

    assert outbox.get(old["id"]) is None
    assert outbox.get(recent["id"]) is not None
    assert [entry.event_id for entry in outbox.pending()] == [undelivered["id"]]


def test_events_outlive_the_process_that_recorded_them(tmp_path: Path) -> None:
    """The recording process is killed (SIGKILL) the moment record() returns."""
    path = tmp_path / "outbox.sqlite"
    script = (
        "import os, signal, sys\n"
        "from datetime import UTC, datetime\n"
        "from deployments.events import build_event\n"
        "from deployments.outbox import Outbox\n"
        "event = build_event('alpha', {'triggerId': 'crash'}, datetime.now(UTC))\n"
        "Outbox(sys.argv[1]).open().record(event)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], cwd=PROJECT, capture_output=True, timeout=60
    )

    assert done.returncode == -9, done.stderr
    (entry,) = Outbox(path).pending()
    assert entry.event["resource"]["numerai.trigger-id"] == "crash"
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_concurrent_writers_and_delivery_loops_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    Outbox(path).open()
    events = [_event(f"t-{n}", node=f"node-{n % 4}") for n in range(200)]
    claimed: list[str] = []
    errors: list[BaseException] = []

    def write(part: list[dict[str, Any]]) -> None:
        writer = Outbox(path)  # each thread has its own instance, as separate processes would
        try:
            for event in part:
                writer.record(event)
                writer.record(event)
        except BaseException as exc:
            errors.append(exc)

    def deliver() -> None:
        loop = Outbox(path)
        try:
            for _ in range(40):
                claimed.extend(e.event_id for e in loop.claim(redeliver_after=3600, limit=7))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(events[n::4],)) for n in range(4)]
    threads += [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert errors == []
    assert len(claimed) == len(set(claimed))  # no event was handed to both loops
    outbox = Outbox(path)
    assert {entry.event_id for entry in outbox.pending()} == {event["id"] for event in events}
    rest = outbox.claim(redeliver_after=3600, limit=500)
    assert sorted(claimed + [entry.event_id for entry in rest]) == sorted(e["id"] for e in events)


def test_a_locked_outbox_raises_a_transient_node_error(tmp_path: Path) -> None:
    outbox = _outbox(tmp_path, timeout_seconds=0.2)
    holder = sqlite3.connect(outbox.path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(OutboxUnavailable, match=r"cannot be used .*locked") as raised:
            outbox.record(_event("locked"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert isinstance(raised.value, NodeError) and raised.value.transient
    assert outbox.record(_event("locked")) is True


def test_an_outbox_it_cannot_create_raises_outbox_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")

    with pytest.raises(OutboxUnavailable, match="not-a-directory"):
        Outbox(blocker / "outbox.sqlite").open()
