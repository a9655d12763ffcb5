"""The Classic tournament node: find its model, predict, validate, submit, report."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, Field

from flows import cache, files
from flows.announce import node_run
from flows.command import CommandSpec, predict_command
from flows.entrypoints import TOURNAMENT_FLOW
from flows.errors import ConfigurationError, InvalidPredictions, ModelNotReady
from flows.node import (
    DataSource,
    NodeSettings,
    SubmissionOutcome,
    download_dataset,
    refuse_endless_restarts,
    run_name,
    submit_predictions,
)
from flows.numerai import RoundInfo
from flows.report import publish_report
from flows.round_start import round_start
from flows.spec import model_module
from flows.steps import note_failed_step
from flows.store import ModelRecord, ModelStore, model_store
from flows.training import ClassicSpec, model_key, score_validation, train_and_store
from flows.validation import PredictionSummary, check_classic
from models.frames import read_ids


class TournamentNode(NodeSettings):
    """A Classic node's settings. prefect.yaml sets them per deployment."""

    name: str = Field("tournament", description="The node's name, shown in artifacts.")
    numerai_model: str = Field("my_model", description="The Numerai model to submit as.")
    model: str = Field(
        "models.tournament", description="Python module with train(), predict() and DEFAULT_PARAMS."
    )
    data_version: str | None = Field(
        None,
        description="Numerai dataset version, e.g. v5.2. Unset: the newest Numerai serves "
        "when the run starts (pin it to keep a trained model across Numerai's releases).",
    )
    feature_set: str = Field("small", description="A feature set from features.json.")
    target: str = Field("target", description="The target column to train on.")
    spec: str | None = Field(
        None,
        description="The model spec's family name (nodes.yaml's spec); unset: the node's name. "
        "Nodes of one spec share its trained models, and its last good model.",
    )
    train: bool = Field(
        True,
        description="Train on round day when the spec's model is not in the model store. Off: "
        "predict with the family's last good model (a stale-model alert), or fail at once "
        "naming the training command when there is none.",
    )
    command: CommandSpec | None = Field(
        None,
        description='A command model: the program that trains and predicts (README, "Bring '
        'any program"), instead of `model`.',
    )

    def model_spec(self) -> ClassicSpec:
        """The spec this node predicts with."""
        if self.command is not None and "model" in self.model_fields_set:
            raise ConfigurationError(
                f"Node '{self.name}' gives both `model` and `command`: a node's model is a "
                "Python module or a program, not both."
            )
        return ClassicSpec(
            name=self.spec or self.name,
            model=self.model,
            command=self.command,
            params=self.params,
            data_version=self.data_version,
            feature_set=self.feature_set,
            target=self.target,
        )


class ModelChoice(BaseModel):
    """Which model a node predicts with: its spec's (ready), the family's last good (stale), or
    none yet (the node trains it)."""

    key: str
    record: ModelRecord | None
    kind: Literal["ready", "stale", "train"]

    def note(self, spec: ClassicSpec) -> str:
        """The report's line about the model."""
        if self.record is None:
            return "trained this run"
        record = self.record
        made = (
            f"`{record.key[:18]}…`, {record.data_version}, "
            f"trained {record.trained_at:%Y-%m-%d %H:%M} UTC"
        )
        if self.kind == "ready":
            return f"loaded from the model store ({made})"
        return (
            f"⚠ **stale model**: the last good model of {spec.name} ({made}); this spec's own "
            f"model is not trained yet: `numerai-nodes train {spec.name}`"
        )


