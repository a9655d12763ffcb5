"""Machinery every node shares: the data source, round resolution, downloads and the submit step."""

from __future__ import annotations

import ast
import hashlib
import importlib.machinery
import importlib.util
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypedDict, runtime_checkable

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from flows import cache, files
from flows.errors import (
    ConfigurationError,
    DatasetNotFound,
    NodeError,
    RoundClosed,
    TooManyRestarts,
)
from flows.keys import connect
from flows.numerai import RoundInfo, Submission
from flows.settings import load_settings
from flows.steps import note_failed_step
from flows.tournaments import TOURNAMENT_HELP, Tournament
from flows.window import RoundWindow, within_round
from flows.window import current as current_window

if TYPE_CHECKING:
    from prefect import Task
    from prefect.client.schemas.objects import TaskRun
    from prefect.states import State


class DataSource(BaseModel):
    """Which Numerai API and data a node reads. Never holds keys."""

    api_url: str = Field(description="Numerai's GraphQL endpoint.")
    tournament: Tournament = Field(description=f"Numerai tournament id: {TOURNAMENT_HELP}.")
    data_version: str = Field(description="Dataset version prefix, e.g. v5.2.")
    data_dir: Path = Field(description="Local data cache for this API.")

    @classmethod
    def from_settings(cls, tournament: int, data_version: str | None) -> DataSource:
        """The API and cache of the settings; without a pinned version, the newest served."""
        settings = load_settings()
        return cls(
            api_url=settings.api_url,
            tournament=tournament,
            data_version=data_version or newest_data_version(Tournament(tournament)),
            data_dir=settings.data_dir,
        )


class NodeSettings(BaseModel):
    """Settings every node has; each node's settings model adds its own."""

    params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Overrides of the model module's DEFAULT_PARAMS."
    )
    score_validation: bool = Field(
        True, description="Score the model on the validation data, for the report."
    )
    upload: bool = Field(
        True, description="Upload to Numerai. Off: only write the predictions file."
    )


Status = Literal["submitted", "already-submitted", "not-uploaded"]


class SubmissionOutcome(BaseModel):
    """What the submit step did."""

    status: Status
    submission_id: str | None = None
    predictions_path: Path
    model_name: str
    round_number: int
    trigger_id: str | None = None


@runtime_checkable
class _Named(Protocol):
    name: str


def run_name() -> str:
    """A flow run's name: the node's name and the trigger id (or "manual")."""
    node = flow_run.parameters.get("node")
    name = node.name if isinstance(node, _Named) else (node or {}).get("name", "node")
    trigger = flow_run.parameters.get("trigger_id") or "manual"
    return f"{name}-{trigger}"


def spec_key(prefix: str, spec: dict) -> str:
    """A cache key for everything that shapes a result: the same spec, the same key."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    return f"{prefix}-{digest[:40]}"


def code_digest(module: ModuleType) -> str:
    """A hash of a model module's source and of every module of the user's own code it imports
    (directly or not), so editing a helper the model uses retrains it too.

    "The user's own code" is what lives beside the module's top-level package (the project
    directory); installed packages are left out: their versions are in the cache key elsewhere
    where they shape the model.
    """
    digest = hashlib.sha256()
    for path in sorted(_own_sources(module)):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _own_sources(module: ModuleType) -> set[Path]:
    """The source files of `module` and of the project modules it imports, transitively."""
    origin = Path(inspect.getfile(module)).resolve()
    depth = module.__name__.count(".") + (1 if origin.name == "__init__.py" else 0)
    project = origin.parents[depth]
    found: set[Path] = set()
    pending = [origin]
    while pending:
        path = pending.pop()
        if path in found:
            continue
        found.add(path)
        for name in _imported_names(path):
            spec = _find_spec(name)
            source = Path(spec.origin).resolve() if spec and spec.origin else None
            if (
                source is not None
                and source.suffix == ".py"
                and source.is_relative_to(project)
                and "site-packages" not in source.parts
            ):
                pending.append(source)
    return found


def _imported_names(path: Path) -> set[str]:
    """The absolute module names a source file imports (`from a.b import c` gives a.b, a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):  # `from pkg import function`: not a module
        return None


