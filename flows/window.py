"""The round's window: a node's retries and waits end where the round does.

A Numerai round takes submissions until it closes (an hour after it opens, Tuesday to Friday).
A transient failure is worth retrying for as long as the retry can still finish before then,
and no upload starts after it: the run then ends as "round closed while retrying", naming the
last transient error, instead of giving up early or uploading late.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import ParamSpec, TypeVar

from prefect.runtime import task_run

from flows.errors import NodeError, RoundClosed

P = ParamSpec("P")
R = TypeVar("R")

# Time kept, before the close, for the steps after a retried one (predict, validate, upload).
DEFAULT_MARGIN = timedelta(minutes=3)


@dataclass
class RoundWindow:
    """The open round and when it closes (None: Numerai gave no close time)."""

    number: int
    closes_at: datetime | None
    margin: timedelta = DEFAULT_MARGIN
    last_error: str | None = field(default=None, repr=False)

    def deadline(self, final: bool) -> datetime | None:
        """When a step must be done by: the close for the upload, earlier for the others."""
        if self.closes_at is None:
            return None
        return self.closes_at if final else self.closes_at - self.margin

    def allows(self, delay: float, final: bool, now: datetime | None = None) -> bool:
        """Whether a retry `delay` seconds from now starts before the step's deadline."""
        deadline = self.deadline(final)
        now = now or datetime.now(UTC)
        return deadline is None or now + timedelta(seconds=delay) < deadline

    def check_open(self, step: str, now: datetime | None = None) -> None:
        """Raise RoundClosed if the round has closed: nothing irreversible starts after it."""
        now = now or datetime.now(UTC)
        if self.closes_at is not None and now >= self.closes_at:
            raise RoundClosed(self._closed_message(step))

    def _closed_message(self, step: str, now: datetime | None = None) -> str:
        now = now or datetime.now(UTC)
        when = f"{self.closes_at:%H:%M:%S} UTC" if self.closes_at else "its close"
        last = f" The last error: {self.last_error}" if self.last_error else ""
        if self.closes_at is not None and now < self.closes_at:
            return (
                f"Round {self.number} closes at {when}, before {step} could be retried again: "
                f"the round closed while retrying; nothing was uploaded.{last}"
            )
        return (
            f"Round {self.number} closed at {when}: the round closed while retrying {step}; "
            f"nothing was uploaded after the close.{last}"
        )


_CURRENT: ContextVar[RoundWindow | None] = ContextVar("numerai_round_window", default=None)


@contextlib.contextmanager
def opened(window: RoundWindow) -> Iterator[RoundWindow]:
    """Within the block, the node's tasks retry within `window`."""
    token = _CURRENT.set(window)
    try:
        yield window
    finally:
        _CURRENT.reset(token)


def current() -> RoundWindow | None:
    """The round window the running flow opened, if any."""
    return _CURRENT.get()


def within_round(
    step: str, delays: Callable[[int], float], *, final: bool = False
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Make a task's transient failure end the run as "round closed while retrying" when its
    next retry (after `delays(attempt)` seconds) could not start before the step's deadline.

    `final` marks the steps of the upload (checking the round, uploading, submitting): they
    retry until the close, not the margin before it, and never start after it.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            window = current()
            if window is not None and final:
                window.check_open(step)
            try:
                return fn(*args, **kwargs)
            except NodeError as exc:
                if not exc.transient or window is None:
                    raise
                window.last_error = str(exc)
                attempt = max(int(task_run.run_count or 1), 1)
                if not window.allows(delays(attempt), final):
                    raise RoundClosed(window._closed_message(step)) from None
                raise

        return run

    return decorate
