"""Training apart from round day: a Classic model spec, its key, the training tasks and flow.

A spec (model module, parameters, feature set, target, data version) has a family name, the
name it is declared under. Its model is trained by the `train-spec` flow (a training deployment
per spec, on a pool of its own, on a schedule or by hand: `numerai-nodes train SPEC`) or, when a
node's declaration allows it, by the node itself on round day. Either way it lands in the model
store (flows/store.py) under its key, where every node of the spec finds it: N nodes over K specs
train K times per data version.
"""

from __future__ import annotations

import json
import pickle
import shlex
from datetime import UTC, datetime
from uuid import UUID

import lightgbm
import pyarrow.parquet as pq
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.runtime import flow_run
from pydantic import BaseModel, Field, model_validator

from flows import cache, events
from flows.command import CommandSpec, train_command
from flows.entrypoints import TRAINING_FLOW
from flows.memory import check_training_memory, size_from_tags
from flows.node import DataSource, code_digest, download_dataset, spec_key
from flows.report import EraScores, score_eras
from flows.settings import load_settings, source_label
from flows.spec import check_choice, check_params, model_module
from flows.steps import note_failed_step
from flows.store import ModelRecord, ModelStore, model_store, pack
from flows.tournaments import CLASSIC
from models.frames import read_columns

_DEFAULT_MODEL = "models.tournament"


class ClassicSpec(BaseModel):
    """What shapes a Classic model; nodes that share a spec share its trained model."""

    name: str = Field(description="The spec's family name (its name in nodes.yaml).")
    model: str = Field(
        _DEFAULT_MODEL, description="Python module with train(), predict() and DEFAULT_PARAMS."
    )
    params: dict[str, float | int | str | bool] = Field(
        default_factory=dict, description="Overrides of the model module's DEFAULT_PARAMS."
    )
    data_version: str | None = Field(
        None, description="Numerai dataset version, e.g. v5.2; unset: the newest served."
    )
    feature_set: str = Field("small", description="A feature set from features.json.")
    target: str = Field("target", description="The target column to train on.")
    command: CommandSpec | None = Field(
        None, description="A command model: the program that trains and predicts, not `model`."
    )

    @model_validator(mode="after")
    def _model_or_command(self) -> ClassicSpec:
        if self.command is not None and self.model != _DEFAULT_MODEL:
            raise ValueError(f"spec '{self.name}' gives both `model:` and `command:`; keep one")
        return self

    def checked(self) -> ClassicSpec:
        """The spec with its parameters checked against the model module, or its command's
        files found (fails in seconds)."""
        if self.command is not None:
            self.command.identity()
            return self
        return self.model_copy(
            update={"params": check_params(model_module(self.model), self.params)}
        )


def model_key(spec: ClassicSpec, source: DataSource) -> str:
    """The model's key: spec, parameters, data, feature set, target, project code, LightGBM; for
    a command model, its command lines and files (or version) instead of code and LightGBM."""
    if spec.command is not None:
        return spec_key(
            "model",
            {
                "command": spec.command.identity(),
                "params": spec.params,
                "source": source_label(source.api_url),
                "data_version": source.data_version,
                "feature_set": spec.feature_set,
                "target": spec.target,
            },
        )
    module = model_module(spec.model)
    return spec_key(
        "model",
        {
            "model": spec.model,
            "params": {**getattr(module, "DEFAULT_PARAMS", {}), **spec.params},
            "source": source_label(source.api_url),
            "data_version": source.data_version,
            "feature_set": spec.feature_set,
            "target": spec.target,
            "code": code_digest(module),
            "lightgbm": lightgbm.__version__,
        },
    )


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


@task(name="train", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step])
def train_model(source: DataSource, spec: ClassicSpec, features: list[str]):
    """Train the spec's model on the data version's training data."""
    logger = get_run_logger()
    train_path = download_dataset(source, "train.parquet")
    logger.info("Training %s on %d features of %s", spec.model, len(features), train_path.name)
    progress = create_progress_artifact(0.0, description=f"{spec.name}: training")
    assert isinstance(progress, UUID), "a sync task gets the artifact id, never a coroutine"

    def on_progress(done: int, total: int) -> None:
        update_progress_artifact(progress, 100.0 * done / total)
        logger.info("Training: %d/%d trees", done, total)

    module = model_module(spec.model)
    with cache.reading(train_path):
        # Refuse now what the machine's memory cannot hold, rather than be killed mid-way.
        check_training_memory(
            pq.ParquetFile(train_path).metadata.num_rows,  # from the footer alone
            len(features),
            getattr(module, "TRAIN_BYTES_PER_VALUE", None),
            size=size_from_tags(list(flow_run.tags or [])),
        )
        return module.train(
            train_path, features, spec.target, dict(spec.params), on_progress=on_progress
        )


