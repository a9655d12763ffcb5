"""What a node run tells the world beyond its logs: its name, its events, and what went wrong.

A node flow runs its steps inside `node_run(...)`:
- once the round is known, the run is renamed `<node>-r<round>-<trigger>` (`NodeRun.resolved`);
- each submission outcome is an event on the node's resource (`NodeRun.submitted`):
  `numerai.submission.created`, or `.exists` when the round already had one;
- a failure publishes a "what went wrong" artifact and a `numerai.submission.failed` event (the
  step, the one-line message, what was and was not uploaded, the next action), then goes on up.

The alert automations (deployments/alerts.py) listen to these events.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import httpx
from prefect import get_client, get_run_logger
from prefect.events import emit_event
from prefect.exceptions import PrefectHTTPStatusError
from prefect.runtime import flow_run

from flows import events
from flows.errors import NodeError, RoundClosed
from flows.keys import load_keys
from flows.node import SubmissionOutcome, submit, upload_predictions
from flows.numerai import RoundInfo
from flows.report import FailureReport, publish_failure
from flows.settings import load_settings
from flows.steps import failed_step

# Long enough for any NodeError's message; an unexpected error is cut to its first line.
_MAX_MESSAGE = 1000
_REDACTED = "****"


def run_title(node: str, round_number: int, trigger_id: str | None) -> str:
    """A node run's name once its round is known: `tournament-r1001-3f2a9c1b`, or `-manual`."""
    return f"{node}-r{round_number}-{(trigger_id or '')[:8] or 'manual'}"


@dataclass
class NodeRun:
    """One node run as the world sees it: which node, model and trigger, and how far it got."""

    node: str
    model: str
    trigger_id: str | None
    round_number: int | None = None
    closes_at: datetime | None = None
    outcome: SubmissionOutcome | None = None
    run_name: str | None = None

    def resolved(self, current: RoundInfo) -> RoundInfo:
        """Note the round and rename the flow run after it; returns `current`."""
        self.round_number, self.closes_at = current.number, current.close_staking_time
        self.run_name = rename_run(run_title(self.node, current.number, self.trigger_id))
        return current

    def submitted(self, outcome: SubmissionOutcome) -> SubmissionOutcome:
        """Send the submission's event (none when upload is off); returns `outcome`."""
        self.outcome = outcome
        name = {
            "submitted": events.SUBMISSION_CREATED,
            "already-submitted": events.SUBMISSION_EXISTS,
        }.get(outcome.status)
        if name is not None:
            _emit(name, self, submission_id=outcome.submission_id, status=outcome.status)
        return outcome

    def stale_model(self, spec: str, wanted: str, used: str, data_version: str) -> None:
        """Send the stale-model event: the run predicts with its family's last good model."""
        _emit(
            events.MODEL_STALE,
            self,
            spec=spec,
            wanted_key=wanted,
            used_key=used,
            used_data_version=data_version,
        )


@contextlib.contextmanager
def node_run(
    node: str, model: str, trigger_id: str | None, round_number: int | None = None
) -> Iterator[NodeRun]:
    """The body of a node flow: a failure inside is reported (artifact and event), then raised."""
    run = NodeRun(node, model, trigger_id, round_number, run_name=flow_run.name)
    try:
        yield run
    except Exception as failure:
        report_failure(describe_failure(run, failure))
        raise


def rename_run(title: str) -> str | None:
    """Rename the running flow run to `title`; returns the name it now has (None: no run)."""
    run_id = flow_run.id
    if run_id is None:
        return None
    try:
        with get_client(sync_client=True) as client:
            client.update_flow_run(run_id, name=title)
    except (httpx.HTTPError, PrefectHTTPStatusError) as exc:  # a name is not worth a failed run
        get_run_logger().warning("Could not rename the run to %s: %s", title, exc)
        return flow_run.name
    return title


