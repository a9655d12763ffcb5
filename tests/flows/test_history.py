"""Round history: a node run over three rounds of a sandbox on a hand-moved clock, read back
through `history` (the function and the CLI) and published as the node's artifact with a chart."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from prefect.events.worker import EventsWorker
from typer.testing import CliRunner

from deployments.cli import app
from deployments.history import node_history
from flows.history import NodeHistory, history_key
from flows.tournament import TournamentNode, tournament_node
from sandbox.performance import SCORE_DAYS
from sandbox.runner import Sandbox
from sandbox.state import ManualClock
from tests.flows.prefect_runs import artifacts

NODE = "history-node"
FAST = {"n_estimators": 20, "learning_rate": 0.1}
TRIGGERS = ("aaaa1111-round-one", "bbbb2222-round-two", "cccc3333-round-three")


@pytest.fixture(scope="module")
def three_rounds(sandbox_data, tmp_path_factory, prefect_server):
    """A sandbox on a clock the test moves, the node pointed at it as in conftest's sandbox;
    rounds r, r+1 (both resolved 40 days on) and r+2 (open, unscored), one node run each."""
    clock = ManualClock()
    home = tmp_path_factory.mktemp("history-home")
    with (
        Sandbox(sandbox_data, size="tiny", models=("sandbox_model",), clock=clock) as sandbox,
        pytest.MonkeyPatch.context() as env,
    ):
        env.setenv("NUMERAI_API_URL", sandbox.url)
        env.setenv("NUMERAI_PUBLIC_ID", sandbox.public_id)
        env.setenv("NUMERAI_SECRET_KEY", sandbox.secret_key)
        env.setenv("NUMERAI_NODES_HOME", str(home))
        node = TournamentNode(
            name=NODE, numerai_model="sandbox_model", data_version="v5.2", params=FAST
        )
        states = [tournament_node(node, TRIGGERS[0], return_state=True)]
        sandbox.open_round()
        states.append(tournament_node(node, TRIGGERS[1], return_state=True))
        clock.advance(timedelta(days=40))
        sandbox.open_round()
        states.append(tournament_node(node, TRIGGERS[2], return_state=True))
        assert all(state.is_completed() for state in states)
        EventsWorker.drain_all(timeout=10)
        yield sandbox, states


def _history(timeout: float = 20) -> NodeHistory:
    """The history once the server has stored the three submission events."""
    deadline = time.monotonic() + timeout
    while True:
        found = node_history(NODE)
        if all(row.submitted_at for row in found.rows) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_history_after_three_rounds_has_three_rows_and_live_scores_once_resolved(three_rounds):
    sandbox, _ = three_rounds
    history = _history()
    first = sandbox.current_round() - 2

    assert history.model == "sandbox_model"
    assert [row.round for row in history.rows] == [first + 2, first + 1, first]
    assert [row.trigger_id for row in history.rows] == list(reversed(TRIGGERS))
    assert [row.state for row in history.rows] == ["Completed"] * 3
    assert [row.run_name for row in history.rows] == [
        f"{NODE}-r{row.round}-{row.trigger_id[:8]}" for row in history.rows
    ]
    submitted = {s.round: s.id for s in sandbox.submissions("sandbox_model")}
    assert {row.round: row.submission_id for row in history.rows} == submitted
    assert all(row.submitted_at and row.duration_seconds for row in history.rows)
    # the model is trained once and loaded after: the same validation corr every round
    assert len({row.validation_corr for row in history.rows}) == 1
    assert history.rows[0].validation_corr is not None

    newest, *resolved = history.rows
    assert (newest.resolved, newest.corr20, newest.mmc, newest.score_day) == (
        False,
        None,
        None,
        None,
    )
    for row in resolved:
        assert row.resolved and row.score_day == SCORE_DAYS
        assert row.corr20 is not None and row.mmc is not None


def test_the_cli_prints_the_same_rounds_as_json(three_rounds):
    _history()  # the events are stored
    shown = CliRunner().invoke(app, ["history", NODE, "--json", "--rounds", "2"])

    assert shown.exit_code == 0, shown.output
    (node,) = json.loads(shown.stdout)["nodes"]
    assert node["node"] == NODE and node["model"] == "sandbox_model"
    rows = node["rows"]
    assert [row["trigger_id"] for row in rows] == list(reversed(TRIGGERS))[:2]
    assert [(row["resolved"], row["corr20"] is None) for row in rows] == [
        (False, True),
        (True, False),
    ]
    assert "per_era" not in rows[0]


def test_the_cli_prints_a_table_of_the_rounds(three_rounds):
    _history()
    shown = CliRunner().invoke(app, ["history", NODE], env={"COLUMNS": "200"})

    assert shown.exit_code == 0, shown.output
    assert f"{NODE} (sandbox_model)" in shown.stdout
    assert all(trigger[:8] in shown.stdout for trigger in TRIGGERS)
    assert shown.stdout.count("resolved") == 2 and shown.stdout.count("Completed") == 3


def test_the_cli_names_a_node_that_never_ran(three_rounds):
    shown = CliRunner().invoke(app, ["history", "no-such-node"])
    assert shown.exit_code == 0, shown.output
    assert "no-such-node: no rounds yet." in shown.stdout


def test_the_last_run_publishes_the_history_artifact_with_its_chart(three_rounds):
    _, states = three_rounds
    published = artifacts(states[-1])[history_key(NODE)]
    markdown = str(published.data)

    table = [line for line in markdown.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(table) == 3
    # the publishing run is still running; its round's submission is in already
    assert ["Running" in line for line in table] == [True, False, False]
    assert all("Completed" in line for line in table[1:])
    assert all(re.search(r"\| \d\d-\d\d \d\d:\d\d \|", line) for line in table)
    encoded = re.search(r"!\[[^\]]*\]\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert encoded, markdown[:500]
    svg = ElementTree.fromstring(base64.b64decode(encoded.group(1)))
    circles = svg.findall(".//{http://www.w3.org/2000/svg}circle")
    # the two resolved rounds have scores; the open one has none yet
    assert sorted(c.get("class") for c in circles) == ["mmc", "mmc", "v2_corr20", "v2_corr20"]
    bars = svg.findall(".//{http://www.w3.org/2000/svg}rect[@class='era']")
    assert len(bars) > 0
