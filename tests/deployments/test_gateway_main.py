"""`python -m deployments.gateway` as the README starts it: the catalogue's nodes, or why not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.servers import free_port

TOKEN = "t" * 43
_CATALOGUE = """
deployments:
  - name: solo
    entrypoint: flows/tournament.py:tournament_node
    parameters: {node: {name: solo, numerai_model: solo_model}}
    triggers:
      - {type: event, match: {prefect.resource.id: numerai.node.solo},
         expect: [numerai.webhook.received]}
  - name: untokened
    entrypoint: flows/tournament.py:tournament_node
    parameters: {node: {name: untokened, numerai_model: other_model}}
    triggers:
      - {type: event, match: {prefect.resource.id: numerai.node.untokened},
         expect: [numerai.webhook.received]}
"""


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NUMERAI_NODES_TOKEN_", "NUMERAI_NODES_GATEWAY_", "PREFECT_API"))
    }
    root = str(Path(__file__).parents[2])
    env.update(
        PYTHONPATH=root,
        NUMERAI_NODES_HOME=str(tmp_path / "home"),
        # No Prefect API: a token's Secret block cannot be read, and no temporary server starts.
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE="false",
        **extra,
    )
    return env


def test_with_no_node_to_serve_it_says_why_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "deployments.gateway"],
        cwd=tmp_path, env=_env(tmp_path), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "no node to serve" in result.stderr and "NUMERAI_NODES_GATEWAY_NODES" in result.stderr
    assert "Traceback" not in result.stderr


def test_from_the_project_directory_it_serves_the_catalogue_nodes_that_have_a_token(tmp_path):
    (tmp_path / "prefect.yaml").write_text(_CATALOGUE)
    port = free_port()
    env = _env(
        tmp_path,
        NUMERAI_NODES_TOKEN_SOLO=TOKEN,
        NUMERAI_NODES_GATEWAY_PORT=str(port),
        NUMERAI_NODES_GATEWAY_PREFECT_API_URL="http://127.0.0.1:9/api",  # Prefect is away
    )
    with (tmp_path / "gateway.log").open("wb") as log:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "deployments.gateway"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert gateway.poll() is None, (tmp_path / "gateway.log").read_text()
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.2)
        url = f"http://127.0.0.1:{port}/hooks"
        accepted = httpx.post(f"{url}/solo/{TOKEN}", json={"triggerId": "t-1"}, timeout=10)
        unknown = httpx.post(f"{url}/untokened/{TOKEN}", json={"triggerId": "t-2"}, timeout=10)
    finally:
        gateway.terminate()
        gateway.wait(10)
    assert health.status_code in (200, 503)  # 503: Prefect is away, which /healthz reports
    assert accepted.status_code == 202  # kept in the outbox until Prefect is back
    assert unknown.status_code == 404
    logged = (tmp_path / "gateway.log").read_text()
    assert f"Serving the webhooks of solo on http://127.0.0.1:{port}" in logged
    assert TOKEN not in logged
