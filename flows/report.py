"""Artifacts a run leaves in the Prefect UI: a summary, a per-era chart, a submission table, the
node's round history, and for a failed run, what went wrong."""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime

import httpx
import pandas as pd
from numerai_tools.scoring import numerai_corr
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import PrefectHTTPStatusError
from pydantic import BaseModel, Field

from flows.errors import NodeError
from flows.events import FAILURE_REASONS
from flows.history import artifact_key as _artifact_key
from flows.history import publish_history, read_history, validation_key, with_live_scores
from flows.keys import connect
from flows.node import SubmissionOutcome
from flows.steps import note_failed_step
from flows.validation import PredictionSummary
from models.signals import Coverage

_BAR_WIDTH = 24
_EXAMPLES = 5  # tickers named per coverage stage


class EraScores(BaseModel):
    """Validation correlation per era (numerai-tools `numerai_corr`) and its summary."""

    per_era: dict[str, float]
    mean: float
    std: float
    sharpe: float


def score_eras(frame: pd.DataFrame, target: str) -> EraScores:
    """Per-era `numerai_corr` of `prediction` against `target`; eras without targets are skipped."""
    scored = frame.dropna(subset=[target])
    per_era = scored.groupby("era", sort=True).apply(
        lambda era: float(numerai_corr(era[["prediction"]], era[target])["prediction"])
    )
    mean, std = float(per_era.mean()), float(per_era.std(ddof=0))
    return EraScores(
        per_era={str(era): float(value) for era, value in per_era.items()},
        mean=mean,
        std=std,
        sharpe=mean / std if std > 0 else math.nan,
    )


def era_chart(scores: EraScores) -> str:
    """A markdown bar chart of per-era correlation; it renders in the Prefect UI."""
    peak = max((abs(value) for value in scores.per_era.values()), default=0.0) or 1.0
    lines = ["| era | corr | |", "|---|---:|:---|"]
    for era, value in scores.per_era.items():
        bar = "█" * max(1, round(abs(value) / peak * _BAR_WIDTH))
        lines.append(f"| {era} | {value:+.4f} | {'🟥' if value < 0 else '🟩'} {bar} |")
    return "\n".join(lines)


_CACHED = "loaded from the model cache"


def summary(
    node: str,
    outcome: SubmissionOutcome,
    checked: PredictionSummary,
    scores: EraScores | None,
    trained: bool,
    coverage: Coverage | None = None,
    model_note: str | None = None,
) -> str:
    """The run's markdown summary; `model_note` says which model predicted, when it matters."""
    lines = [
        f"# {node}: round {outcome.round_number}",
        "",
        "| | |",
        "|---|---|",
        f"| Numerai model | `{outcome.model_name}` |",
        f"| Trigger id | `{outcome.trigger_id or 'none (manual or scheduled run)'}` |",
        f"| Submission | {outcome.status} `{outcome.submission_id or '-'}` |",
        f"| Model | {model_note or ('trained this run' if trained else _CACHED)} |",
        f"| Predictions | {checked.rows} rows for {checked.live_rows} live ids |",
    ]
    if coverage is not None:
        lines.append(f"| Coverage | {coverage.summary()} |")
    if scores is not None:
        lines += [
            "",
            "## Validation (numerai_corr per era)",
            "",
            "| mean | std | sharpe | eras |",
            "|---:|---:|---:|---:|",
            f"| {scores.mean:.4f} | {scores.std:.4f} | {scores.sharpe:.2f} "
            f"| {len(scores.per_era)} |",
        ]
    return "\n".join(lines)


def submission_rows(outcome: SubmissionOutcome, checked: PredictionSummary) -> list[dict]:
    """One row describing the submission, for a table artifact."""
    return [
        {
            "round": outcome.round_number,
            "model": outcome.model_name,
            "status": outcome.status,
            "submission_id": outcome.submission_id or "",
            "trigger_id": outcome.trigger_id or "",
            "rows": checked.rows,
            "min": round(checked.minimum, 6),
            "max": round(checked.maximum, 6),
            "mean": round(checked.mean, 6),
            "std": round(checked.std, 6),
            "file": outcome.predictions_path.name,
        }
    ]


def coverage_rows(coverage: Coverage, not_found: Collection[str] = ()) -> list[dict]:
    """The live universe stage by stage: how many tickers got through, and who fell out.

    not_found: Numerai tickers Yahoo had no prices for at all (unknown, delisted or failing);
    the other unpriced tickers had prices, but none recent enough (stale) on the live date.
    """
    missing = set(not_found)
    no_prices = [t for t in coverage.unpriced if t in missing]
    stale = [t for t in coverage.unpriced if t not in missing]
    stages = [
        ("live universe", coverage.universe, []),
        ("mapped to a Yahoo symbol", coverage.mapped, list(coverage.unmapped)),
        ("prices from Yahoo", coverage.mapped - len(no_prices), no_prices),
        ("a recent price on the live date", coverage.priced, stale),
        ("predicted", coverage.predicted, []),
    ]
    rows, previous = [], coverage.universe
    for stage, count, lost in stages:
        rows.append(
            {
                "stage": stage,
                "tickers": count,
                "dropped": previous - count,
                "examples": ", ".join(sorted(lost)[:_EXAMPLES])
                + (" …" if len(lost) > _EXAMPLES else ""),
            }
        )
        previous = count
    return rows


