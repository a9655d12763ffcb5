"""The previous Classic training path (before the streaming rework), kept only for benchmarks.

A copy of `models/tournament.py`'s train and predict as they were, with the old readers from
`models/frames.py`: the whole int8 matrix is read first, then LightGBM samples and bins it
through a Sequence of float64 batches. Benchmarks pass `benchmarks.tournament_old` as a node's
model module to compare it with `models.tournament`. Do not import it from models/ or flows/.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from models.tournament import DEFAULT_PARAMS, load, save

__all__ = ["DEFAULT_PARAMS", "load", "predict", "save", "train"]
MISSING_FEATURE = 2


def read_feature_matrix(path: str | Path, features: list[str]) -> np.ndarray:
    """The old reader: every row group into one preallocated int8 matrix."""
    parquet = pq.ParquetFile(path)
    matrix = np.empty((parquet.metadata.num_rows, len(features)), dtype=np.int8, order="F")
    start = 0
    for group in range(parquet.num_row_groups):
        table = parquet.read_row_group(group, columns=features)
        stop = start + table.num_rows
        for j, name in enumerate(features):
            column = table.column(name).to_numpy(zero_copy_only=False)
            if column.dtype.kind == "f":
                column = np.nan_to_num(column, nan=MISSING_FEATURE)
            matrix[start:stop, j] = column
        start = stop
        del table
    return matrix


class RowBatches(lgb.Sequence):
    """The old Sequence: rows of an in-memory int8 matrix as float64 batches."""

    def __init__(self, matrix: np.ndarray, rows: np.ndarray | None = None, batch_size: int = 4096):
        self.matrix = matrix
        self.rows = rows
        self.batch_size = batch_size

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else self.matrix.shape[0]

    def __getitem__(self, index):
        if self.rows is not None:
            index = self.rows[index]
        return np.asarray(self.matrix[index], dtype=np.float64)


def _read_ids(path: str | Path) -> pd.Index:
    schema = pq.read_schema(path)
    column = "id" if "id" in schema.names else schema.pandas_metadata["index_columns"][0]
    return pd.Index(pq.read_table(path, columns=[column]).column(column).to_pylist(), name="id")


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
    labels = pq.read_table(train_path, columns=[target]).column(0).to_numpy().astype(np.float32)
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
    ranks = pd.Series(raw, index=_read_ids(data_path), name="prediction").rank(method="average")
    return (ranks - 0.5) / len(ranks)  # strictly inside (0, 1), as Numerai asks


def _report_every(total: int, on_progress: Callable[[int, int], None]):
    """A LightGBM callback that reports progress about twenty times during training."""
    step = max(1, total // 20)

    def callback(env: lgb.callback.CallbackEnv) -> None:
        done = env.iteration + 1
        if done % step == 0 or done == total:
            on_progress(done, total)

    return callback
