"""Following one flow run live through Prefect's event and log subscribers: its states and
names, every log line in order until its logs are complete, and the step and cause of a failure.

The states come from the run's events (`/api/events/out`, which backfills the last minute), the
lines from the logs stream (`/api/logs/out`, live only: lines written before it connected, or
while a server does not stream logs, are read through the API). Logs are sent in batches by each
process (worker, flow run), so a line is held a moment for earlier lines of another process and
shown in timestamp order. Lines arrive after the run's final state: following ends once none has
come for a few seconds and the API holds no line that was not shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTimestamp
from prefect.client.schemas.objects import FlowRun, Log
from prefect.client.schemas.sorting import LogSort
from prefect.events import Event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter
from prefect.exceptions import ObjectNotFound
from prefect.logging.clients import get_logs_subscriber

from deployments.runs import TERMINAL, WAITING, RunStuck, RunTimeout
from flows import events as node_events
from flows.errors import NodeError

_FLOW_RUN = "prefect.flow-run."
_TASK_RUN = "prefect.task-run."
_TRACEBACK = "Traceback (most recent call last):"
# How Prefect words a flow run's failure state: "Flow run encountered an exception: Kind: text".
_EXCEPTION = re.compile(r"(?:Flow|Task) run encountered an exception:?\s+(\w+):\s*(.*)", re.S)
_PAGE = 200  # the most logs the API returns in one answer
_RECENT = timedelta(minutes=1)  # far longer than any process holds its lines before sending
_order = itertools.count()  # ties of time keep the order things arrived in

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LogLine:
    """One log record of the run; `task` is the task run that wrote it (None: flow or worker)."""

    at: datetime
    level: int
    text: str
    task: str | None = None

    def shown(self, verbose: bool = False) -> str:
        """The text to show: all of it with `verbose`; else an error's or traceback's first line
        (Prefect puts the traceback in the record's text, after the first line)."""
        text = self.text.rstrip()
        if verbose or (self.level < logging.ERROR and _TRACEBACK not in text):
            return text
        return text.split("\n", 1)[0]


@dataclass(frozen=True)
class StateChange:
    """The run entered a state of another type; `run_name` is its name then, and `renamed` says
    whether that name is new since the last state shown (the flow renames its run as it goes)."""

    at: datetime
    name: str
    type: str
    run_name: str
    renamed: bool = False


RunEvent = LogLine | StateChange


@dataclass(frozen=True)
class Failure:
    """Why the run failed: the step (task) that failed, the one-line cause, whether expected."""

    step: str | None
    message: str
    expected: bool


@dataclass(frozen=True)
class RunEnd:
    """How the followed run ended: its final name and state, and for a failure, why."""

    name: str
    state_name: str
    state_type: str
    failure: Failure | None = None


@dataclass(frozen=True)
class Limits:
    """How long to wait for each part of following a run, in seconds."""

    finish: float = 1800.0  # the run, from the first look to its final state
    start: float = 60.0  # the run, to leave Scheduled or Pending (a worker took it)
    hold: float = 2.0  # a line, for earlier lines of another process (each sends every 2 s)
    settle: float = 4.0  # the logs after the final state: this long without a new line
    drain: float = 30.0  # the logs after the final state, at most
    check: float = 10.0  # between reads of the run itself, should its events be missed


def follow_run(
    flow_run: FlowRun,
    on_event: Callable[[RunEvent], None],
    limits: Limits = Limits(),
    clock: Callable[[], float] = time.monotonic,
) -> RunEnd:
    """Show the run's later states and its log lines through `on_event` until it and its logs
    end; `flow_run` is the run as last read, its state and name already known to the caller.

    Raises `RunStuck` when no worker took it within `limits.start`, `RunTimeout` when it has not
    ended within `limits.finish`.
    """
    return asyncio.run(_follow(flow_run, on_event, limits, clock))


async def _follow(
    flow_run: FlowRun,
    on_event: Callable[[RunEvent], None],
    limits: Limits,
    clock: Callable[[], float],
) -> RunEnd:
    run = _Run(flow_run.id)
    run.know(flow_run)
    inbox: asyncio.Queue[Event | Log] = asyncio.Queue()
    async with get_client() as client, contextlib.AsyncExitStack() as stack:
        streams = [
            await _subscribe(stack, get_events_subscriber(filter=_events_of(run.id)), "events"),
            await _subscribe(stack, get_logs_subscriber(filter=_logs_of(run.id)), "logs"),
        ]
        # A line written this long after the logs stream connected should have come through it.
        run.streamed_after = datetime.now(UTC) + timedelta(seconds=2 * limits.hold)
        pumps = [asyncio.create_task(_pump(s, inbox)) for s in streams if s is not None]
        try:
            return await _watch(client, run, inbox, pumps, on_event, limits, clock)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)


