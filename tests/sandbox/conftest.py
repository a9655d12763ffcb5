"""Fixtures: a tiny sandbox on loopback and the real numerapi pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numerapi
import numerapi.base_api
import pytest

from sandbox.runner import Sandbox


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of generated data for the whole session; sandboxes share it."""
    return tmp_path_factory.mktemp("sandbox-root")


@pytest.fixture
def sandbox(data_root: Path) -> Iterator[Sandbox]:
    with Sandbox(data_root) as running:
        yield running


@pytest.fixture
def point_numerapi(monkeypatch: pytest.MonkeyPatch):
    """Point numerapi at a sandbox for one test; monkeypatch restores the real URL."""
    for name in ("TRIGGER_ID", "NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY", "NUMERAI_COMPUTE_ID"):
        monkeypatch.delenv(name, raising=False)

    def point(sb: Sandbox) -> None:
        monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", sb.url)

    return point


@pytest.fixture
def napi(sandbox: Sandbox, point_numerapi) -> numerapi.NumerAPI:
    """The real numerapi client with the sandbox's keys."""
    point_numerapi(sandbox)
    return numerapi.NumerAPI(
        sandbox.public_id, sandbox.secret_key, verbosity="warning", show_progress_bars=False
    )