def retry_delay_scale() -> float:
    """The `retry_delay_scale` setting, read when a retry happens: a test sets 0."""
    return load_settings().retry_delay_scale


class RetryDelays(list[float]):
    """Retry delays in seconds, scaled at retry time by NUMERAI_NODES_RETRY_DELAY_SCALE.

    Prefect reads a task's delays when a retry happens; the scale lets a rehearsal or a test
    shorten them (0 retries at once) without changing the declared policy.
    """

    def __getitem__(self, index):
        return super().__getitem__(index) * retry_delay_scale()


# Backoff between tries; the last one repeats. The round's close, not a count, ends the tries
# (flows.window), and Prefect adds up to RETRY_JITTER of each delay at random.
RETRY_DELAYS = RetryDelays([2, 5, 10, 20, 30, 60])
RETRY_JITTER = 0.2
MAX_RETRIES = 200


def next_retry_delay(attempt: int) -> float:
    """The longest wait before retry number `attempt` (1: after the first failure), jitter in."""
    return RETRY_DELAYS[min(attempt, len(RETRY_DELAYS)) - 1] * (1 + RETRY_JITTER)


def retry_transient(task: Task[..., Any], task_run: TaskRun, state: State) -> bool:
    """Retry network hiccups; an expected failure (bad keys, closed round...) fails at once."""
    if task_run.run_count > load_settings().max_retries:
        return False
    try:
        state.result()
    except NodeError as exc:
        return exc.transient
    except Exception:
        return True
    return False


class _RetryOptions(TypedDict):
    """The `@task` options every Numerai call shares (retries, and the hook that names a failed
    step), typed so mypy checks them."""

    retries: int
    retry_delay_seconds: list[float]
    retry_jitter_factor: float
    retry_condition_fn: Callable[[Task[..., Any], TaskRun, State], bool]
    on_failure: list[Callable[[Task[..., Any], TaskRun, State], Awaitable[None] | None]]


_RETRIES: _RetryOptions = {
    "retries": MAX_RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_transient,
    "on_failure": [note_failed_step],
}


@task(name="data-version", cache_policy=NO_CACHE, **_RETRIES)
def newest_data_version(tournament: Tournament) -> str:
    """The newest data version Numerai serves for the tournament (for a node that pins none)."""
    served = connect(tournament).served_versions()
    prefix = "" if tournament == Tournament.CLASSIC else f"{tournament.label}/"
    own = [v for v in served if (v.rsplit("/", 1)[0] + "/" if "/" in v else "") == prefix]
    if not own:
        raise DatasetNotFound(
            f"Numerai lists no {tournament.label} data version (it lists: "
            f"{', '.join(served) or 'nothing'}). Pin one with the node's data_version."
        )
    get_run_logger().info("Using the newest data version Numerai serves: %s", own[-1])
    return own[-1]


@task(name="resolve-round", cache_policy=NO_CACHE, **_RETRIES)
@within_round("resolve-round", next_retry_delay)
def resolve_round(source: DataSource, round_number: int | None = None) -> RoundInfo:
    """Find the open round and check it still takes submissions."""
    current = connect(source.tournament).current_round()
    if round_number is not None and round_number != current.number:
        if round_number < current.number:
            raise RoundClosed(
                f"Round {round_number} is over: Numerai's current round is {current.number}. "
                "This run came too late and submits nothing."
            )
        raise ConfigurationError(
            f"Round {round_number} has not opened yet (the current round is {current.number})."
        )
    if not current.is_open(datetime.now(UTC)):
        raise RoundClosed(
            f"Round {current.number} closed for submissions at "
            f"{current.close_staking_time:%Y-%m-%d %H:%M} UTC. The next round's webhook runs "
            "the node again."
        )
    get_run_logger().info("Predicting for round %s", current.number)
    return current


def round_window(current: RoundInfo) -> RoundWindow:
    """The window the node's later steps retry within."""
    return RoundWindow(current.number, current.close_staking_time)


