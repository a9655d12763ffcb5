"""`numerai-nodes node add | list | remove | sync` on a project's files (no Prefect, no Numerai:
the live round trip is in tests/integration/test_node_lifecycle.py)."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from prefect.settings import PREFECT_API_URL, temporary_settings
from typer.testing import CliRunner

from deployments.catalogue import CLOUD_CATALOGUES
from deployments.cli import app

ROOT = Path(__file__).parents[2]
WIDE = {"COLUMNS": "300"}


@pytest.fixture
def project(tmp_path, monkeypatch):
    for name in ("nodes.yaml", "prefect.yaml", *(str(path) for path in CLOUD_CATALOGUES)):
        shutil.copy(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("NUMERAI_NODES_HOME", str(tmp_path / "home"))  # no local stack here
    # No Prefect API either, also after another module's test server became this process's.
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield tmp_path


def _run(*args: str):
    return CliRunner().invoke(app, list(args), env=WIDE)


def _deployments(project: Path) -> dict[str, dict]:
    document = yaml.safe_load((project / "prefect.yaml").read_text())
    return {entry["name"]: entry for entry in document["deployments"]}


def test_add_list_and_remove_keep_nodes_yaml_and_prefect_yaml_in_step(project):
    added = _run("node", "add", "my_second_model", "--spec", "example", "--no-train")
    assert added.exit_code == 0, added.output
    assert "tournament-node/my_second_model" in added.output
    assert (
        "  my_second_model: {spec: example, train: false}" in (project / "nodes.yaml").read_text()
    )
    entry = _deployments(project)["my_second_model"]
    assert entry["parameters"]["node"]["numerai_model"] == "my_second_model"
    assert entry["parameters"]["node"]["train"] is False
    assert _run("node", "sync", "--check").exit_code == 0

    listed = _run("node", "list", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {row["node"]: row for row in json.loads(listed.stdout)}
    assert rows["my_second_model"]["spec"] == "example"
    assert rows["my_second_model"]["train_on_round_day"] is False
    assert rows["my_second_model"]["deployed"] is None  # no Prefect API to ask
    assert rows["tournament-aws"]["file"] == "prefect.aws.yaml"

    removed = _run("node", "remove", "my_second_model", "--keep-deployment")
    assert removed.exit_code == 0, removed.output
    assert "No Numerai keys: the webhook of model my_second_model is left" in removed.output
    assert "my_second_model" not in (project / "nodes.yaml").read_text()
    assert "my_second_model" not in _deployments(project)
    assert (project / "nodes.yaml").read_text() == (ROOT / "nodes.yaml").read_text()


def test_a_wrong_add_changes_nothing_and_says_why(project):
    before = {name: (project / name).read_text() for name in ("nodes.yaml", "prefect.yaml")}
    unknown = _run("node", "add", "x_model", "--spec", "nope")
    taken = _run("node", "add", "x_model", "--spec", "example", "--numerai-model", "my_model")
    sized = _run("node", "add", "x_model", "--spec", "example", "--size", "gen-m")

    assert unknown.exit_code == 1 and "uses spec 'nope', which nodes.yaml lacks" in unknown.output
    assert taken.exit_code == 1 and "both submit as Numerai model 'my_model'" in taken.output
    assert sized.exit_code == 1 and "a process pool" in sized.output
    for result in (unknown, taken, sized):
        assert "Traceback" not in result.output
    after = {name: (project / name).read_text() for name in ("nodes.yaml", "prefect.yaml")}
    assert after == before


def test_sync_check_fails_when_nodes_yaml_changed_by_hand(project):
    path = project / "nodes.yaml"
    path.write_text(path.read_text() + "  hand_made: {spec: example}\n")
    checked = _run("node", "sync", "--check")
    assert checked.exit_code == 1 and "out of step" in checked.output
    assert _run("node", "sync").exit_code == 0
    assert "hand_made" in _deployments(project)
    assert _run("node", "sync", "--check").exit_code == 0


def test_removing_a_node_of_a_cloud_file_points_at_that_file(project):
    removed = _run("node", "remove", "tournament-aws", "--keep-deployment")
    assert removed.exit_code == 1
    assert "prefect.gcp.yaml and prefect.azure.yaml are removed by editing" in removed.output


def test_up_says_when_prefect_yaml_is_out_of_step_with_nodes_yaml(project, monkeypatch):
    path = project / "nodes.yaml"
    # Every node moved to an ECS pool by hand, and not synced: prefect.yaml still has them local.
    text = path.read_text().replace("pools: {}", "pools: {aws: ecs}")
    path.write_text(text.replace("  pool: local ", "  pool: aws   ", 1))
    with socket.socket() as taken:  # `up` stops at its port check, before starting anything
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setenv("NUMERAI_NODES_PREFECT_PORT", str(taken.getsockname()[1]))
        result = _run("up")
    text = " ".join(result.output.split())
    assert "prefect.yaml is out of step with nodes.yaml" in text
    assert "Run `numerai-nodes node sync` to deploy what nodes.yaml declares" in text
    assert result.exit_code == 1 and "Traceback" not in result.output
