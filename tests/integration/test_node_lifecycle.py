"""`numerai-nodes node add --deploy` → `node list` → `node remove` on the live local stack, as a
user runs them: nodes.yaml and prefect.yaml, the Prefect deployments, the sandbox's webhook and
the gateway all follow, with no restart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from deployments.catalogue import CLOUD_CATALOGUES
from tests.integration.local_stack import PROJECT, Stack

NODE = "lifecycle_model"
SPEC = "lifecycle"


def _project(root: Path) -> Path:
    """A project of its own (the stack's is the repository): code linked, catalogue copied, and
    a spec only this test's node uses."""
    root.mkdir()
    for name in ("flows", "models"):
        (root / name).symlink_to(PROJECT / name)
    for name in ("prefect.yaml", *(str(path) for path in CLOUD_CATALOGUES)):
        (root / name).write_text((PROJECT / name).read_text())
    declarations = yaml.safe_load((PROJECT / "nodes.yaml").read_text())
    spec = {"data_version": "v5.2", "params": {"n_estimators": 10}, "training": {"schedule": None}}
    text = (
        (PROJECT / "nodes.yaml")
        .read_text()
        .replace("\nspecs:\n", f"\nspecs:\n  {SPEC}: {json.dumps(spec)}\n", 1)
    )
    (root / "nodes.yaml").write_text(text)
    assert set(yaml.safe_load(text)["nodes"]) == set(declarations["nodes"])
    return root


def _cli(stack: Stack, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        env=stack.env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _sandbox_model(stack: Stack) -> dict | None:
    state = httpx.get(stack.url("sandbox", "_sandbox/state"), timeout=10).json()
    return next((m for m in state["models"] if m["name"] == NODE), None)


def _deployment(stack: Stack, name: str) -> int:
    return httpx.get(stack.url("prefect", f"api/deployments/name/{name}"), timeout=10).status_code


@pytest.mark.integration
def test_node_add_list_remove_round_trip_on_the_live_stack(stack: Stack, tmp_path: Path):
    project = _project(tmp_path / "project")

    added = _cli(stack, project, "node", "add", NODE, "--spec", SPEC, "--deploy", "--sandbox")
    assert added.returncode == 0, added.stdout + added.stderr[-3000:]
    assert "Numerai now calls" in added.stdout
    assert f"  {NODE}: {{spec: {SPEC}}}" in (project / "nodes.yaml").read_text()
    assert _deployment(stack, f"tournament-node/{NODE}") == 200
    assert _deployment(stack, f"train-spec/train-{SPEC}") == 200
    model = _sandbox_model(stack)
    assert model is not None, "the sandbox account got the model"
    assert model["webhook"].startswith(stack.url("gateway", f"hooks/{NODE}/"))
    # The gateway started before this node existed, and takes its token without a restart: a
    # body it cannot read is refused for the body (4xx), not as an unknown webhook (404).
    answer = httpx.post(model["webhook"], content=b"not json", timeout=10)
    assert 400 <= answer.status_code < 500 and answer.status_code != 404, answer.text

    listed = _cli(stack, project, "node", "list", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    rows = {row["node"]: row for row in json.loads(listed.stdout)}
    assert rows[NODE]["deployed"] is True and rows[NODE]["spec"] == SPEC
    assert rows[NODE]["numerai_model"] == NODE

    removed = _cli(stack, project, "node", "remove", NODE, "--sandbox")
    assert removed.returncode == 0, removed.stdout + removed.stderr[-3000:]
    assert f"Cleared Numerai model {NODE}" in removed.stdout
    assert _deployment(stack, f"tournament-node/{NODE}") == 404
    assert _deployment(stack, f"train-spec/train-{SPEC}") == 404, "no node uses the spec now"
    assert _deployment(stack, "tournament-node/tournament") == 200, "other nodes stay"
    cleared = _sandbox_model(stack)
    assert cleared is not None and cleared["webhook"] is None
    assert NODE not in (project / "nodes.yaml").read_text()
    assert NODE not in (project / "prefect.yaml").read_text()
