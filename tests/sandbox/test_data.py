"""The synthetic Classic data: shape, determinism, era bins and a learnable signal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sandbox.data import SIZES, SyntheticClassic, size_preset

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


def _files(catalog: SyntheticClassic, round_number: int) -> dict[str, bytes]:
    return {
        name: catalog.path(name, round_number).read_bytes()  # type: ignore[union-attr]
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


def test_file_layout_and_schema(tiny: SyntheticClassic, train: pd.DataFrame):
    assert tiny.files(ROUND) == [
        "v5.2/train.parquet",
        "v5.2/validation.parquet",
        "v5.2/live.parquet",
        "v5.2/features.json",
    ]
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
    sets = meta["feature_sets"]
    assert set(sets["small"]) < set(sets["medium"]) < set(sets["all"])
    assert sets["all"] == [c for c in train.columns if c.startswith("feature_")]
    assert meta["targets"] == [c for c in train.columns if c.startswith("target")]
    assert meta["targets"][0] == "target"
    assert any(t.endswith("_20") for t in meta["targets"])
    assert any(t.endswith("_60") for t in meta["targets"])


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


def test_live_data_is_new_every_round_and_deterministic(tmp_path: Path, tiny: SyntheticClassic):
    first = pd.read_parquet(tiny.ensure_live(ROUND))
    second = pd.read_parquet(tiny.ensure_live(ROUND + 1))
    assert not set(first.index) & set(second.index)
    features = tiny.spec.features
    assert not np.array_equal(first[features].to_numpy(), second[features].to_numpy())
    again = SyntheticClassic(tmp_path, size="tiny", seed=0).ensure_live(ROUND + 1)
    assert again.read_bytes() == tiny.live_path(ROUND + 1).read_bytes()


def test_target_bins_within_each_era(train: pd.DataFrame):
    counts = train.groupby("era")["target"].value_counts().unstack()
    assert list(counts.columns) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert (counts.to_numpy() == np.array([10, 40, 100, 40, 10])).all()
    assert (train["target"] == train["target_cyrus_20"]).all()


def test_feature_bins_are_equal_count_within_each_era(tiny: SyntheticClassic, train):
    late = train[train["era"].astype(int) > tiny.spec.const_until_era]
    for feature in tiny.spec.features:
        counts = late.groupby("era")[feature].value_counts().unstack()
        assert list(counts.columns) == [0, 1, 2, 3, 4]
        nulls = late[feature].isna().groupby(late["era"]).sum().max()
        assert counts.max().max() == 40 and counts.min().min() >= 40 - nulls


def test_some_features_are_all_2_in_early_eras(tiny: SyntheticClassic, train):
    early = train[train["era"].astype(int) <= tiny.spec.const_until_era]
    constant = tiny.spec.constant_features
    assert constant and (early[constant].fillna(2) == 2).all().all()


def test_rare_nulls_in_features_and_nans_in_aux_targets(tiny: SyntheticClassic, train, validation):
    null_share = train[tiny.spec.features].isna().to_numpy().mean()
    assert 0 < null_share < 0.01
    sixty = [t for t in tiny.spec.targets if t.endswith("_60")]
    assert validation[sixty].isna().any().all()
    assert train["target"].notna().all()


def test_known_signal_correlates_with_target_every_era(tiny: SyntheticClassic, train, validation):
    """A LightGBM-free check: the documented drifting signal predicts the target."""
    signal_features = tiny.spec.signal_features
    corrs = []
    for era, frame in pd.concat([train, validation]).groupby("era"):
        signal = (frame[signal_features].fillna(2).to_numpy() - 2.0) @ tiny.spec.weights(int(era))
        corrs.append(np.corrcoef(signal, frame["target"])[0, 1])
    assert np.mean(corrs) > 0.15
    assert np.mean(np.array(corrs) > 0) > 0.9


def test_size_presets():
    assert SIZES["tiny"].rows_per_era * (SIZES["tiny"].train_eras + SIZES["tiny"].validation_eras)
    bench = size_preset("bench")
    assert bench.train_eras * bench.rows_per_era >= 500_000 and bench.n_features >= 500
    with pytest.raises(ValueError, match="unknown sandbox size"):
        size_preset("huge")


def test_the_cli_knows_every_size_preset():
    from sandbox.data import SIZES
    from sandbox.defaults import SIZE_NAMES

    assert tuple(SIZES) == SIZE_NAMES