@task(name="find-model", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def find_model(
    store: ModelStore, spec: ClassicSpec, source: DataSource, may_train: bool
) -> ModelChoice:
    """The model this round predicts with, found in the store before any download; with none
    ready and no training allowed, the family's last good model, or a ModelNotReady at once."""
    key = model_key(spec, source)
    logger = get_run_logger()
    if (ready := store.record(key)) is not None:
        logger.info("Model of %s ready in the model store: %s", spec.name, key)
        return ModelChoice(key=key, record=ready, kind="ready")
    if may_train:
        logger.info(
            "No model of %s for %s in the store yet: this run trains it",
            spec.name,
            source.data_version,
        )
        return ModelChoice(key=key, record=None, kind="train")
    if (last := store.newest_of(spec.name, source.tournament)) is not None:
        logger.warning(
            "The model of %s for %s and this code is not trained yet; predicting with the "
            "family's last good model %s (%s, trained %s). Train it: numerai-nodes train %s",
            spec.name,
            source.data_version,
            last.key,
            last.data_version,
            f"{last.trained_at:%Y-%m-%d %H:%M} UTC",
            spec.name,
        )
        return ModelChoice(key=key, record=last, kind="stale")
    raise ModelNotReady(
        f"No trained model of spec '{spec.name}' is in the model store ({store.where}), and "
        "this node does not train on round day. Train it: `numerai-nodes train "
        f"{spec.name}` (or run its deployment train-{spec.name}), or let the node train "
        "(`train: true` in nodes.yaml). Nothing was uploaded."
    )


@task(name="load-model", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def load_model(store: ModelStore, record: ModelRecord):
    """Read a trained model from the model store (a command model's: unpack its directory)."""
    model = store.load(record)
    get_run_logger().info(
        "Loaded %s of %s (%.1f MB)", record.key, record.family, record.size_bytes / 1e6
    )
    return model


@task(name="predict", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def predict_live(
    source: DataSource,
    node: TournamentNode,
    model,
    features: list[str],
    live_path: Path,
    round_number: int,
) -> Path:
    """Predict the round's live data and write the predictions file that will be uploaded."""
    with cache.reading(live_path):
        predictions = model_module(node.model).predict(model, live_path, features)
    out = cache.predictions_path(source.data_dir, source.data_version, round_number, node.name)
    frame = pd.DataFrame({"id": predictions.index.astype(str), "prediction": predictions.values})
    with files.atomic_path(out) as tmp:  # another run of this node may write it too
        frame.to_csv(tmp, index=False)
    get_run_logger().info("Wrote %d predictions to %s", len(frame), out)
    return out


@task(name="validate", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def validate_predictions(predictions_path: Path, live_path: Path) -> PredictionSummary:
    """Check values and ids against the live data (and numerai-tools) before anything is sent."""
    frame = pd.read_csv(predictions_path, dtype={"id": str})
    if list(frame.columns) != ["id", "prediction"]:
        raise InvalidPredictions(
            f"The predictions file has columns {list(frame.columns)}; expected ['id', "
            "'prediction']. Nothing was uploaded."
        )
    checked = check_classic(frame.set_index("id")["prediction"], read_ids(live_path))
    get_run_logger().info(
        "Predictions valid: %d rows, mean %.4f, std %.4f", checked.rows, checked.mean, checked.std
    )
    return checked


def _predict(
    source: DataSource,
    node: TournamentNode,
    spec: ClassicSpec,
    record: ModelRecord,
    model,
    live_path: Path,
    current: RoundInfo,
) -> Path:
    """The predictions file: from the model module, or from the command model's program."""
    if spec.command is None:
        return predict_live(source, node, model, record.features, live_path, current.number)
    if record.artifact != "directory":
        raise ConfigurationError(
            f"The model of {spec.name} found in the model store ({record.key}) is a Python "
            f"model, not a command model's directory: train the spec (`numerai-nodes train "
            f"{spec.name}`). Nothing was uploaded."
        )
    return predict_command(
        source,
        spec.command,
        node.name,
        spec.feature_set,
        spec.target,
        dict(spec.params),
        model,
        live_path,
        current.number,
    )


@flow(name=TOURNAMENT_FLOW.flow_name, flow_run_name=run_name, log_prints=True)
def tournament_node(
    node: TournamentNode | None = None,
    trigger_id: str | None = None,
    round_number: int | None = None,
    resubmit: bool = False,
) -> SubmissionOutcome:
    """Numerai Classic node: predict the open round and submit with Numerai's trigger id.

    Steps: resolve the round, find the spec's model in the model store (or train it, when the
    node may; or take the family's last good model, and say so), download live data, predict,
    validate, upload, submit, report. A run for a round that already has its submission (this
    trigger id's, or a fallback or manual run's) ends after checking the account, with nothing
    downloaded or uploaded; `resubmit` uploads anyway, and Numerai keeps the new file.
    """
    node = node or TournamentNode()
    with node_run(node.name, node.numerai_model, trigger_id, round_number) as run:
        refuse_endless_restarts()
        # A wrong module or parameter fails now, before the account check and any download.
        spec = node.model_spec().checked()
        opened = round_start(
            run,
            tournament=TOURNAMENT_FLOW.tournament,
            data_version=spec.data_version,
            numerai_model=node.numerai_model,
            upload=node.upload,
            round_number=round_number,
            trigger_id=trigger_id,
            resubmit=resubmit,
        )
        with opened as start:
            if start.done is not None:
                return start.done  # a fallback, manual or restarted run: nothing to do
            source, current, who = start.source, start.current, start.who
            store = model_store()
            choice = find_model(store, spec, source, node.train)
            if choice.record is None:
                # Scored after the submission: the round's window is for submitting.
                record, model = train_and_store(store, choice.key, source, spec, score=False)
            else:
                record, model = choice.record, load_model(store, choice.record)
            live_path = download_dataset(source, "live.parquet", current.number)
            predictions_path = _predict(source, node, spec, record, model, live_path, current)
            checked = validate_predictions(predictions_path, live_path)
            outcome = run.submitted(submit_predictions(source, who, predictions_path))
        if choice.kind == "stale":  # after the submission: the alert says it was made
            run.stale_model(spec.name, choice.key, record.key, record.data_version)
        scores = record.validation if node.score_validation else None
        if node.score_validation and scores is None and spec.command is None:
            scores = score_validation(source, spec, record.features, model)
            store.save_record(record.model_copy(update={"validation": scores}))
        publish_report(
            node.name,
            outcome,
            checked,
            scores,
            trained=choice.kind == "train",
            tournament=source.tournament,
            model_id=who.model_id,
            model_note=choice.note(spec),
        )
        return outcome
