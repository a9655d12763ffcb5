"""The gateway's outbox: every accepted webhook event, kept in SQLite until Prefect shows it."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deployments.events import RESOURCE_PREFIX
from flows.errors import NodeError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    event_id     TEXT PRIMARY KEY,
    node         TEXT NOT NULL,
    event        TEXT NOT NULL,
    received_at  REAL NOT NULL,
    posted_at    REAL,
    delivered_at REAL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
);
CREATE INDEX IF NOT EXISTS outbox_undelivered ON outbox (delivered_at, received_at);
"""
_COLUMNS = "event_id, node, event, received_at, posted_at, delivered_at, attempts, last_error"
# SQLite's default limit of host parameters is 999 on old builds; stay well below it.
_MAX_IDS = 500


class OutboxUnavailable(NodeError, OSError):
    """The outbox's SQLite file cannot be opened, read or written (disk, permissions, lock)."""

    transient = True


@dataclass(frozen=True)
class OutboxEntry:
    """One event in the outbox. Times are Unix seconds; `posted_at` is the last POST's."""

    event_id: str
    node: str
    event: dict[str, Any]
    received_at: float
    posted_at: float | None
    delivered_at: float | None
    attempts: int
    last_error: str | None


class Outbox:
    """A SQLite file (WAL, synchronous writes) of events, each kept until it is delivered.

    Every call opens its own connection, so an Outbox may be used from any thread, and several
    processes may share one file: writes take SQLite's write lock and wait up to `timeout_seconds`.
    """

    def __init__(
        self,
        path: Path,
        *,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ):
        self.path = Path(path)
        self._timeout = timeout_seconds
        self._clock = clock

    def open(self) -> Outbox:
        """Create the file and its table if needed; raises OutboxUnavailable when it cannot."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise self._unavailable(exc) from exc
        with self._connection() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
        return self

    def record(self, event: dict[str, Any]) -> bool:
        """Keep `event` until it is delivered; False when its id is already in the outbox.

        Returns only once the row is on disk: after it, a crash of this process loses nothing.
        """
        row = (event["id"], _node_of(event), json.dumps(event), self._clock())
        with self._write() as connection:
            cursor = connection.execute(
                "INSERT OR IGNORE INTO outbox (event_id, node, event, received_at) "
                "VALUES (?, ?, ?, ?)",
                row,
            )
            return cursor.rowcount == 1

    def get(self, event_id: str) -> OutboxEntry | None:
        """The entry of one event, or None."""
        rows = self._select("WHERE event_id = ?", (event_id,))
        return rows[0] if rows else None

    def pending(self, limit: int | None = None) -> list[OutboxEntry]:
        """Undelivered events, oldest first."""
        clause = "WHERE delivered_at IS NULL ORDER BY received_at, event_id"
        if limit is None:
            return self._select(clause, ())
        return self._select(clause + " LIMIT ?", (limit,))

    def awaiting_confirmation(self, limit: int) -> list[OutboxEntry]:
        """Undelivered events that Prefect has accepted a POST of, oldest first."""
        clause = (
            "WHERE delivered_at IS NULL AND posted_at IS NOT NULL "
            "ORDER BY received_at, event_id LIMIT ?"
        )
        return self._select(clause, (limit,))

    def claim(self, *, redeliver_after: float, limit: int) -> list[OutboxEntry]:
        """Undelivered events due for a POST, oldest first, stamped as posted now.

        Due means never posted, or posted more than `redeliver_after` seconds ago without Prefect
        showing it since. Stamping in the same transaction keeps two delivery loops on one file
        from posting the same event at once.
        """
        now = self._clock()
        with self._write() as connection:
            rows = connection.execute(
                f"SELECT {_COLUMNS} FROM outbox WHERE delivered_at IS NULL "
                "AND (posted_at IS NULL OR posted_at <= ?) "
                "ORDER BY received_at, event_id LIMIT ?",
                (now - redeliver_after, limit),
            ).fetchall()
            connection.executemany(
                "UPDATE outbox SET posted_at = ?, attempts = attempts + 1 WHERE event_id = ?",
                [(now, row[0]) for row in rows],
            )
        return [_entry(row, posted_at=now, attempts=row[6] + 1) for row in rows]

    def release(self, event_ids: Iterable[str], error: str) -> None:
        """A POST of these events failed: note why, and make them due again at once."""
        with self._write() as connection:
            connection.executemany(
                "UPDATE outbox SET posted_at = NULL, last_error = ? "
                "WHERE event_id = ? AND delivered_at IS NULL",
                [(error, event_id) for event_id in event_ids],
            )

    def note(self, event_ids: Iterable[str], error: str) -> None:
        """Record why these events are not delivered yet, without changing when they are due."""
        with self._write() as connection:
            connection.executemany(
                "UPDATE outbox SET last_error = ? WHERE event_id = ? AND delivered_at IS NULL",
                [(error, event_id) for event_id in event_ids],
            )

    def mark_delivered(self, event_ids: Iterable[str]) -> int:
        """Prefect has these events; returns how many rows changed."""
        ids = list(event_ids)
        changed = 0
        now = self._clock()
        with self._write() as connection:
            for chunk in _chunks(ids, _MAX_IDS):
                marks = ", ".join("?" * len(chunk))
                cursor = connection.execute(
                    f"UPDATE outbox SET delivered_at = ?, last_error = NULL "
                    f"WHERE delivered_at IS NULL AND event_id IN ({marks})",
                    (now, *chunk),
                )
                changed += cursor.rowcount
        return changed

    def prune(self, retention_seconds: float) -> int:
        """Delete events delivered more than `retention_seconds` ago; returns how many."""
        with self._write() as connection:
            cursor = connection.execute(
                "DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                (self._clock() - retention_seconds,),
            )
            return cursor.rowcount

    def counts(self) -> dict[str, int]:
        """How many events are undelivered and delivered (not yet pruned)."""
        with self._connection() as connection:
            undelivered, delivered = connection.execute(
                "SELECT COUNT(*) - COUNT(delivered_at), COUNT(delivered_at) FROM outbox"
            ).fetchone()
        return {"undelivered": undelivered, "delivered": delivered}

    def _select(self, clause: str, parameters: tuple[Any, ...]) -> list[OutboxEntry]:
        with self._connection() as connection:
            rows = connection.execute(f"SELECT {_COLUMNS} FROM outbox {clause}", parameters)
            return [_entry(row) for row in rows.fetchall()]

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; IMMEDIATE takes the write lock up front, so reads inside it
        cannot go stale before the write."""
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                if connection.in_transaction:  # SQLite rolls back by itself on some errors
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            connection = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc
        with closing(connection):
            try:
                # FULL: a commit is on disk before record() returns, even across a power cut.
                connection.execute("PRAGMA synchronous=FULL")
                yield connection
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> OutboxUnavailable:
        return OutboxUnavailable(
            f"The gateway's outbox {self.path} cannot be used ({type(exc).__name__}: {exc}); "
            "check the disk and the file's permissions, and that no other process holds its lock."
        )


def _node_of(event: dict[str, Any]) -> str:
    resource_id: str = event["resource"]["prefect.resource.id"]
    return resource_id.removeprefix(RESOURCE_PREFIX)


def _entry(
    row: tuple[Any, ...], *, posted_at: float | None = None, attempts: int | None = None
) -> OutboxEntry:
    return OutboxEntry(
        event_id=row[0],
        node=row[1],
        event=json.loads(row[2]),
        received_at=row[3],
        posted_at=row[4] if posted_at is None else posted_at,
        delivered_at=row[5],
        attempts=row[6] if attempts is None else attempts,
        last_error=row[7],
    )


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
