"""Flow tests: one Prefect test server for the session, a fresh sandbox per test."""

from __future__ import annotations

import pytest
import yfinance as yf

from sandbox.runner import Sandbox


@pytest.fixture(autouse=True)
def _prefect(prefect_server):
    """Every flow test talks to the session's Prefect API."""
    return prefect_server


@pytest.fixture(scope="session", autouse=True)
def yfinance_cache(tmp_path_factory):
    """yfinance keeps its timezone and cookie cache here, not in the user's cache directory."""
    yf.set_tz_cache_location(str(tmp_path_factory.mktemp("yfinance-cache")))


@pytest.fixture(scope="session")
def sandbox_data(tmp_path_factory):
    """Generated data is shared by every sandbox of the session (same size and seed)."""
    return tmp_path_factory.mktemp("sandbox")


@pytest.fixture
def sandbox(sandbox_data, tmp_path, monkeypatch):
    """A fresh sandbox the node talks to through the environment, like a deployed node."""
    models = ("sandbox_model", "other_model", "sandbox_signals:signals", "sandbox_crypto:crypto")
    with Sandbox(sandbox_data, size="tiny", models=models) as running:
        monkeypatch.setenv("NUMERAI_API_URL", running.url)
        monkeypatch.setenv("NUMERAI_NODES_YAHOO_URL", running.yahoo_url)
        monkeypatch.setenv("NUMERAI_PUBLIC_ID", running.public_id)
        monkeypatch.setenv("NUMERAI_SECRET_KEY", running.secret_key)
        monkeypatch.setenv("NUMERAI_NODES_HOME", str(tmp_path / "home"))
        yield running
