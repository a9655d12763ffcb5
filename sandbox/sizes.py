"""How much synthetic data a sandbox generates: the size presets every catalogue shares."""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.errors import SandboxConfigError


@dataclass(frozen=True)
class SizePreset:
    """How much Classic data one sandbox generates."""

    name: str
    train_eras: int
    validation_eras: int
    rows_per_era: int
    n_features: int
    live_rows: int
    chunk_eras: int


SIZES: dict[str, SizePreset] = {
    "tiny": SizePreset("tiny", 48, 12, 200, 20, 200, chunk_eras=60),
    "small": SizePreset("small", 160, 40, 1000, 60, 1000, chunk_eras=50),
    "bench": SizePreset("bench", 500, 100, 1000, 500, 5000, chunk_eras=25),
}


def size_preset(size: str) -> SizePreset:
    """The preset named `size`, or a SandboxConfigError listing the valid names."""
    try:
        return SIZES[size]
    except KeyError:
        raise SandboxConfigError(
            f"unknown sandbox size {size!r}; choose one of {sorted(SIZES)}"
        ) from None