@task(name="check-account", cache_policy=NO_CACHE, **_RETRIES)
@within_round("check-account", next_retry_delay)
def check_account(source: DataSource, model_name: str) -> str:
    """Check the keys and the model before any work, so a bad setup fails in seconds."""
    model_id = connect(source.tournament).model_id(model_name)
    get_run_logger().info("Numerai keys valid; submitting as model %s", model_name)
    return model_id


@task(name="download", cache_policy=NO_CACHE, **_RETRIES)
@within_round("download", next_retry_delay)
def download_dataset(source: DataSource, filename: str, round_number: int | None = None) -> Path:
    """Download one dataset file into the cache (once, whoever else asks), or reuse it."""
    client = connect(source.tournament)
    path, cached = cache.fetch(
        client,
        source.data_dir,
        source.data_version,
        filename,
        round_number,
        lock_timeout=load_settings().lock_timeout_seconds,
    )
    size_mb = path.stat().st_size / 1e6
    verb = "Reusing cached" if cached else "Downloaded"
    get_run_logger().info("%s %s/%s (%.1f MB)", verb, source.data_version, filename, size_mb)
    return path


def skipping_submission(
    found: Iterable[Submission], round_number: int, trigger_id: str | None
) -> Submission | None:
    """The round's submission that makes a run with `trigger_id` skip its upload, if any.

    One rule, whatever mix of webhook, fallback, retry and manual runs: a run skips when the
    round has a submission with its trigger id, or one made without a trigger id, or (for a run
    without a trigger id) any submission.
    """
    for submission in found:
        if submission.round == round_number and (
            trigger_id is None or submission.trigger_id in (None, trigger_id)
        ):
            return submission
    return None


class Submitter(BaseModel):
    """Who submits for which round, passed from step to step (the model id is looked up once)."""

    model_name: str = Field(description="The Numerai model submitted as.")
    model_id: str | None = Field(description="Its id, from check-account; None: upload is off.")
    round_number: int = Field(description="The round submitted for.")
    trigger_id: str | None = Field(description="Numerai's trigger id; None: a manual or cron run.")
    resubmit: bool = Field(
        False, description="Upload even over the round's submission (Numerai keeps the new one)."
    )

    @property
    def uploading_as(self) -> str:
        """The model id the upload steps use; a run with upload off never reaches them."""
        if self.model_id is None:
            raise ConfigurationError("Upload is off for this node: nothing is uploaded.")
        return self.model_id

    def outcome(
        self, status: Status, predictions_path: Path, submission_id: str | None = None
    ) -> SubmissionOutcome:
        return SubmissionOutcome(
            status=status,
            submission_id=submission_id,
            predictions_path=predictions_path,
            model_name=self.model_name,
            round_number=self.round_number,
            trigger_id=self.trigger_id,
        )


def submitter(
    source: DataSource,
    model_name: str,
    upload: bool,
    round_number: int,
    trigger_id: str | None,
    resubmit: bool = False,
) -> Submitter:
    """Check the keys and the model first when the run uploads (check-account)."""
    model_id = check_account(source, model_name) if upload else None
    if resubmit and upload:
        get_run_logger().warning(
            "Re-submitting as asked: Numerai takes this run's file as the round's submission "
            "for %s, whatever was submitted before.",
            model_name,
        )
    return Submitter(
        model_name=model_name,
        model_id=model_id,
        round_number=round_number,
        trigger_id=trigger_id,
        resubmit=resubmit,
    )


# It gates the upload, so it may retry as long as the upload may: until the close.
@task(name="find-submission", cache_policy=NO_CACHE, **_RETRIES)
@within_round("find-submission", next_retry_delay, final=True)
def find_submission(source: DataSource, who: Submitter) -> Submission | None:
    """Read the model's submissions: has the round one this run would skip its upload for?"""
    if who.resubmit:
        return None
    found = connect(source.tournament).submissions(who.uploading_as)
    return skipping_submission(found, who.round_number, who.trigger_id)