def publish_coverage(node: str, coverage: Coverage, not_found: Collection[str] = ()) -> None:
    """Publish the Signals coverage table (also when too few tickers stop the run)."""
    create_table_artifact(
        coverage_rows(coverage, not_found),
        key=f"{_artifact_key(node)}-coverage",
        description=f"{node}: {coverage.summary()}",
    )


@task(name="report", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def publish_report(
    node: str,
    outcome: SubmissionOutcome,
    checked: PredictionSummary,
    scores: EraScores | None,
    trained: bool,
    coverage: Coverage | None = None,
    *,
    tournament: int,
    model_id: str | None = None,
    model_note: str | None = None,
) -> None:
    """Publish the summary, the per-era chart, the submission table and the node's round
    history (model_id: the Numerai model's id, for its live scores) as Prefect artifacts."""
    key = _artifact_key(node)
    create_markdown_artifact(
        summary(node, outcome, checked, scores, trained, coverage, model_note),
        key=f"{key}-summary",
        description=f"{node}: round {outcome.round_number}",
    )
    if scores is not None:
        create_markdown_artifact(
            era_chart(scores), key=f"{key}-era-corr", description="Validation corr per era"
        )
        create_table_artifact(
            [{"era": era, "corr": value} for era, value in scores.per_era.items()],
            key=validation_key(node),
            description=f"{node}: validation corr per era, mean {scores.mean:+.4f}",
        )
    create_table_artifact(
        submission_rows(outcome, checked),
        key=f"{key}-submission",
        description=f"{node}: the submission",
    )
    _publish_history(node, outcome, tournament, model_id)


def _publish_history(
    node: str, outcome: SubmissionOutcome, tournament: int, model_id: str | None
) -> None:
    """Update the node's round history; reading it may fail, the run's submission stands."""
    try:
        history = read_history(node).with_submission(
            outcome.round_number, outcome.trigger_id, outcome.submission_id
        )
        if model_id is None:
            history.note = "No live scores: this run did not upload, so it had no model id."
        else:
            performances = connect(tournament).round_performances(model_id)
            history = with_live_scores(history, performances)
        publish_history(history)
    except (NodeError, httpx.HTTPError, PrefectHTTPStatusError) as exc:
        get_run_logger().warning("Could not publish the round history: %s", exc)


class FailureReport(BaseModel):
    """What went wrong in a node run, in words a user can act on; never holds a key."""

    node: str
    model: str
    round_number: int | None = Field(description="None: the run failed before the round was known.")
    trigger_id: str | None
    run_name: str | None
    step: str = Field(description="The step that failed: a task's name, or `start`.")
    reason: str = Field(description=f"Why, one of {', '.join(FAILURE_REASONS)}.")
    error: str = Field(description="The exception's class name.")
    message: str = Field(description="The error's message, on one line.")
    uploaded: str = Field(description="What was and was not uploaded and submitted.")
    next_action: str = Field(description="What the user can do now.")
    submission_id: str | None = None
    closes_at: datetime | None = Field(None, description="When the round closes, if known.")


def failure_summary(report: FailureReport) -> str:
    """The markdown of the "what went wrong" artifact."""
    round_text = f"round {report.round_number}" if report.round_number else "round unknown"
    closes = f"{report.closes_at:%Y-%m-%d %H:%M} UTC" if report.closes_at else "-"
    return "\n".join(
        [
            f"# {report.node}: {round_text} failed at `{report.step}`",
            "",
            f"**What went wrong:** {report.message}",
            "",
            f"**Uploaded:** {report.uploaded}",
            "",
            f"**Next:** {report.next_action}",
            "",
            "| | |",
            "|---|---|",
            f"| Step | `{report.step}` ({report.error}) |",
            f"| Numerai model | `{report.model}` |",
            f"| Trigger id | `{report.trigger_id or 'none (manual or scheduled run)'}` |",
            f"| Round closes | {closes} |",
            f"| Flow run | `{report.run_name or '-'}` |",
        ]
    )


def publish_failure(report: FailureReport) -> None:
    """Publish what went wrong under the node's summary key: its latest run's outcome, whatever
    it was, is what the key shows."""
    create_markdown_artifact(
        failure_summary(report),
        key=f"{_artifact_key(report.node)}-summary",
        description=f"{report.node}: failed at {report.step}",
    )
