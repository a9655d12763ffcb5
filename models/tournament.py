"""The example Classic tournament model: LightGBM on Numerai's features. Edit this file first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.footprint import TRAIN_BYTES_PER_VALUE  # noqa: F401  (the node's memory check)
from models.frames import feature_chunks, read_ids, read_target, streamed_dataset

# Good starting values from Numerai's example model. A node overrides them in prefect.yaml.
DEFAULT_PARAMS: dict = {
    "n_estimators": 2000,
    "learning_rate": 0.01,
    "max_depth": 5,
    "num_leaves": 2**5 - 1,
    "colsample_bytree": 0.1,
}


def train(
    train_path: str | Path,
    features: list[str],
    target: str,
    params: dict,
    on_progress: Callable[[int, int], None] | None = None,
) -> lgb.Booster:
    """Fit a LightGBM regressor of `target` on `features`, skipping rows without a target."""
    params = {**DEFAULT_PARAMS, **params}
    rounds = int(params.pop("n_estimators"))
    labels = read_target(train_path, target)
    rows = np.flatnonzero(~np.isnan(labels))

    # LightGBM bins the rows as they stream from the file: the int8 matrix and its float copy
    # never exist whole beside its binned copy. Numerai's 5 values fit its 4-bit bins.
    dataset = streamed_dataset(
        train_path,
        features,
        labels[rows],
        {"max_bin": 7, "bin_construct_sample_cnt": 20_000, "verbose": -1},
        rows,
    )
    callbacks = [_report_every(rounds, on_progress)] if on_progress else []
    booster = lgb.train(
        {
            "objective": "regression",
            "force_col_wise": True,
            "verbose": -1,
            "max_bin": 7,
            "feature_fraction": params.pop("colsample_bytree", 1.0),
            **params,
        },
        dataset,
        num_boost_round=rounds,
        callbacks=callbacks,
    )
    return booster


def predict(model: lgb.Booster, data_path: str | Path, features: list[str]) -> pd.Series:
    """Predict every row of a Numerai file and rank the predictions into (0, 1)."""
    # A chunk at a time: the float copy LightGBM predicts from is one chunk, not the file.
    chunks = feature_chunks(data_path, features)
    raw = np.concatenate([model.predict(block.astype(np.float32)) for _, block in chunks] or [[]])
    ranks = pd.Series(raw, index=read_ids(data_path), name="prediction").rank(method="average")
    return (ranks - 0.5) / len(ranks)  # strictly inside (0, 1), as Numerai asks


def save(model: lgb.Booster, path: str | Path) -> Path:
    """Write the model as LightGBM's text format, readable by any LightGBM version."""
    model.save_model(str(path))
    return Path(path)


def load(path: str | Path) -> lgb.Booster:
    """Read a model written by `save`."""
    return lgb.Booster(model_file=str(path))


def _report_every(total: int, on_progress: Callable[[int, int], None]):
    """A LightGBM callback that reports progress about twenty times during training."""
    step = max(1, total // 20)

    def callback(env: lgb.callback.CallbackEnv) -> None:
        done = env.iteration + 1
        if done % step == 0 or done == total:
            on_progress(done, total)

    return callback
