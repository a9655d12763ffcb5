"""The `numerai-nodes` command line as a user meets it: help, version, and a stack that is down."""

from __future__ import annotations

from importlib.metadata import version

import pytest
from typer.testing import CliRunner

from deployments.cli import app

WIDE = {"COLUMNS": "200"}


def test_version_and_short_help():
    shown = CliRunner().invoke(app, ["--version"])
    assert (
        shown.exit_code == 0 and shown.stdout.strip() == f"numerai-nodes {version('numerai-nodes')}"
    )
    for args in (["-h"], ["run", "tournament", "-h"], ["sandbox", "open-round", "-h"]):
        helped = CliRunner().invoke(app, args, env=WIDE)
        assert helped.exit_code == 0 and "Usage:" in helped.stdout, args


def test_flags_show_no_type_in_help():
    helped = CliRunner().invoke(app, ["run", "tournament", "-h"], env=WIDE)
    assert "--force" in helped.stdout and "--sandbox" in helped.stdout
    assert "<bool>" not in helped.stdout


@pytest.fixture
def stack_down(monkeypatch, tmp_path):
    """No local stack under the home and no PREFECT_API_URL: nothing to talk to (also when
    another test module's Prefect test server is the process's API)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("NUMERAI_NODES_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.chdir(tmp_path.parent)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        yield tmp_path


def test_node_test_with_the_stack_down_says_so_and_starts_no_server(stack_down, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).parents[2])  # the project: its catalogue names the node
    result = CliRunner().invoke(app, ["node", "test", "tournament"], env=WIDE)
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "the local stack is not running and PREFECT_API_URL is not set" in text
    assert "numerai-nodes up" in text
    assert "temporary server" not in text.lower() and "Traceback" not in text


def test_doctor_with_the_stack_down_names_it_and_starts_no_server(stack_down, monkeypatch):
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).parents[2])
    for name in ("NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUMERAI_API_URL", "http://127.0.0.1:9/")  # never the real Numerai
    result = CliRunner().invoke(app, ["doctor"], env=WIDE)
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert (
        "no Prefect server: the local stack is not running and PREFECT_API_URL is not set" in text
    )
    assert "3 nodes over 3 specs, in step with prefect.yaml" in text
    assert "temporary server" not in text.lower() and "Traceback" not in text
