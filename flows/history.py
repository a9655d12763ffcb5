"""A node's round history: per round, its run, its submission, the validation corr of the model
it used and Numerai's live scores. Read from the Prefect API (runs named `<node>-r<round>-…`,
`numerai.submission.created` events, the report's validation artifacts) and from Numerai; the
report step publishes it as the keyed artifact `<node>-history`, with a chart."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from prefect import get_client
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowFilter,
    FlowFilterId,
    FlowRunFilter,
    FlowRunFilterName,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events.filters import (
    EventFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)
from pydantic import BaseModel, Field

from flows import events
from flows.chart import history_svg, markdown_image
from flows.entrypoints import NODE_FLOWS
from flows.errors import ConfigurationError
from flows.numerai import RoundPerformance

ROUNDS = 20  # rounds shown unless asked otherwise
_RUNS = 200  # runs read per node (the API's most): a few per round
_EVENTS_PAGE = 50  # the API's most
_EVENTS_SINCE = timedelta(days=365)  # Prefect keeps events for days only; runs last longer


class RoundRow(BaseModel):
    """One round of one node."""

    node: str
    round: int
    trigger_id: str | None = Field(description="Numerai's trigger id; None: a manual run.")
    run_name: str | None = Field(description="The flow run that speaks for the round.")
    state: str | None = Field(description="Its state's name, e.g. Completed, Failed, Running.")
    duration_seconds: float | None = Field(description="Start to end; None while it runs.")
    runs: int = Field(description="How many runs the round had (retries, manual runs).")
    submitted_at: datetime | None = Field(description="When the submission was created.")
    submission_id: str | None
    validation_corr: float | None = Field(description="Mean per-era corr of the model used.")
    corr20: float | None = Field(None, description="Numerai's latest v2_corr20 for the round.")
    mmc: float | None = Field(None, description="Numerai's latest mmc for the round.")
    score_day: int | None = Field(None, description="The day of those scores (20: final).")
    resolved: bool = Field(False, description="Whether Numerai has resolved the round.")
    per_era: dict[str, float] | None = Field(None, exclude=True)


class NodeHistory(BaseModel):
    """A node's rounds, newest first, and what the live scores could not be read for."""

    node: str
    model: str | None = Field(description="The Numerai model the node submitted as.")
    tournament: int | None
    rows: list[RoundRow]
    note: str | None = Field(None, description="Why live scores are missing, if they are.")

    def with_submission(
        self, number: int, trigger_id: str | None, submission_id: str | None
    ) -> NodeHistory:
        """The history with the running node's own submission, which its event may not have
        reached the API with yet."""
        rows = [
            row.model_copy(
                update={
                    "trigger_id": trigger_id,
                    "submission_id": submission_id,
                    "submitted_at": datetime.now(UTC),
                }
            )
            if row.round == number and row.submission_id is None and submission_id
            else row
            for row in self.rows
        ]
        return self.model_copy(update={"rows": rows})


def history_key(node: str) -> str:
    return f"{artifact_key(node)}-history"


def validation_key(node: str) -> str:
    return f"{artifact_key(node)}-validation"


def artifact_key(node: str) -> str:
    """Artifact keys allow lowercase letters, digits and dashes only."""
    cleaned = "".join(ch if ch.isalnum() else "-" for ch in node.lower()).strip("-")
    return cleaned or "node"


def read_history(node: str, rounds: int = ROUNDS) -> NodeHistory:
    """The node's last `rounds` rounds as the Prefect API knows them (no live scores yet)."""
    try:
        resource_id = events.node_resource_id(node)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    pattern = re.compile(rf"^{re.escape(node)}-r(\d+)-")
    with get_client(sync_client=True) as client:
        found = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=f"{node}-r")),
            sort=FlowRunSort.START_TIME_DESC,
            limit=_RUNS,
        )
        runs = [(int(m.group(1)), run) for run in found if (m := pattern.match(run.name))]
        since = datetime.now(UTC) - _EVENTS_SINCE
        page = client.read_events(
            filter=EventFilter(
                event=EventNameFilter(name=[events.SUBMISSION_CREATED]),
                resource=EventResourceFilter(id=[resource_id]),
                occurred=EventOccurredFilter(since=since),
            ),
            limit=_EVENTS_PAGE,
        )
        submitted = list(page.events)
        # newest first, a page at a time: enough pages for the rounds asked for
        while page.next_page is not None and len(submitted) < 2 * rounds:
            page = client.read_events_page(str(page.next_page))
            submitted += page.events
        validation = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[validation_key(node)]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.id for _, run in runs]),
            )
        )
        flow_ids = sorted({run.flow_id for _, run in runs}, key=str)
        flows = client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=flow_ids)))
    by_round: dict[int, dict] = {}
    for event in sorted(submitted, key=lambda e: e.occurred):
        labels = dict(event.resource.items())
        if (number := labels.get(events.ROUND_LABEL, "")).isdigit():
            by_round[int(number)] = {"event": event, "model": labels.get(events.MODEL_LABEL)}
    per_era = {a.flow_run_id: _per_era(a.data) for a in validation}
    numbers = sorted({n for n, _ in runs} | set(by_round), reverse=True)[:rounds]
    rows = [
        _row(node, n, [r for k, r in runs if k == n], by_round.get(n), per_era) for n in numbers
    ]
    names = {flow.name for flow in flows}
    tournaments = {f.tournament for f in NODE_FLOWS.values() if f.flow_name in names}
    models = [seen["model"] for _, seen in sorted(by_round.items()) if seen["model"]]
    return NodeHistory(
        node=node,
        model=models[-1] if models else None,
        tournament=tournaments.pop() if len(tournaments) == 1 else None,
        rows=rows,
    )