async def _watch(
    client: PrefectClient,
    run: _Run,
    inbox: asyncio.Queue[Event | Log],
    pumps: list[asyncio.Task],
    on_event: Callable[[RunEvent], None],
    limits: Limits,
    clock: Callable[[], float],
) -> RunEnd:
    """Pass on what the streams bring until the run has ended and its logs are complete."""
    started = checked = clock()
    run.apply(await client.read_flow_run(run.id), started)
    await _read_logs(client, run, started)  # lines written before the logs stream connected
    while True:
        item = await _next(inbox, timeout=0.25)
        now = clock()
        if isinstance(item, Log):
            run.add_log(item, now, streamed=True)
        elif isinstance(item, Event) and run.add_event(item, now):
            await _read_logs(client, run, now)  # a new state: any line the stream lost
        streaming = len(pumps) == 2 and not any(p.done() for p in pumps) and not run.silent
        if now - checked >= (limits.check if streaming else 1.0):
            checked = now  # a safety net; without both streams, the way to follow at all
            run.apply(await client.read_flow_run(run.id), now)
            if not streaming:
                await _read_logs(client, run, now)
        # Lines read through the API come up to a read and a batch later than streamed ones.
        hold = limits.hold if streaming else limits.hold + 2.0
        for event in await run.due(client, now, hold):
            on_event(event)
        if run.ended_at is None:
            await _check_time(client, run, now - started, limits)
            continue
        quiet = now - max(run.ended_at, run.last_line_at) >= limits.settle
        drained = now - run.ended_at >= limits.drain
        # Complete: no new line for a while and none in the API that was not shown (or no time).
        if (quiet or drained) and (not await _read_logs(client, run, now, False) or drained):
            run.apply(await client.read_flow_run(run.id), now)  # its latest name
            for event in await run.due(client, now, hold=0):
                on_event(event)
            return run.end()


async def _check_time(client: PrefectClient, run: _Run, waited: float, limits: Limits) -> None:
    if run.state_type in WAITING and waited > limits.start:
        raise RunStuck(await client.read_flow_run(run.id), limits.start)
    if waited > limits.finish:
        raise RunTimeout(await client.read_flow_run(run.id), limits.finish)


def _events_of(run_id: UUID) -> EventFilter:
    """The run's state events, its task runs' (their names) and the node's failure event."""
    return EventFilter(
        any_resource=EventAnyResourceFilter(id=[f"{_FLOW_RUN}{run_id}"]),
        event=EventNameFilter(prefix=[_FLOW_RUN, _TASK_RUN, node_events.SUBMISSION_FAILED]),
    )


def _logs_of(run_id: UUID) -> LogFilter:
    return LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id]))


async def _subscribe(stack: contextlib.AsyncExitStack, subscriber, what: str):
    """The entered subscriber, or None when this server does not serve its stream (followed
    then by reading the run and its logs through the API)."""
    try:
        return await stack.enter_async_context(subscriber)
    except Exception as exc:  # a proxy without websockets, an old server: follow without
        logger.debug("No %s stream from the Prefect API: %s", what, exc)
        return None


async def _pump(subscriber: AsyncIterator[Event | Log], inbox: asyncio.Queue) -> None:
    async for item in subscriber:
        await inbox.put(item)


async def _next(inbox: asyncio.Queue, timeout: float) -> Event | Log | None:
    try:
        return await asyncio.wait_for(inbox.get(), timeout)
    except TimeoutError:
        return None


async def _read_logs(client: PrefectClient, run: _Run, now: float, recent: bool = True) -> int:
    """Add the run's stored lines not seen yet (read through the API); returns how many. Only
    the lines of the last minute before the newest seen, if `recent`; else every line."""
    log_filter = _logs_of(run.id)
    if recent and run.newest is not None:
        log_filter.timestamp = LogFilterTimestamp(after_=run.newest - _RECENT)
    new, offset = 0, 0
    while True:
        page = await client.read_logs(
            log_filter=log_filter, sort=LogSort.TIMESTAMP_ASC, limit=_PAGE, offset=offset
        )
        new += sum(run.add_log(log, now) for log in page)
        if len(page) < _PAGE:
            return new
        offset += len(page)


@dataclass
class _Held:
    at: datetime
    order: int
    arrived: float
    item: Log | StateChange


