"""Training memory: a training set's need, the machine's limit, the refusal before an OOM."""

from __future__ import annotations

import pytest

from flows.errors import NodeError, NotEnoughMemory
from flows.memory import (
    NODE_BASELINE_MIB,
    TRAINING_FLOOR_MIB,
    check_training_memory,
    memory_limit_mib,
    size_from_tags,
    training_mib,
)
from models import tournament
from models.footprint import TRAIN_BYTES_PER_VALUE


def test_the_need_grows_with_the_int8_bytes_above_the_node_baseline_past_a_floor():
    assert training_mib(0, 500, 1.0) == TRAINING_FLOOR_MIB
    # 2**20 rows x 1,000 features at 1 byte per value: 1,000 MiB above the baseline.
    assert training_mib(2**20, 1000, 1.0) == NODE_BASELINE_MIB + 1000
    assert training_mib(2**20, 1000, 0.5) == NODE_BASELINE_MIB + 500


def test_a_training_that_cannot_fit_is_refused_naming_the_preset_and_the_fix():
    with pytest.raises(NotEnoughMemory) as refused:
        check_training_memory(2_750_000, 2_376, 1.0, size="gen-s", limit_mib=4096)

    message = str(refused.value)
    assert isinstance(refused.value, NodeError) and isinstance(refused.value, MemoryError)
    assert "Out of memory at size preset gen-s (4.0 GiB)" in message
    assert "2,750,000 rows x 2,376 features" in message
    assert "numerai-nodes sizes" in message and "smaller feature set" in message


def test_a_training_that_fits_passes_and_an_undeclared_model_is_not_checked():
    check_training_memory(500_000, 500, 1.0, limit_mib=4096)
    check_training_memory(10**9, 10**4, None, limit_mib=1)  # no TRAIN_BYTES_PER_VALUE: no check
    with pytest.raises(NotEnoughMemory, match="at this machine"):
        check_training_memory(10**7, 2376, 1.0, limit_mib=8192)


def test_the_example_model_declares_its_measured_training_memory():
    # flows/training.py reads it from the spec's model module; the presets read it from here.
    assert tournament.TRAIN_BYTES_PER_VALUE == TRAIN_BYTES_PER_VALUE
    assert 0 < TRAIN_BYTES_PER_VALUE < 4


def test_the_limit_is_at_most_the_machines_memory():
    import psutil

    assert 0 < memory_limit_mib() <= psutil.virtual_memory().total // 2**20


def test_the_size_comes_from_the_runs_size_tag():
    assert size_from_tags(["numerai-node", "size:mem-l", "spec:x"]) == "mem-l"
    assert size_from_tags(["numerai-node"]) is None