def round_submitted(
    source: DataSource, who: Submitter, predictions_path: Path
) -> SubmissionOutcome | None:
    """An outcome of "already-submitted" (logged, naming the submission) when the round has a
    submission this run would skip its upload for; else None. Upload off: None, nothing read.
    """
    if who.model_id is None:
        return None
    earlier = find_submission(source, who)
    if earlier is None:
        return None
    get_run_logger().info(
        "Model %s already submitted for round %s: submission %s (%s). Nothing to upload.",
        who.model_name,
        who.round_number,
        earlier.id,
        f"trigger {earlier.trigger_id}" if earlier.trigger_id else "no trigger id",
    )
    return who.outcome("already-submitted", predictions_path, earlier.id)


@task(name="upload-predictions", cache_policy=NO_CACHE, **_RETRIES)
@within_round("upload-predictions", next_retry_delay, final=True)
def upload_predictions(source: DataSource, who: Submitter, predictions_path: Path) -> str:
    """Upload the predictions file; returns the name Numerai gave it (nothing is submitted yet)."""
    filename = connect(source.tournament).upload_file(predictions_path, who.uploading_as)
    get_run_logger().info("Uploaded %s as %s", predictions_path.name, filename)
    return filename


@task(name="submit", cache_policy=NO_CACHE, **_RETRIES)
@within_round("submit", next_retry_delay, final=True)
def submit(
    source: DataSource, who: Submitter, filename: str, predictions_path: Path
) -> SubmissionOutcome:
    """Create the submission from the uploaded file, with the trigger id, unless the round has
    one this run skips for.

    Runs of one model on one machine check and create under one lock, so two runs at once never
    both submit; a create whose answer was lost is found by the check when this task retries.
    """
    client = connect(source.tournament)
    guard = source.data_dir / "submissions" / f"{who.model_name}-{who.round_number}"
    with files.locked(guard, load_settings().lock_timeout_seconds):
        found = client.submissions(who.uploading_as)
        if who.resubmit:  # only this run's own file, created by a try whose answer was lost
            mine = [s for s in found if s.round == who.round_number and s.filename == filename]
            earlier = mine[0] if mine else None
        else:
            earlier = skipping_submission(found, who.round_number, who.trigger_id)
        if earlier is None:
            window = current_window()
            if window is not None:
                window.check_open("submit")  # the lock may have been held until after the close
            created = client.create_submission(filename, who.uploading_as, who.trigger_id)
    logger = get_run_logger()
    if earlier is not None and earlier.filename != filename:
        logger.info(
            "Model %s was submitted for round %s meanwhile (submission %s): %s is not submitted",
            who.model_name,
            who.round_number,
            earlier.id,
            filename,
        )
        return who.outcome("already-submitted", predictions_path, earlier.id)
    # Found with this run's file: an earlier try created it, and its answer was lost.
    submission_id = created if earlier is None else earlier.id
    logger.info("Submitted %s for round %s as %s", who.model_name, who.round_number, submission_id)
    return who.outcome("submitted", predictions_path, submission_id)


def submit_predictions(
    source: DataSource, who: Submitter, predictions_path: Path
) -> SubmissionOutcome:
    """The submit step: check the round once, upload the file, create the submission.

    Each is a task retried on its own, so a failed create does not upload again.
    """
    if who.model_id is None:
        get_run_logger().warning("Upload is off: predictions left at %s", predictions_path)
        return who.outcome("not-uploaded", predictions_path)
    if (skipped := round_submitted(source, who, predictions_path)) is not None:
        return skipped
    filename = upload_predictions(source, who, predictions_path)
    return submit(source, who, filename, predictions_path)


def refuse_endless_restarts() -> None:
    """Fail a node run that crashed and was started again more than `max_restarts` times.

    A crashed run is scheduled again (deployments/recovery.py); one that runs out of memory
    would crash every time until the round closes.
    """
    check_restarts(int(flow_run.run_count or 1), load_settings().max_restarts)


def check_restarts(starts: int, max_restarts: int) -> None:
    """Raise TooManyRestarts when a run's `starts` exceed the first start and `max_restarts`."""
    if starts > 1 + max_restarts:
        raise TooManyRestarts(starts, max_restarts)
