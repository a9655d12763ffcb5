"""Training memory: what a training set needs and what this machine has, checked before training.

A container that runs out of memory is killed without a word (exit 137), and a crashed run is
started again until its round closes. So before training, the node compares what the model needs
with the memory this process may use (the container's cgroup limit, or the machine's RAM), and a
training that cannot fit fails at once, naming the size preset and the fix.

What the model needs: above a floor, the node process's baseline plus the model module's measured
`TRAIN_BYTES_PER_VALUE` per int8 feature value. The figures come from
`benchmarks/container_sizes.py` (training in the node image); `numerai-nodes sizes` uses them.
"""

from __future__ import annotations

import math
from pathlib import Path

import psutil

from flows.errors import NotEnoughMemory

# The line's intercept: a node process after importing its flow (Prefect, LightGBM, pandas,
# pyarrow). The floor: the least a training peaks at, whatever its size (the bin sample,
# LightGBM's buffers, a row group). Both measured in the node image.
NODE_BASELINE_MIB = 252
TRAINING_FLOOR_MIB = 372
_MIB = 2**20
# cgroup v2, then v1: the container's memory limit; an unlimited group reports a huge number.
_CGROUP_LIMITS = (
    Path("/sys/fs/cgroup/memory.max"),
    Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
)
SIZE_TAG_PREFIX = "size:"


def training_mib(rows: int, features: int, bytes_per_value: float) -> int:
    """MiB a node process peaks at when training on `rows` x `features` int8 values."""
    grown = NODE_BASELINE_MIB + math.ceil(rows * features * bytes_per_value / _MIB)
    return max(TRAINING_FLOOR_MIB, grown)


def memory_limit_mib() -> int:
    """The memory this process may use: its cgroup's limit when one is set, else the machine's."""
    total = psutil.virtual_memory().total
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total // _MIB


def check_training_memory(
    rows: int,
    features: int,
    bytes_per_value: float | None,
    *,
    size: str | None = None,
    limit_mib: int | None = None,
) -> None:
    """Raise NotEnoughMemory when training `rows` x `features` cannot fit in this machine's
    memory. A model module that declares no `TRAIN_BYTES_PER_VALUE` is not checked."""
    if bytes_per_value is None:
        return
    needed = training_mib(rows, features, bytes_per_value)
    available = memory_limit_mib() if limit_mib is None else limit_mib
    if needed > available:
        raise NotEnoughMemory(rows, features, needed, available, size)


def size_from_tags(tags: list[str] | tuple[str, ...]) -> str | None:
    """The size preset a run's deployment was given (its `size:<preset>` tag), if any."""
    for tag in tags:
        if tag.startswith(SIZE_TAG_PREFIX):
            return tag.removeprefix(SIZE_TAG_PREFIX)
    return None
