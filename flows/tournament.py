"""The Classic tournament node: download, load or train, predict, validate, submit, report."""

from __future__ import annotations

import json
from pathlib import Path
from uuid import UUID

import lightgbm
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from pydantic import Field

from flows import cache, files, window
from flows.announce import node_run
from flows.entrypoints import TOURNAMENT_FLOW
from flows.errors import InvalidPredictions
from flows.node import (
    DataSource,
    NodeSettings,
    SubmissionOutcome,
    code_digest,
    download_dataset,
    refuse_endless_restarts,
    resolve_round,
    round_submitted,
    round_window,
    run_name,
    spec_key,
    submit_predictions,
    submitter,
)
from flows.report import EraScores, publish_report, score_eras
from flows.settings import source_label
from flows.spec import check_choice, check_params, model_module
from flows.steps import note_failed_step
from flows.validation import PredictionSummary, check_classic
from models.frames import read_columns, read_ids


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


def model_cache_key(context: TaskRunContext, parameters: dict) -> str:
    """The model cache key: model spec, parameters, data, feature set, target and model code."""
    node: TournamentNode = parameters["node"]
    source: DataSource = parameters["source"]
    module = model_module(node.model)
    spec = {
        "model": node.model,
        "params": {**getattr(module, "DEFAULT_PARAMS", {}), **node.params},
        "source": source_label(source.api_url),
        "data_version": source.data_version,
        "feature_set": node.feature_set,
        "target": node.target,
        "code": code_digest(module),
        "lightgbm": lightgbm.__version__,
    }
    return spec_key("model", spec)


def _scores_cache_key(context: TaskRunContext, parameters: dict) -> str:
    return "validation-" + model_cache_key(context, parameters)


@task(name="features", cache_policy=NO_CACHE, on_failure=[note_failed_step])
def load_features(source: DataSource, feature_set: str, target: str) -> list[str]:
    """The feature names of `feature_set`, from the data version's features.json, which also
    lists the targets: a wrong one fails here, before the training data is downloaded."""
    path = download_dataset(source, "features.json")
    with cache.reading(path):
        listed = json.loads(path.read_text())
    where = f"features.json of {source.data_version}"
    sets = listed["feature_sets"]
    check_choice("feature set", feature_set, list(sets), where)
    if "targets" in listed:
        check_choice("target", target, list(listed["targets"]), where)
    return list(sets[feature_set])


@task(
    name="train",
    cache_key_fn=model_cache_key,
    persist_result=True,
    result_serializer="pickle",
    on_failure=[note_failed_step],
)
def train_model(source: DataSource, node: TournamentNode, features: list[str]):
    """Train the model, or load it from the model cache when nothing that shapes it changed."""
    logger = get_run_logger()
    train_path = download_dataset(source, "train.parquet")
    logger.info("Training %s on %d features of %s", node.model, len(features), train_path.name)
    progress = create_progress_artifact(0.0, description=f"{node.name}: training")
    assert isinstance(progress, UUID), "a sync task gets the artifact id, never a coroutine"

    def on_progress(done: int, total: int) -> None:
        update_progress_artifact(progress, 100.0 * done / total)
        logger.info("Training: %d/%d trees", done, total)

    with cache.reading(train_path):
        return model_module(node.model).train(
            train_path, features, node.target, dict(node.params), on_progress=on_progress
        )


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


@task(
    name="score-validation",
    cache_key_fn=_scores_cache_key,
    persist_result=True,
    on_failure=[note_failed_step],
)
def score_validation(
    source: DataSource, node: TournamentNode, features: list[str], model
) -> EraScores:
    """Per-era numerai_corr of the model on the validation data (cached with the model)."""
    path = download_dataset(source, "validation.parquet")
    frame = read_columns(path, ["era", node.target])
    frame["prediction"] = model_module(node.model).predict(model, path, features)
    scores = score_eras(frame, node.target)
    get_run_logger().info(
        "Validation corr: mean %.4f, std %.4f, sharpe %.2f over %d eras",
        scores.mean,
        scores.std,
        scores.sharpe,
        len(scores.per_era),
    )
    return scores


@flow(name=TOURNAMENT_FLOW.flow_name, flow_run_name=run_name, log_prints=True)
def tournament_node(
    node: TournamentNode | None = None,
    trigger_id: str | None = None,
    round_number: int | None = None,
    resubmit: bool = False,
) -> SubmissionOutcome:
    """Numerai Classic node: predict the open round and submit with Numerai's trigger id.

    Steps: resolve the round, download live data, load the cached model or train it, predict,
    validate, upload, submit, report. A run for a round that already has its submission (this
    trigger id's, or a fallback or manual run's) ends after checking the account, with nothing
    downloaded or uploaded; `resubmit` uploads anyway, and Numerai keeps the new file.
    """
    node = node or TournamentNode()
    with node_run(node.name, node.numerai_model, trigger_id, round_number) as run:
        refuse_endless_restarts()
        # A wrong module or parameter fails now, before the account check and any download.
        module = model_module(node.model)
        node = node.model_copy(update={"params": check_params(module, node.params)})
        source = DataSource.from_settings(TOURNAMENT_FLOW.tournament, node.data_version)
        current = run.resolved(resolve_round(source, round_number))
        predictions_file = cache.predictions_path(
            source.data_dir, source.data_version, current.number, node.name
        )
        with window.opened(round_window(current)):
            who = submitter(
                source, node.numerai_model, node.upload, current.number, trigger_id, resubmit
            )
            if (done := round_submitted(source, who, predictions_file)) is not None:
                return run.submitted(done)  # a fallback, manual or restarted run: nothing to do
            features = load_features(source, node.feature_set, node.target)
            trained = train_model(source, node, features, return_state=True)
            model = trained.result()
            live_path = download_dataset(source, "live.parquet", current.number)
            predictions_path = predict_live(
                source, node, model, features, live_path, current.number
            )
            checked = validate_predictions(predictions_path, live_path)
            outcome = run.submitted(submit_predictions(source, who, predictions_path))
        scores = score_validation(source, node, features, model) if node.score_validation else None
        publish_report(
            node.name,
            outcome,
            checked,
            scores,
            trained=trained.name != "Cached",
            tournament=source.tournament,
            model_id=who.model_id,
        )
        return outcome
