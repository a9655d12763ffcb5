"""The local stack's Prefect server on a real PostgreSQL, as production runs it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from deployments.catalogue import load_nodes, nodes_on_pool
from deployments.stack import LocalStack, StackSettings
from tests.integration.postgres import Postgres
from tests.integration.servers import free_port

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Postgres.available(), reason="PostgreSQL server binaries not installed"),
]
PROJECT = Path(__file__).parents[2]


def test_the_stack_runs_on_postgresql_and_keeps_its_deployments_there(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFECT_UI_ENABLED", "false")
    with Postgres(tmp_path / "pg") as database:
        settings = StackSettings(
            home=tmp_path / "home",
            prefect_port=free_port(),
            gateway_port=free_port(),
            sandbox_port=free_port(),
            database_url=database.url,
            _env_file=None,
        )
        stack = LocalStack(settings, project_dir=PROJECT)
        try:
            info = stack.up()
            assert info.database == "postgresql"
            nodes = nodes_on_pool(load_nodes(PROJECT / "prefect.yaml"), settings.work_pool)
            expected = sorted(node.deployment for node in nodes)
            deployments = httpx.post(f"{info.prefect_api_url}/deployments/filter", json={})
            assert sorted(d["name"] for d in deployments.json()) == expected
            # The server wrote to PostgreSQL, not to a SQLite file under the home.
            stored = database.query("select name from deployment order by name")
            assert stored.split() == expected
            assert not list((tmp_path / "home").rglob("*.db"))
        finally:
            stack.down()
