"""The example Classic tournament model: LightGBM on Numerai's features. Edit this file first."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.frames import RowBatches, read_feature_matrix, read_ids, read_target

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
    matrix = read_feature_matrix(train_path, features)

    # LightGBM reads the int8 matrix in batches; Numerai's 5 values fit its smallest bins.
    dataset = lgb.Dataset(
        RowBatches(matrix, rows),
        label=labels[rows],
        feature_name=features,
        params={"max_bin": 7, "bin_construct_sample_cnt": 20_000, "verbose": -1},
    )
    callbacks = [_report_every(rounds, on_progress)] if on_progress else []
    dataset.construct()
    del matrix  # LightGBM holds its own binned copy now
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
    matrix = read_feature_matrix(data_path, features)
    step = 100_000  # predict in chunks to keep the float copies small
    chunks = (matrix[i : i + step].astype(np.float32) for i in range(0, len(matrix), step))
    raw = np.concatenate([model.predict(chunk) for chunk in chunks])
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
