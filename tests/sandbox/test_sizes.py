"""The size presets: what each one generates, and that the CLI offers exactly these."""

from __future__ import annotations

import pytest

from sandbox.defaults import SIZE_NAMES
from sandbox.errors import SandboxConfigError
from sandbox.sizes import SIZES, size_preset


def test_size_presets():
    assert SIZES["tiny"].rows_per_era * (SIZES["tiny"].train_eras + SIZES["tiny"].validation_eras)
    bench = size_preset("bench")
    assert bench.train_eras * bench.rows_per_era >= 500_000 and bench.n_features >= 500
    with pytest.raises(SandboxConfigError, match="unknown sandbox size 'huge'"):
        size_preset("huge")


def test_the_cli_knows_every_size_preset():
    assert tuple(SIZES) == SIZE_NAMES
