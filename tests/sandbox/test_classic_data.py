"""Synthetic Classic files: layout, schema, determinism, eras, nulls, and the spec's values."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.classic_data import SyntheticClassic

ROUND = 1000


@pytest.fixture(scope="module")
def tiny(data_root: Path) -> SyntheticClassic:
    catalog = SyntheticClassic(data_root / "data", size="tiny", seed=0)
    catalog.prepare(ROUND)
    return catalog


@pytest.fixture(scope="module")
def train(tiny: SyntheticClassic) -> pd.DataFrame:
    return pd.read_parquet(tiny.base_dir / "train.parquet")


@pytest.fixture(scope="module")
def validation(tiny: SyntheticClassic) -> pd.DataFrame:
    return pd.read_parquet(tiny.base_dir / "validation.parquet")


def _path(catalog: SyntheticClassic, name: str, round_number: int) -> Path:
    path = catalog.path(name, round_number)
    assert path is not None, f"{name} is not served"
    return path


def _files(catalog: SyntheticClassic, round_number: int) -> dict[str, bytes]:
    return {
        name: _path(catalog, name, round_number).read_bytes()
        for name in catalog.files(round_number)
    }


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path, tiny: SyntheticClassic):
    again = SyntheticClassic(tmp_path / "again", size="tiny", seed=0)
    other = SyntheticClassic(tmp_path / "other", size="tiny", seed=1)
    assert _files(again, ROUND) == _files(tiny, ROUND)
    other_files = _files(other, ROUND)
    assert other_files["v5.2/train.parquet"] != _files(tiny, ROUND)["v5.2/train.parquet"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(again.base_dir / "train.parquet"),
        pd.read_parquet(tiny.base_dir / "train.parquet"),
    )


def test_unknown_names_are_not_served(tiny: SyntheticClassic):
    assert tiny.path("v5.2/nope.parquet", ROUND) is None
    assert tiny.path("train.parquet", ROUND) is None


def test_file_layout_and_schema(tiny: SyntheticClassic, train: pd.DataFrame):
    assert len(tiny.files(ROUND)) == 12 and tiny.files(ROUND) == sorted(tiny.files(ROUND))
    data = ("train.parquet", "validation.parquet", "live.parquet", "features.json")
    assert {f"v5.2/{name}" for name in data} <= set(tiny.files(ROUND))
    schema = pq.read_schema(tiny.base_dir / "train.parquet")
    features = tiny.spec.features
    assert len(features) == 20 and all(f.startswith("feature_") for f in features)
    assert all(schema.field(f).type == pa.int8() for f in features)
    assert all(schema.field(t).type == pa.float32() for t in tiny.spec.targets)
    assert train.index.name == "id"
    assert list(train.columns[:2]) == ["era", "data_type"]
    assert train.shape == (48 * 200, 2 + 20 + len(tiny.spec.targets))
    assert set(train["data_type"]) == {"train"}
    assert pq.ParquetFile(tiny.base_dir / "train.parquet").metadata.num_row_groups >= 1


def test_features_json(tiny: SyntheticClassic, train: pd.DataFrame):
    meta = json.loads((tiny.base_dir / "features.json").read_text())
    assert meta == json.loads(json.dumps(tiny.spec.features_json()))
    assert meta["feature_sets"]["all"] == [c for c in train.columns if c.startswith("feature_")]
    assert meta["targets"] == [c for c in train.columns if c.startswith("target")]
    assert any(t.endswith("_20") for t in meta["targets"])
    assert any(t.endswith("_60") for t in meta["targets"])


def test_the_files_hold_the_specs_values(tiny: SyntheticClassic, train: pd.DataFrame):
    spec, rows = tiny.spec, tiny.spec.size.rows_per_era
    features, targets = spec.block(np.array([2]), rows, stream=1)
    era = train[train["era"] == "0002"]
    written = era[spec.features].to_numpy(dtype=float)
    known = ~np.isnan(written)
    assert (written[known] == features[0].T[known]).all()
    assert {spec.features[j] for j in np.flatnonzero(~known.all(axis=0))} <= {
        spec.features[j] for j in spec.nullable_features
    }
    assert (era["target"].to_numpy() == targets[0, 0]).all()


def test_ids_are_numerai_shaped_and_unique(tiny: SyntheticClassic, train, validation):
    live = tiny.live_ids(ROUND) + tiny.live_ids(ROUND + 1)
    ids = list(train.index) + list(validation.index) + live
    assert all(re.fullmatch(r"n[0-9a-f]{15}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_eras_follow_and_live_is_one_unlabelled_era(tiny: SyntheticClassic, train, validation):
    train_eras = sorted(train["era"].unique())
    val_eras = sorted(validation["era"].unique())
    assert train_eras[0] == "0001" and len(train_eras) == 48
    assert int(val_eras[0]) == int(train_eras[-1]) + 1 and len(val_eras) == 12
    assert validation["target"].notna().all()
    live = pd.read_parquet(tiny.live_path(ROUND))
    assert live["era"].nunique() == 1 and set(live["data_type"]) == {"live"}
    assert live["target"].isna().all() and len(live) == 200
    assert tiny.live_ids(ROUND) == list(live.index)


def test_live_data_is_new_every_round_and_deterministic(tmp_path: Path, tiny: SyntheticClassic):
    first = pd.read_parquet(tiny.ensure_live(ROUND))
    second = pd.read_parquet(tiny.ensure_live(ROUND + 1))
    assert not set(first.index) & set(second.index)
    features = tiny.spec.features
    assert not np.array_equal(first[features].to_numpy(), second[features].to_numpy())
    again = SyntheticClassic(tmp_path, size="tiny", seed=0).ensure_live(ROUND + 1)
    assert again.read_bytes() == tiny.live_path(ROUND + 1).read_bytes()


def test_rare_nulls_in_features_and_nans_in_aux_targets(tiny: SyntheticClassic, train, validation):
    null_share = train[tiny.spec.features].isna().to_numpy().mean()
    assert 0 < null_share < 0.01
    sixty = [t for t in tiny.spec.targets if t.endswith("_60")]
    assert validation[sixty].isna().any().all()
    assert train["target"].notna().all()
