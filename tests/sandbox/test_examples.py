"""The files Numerai lists beside the data: small, well-formed, and what their names promise."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numerai_tools.submissions import validate_submission_numerai, validate_submission_signals

from sandbox.classic_data import SyntheticClassic
from sandbox.signals_data import SyntheticSignals

ROUND = 1000


@pytest.fixture(scope="module")
def classic(data_root: Path) -> SyntheticClassic:
    return SyntheticClassic(data_root / "data", size="tiny", seed=0)


@pytest.fixture(scope="module")
def signals(data_root: Path) -> SyntheticSignals:
    return SyntheticSignals(data_root / "data", size="tiny", seed=0)


def _read(catalog: SyntheticClassic | SyntheticSignals, name: str) -> pd.DataFrame:
    path = catalog.path(f"{catalog.version}/{name}", ROUND)
    assert path is not None, name
    return pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)


@pytest.mark.parametrize("split", ["train", "validation", "live"])
def test_benchmark_models_cover_their_split_with_ranks_per_era(classic, split):
    data = _read(classic, f"{split}.parquet")
    benchmarks = _read(classic, f"{split}_benchmark_models.parquet")
    assert list(benchmarks.index) == list(data.index) and benchmarks.index.name == "id"
    models = [c for c in benchmarks.columns if c != "era"]
    assert models == ["v52_lgbm_cyrus20", "v52_lgbm_teager20", "v52_lgbm_ralph20"]
    values = benchmarks[models].to_numpy()
    assert (values > 0).all() and (values <= 1).all()
    assert (benchmarks["era"] == data["era"]).all()


def test_the_example_model_learns_the_target(classic):
    validation = _read(classic, "validation.parquet")
    example = _read(classic, "validation_example_preds.parquet")["prediction"]
    per_era = validation.assign(example=example).groupby("era")[["example", "target"]].corr()
    assert per_era.xs("target", level=1)["example"].mean() > 0.05


def test_live_example_predictions_are_a_submission_numerai_accepts(classic):
    live_ids = pd.Series(classic.live_ids(ROUND))
    for name in ("live_example_preds.parquet", "live_example_preds.csv"):
        frame = _read(classic, name)
        frame = frame.reset_index() if frame.index.name == "id" else frame
        assert list(frame.columns) == ["id", "prediction"]
        validate_submission_numerai(live_ids, frame)


def test_live_files_change_with_the_round(classic):
    now = _read(classic, "live_example_preds.parquet")
    later = classic.path(f"{classic.version}/live_example_preds.parquet", ROUND + 1)
    assert later is not None and not set(pd.read_parquet(later).index) & set(now.index)


def test_the_meta_model_covers_the_validation_eras(classic):
    validation = _read(classic, "validation.parquet")
    meta = _read(classic, "meta_model.parquet")
    assert list(meta.columns) == ["era", "numerai_meta_model"]
    assert list(meta.index) == list(validation.index)
    assert meta["numerai_meta_model"].between(0, 1).all()


def test_signals_example_predictions(signals):
    universe = pd.DataFrame({"numerai_ticker": signals.live_ids(ROUND)})
    live = _read(signals, "live_example_preds.csv")
    assert list(live.columns) == ["numerai_ticker", "signal"]
    with warnings.catch_warnings():
        # numerai-tools' own use of a deprecated pandas keyword is not ours to fix
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="numerai_tools")
        validate_submission_signals(universe, live.copy())
    validation = _read(signals, "validation_example_preds.parquet")
    assert list(validation.columns) == ["numerai_ticker", "date", "signal"]
    assert validation["date"].nunique() == signals.spec.size.validation_weeks
    csv = signals.path(f"{signals.version}/validation_example_preds.csv", ROUND)
    assert csv is not None
    assert pd.read_csv(io.StringIO(csv.read_text())).shape == validation.shape
    assert np.isclose(validation["signal"].max(), 1.0)
