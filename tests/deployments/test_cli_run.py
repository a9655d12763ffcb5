"""`numerai-nodes run tournament` as a user runs it: a real process, its output and exit code."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sandbox.runner import Sandbox
from tests.integration.servers import free_port


def _cli(args: list[str], env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def env(prefect_server, tmp_path):
    """The user's environment: a Prefect API, a project home, no Numerai keys."""
    environ = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NUMERAI_PUBLIC", "NUMERAI_SECRET", "NUMERAI_API"))
    }
    environ["PREFECT_API_URL"] = prefect_server
    environ["NUMERAI_NODES_HOME"] = str(tmp_path / "home")
    environ["COLUMNS"] = "200"
    return environ


@pytest.fixture
def sandbox(tmp_path):
    with Sandbox(tmp_path / "sandbox", size="tiny") as running:
        yield running


def test_run_with_sandbox_submits_and_a_second_run_reuses_the_data_and_the_model(env, tmp_path):
    env["NUMERAI_NODES_SANDBOX_PORT"] = str(free_port())  # the sandbox's address keys the caches
    runs = []
    for trigger in ("cli-trigger", "cli-trigger-2"):
        result = _cli(
            ["run", "tournament", "--sandbox", "--sandbox-size", "tiny", "-p", "n_estimators=10",
             "--no-score", "--trigger-id", trigger, "--json"],
            env, tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        runs.append(result)
    for result, trigger in zip(runs, ("cli-trigger", "cli-trigger-2"), strict=True):
        printed = json.loads(result.stdout[result.stdout.index("{") :])
        assert printed["status"] == "submitted" and printed["trigger_id"] == trigger
        assert printed["model_name"] == "sandbox_model" and printed["submission_id"]
    first, second = (result.stdout + result.stderr for result in runs)
    assert "Training models.tournament" in first and "Downloaded v5.2/train.parquet" in first
    assert "Training models.tournament" not in second, "the second run trained again"
    assert "Downloaded v5.2/train.parquet" not in second
    assert "Downloaded v5.2/features.json" not in second


def test_without_keys_predictions_are_written_and_not_uploaded(env, sandbox, tmp_path):
    env["NUMERAI_API_URL"] = sandbox.url
    result = _cli(["run", "tournament", "-p", "n_estimators=10", "--no-score"], env, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "No Numerai keys found" in result.stderr
    assert "not-uploaded" in result.stdout
    assert sandbox.submissions() == []
    written = list((tmp_path / "home").rglob("predictions/tournament.csv"))
    assert len(written) == 1


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("dead-api", "did not answer"),
        ("wrong-keys", "Numerai refused the API keys"),
    ],
)
def test_expected_failures_print_the_cause_without_a_traceback(
    env, sandbox, tmp_path, setup, message
):
    env.update(
        NUMERAI_API_URL=sandbox.url,
        NUMERAI_PUBLIC_ID=sandbox.public_id,
        NUMERAI_SECRET_KEY=sandbox.secret_key,
    )
    if setup == "dead-api":
        env["NUMERAI_API_URL"] = "http://127.0.0.1:9/"
        env["NUMERAI_NODES_RETRY_DELAY_SCALE"] = "0"
    else:
        env["NUMERAI_SECRET_KEY"] = "not-the-secret"
    result = _cli(["run", "tournament", "--model", "sandbox_model"], env, tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "not-the-secret" not in result.stderr + result.stdout
    assert sandbox.submissions() == []


def test_run_signals_submits_with_the_trigger_id_using_yahoo_prices(env, sandbox, tmp_path):
    env.update(
        NUMERAI_API_URL=sandbox.url,
        NUMERAI_PUBLIC_ID=sandbox.public_id,
        NUMERAI_SECRET_KEY=sandbox.secret_key,
        NUMERAI_NODES_YAHOO_URL=sandbox.yahoo_url,
    )
    result = _cli(
        ["run", "signals", "--model", "sandbox_signals", "-p", "n_estimators=10", "--no-score",
         "--trigger-id", "signals-cli", "--json"],
        env, tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout[result.stdout.index("{") :])
    assert printed["status"] == "submitted"
    (submission,) = sandbox.submissions("sandbox_signals")
    assert submission.trigger_id == "signals-cli" and submission.row_count >= 100