def with_live_scores(history: NodeHistory, performances: Iterable[RoundPerformance]) -> NodeHistory:
    """The history with Numerai's scores filled in for the rounds it has them for."""
    scored = {p.round: p for p in performances}
    rows = []
    for row in history.rows:
        found = scored.get(row.round)
        if found is not None:
            row = row.model_copy(
                update={
                    "corr20": found.scores.get("v2_corr20"),
                    "mmc": found.scores.get("mmc"),
                    "score_day": found.day,
                    "resolved": found.resolved,
                }
            )
        rows.append(row)
    return history.model_copy(update={"rows": rows})


def history_markdown(history: NodeHistory) -> str:
    """The history artifact: the chart, then one table row per round."""
    latest = next((row.per_era for row in history.rows if row.per_era), None) or {}
    live = [
        (
            row.round,
            {k: v for k, v in (("v2_corr20", row.corr20), ("mmc", row.mmc)) if v is not None},
        )
        for row in reversed(history.rows)
    ]
    lines = [
        f"# {history.node}: round history",
        "",
        f"Numerai model `{history.model or '-'}`; the chart shows the latest model's validation "
        "corr per era and Numerai's live scores per round.",
        "",
        markdown_image(history_svg(latest, live), f"{history.node} history chart"),
        "",
        "| round | trigger | state | duration | submitted (UTC) | val corr | corr20 | mmc "
        "| scores |",
        "|---:|---|---|---:|---|---:|---:|---:|---|",
    ]
    lines += [
        f"| {row.round} | `{(row.trigger_id or 'manual')[:8]}` | {row.state or '-'} "
        f"| {_duration(row.duration_seconds)} | {_when(row.submitted_at)} "
        f"| {_number(row.validation_corr)} | {_number(row.corr20)} | {_number(row.mmc)} "
        f"| {score_status(row)} |"
        for row in history.rows
    ]
    if history.note:
        lines += ["", f"_{history.note}_"]
    return "\n".join(lines)


def publish_history(history: NodeHistory) -> UUID:
    """Publish (or update) the node's keyed history artifact; returns the new version's id."""
    published = create_markdown_artifact(
        history_markdown(history),
        key=history_key(history.node),
        description=f"{history.node}: the last {len(history.rows)} rounds",
    )
    assert isinstance(published, UUID), "a sync caller gets the artifact id, never a coroutine"
    return published


def score_status(row: RoundRow) -> str:
    """`resolved`, `day 3`, or `-` when Numerai has no score yet."""
    if row.resolved:
        return "resolved"
    return f"day {row.score_day}" if row.score_day else "-"


def _row(
    node: str,
    number: int,
    runs: list[FlowRun],
    seen: dict | None,
    per_era: dict[UUID | None, dict[str, float]],
) -> RoundRow:
    event = seen["event"] if seen else None
    trigger = event.resource.get(events.TRIGGER_ID_LABEL) if event else None
    # The run that submitted speaks for the round; without one, the latest.
    run = next((r for r in runs if trigger and r.parameters.get("trigger_id") == trigger), None)
    run = run or (runs[0] if runs else None)
    scores = next((per_era[r.id] for r in runs if r.id in per_era), None)
    duration = None
    if run is not None and run.start_time and run.end_time:
        duration = (run.end_time - run.start_time).total_seconds()
    return RoundRow(
        node=node,
        round=number,
        trigger_id=trigger or (run.parameters.get("trigger_id") if run else None),
        run_name=run.name if run else None,
        state=run.state.name if run and run.state else None,
        duration_seconds=duration,
        runs=len(runs),
        submitted_at=event.occurred if event else None,
        submission_id=event.resource.get(events.SUBMISSION_ID_LABEL) if event else None,
        validation_corr=sum(scores.values()) / len(scores) if scores else None,
        per_era=scores,
    )


def _live(row: RoundRow) -> dict[str, float]:
    scores = {"v2_corr20": row.corr20, "mmc": row.mmc}
    return {name: value for name, value in scores.items() if value is not None}


def _per_era(data: object) -> dict[str, float]:
    """A validation table artifact's rows back as {era: corr}."""
    rows = json.loads(data) if isinstance(data, str) else data
    if not isinstance(rows, list):
        return {}
    return {str(row["era"]): float(row["corr"]) for row in rows}


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def _when(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%m-%d %H:%M}" if moment else "-"


def _number(value: float | None) -> str:
    return f"{value:+.4f}" if value is not None else "-"
