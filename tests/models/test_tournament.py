"""The example Classic model: reading int8 features, fitting, predicting, saving and loading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models import tournament
from models.frames import MISSING_FEATURE, RowBatches, read_feature_matrix, read_ids

FEATURES = [f"feature_{i}" for i in range(8)]


def _numerai_file(path, rows: int = 2000, seed: int = 0, with_nulls: bool = False):
    """A small Numerai-shaped file: int8 features 0..4, a target driven by two of them."""
    rng = np.random.default_rng(seed)
    data = {name: rng.integers(0, 5, rows).astype(np.int8) for name in FEATURES}
    signal = data["feature_0"].astype(float) - data["feature_1"] + rng.normal(0, 1.5, rows)
    target = pd.Series(signal).rank(pct=True).to_numpy()
    arrays = {name: pa.array(values) for name, values in data.items()}
    if with_nulls:
        mask = np.zeros(rows, dtype=bool)
        mask[:5] = True
        arrays["feature_2"] = pa.array(data["feature_2"], mask=mask)
    ids = [f"n{i:015x}" for i in range(rows)]
    table = pa.table(
        {"id": ids, "era": [f"{i // 100 + 1:04d}" for i in range(rows)], **arrays, "target": target}
    )
    pq.write_table(table, path, row_group_size=512)
    return path


def test_read_feature_matrix_is_int8_and_fills_nulls_with_the_middle_bin(tmp_path):
    path = _numerai_file(tmp_path / "train.parquet", rows=1500, with_nulls=True)
    matrix = read_feature_matrix(path, FEATURES)
    expected = pd.read_parquet(path, columns=FEATURES).fillna(MISSING_FEATURE).to_numpy()
    assert matrix.dtype == np.int8
    assert matrix.shape == (1500, len(FEATURES))
    np.testing.assert_array_equal(matrix, expected)
    assert (matrix[:5, 2] == MISSING_FEATURE).all()


def test_row_batches_serve_selected_rows_as_float():
    matrix = np.arange(20, dtype=np.int8).reshape(10, 2)
    batches = RowBatches(matrix, rows=np.array([1, 3, 5]))
    assert len(batches) == 3
    np.testing.assert_array_equal(batches[0:2], [[2, 3], [6, 7]])
    assert batches[0:2].dtype == np.float64


def test_trained_model_learns_the_signal_and_predicts_ranks(tmp_path):
    train_path = _numerai_file(tmp_path / "train.parquet", rows=3000, seed=1)
    live_path = _numerai_file(tmp_path / "live.parquet", rows=400, seed=2)
    progress: list[tuple[int, int]] = []
    model = tournament.train(
        train_path,
        FEATURES,
        "target",
        {"n_estimators": 60, "learning_rate": 0.1, "colsample_bytree": 1.0},
        on_progress=lambda done, total: progress.append((done, total)),
    )
    predictions = tournament.predict(model, live_path, FEATURES)

    assert progress[-1] == (60, 60)
    assert list(predictions.index) == list(read_ids(live_path))
    assert predictions.between(0, 1, inclusive="neither").all()
    live = pd.read_parquet(live_path)
    assert np.corrcoef(predictions, live["target"])[0, 1] > 0.3


def test_rows_without_target_are_not_trained_on(tmp_path):
    path = tmp_path / "train.parquet"
    _numerai_file(path, rows=1000)
    frame = pd.read_parquet(path)
    frame.loc[frame.index[:500], "target"] = np.nan
    frame.to_parquet(path)
    model = tournament.train(path, FEATURES, "target", {"n_estimators": 5})
    root = model.dump_model()["tree_info"][0]["tree_structure"]
    assert root["internal_count"] == 500  # rows the first tree saw


def test_saved_model_predicts_the_same_after_loading(tmp_path):
    path = _numerai_file(tmp_path / "train.parquet", rows=1000)
    model = tournament.train(path, FEATURES, "target", {"n_estimators": 10})
    loaded = tournament.load(tournament.save(model, tmp_path / "model.txt"))
    pd.testing.assert_series_equal(
        tournament.predict(model, path, FEATURES), tournament.predict(loaded, path, FEATURES)
    )


@pytest.mark.parametrize("override", [{"n_estimators": 3}, {"learning_rate": 0.5}])
def test_params_override_the_defaults(tmp_path, override):
    path = _numerai_file(tmp_path / "train.parquet", rows=500)
    model = tournament.train(path, FEATURES, "target", {"n_estimators": 3, **override})
    assert model.current_iteration() == override.get("n_estimators", 3)