@dataclass
class _Run:
    """What is known of the run so far, and the lines and states not shown yet."""

    id: UUID
    name: str = ""
    state_name: str = ""
    state_type: str = ""
    state_message: str = ""
    state_at: datetime | None = None
    states: set[datetime] = field(default_factory=set)
    shown_type: str = ""
    shown_name: str = ""
    ended_at: float | None = None
    last_line_at: float = 0.0
    newest: datetime | None = None  # the time of the newest line seen
    streamed: int = 0  # lines that came through the logs stream
    streamed_after: datetime | None = None
    silent: bool = False  # the logs stream brings nothing: lines are read through the API
    failure_event: Failure | None = None
    failed_tasks: list[tuple[datetime, str]] = field(default_factory=list)
    tasks: dict[UUID, str] = field(default_factory=dict)
    seen: set[UUID] = field(default_factory=set)
    held: list[_Held] = field(default_factory=list)

    def add_log(self, log: Log, now: float, streamed: bool = False) -> bool:
        if log.id is None or log.id in self.seen or log.flow_run_id != self.id:
            return False
        self.seen.add(log.id)
        self.newest = max(self.newest or log.timestamp, log.timestamp)
        self.streamed += streamed
        if not self.streamed and self.streamed_after and log.timestamp > self.streamed_after:
            self.silent = True  # a server that does not stream logs (a setting of its own)
        self.last_line_at = now
        self.held.append(_Held(log.timestamp, next(_order), now, log))
        return True

    def add_event(self, event: Event, now: float) -> bool:
        """Note `event`; True when it is a new state of the run."""
        resource = event.resource
        if event.event == node_events.SUBMISSION_FAILED:
            self.failure_event = Failure(
                step=resource.get(node_events.STEP_LABEL),
                message=str(event.payload.get("message") or ""),
                expected=resource.get(node_events.FAILURE_LABEL) != node_events.UNEXPECTED,
            )
        elif resource.id.startswith(_TASK_RUN) and resource.name:
            self.tasks[UUID(resource.id.removeprefix(_TASK_RUN))] = resource.name
            if resource.get("prefect.state-type") == "FAILED":
                self.failed_tasks.append((event.occurred, resource.name))
        elif resource.id == f"{_FLOW_RUN}{self.id}" and resource.get("prefect.state-type"):
            return self._state(
                event.occurred,
                resource.get("prefect.state-name") or "",
                resource.get("prefect.state-type") or "",
                resource.name or self.name,
                resource.get("prefect.state-message") or "",
                now,
            )
        return False

    def know(self, flow_run: FlowRun) -> None:
        """Start from `flow_run` as the caller has shown it: its name and state, not shown again."""
        self.apply(flow_run, 0.0)
        self.held.clear()
        self.shown_type, self.shown_name = self.state_type, self.name

    def apply(self, flow_run: FlowRun, now: float) -> None:
        """Note what reading the run itself shows: its name, and a state the events missed."""
        self.name = flow_run.name
        state = flow_run.state
        if state is not None:
            name = state.name or state.type.value.title()
            self._state(state.timestamp, name, state.type.value, flow_run.name, state.message, now)

    def _state(
        self, at: datetime, name: str, kind: str, run_name: str, message: str | None, now: float
    ) -> bool:
        if at in self.states:
            return False  # seen already (a backfilled event, or the run read after its event)
        self.states.add(at)
        self.held.append(_Held(at, next(_order), now, StateChange(at, name, kind, run_name)))
        if self.state_at is not None and at < self.state_at:
            return True  # an earlier state, backfilled: shown in its place, not the current one
        self.state_at, self.state_name, self.state_type = at, name, kind
        self.state_message, self.name = message or "", run_name
        if kind in TERMINAL:
            self.ended_at = now
        return True

    async def due(self, client: PrefectClient, now: float, hold: float) -> list[RunEvent]:
        """The held lines and states to show now, in time order: those held `hold` seconds, and
        every one before the latest of them."""
        expired = [held for held in self.held if now - held.arrived >= hold]
        if not expired:
            return []
        cutoff = max(held.at for held in expired)
        ready = sorted((h for h in self.held if h.at <= cutoff), key=lambda h: (h.at, h.order))
        self.held = [held for held in self.held if held.at > cutoff]
        events = [await self._event(client, held.item) for held in ready]
        return [event for event in events if event is not None]

    async def _event(self, client: PrefectClient, item: Log | StateChange) -> RunEvent | None:
        if isinstance(item, StateChange):
            if item.type == self.shown_type:
                return None  # Pending, then Submitting: one step for the reader
            renamed = item.run_name != self.shown_name
            self.shown_type, self.shown_name = item.type, item.run_name
            return replace(item, renamed=renamed)
        task = None
        if item.task_run_id is not None:
            task = self.tasks.get(item.task_run_id) or await _task_name(client, item.task_run_id)
            self.tasks[item.task_run_id] = task
        return LogLine(item.timestamp, item.level, item.message, task)

    def end(self) -> RunEnd:
        failure = None
        if self.state_type != "COMPLETED":
            failure = self.failure_event or self._failure_from_states()
        return RunEnd(self.name, self.state_name, self.state_type, failure)

    def _failure_from_states(self) -> Failure:
        """Without the node's failure event (a crash, a flow outside node_run): the first task
        that failed, and the cause as the final state words it."""
        step = min(self.failed_tasks)[1] if self.failed_tasks else None
        found = _EXCEPTION.match(self.state_message)
        if found is None:
            return Failure(step, self.state_message or self.state_name, expected=False)
        kind, text = found.groups()
        expected = kind in _expected_errors()
        return Failure(step, " ".join(text.split()) if expected else f"{kind}: {text}", expected)


async def _task_name(client: PrefectClient, task_run_id: UUID) -> str:
    try:
        return (await client.read_task_run(task_run_id)).name
    except ObjectNotFound:  # task runs are recorded from their events, which may come later
        return "task"


def _expected_errors() -> set[str]:
    """The names of every NodeError subclass loaded here."""
    names, todo = set(), [NodeError]
    while todo:
        kind = todo.pop()
        names.add(kind.__name__)
        todo.extend(kind.__subclasses__())
    return names