@task(
    name="score-validation",
    cache_policy=NO_CACHE,
    persist_result=False,
    on_failure=[note_failed_step],
)
def score_validation(
    source: DataSource, spec: ClassicSpec, features: list[str], model
) -> EraScores:
    """Per-era numerai_corr of the model on the validation data (kept in the model's record)."""
    path = download_dataset(source, "validation.parquet")
    frame = read_columns(path, ["era", spec.target])
    frame["prediction"] = model_module(spec.model).predict(model, path, features)
    scores = score_eras(frame, spec.target)
    get_run_logger().info(
        "Validation corr: mean %.4f, std %.4f, sharpe %.2f over %d eras",
        scores.mean,
        scores.std,
        scores.sharpe,
        len(scores.per_era),
    )
    return scores


@task(
    name="store-model", cache_policy=NO_CACHE, persist_result=False, on_failure=[note_failed_step]
)
def store_model(
    store: ModelStore,
    key: str,
    source: DataSource,
    spec: ClassicSpec,
    features: list[str],
    model,
    scores: EraScores | None,
) -> ModelRecord:
    """Write the model (a command model's: its directory) and its record into the model store."""
    if spec.command is not None:
        data = pack(model)
        made = {
            "model": f"command: {shlex.join(spec.command.train)}",
            "code": spec.command.version or spec_key("files", spec.command.identity()),
            "libraries": {},
            "artifact": "directory",
        }
    else:
        data = pickle.dumps(model)
        made = {
            "model": spec.model,
            "code": code_digest(model_module(spec.model)),
            "libraries": {"lightgbm": lightgbm.__version__},
        }
    record = ModelRecord(
        key=key,
        family=spec.name,
        tournament=int(source.tournament),
        params=dict(spec.params),
        data_version=source.data_version,
        feature_set=spec.feature_set,
        target=spec.target,
        features=features,
        **made,
        trained_at=datetime.now(UTC),
        trained_by=flow_run.name or "in-process",
        size_bytes=len(data),
        validation=scores,
    )
    store.save(record, model, data)
    get_run_logger().info(
        "Stored %s of %s (%.1f MB) in %s", key, spec.name, len(data) / 1e6, store.where
    )
    emit_event(
        event=events.MODEL_TRAINED,
        resource={"prefect.resource.id": f"{events.SPEC_PREFIX}{spec.name}"},
        payload={"key": key, "data_version": source.data_version, "spec": spec.name},
    )
    return record


def train_and_store(
    store: ModelStore, key: str, source: DataSource, spec: ClassicSpec, *, score: bool = True
) -> tuple[ModelRecord, object]:
    """Train the spec's model and store it, unless a run that held the lock before stored it.

    Returns its record and the model."""
    with store.training(key, load_settings().lock_timeout_seconds):
        if (ready := store.record(key)) is not None:  # another run trained it meanwhile
            return ready, store.load(ready)
        return _train(store, key, source, spec, score=score)


def _train(
    store: ModelStore, key: str, source: DataSource, spec: ClassicSpec, *, score: bool
) -> tuple[ModelRecord, object]:
    features = load_features(source, spec.feature_set, spec.target)
    if spec.command is not None:  # not scored: a command predicts live data only
        model_dir = train_command(
            source, spec.command, spec.feature_set, spec.target, dict(spec.params)
        )
        record = store_model(store, key, source, spec, features, model_dir, None)
        return record, store.load(record)
    model = train_model(source, spec, features)
    scores = score_validation(source, spec, features, model) if score else None
    return store_model(store, key, source, spec, features, model, scores), model


def _run_name() -> str:
    spec = flow_run.parameters.get("spec")
    name = spec.name if isinstance(spec, ClassicSpec) else (spec or {}).get("name", "spec")
    return f"train-{name}"


@flow(name=TRAINING_FLOW.flow_name, flow_run_name=_run_name, log_prints=True)
def train_spec(spec: ClassicSpec, force: bool = False) -> ModelRecord:
    """Train a Classic model spec ahead of round day, into the model store the nodes read.

    Ends in seconds when the model of this spec, data version and code is stored already
    (`force` trains it again). Without a pinned data version it trains on the newest Numerai
    serves, so a scheduled run picks up a new data release by itself.
    """
    spec = spec.checked()
    source = DataSource.from_settings(CLASSIC, spec.data_version)
    store = model_store()
    key = model_key(spec, source)
    logger = get_run_logger()
    if not force and (ready := store.record(key)) is not None:
        logger.info(
            "The model of %s for %s is stored already (%s, trained %s): nothing to train.",
            spec.name,
            source.data_version,
            key,
            f"{ready.trained_at:%Y-%m-%d %H:%M} UTC",
        )
        return ready
    if force:
        record, _ = _train(store, key, source, spec, score=True)
    else:
        record, _ = train_and_store(store, key, source, spec)
    return record