def describe_failure(run: NodeRun, failure: BaseException) -> FailureReport:
    """The report of `failure` in `run`: step, reason, one-line message, uploads, next action."""
    step = failed_step(failure)
    if isinstance(failure, RoundClosed):
        reason = events.ROUND_CLOSED
    elif isinstance(failure, NodeError):
        reason = events.EXPECTED
    else:
        reason = events.UNEXPECTED
    return FailureReport(
        node=run.node,
        model=run.model,
        round_number=run.round_number,
        trigger_id=run.trigger_id,
        run_name=run.run_name,
        step=step,
        reason=reason,
        error=type(failure).__name__,
        message=one_line(failure),
        uploaded=_uploaded(run.outcome, step),
        next_action=_next_action(run, reason),
        submission_id=run.outcome.submission_id if run.outcome else None,
        closes_at=run.closes_at,
    )


def one_line(failure: BaseException, secrets: tuple[str, ...] | None = None) -> str:
    """The failure's message on one line, any key in it masked; an unexpected error's first
    line, after its class name (an expected failure's message is written for the user)."""
    text = str(failure).strip()
    if not isinstance(failure, NodeError):
        first = text.splitlines()[0] if text else ""
        text = f"{type(failure).__name__}: {first}" if first else type(failure).__name__
    text = " ".join(text.split())
    for secret in secrets if secrets is not None else _keys():
        if secret:
            text = text.replace(secret, _REDACTED)
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def report_failure(report: FailureReport) -> None:
    """Publish the "what went wrong" artifact and send the failure event.

    Neither may hide the failure itself: a problem publishing them is logged, and the run fails
    with its own error.
    """
    logger = get_run_logger()
    try:
        publish_failure(report)
    except Exception:  # the run's own error is what matters; this is only its report
        logger.warning("Could not publish the what-went-wrong artifact", exc_info=True)
    _emit(
        events.SUBMISSION_FAILED,
        report,
        failure=report.reason,
        step=report.step,
        error=report.error,
        message=report.message,
        uploaded=report.uploaded,
        next_action=report.next_action,
    )


def _emit(name: str, about: NodeRun | FailureReport, **details: str | None) -> None:
    """Send event `name` on the node's resource; the payload repeats the labels, typed."""
    round_number = about.round_number
    common: dict[str, object] = {
        "node": about.node,
        "model": about.model,
        "round": round_number,
        "trigger_id": about.trigger_id,
        "flow_run": about.run_name,
    }
    try:
        resource = events.node_resource(
            about.node,
            model=about.model,
            round=round_number,
            trigger_id=about.trigger_id,
            submission_id=details.get("submission_id"),
            failure=details.get("failure"),
            step=details.get("step"),
        )
    except ValueError as exc:  # a node name outside the contract (an ad-hoc in-process run)
        logging.getLogger(__name__).warning("No %s event: %s", name, exc)
        return
    emit_event(event=name, resource=resource, payload={**common, **details})


def _uploaded(outcome: SubmissionOutcome | None, step: str) -> str:
    if outcome is not None and outcome.status == "submitted":
        return (
            f"Submitted: submission {outcome.submission_id} was created before the failure; "
            "only a step after it failed."
        )
    if outcome is not None and outcome.status == "already-submitted":
        return f"Nothing was uploaded: the round already had submission {outcome.submission_id}."
    if step == upload_predictions.name:
        return "Nothing was submitted: the predictions file was not uploaded."
    if step == submit.name:
        return (
            "The predictions file was uploaded, but no submission was created from it: the "
            "round has no submission from this run."
        )
    return "Nothing was uploaded or submitted."


def _next_action(run: NodeRun, reason: str) -> str:
    if reason == events.ROUND_CLOSED:
        return (
            "Nothing more can be submitted for this round. The next round's webhook runs the "
            "node again; if rounds keep closing while a step retries, the message above names "
            "the error that kept failing."
        )
    closes = f" (it closes at {run.closes_at:%H:%M} UTC)" if run.closes_at else ""
    again = f"`numerai-nodes node test {run.node}` runs it through its deployment."
    if reason == events.EXPECTED:
        return (
            "Fix what the message names, then run the node again before the round closes"
            f"{closes}: {again}"
        )
    return (
        "An unexpected error (a bug, or a library failing): the run's logs hold the traceback. "
        f"Once it is fixed, run the node again before the round closes{closes}: {again}"
    )


def _keys() -> tuple[str, ...]:
    """The Numerai keys this run may hold, to mask in anything it sends out."""
    try:
        public_id, secret_key = load_keys(load_settings())
    except Exception:  # no keys to mask beats no failure report
        return ()
    return tuple(key for key in (public_id, secret_key) if key)
