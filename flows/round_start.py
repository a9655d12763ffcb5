"""How every node flow opens its round: the data source, the round, its window, who submits, and
whether the round already has its submission (then the run has nothing to do)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from flows import cache, window
from flows.announce import NodeRun
from flows.node import (
    DataSource,
    SubmissionOutcome,
    Submitter,
    resolve_round,
    round_submitted,
    round_window,
    submitter,
)
from flows.numerai import RoundInfo
from flows.tournaments import Tournament


@dataclass(frozen=True)
class RoundStart:
    """The open round as a node run sees it; `done` when the round is submitted already."""

    source: DataSource
    current: RoundInfo
    who: Submitter
    done: SubmissionOutcome | None


@contextlib.contextmanager
def round_start(
    run: NodeRun,
    *,
    tournament: Tournament,
    data_version: str | None,
    numerai_model: str,
    upload: bool,
    round_number: int | None,
    trigger_id: str | None,
    resubmit: bool,
) -> Iterator[RoundStart]:
    """Resolve the round and hold its window for the block (retries end at its close); a run for
    a round with a submission (this trigger id's, a fallback or a manual run's) gets `done`."""
    source = DataSource.from_settings(tournament, data_version)
    current = run.resolved(resolve_round(source, round_number))
    predictions_file = cache.predictions_path(
        source.data_dir, source.data_version, current.number, run.node
    )
    with window.opened(round_window(current)):
        who = submitter(source, numerai_model, upload, current.number, trigger_id, resubmit)
        done = round_submitted(source, who, predictions_file)
        yield RoundStart(source, current, who, None if done is None else run.submitted(done))
