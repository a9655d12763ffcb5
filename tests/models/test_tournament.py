"""The example Classic model: reading int8 features, fitting, predicting, saving and loading."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks import tournament_old
from models import tournament
from models.frames import MISSING_FEATURE, ParquetRows, read_feature_matrix, read_ids

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


def test_parquet_rows_serve_selected_rows_across_row_groups(tmp_path):
    path = _numerai_file(tmp_path / "train.parquet", rows=1500, with_nulls=True)  # 3 row groups
    matrix = read_feature_matrix(path, FEATURES)
    rows = np.flatnonzero(np.arange(1500) % 3 != 1)  # every third row left out
    served = ParquetRows(path, FEATURES, rows)
    assert len(served) == len(rows)
    batch = served[300:700]  # crosses the row group that starts at file row 512
    assert batch.dtype == np.float32 and batch.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(batch, matrix[rows[300:700]])
    assert served[5].dtype == np.float64
    np.testing.assert_array_equal(served[5], matrix[rows[5]])
    np.testing.assert_array_equal(served[2], matrix[rows[2]])  # a step back starts a new pass
    np.testing.assert_array_equal(served[-1], matrix[rows[-1]])
    picked = served.sample(50, seed=3)
    assert picked.shape == (50, len(FEATURES))
    assert {tuple(r) for r in picked} <= {tuple(r) for r in matrix[rows]}


def test_parquet_rows_reject_rows_out_of_order(tmp_path):
    path = _numerai_file(tmp_path / "train.parquet", rows=600)
    with pytest.raises(ValueError, match="ascending"):
        ParquetRows(path, FEATURES, np.array([5, 3]))
    with pytest.raises(IndexError):
        ParquetRows(path, FEATURES)[600]


def test_streamed_training_predicts_as_the_previous_in_memory_training(tmp_path):
    """The memory rework must not change the model: same bins, same trees, same predictions.

    Tolerance: Spearman rank corr of the predictions above 0.999 and validation corr within
    0.005 (LightGBM's own nondeterminism); in practice the two models are identical.
    """
    path = _numerai_file(tmp_path / "train.parquet", rows=3000, seed=4, with_nulls=True)
    frame = pd.read_parquet(path)
    frame.loc[frame.index[::7], "target"] = np.nan  # rows without a target are skipped by both
    frame.to_parquet(path, row_group_size=700)
    valid = _numerai_file(tmp_path / "validation.parquet", rows=800, seed=5)
    params = {"n_estimators": 40, "learning_rate": 0.1, "colsample_bytree": 0.5}
    new = tournament.predict(tournament.train(path, FEATURES, "target", params), valid, FEATURES)
    old = tournament_old.predict(
        tournament_old.train(path, FEATURES, "target", params), valid, FEATURES
    )
    assert list(new.index) == list(old.index)
    assert new.corr(old, method="spearman") > 0.999
    target = pd.read_parquet(valid)["target"].to_numpy()
    assert abs(np.corrcoef(new, target)[0, 1] - np.corrcoef(old, target)[0, 1]) < 0.005


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
