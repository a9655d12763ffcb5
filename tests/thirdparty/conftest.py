"""Fixtures: a tiny sandbox on loopback, and clients nobody here wrote pointed at it."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numerapi
import numerapi.base_api
import numpy as np
import pandas as pd
import pytest

from sandbox.runner import Sandbox


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of generated data for the whole session; sandboxes share it."""
    return tmp_path_factory.mktemp("thirdparty-sandbox")


@pytest.fixture
def sandbox(data_root: Path) -> Iterator[Sandbox]:
    with Sandbox(data_root) as running:
        yield running


@pytest.fixture
def point_numerapi(monkeypatch: pytest.MonkeyPatch) -> Callable[[Sandbox], None]:
    """Point numerapi (and every client built on it) at a sandbox for one test."""
    for name in ("TRIGGER_ID", "NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY", "NUMERAI_COMPUTE_ID"):
        monkeypatch.delenv(name, raising=False)

    def point(sb: Sandbox) -> None:
        monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", sb.url)

    return point


@pytest.fixture
def napi(sandbox: Sandbox, point_numerapi) -> numerapi.NumerAPI:
    point_numerapi(sandbox)
    return numerapi.NumerAPI(
        sandbox.public_id, sandbox.secret_key, verbosity="warning", show_progress_bars=False
    )


@pytest.fixture
def sapi(sandbox: Sandbox, point_numerapi) -> numerapi.SignalsAPI:
    point_numerapi(sandbox)
    return numerapi.SignalsAPI(
        sandbox.public_id, sandbox.secret_key, verbosity="warning", show_progress_bars=False
    )


def ranked(ids: list[str]) -> pd.DataFrame:
    """Classic predictions Numerai accepts: one per id, spread over (0, 1)."""
    return pd.DataFrame({"id": ids, "prediction": np.linspace(0.05, 0.95, len(ids))})


@contextmanager
def quiet_numerai_tools() -> Iterator[None]:
    """numerai-tools calls pandas APIs that pandas deprecates; its warnings are not ours."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="numerai_tools")
        yield
