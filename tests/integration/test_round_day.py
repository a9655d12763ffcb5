"""Round day on a real local stack: Prefect server, process worker, gateway and sandbox.

Webhook POSTs go through the gateway to Prefect events, the deployment's trigger makes the flow
run, the worker runs it, and the sandbox records the submission. Where PostgreSQL is installed the
server runs on it, as in production; otherwise on SQLite.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deployments.gateway import GatewaySettings, create_app
from deployments.stack import LocalStack, StackSettings
from tests.integration.postgres import Postgres
from tests.integration.servers import TcpProxy, UvicornThread, free_port

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).parents[2]
MODEL = "my_model"


@dataclass
class Stack:
    stack: LocalStack
    env: dict[str, str]
    ports: dict[str, int]
    home: Path
    database: Postgres | None

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}/{path}"

    def api(self, path: str, payload: dict | None = None):
        return httpx.post(self.url("prefect", f"api/{path}"), json=payload or {}, timeout=30)

    @property
    def webhook(self) -> str:
        state = httpx.get(self.url("sandbox", "_sandbox/state"), timeout=10).json()
        return next(m["webhook"] for m in state["models"] if m["name"] == MODEL)

    def runs(self, trigger_id: str) -> list[dict]:
        runs = self.api("flow_runs/filter", {"limit": 200}).json()
        return [r for r in runs if r["parameters"].get("trigger_id") == trigger_id]

    def submissions(self, trigger_id: str) -> list[dict]:
        found = httpx.get(self.url("sandbox", "_sandbox/submissions"), timeout=10).json()
        return [s for s in found if s["trigger_id"] == trigger_id]

    def wait_completed(self, trigger_id: str, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(trigger_id)
            if runs and runs[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED"):
                return runs[0]
            time.sleep(1)
        raise AssertionError(f"no finished run for {trigger_id}: {self.runs(trigger_id)}")

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "deployments.cli", *args],
            env=self.env, cwd=PROJECT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("round-day")
    home = root / "home"
    ports = {"prefect": free_port(), "gateway": free_port(), "sandbox": free_port()}
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NUMERAI_PUBLIC", "NUMERAI_SECRET", "NUMERAI_API", "PREFECT_API"))
    }
    env.update(
        NUMERAI_NODES_HOME=str(home),
        NUMERAI_NODES_START_TIMEOUT_SECONDS="150",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_UI_ENABLED="false",
        COLUMNS="200",
        **{f"NUMERAI_NODES_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    )
    with contextlib.ExitStack() as cleanup:
        database = None
        if Postgres.available():
            database = cleanup.enter_context(Postgres(root / "pg"))
            env["NUMERAI_NODES_DATABASE_URL"] = database.url
        settings = StackSettings(
            home=home,
            prefect_port=ports["prefect"],
            gateway_port=ports["gateway"],
            sandbox_port=ports["sandbox"],
            database_url=database.url if database else None,
            _env_file=None,
        )
        local = LocalStack(settings, project_dir=PROJECT)
        cleanup.callback(local.down)
        started = subprocess.run(
            [sys.executable, "-m", "deployments.cli", "up", "--sandbox", "--sandbox-size", "tiny"],
            env=env, cwd=PROJECT, capture_output=True, text=True, timeout=400,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr[-4000:]
        yield Stack(local, env, ports, home, database)


def _wait_idle(stack: Stack, timeout: float = 120) -> None:
    """Until no flow run is pending or running (a stopping worker waits for its runs)."""
    busy = {"type": {"any_": ["PENDING", "RUNNING"]}}
    deadline = time.monotonic() + timeout
    while stack.api("flow_runs/filter", {"flow_runs": {"state": busy}}).json():
        assert time.monotonic() < deadline, "flow runs are still going"
        time.sleep(1)


def _post(url: str, trigger_id: str, **body) -> httpx.Response:
    return httpx.post(url, json={"triggerId": trigger_id, "roundNumber": None, **body}, timeout=30)


def test_a_webhook_post_runs_the_node_which_submits_with_the_trigger_id(stack):
    response = _post(stack.webhook, "gw-1", roundNumber=None)
    assert response.status_code == 202, response.text

    run = stack.wait_completed("gw-1")
    assert run["state_type"] == "COMPLETED", run["state"]
    (submission,) = stack.submissions("gw-1")
    assert submission["model_name"] == MODEL


def test_twenty_concurrent_deliveries_of_one_trigger_make_one_run_and_one_submission(stack):
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: _post(stack.webhook, "burst-1"), range(20)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["event_id"] for a in answers}) == 1

    stack.wait_completed("burst-1")
    time.sleep(5)  # a duplicate run would have been created by now
    assert len(stack.runs("burst-1")) == 1
    assert len(stack.submissions("burst-1")) == 1


def test_bad_requests_create_no_run(stack):
    webhook = stack.webhook
    wrong_token = webhook.rsplit("/", 1)[0] + "/not-the-token-at-all"
    assert httpx.post(webhook, content=b"{not json", timeout=10).status_code == 422
    assert httpx.post(webhook, json={"roundNumber": 3}, timeout=10).status_code == 422
    assert _post(wrong_token, "bad-token").status_code == 404
    oversized = {"triggerId": "too-big", "padding": "x" * 70_000}
    assert httpx.post(webhook, json=oversized, timeout=10).status_code == 413
    time.sleep(5)
    assert stack.runs("bad-token") == [] and stack.runs("too-big") == []


def test_with_prefect_down_the_gateway_answers_503_and_the_retry_makes_one_run(stack):
    token = stack.webhook.rsplit("/", 1)[-1]
    with TcpProxy(stack.ports["prefect"]) as link:
        settings = GatewaySettings(
            prefect_api_url=f"{link.url}/api",
            nodes=["tournament"],
            tokens={"tournament": token},
            _env_file=None,
        )
        with UvicornThread(create_app(settings)) as gateway:
            url = f"{gateway.url}/hooks/tournament/{token}"
            link.cut()
            refused = _post(url, "outage-1")
            assert refused.status_code == 503
            assert int(refused.headers["Retry-After"]) > 0
            time.sleep(3)
            assert stack.runs("outage-1") == []

            link.restore()
            assert _post(url, "outage-1").status_code == 202  # the sender's retry
    run = stack.wait_completed("outage-1")
    assert run["state_type"] == "COMPLETED"
    assert len(stack.runs("outage-1")) == 1
    assert len(stack.submissions("outage-1")) == 1


def test_node_test_passes_against_the_sandbox(stack):
    result = stack.cli("node", "test", "tournament", "--json")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert '"ok": true' in result.stdout
    assert "submitted" in result.stdout


def test_doctor_is_green_on_a_healthy_stack(stack):
    result = stack.cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "✗" not in result.stdout


def test_round_opens_a_round_and_every_node_submits_through_its_webhook(stack):
    result = stack.cli("round", "--json", timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = json.loads(result.stdout[result.stdout.index("[") :])
    assert sorted(row["node"] for row in rows) == ["signals", "tournament"]
    for row in rows:
        assert row["submission_id"] and row["trigger_id"], row
        assert row["webhook_to_start_s"] is not None and row["run_s"] is not None
        (submission,) = stack.submissions(row["trigger_id"])
        assert submission["id"] == row["submission_id"] and submission["round"] == row["round"]
    assert "using the local stack that is already up" in result.stderr.lower()


def test_the_stack_keeps_its_state_in_postgresql(stack):
    if stack.database is None:
        pytest.skip("PostgreSQL server binaries not installed: the stack runs on SQLite")
    status = json.loads(stack.cli("status", "--json").stdout)
    assert status["database"] == "postgresql"
    names = sorted(d["name"] for d in stack.api("deployments/filter").json())
    assert names == ["signals", "tournament"]  # the local nodes only
    stored = stack.database.query("select name from deployment order by name")
    assert stored.split() == names
    assert not list(stack.home.rglob("*.db")), "the server wrote a SQLite file"


def test_with_the_worker_stopped_node_test_and_doctor_say_so(stack):
    _wait_idle(stack)
    worker = next(p for p in stack.stack.status() if p.name == "worker")
    os.kill(worker.pid, 2)  # SIGINT, as `down` does
    deadline = time.monotonic() + 60
    while any(p.alive for p in stack.stack.status() if p.name == "worker"):
        assert time.monotonic() < deadline, "the worker did not stop"
        time.sleep(0.5)

    result = stack.cli("node", "test", "tournament", "--start-timeout", "10")
    assert result.returncode == 1
    text = " ".join(result.stdout.split())
    assert "no worker is taking runs from work pool 'local'" in text
    assert "Traceback" not in result.stdout + result.stderr

    time.sleep(12)  # the worker's heartbeat goes stale
    result = stack.cli("doctor", "--json")
    assert result.returncode == 1
    assert "has no live worker" in result.stdout


def test_doctor_reports_a_missing_deployment(stack):
    deployments = stack.api("deployments/filter").json()
    for deployment in deployments:
        url = stack.url("prefect", f"api/deployments/{deployment['id']}")
        for _ in range(20):  # SQLite answers 503 ("database is locked") while runs finish
            deleted = httpx.delete(url, timeout=30)
            if deleted.status_code != 503:
                break
            time.sleep(1)
        assert deleted.status_code == 204, deleted.text
    result = stack.cli("doctor")
    assert result.returncode == 1
    text = " ".join(result.stdout.split())
    assert "tournament-node/tournament is not deployed" in text
    assert "prefect --no-prompt deploy -n tournament-node/tournament" in text
