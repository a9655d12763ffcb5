"""`numerai-nodes train` and `numerai-nodes models` as a user runs them: real processes against
a sandbox and a Prefect API, in a project whose nodes.yaml declares two nodes of one spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sandbox.runner import Sandbox

FLEET = """\
defaults: {train: false}
specs:
  fast: {data_version: v5.2, params: {n_estimators: 10, learning_rate: 0.1}}
  signals-spec: {tournament: signals}
nodes:
  alpha: {spec: fast}
  beta: {spec: fast}
"""


def _cli(args: list[str], env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def project(prefect_server, tmp_path):
    """A project with nodes.yaml, and the user's environment: a Prefect API, a sandbox as
    Numerai (public data needs no keys), a project home."""
    (tmp_path / "nodes.yaml").write_text(FLEET)
    with Sandbox(tmp_path / "sandbox", size="tiny") as sandbox:
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("NUMERAI_PUBLIC", "NUMERAI_SECRET", "NUMERAI_API"))
        }
        environ |= {
            "PREFECT_API_URL": prefect_server,
            "NUMERAI_NODES_HOME": str(tmp_path / "home"),
            "NUMERAI_API_URL": sandbox.url,
            "COLUMNS": "200",
        }
        yield tmp_path, environ


def test_train_stores_a_spec_once_and_models_lists_it_with_the_nodes_that_use_it(project):
    cwd, env = project
    first = _cli(["train", "fast"], env, cwd)
    again = _cli(["train", "fast"], env, cwd)
    listed = _cli(["models", "--json"], env, cwd)

    assert first.returncode == 0, first.stderr[-3000:]
    assert "Model of fast stored: model-" in first.stdout
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is stored already" in again.stderr + again.stdout  # the flow's log line
    assert listed.returncode == 0, listed.stderr[-3000:]
    shown = json.loads(listed.stdout)
    (model,) = shown["models"]
    assert model["spec"] == "fast" and model["data_version"] == "v5.2"
    assert model["nodes"] == ["alpha", "beta"] and model["newest"] is True
    assert model["validation_corr"] is not None and model["size_bytes"] > 0
    assert model["key"] in first.stdout


def test_train_names_what_is_wrong_without_a_traceback(project):
    cwd, env = project
    unknown = _cli(["train", "nope"], env, cwd)
    signals = _cli(["train", "signals-spec"], env, cwd)

    assert unknown.returncode == 1 and "nodes.yaml has no spec 'nope'" in unknown.stderr
    assert "fast" in unknown.stderr and "Traceback" not in unknown.stderr
    assert signals.returncode == 1 and "Signals models train in the round" in signals.stderr


def test_models_of_an_empty_store_says_how_to_train_one(project):
    cwd, env = project
    listed = _cli(["models"], env, cwd)
    assert listed.returncode == 0, listed.stderr
    assert "No trained model" in listed.stdout and "numerai-nodes train SPEC" in listed.stdout
