"""The hidden structure of synthetic Classic data: names, ids, era bins and a learnable signal."""

from __future__ import annotations

import re

import numpy as np
import pytest

from sandbox.classic_spec import ClassicSpec, feature_names, format_ids
from sandbox.errors import SandboxConfigError
from sandbox.sizes import SIZES

TINY = SIZES["tiny"]


@pytest.fixture(scope="module")
def spec() -> ClassicSpec:
    return ClassicSpec(TINY, seed=0)


@pytest.fixture(scope="module")
def block(spec: ClassicSpec) -> tuple[np.ndarray, np.ndarray]:
    """Features (eras, F, rows) and targets (eras, T, rows) of every train and validation era."""
    return spec.block(np.arange(1, spec.n_eras + 1), TINY.rows_per_era, stream=1)


def test_feature_names_are_distinct_word_pairs_stable_for_a_count():
    names = feature_names(500)
    assert len(set(names)) == 500
    assert all(re.fullmatch(r"feature_[a-z]+_[a-z]+", n) for n in names)
    assert feature_names(20) == names[:20]
    with pytest.raises(SandboxConfigError, match="features are supported"):
        feature_names(10**6)


def test_targets_start_with_the_main_target_and_pair_20_with_60(spec: ClassicSpec):
    assert spec.targets[0] == "target"
    aux = spec.targets[1:]
    assert [t.rsplit("_", 1)[1] for t in aux] == ["20", "60"] * (len(aux) // 2)


def test_ids_are_numerai_shaped_unique_and_seeded():
    counters = np.arange(10_000)
    ids = format_ids(counters, seed=0)
    assert all(re.fullmatch(r"n[0-9a-f]{15}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    assert (format_ids(counters, seed=0) == ids).all()
    assert not set(format_ids(counters, seed=1)) & set(ids)


def test_feature_sets_are_nested(spec: ClassicSpec):
    sets = spec.feature_sets()
    assert set(sets["small"]) < set(sets["medium"]) < set(sets["all"])
    assert sets["all"] == spec.features
    assert all(set(members) <= set(spec.features) for members in sets.values())


def test_target_bins_within_each_era(spec: ClassicSpec, block):
    _, targets = block
    main = targets[:, spec.targets.index("target")]
    for era in main:
        values, counts = np.unique(era, return_counts=True)
        assert values.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
        assert counts.tolist() == [10, 40, 100, 40, 10]
    assert (main == targets[:, spec.targets.index("target_cyrus_20")]).all()


def test_feature_bins_are_equal_count_within_each_era(spec: ClassicSpec, block):
    features, _ = block
    late = features[spec.const_until_era :]
    assert late.dtype == np.int8
    for era in late:
        for feature in era:
            assert np.bincount(feature, minlength=5).tolist() == [40] * 5


def test_some_features_are_all_2_in_early_eras(spec: ClassicSpec, block):
    features, _ = block
    constant = [spec.features.index(f) for f in spec.constant_features]
    assert constant and (features[: spec.const_until_era, constant] == 2).all()
    assert not (features[spec.const_until_era :, constant] == 2).all()


def test_known_signal_correlates_with_target_every_era(spec: ClassicSpec, block):
    """A LightGBM-free check: the documented drifting signal predicts the target."""
    features, targets = block
    signal_features = [spec.features.index(f) for f in spec.signal_features]
    corrs = []
    for k, era in enumerate(range(1, spec.n_eras + 1)):
        signal = (features[k, signal_features].T.astype(float) - 2.0) @ spec.weights(era)
        corrs.append(np.corrcoef(signal, targets[k, 0])[0, 1])
    assert np.mean(corrs) > 0.15
    assert np.mean(np.array(corrs) > 0) > 0.9


def test_live_eras_follow_the_validation_eras(spec: ClassicSpec):
    assert spec.live_era(1000) == spec.n_eras + 1000
    assert spec.live_era(1001) == spec.live_era(1000) + 1
