"""numerai-cli's `numerai node test`, its own code, against the sandbox.

numerai-cli asks Numerai for its tournaments when its `node` module is imported, triggers the
model's webhook, then reads the model's submissions for the current round and parses their
`insertedAt` as `%Y-%m-%dT%H:%M:%SZ`. Only its cloud log follower (`monitor`: AWS, Azure or GCP
APIs) is replaced, by a stand-in for the node the webhook starts: it submits the live example
predictions with the trigger id the webhook carried, as a deployed node does.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numerapi
import numerapi.base_api
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flows.tournaments import CLASSIC, SIGNALS, Tournament
from sandbox.runner import Sandbox
from tests.integration.servers import UvicornThread


class Node:
    """Where the webhook lands: it records each body (the stand-in `monitor` then submits)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> JSONResponse:
        body = json.loads(await request.body() or b"{}")
        with self._lock:
            self.bodies.append(body)
        return JSONResponse({}, status_code=202)


@pytest.fixture(scope="module")
def cli(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A sandbox, and numerai-cli's `node` module imported (or reloaded) while numerapi points
    at it, with a private HOME; yields (sandbox, node module, tournaments calls at import)."""
    home = tmp_path_factory.mktemp("home")
    with Sandbox(data_root) as sb, pytest.MonkeyPatch.context() as patch:
        patch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", sb.url)
        patch.setenv("HOME", str(home))
        for name in ("TRIGGER_ID", "NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY"):
            patch.delenv(name, raising=False)
        loaded = sys.modules.get("numerai.cli.node")
        module = importlib.reload(loaded) if loaded else importlib.import_module("numerai.cli.node")
        calls = httpx.get(f"{sb.url}_sandbox/calls").json().get("tournaments", 0)
        yield sb, module, calls


@pytest.fixture
def configured(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A new round with no submission yet, and numerai-cli's config directory with the
    sandbox's keys; yields a function that writes one node's entry of nodes.json."""
    sb, node, _ = cli
    sb.open_round(CLASSIC)
    sb.open_round(SIGNALS)
    import numerai.cli.util.files as files
    import numerai.cli.util.keys as keys

    keys_path, nodes_path = tmp_path / ".keys", tmp_path / "nodes.json"
    keys_path.write_text(
        json.dumps(
            {"numerai": {"NUMERAI_PUBLIC_ID": sb.public_id, "NUMERAI_SECRET_KEY": sb.secret_key}}
        )
    )
    monkeypatch.setattr(keys, "KEYS_PATH", str(keys_path))
    monkeypatch.setattr(files, "NODES_PATH", str(nodes_path))
    monkeypatch.setattr(node, "CONFIG_PATH", str(tmp_path))
    monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", sb.url)
    monkeypatch.delenv("TRIGGER_ID", raising=False)

    def write(name: str, tournament: int, **config: object) -> None:
        prefix = node.tournaments_dict()[tournament]
        model_id = sb.models[name]
        nodes = {f"{prefix}-{name}": {"provider": "aws", "model_id": model_id, **config}}
        nodes_path.write_text(json.dumps(nodes))

    yield write
    for model in sb.state.models():  # no webhook left pointing at a stopped receiver
        sb.state.set_webhook(model.id, None)


def _node_test_module() -> ModuleType:
    """numerai-cli's node/test.py (the package's `test` attribute is the click command)."""
    return importlib.import_module("numerai.cli.node.test")


def _deployed_node(sb: Sandbox, receiver: Node, monkeypatch, *, with_trigger: bool = True):
    """The stand-in for numerai-cli's cloud `monitor`: the container the webhook started
    submits the live example predictions, with the webhook's trigger id."""

    def monitor(node, config, verbose, num_lines, log_type, follow_tail, trigger_id=None):
        assert sb.webhooks.wait(10)
        body = receiver.bodies[-1]
        if with_trigger and body.get("triggerId"):
            monkeypatch.setenv("TRIGGER_ID", body["triggerId"])
        tournament = Tournament(sb.state.model(config["model_id"]).tournament)
        api_class = numerapi.SignalsAPI if tournament == SIGNALS else numerapi.NumerAPI
        api = api_class(sb.public_id, sb.secret_key, verbosity="warning")
        version = sb.backend.data_version(tournament)
        example = api.download_dataset(f"{version}/live_example_preds.csv", str(Path(node)))
        api.upload_predictions(example, model_id=config["model_id"])
        monkeypatch.delenv("TRIGGER_ID", raising=False)

    monkeypatch.setattr(_node_test_module(), "monitor", monitor)


def test_importing_the_node_module_asks_numerai_for_its_tournaments(cli):
    _sb, node, calls_at_import = cli
    assert calls_at_import >= 1
    names = node.tournaments_dict()
    assert set(names) == {t.value for t in Tournament}
    assert all(isinstance(name, str) and name for name in names.values())


def _node_test(node: ModuleType, model: str, tournament: int = CLASSIC):
    result = CliRunner().invoke(node.node, ["-m", model, "-t", str(tournament), "test"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.output


def test_node_test_passes_for_a_node_that_submits_with_its_trigger_id(
    cli, configured, monkeypatch, tmp_path
):
    sb, node, _ = cli
    monkeypatch.chdir(tmp_path)
    receiver = Node()
    with UvicornThread(receiver.app) as server:
        numerapi.NumerAPI(sb.public_id, sb.secret_key).set_submission_webhook(
            sb.models["sandbox_model"], f"{server.url}/hook"
        )
        configured("sandbox_model", CLASSIC)
        _deployed_node(sb, receiver, monkeypatch)
        output = _node_test(node, "sandbox_model")
    trigger = sb.state.triggers_for(sb.models["sandbox_model"])[-1]
    assert f"Trigger ID assigned for this test: {trigger.id}" in output
    assert "Submission uploaded correctly" in output, output
    assert "Test complete, your model now submits automatically!" in output
    assert sb.submissions("sandbox_model")[-1].trigger_id == trigger.id


def test_node_test_passes_for_a_signals_node(cli, configured, monkeypatch, tmp_path):
    sb, node, _ = cli
    monkeypatch.chdir(tmp_path)
    receiver = Node()
    with UvicornThread(receiver.app) as server:
        numerapi.SignalsAPI(sb.public_id, sb.secret_key).set_submission_webhook(
            sb.models["sandbox_signals"], f"{server.url}/hook"
        )
        configured("sandbox_signals", SIGNALS)
        _deployed_node(sb, receiver, monkeypatch)
        output = _node_test(node, "sandbox_signals", SIGNALS)
    assert "Submission uploaded correctly" in output, output


def test_a_cron_node_is_checked_by_the_time_of_its_submission(
    cli, configured, monkeypatch, tmp_path
):
    """A cron node is called directly, with no trigger id; numerai-cli then parses the
    submission's insertedAt with `%Y-%m-%dT%H:%M:%SZ` and wants it within 5 minutes."""
    sb, node, _ = cli
    monkeypatch.chdir(tmp_path)
    receiver = Node()
    with UvicornThread(receiver.app) as server:
        configured("sandbox_model", CLASSIC, cron="0 18 * * 6", webhook_url=f"{server.url}/hook")
        _deployed_node(sb, receiver, monkeypatch)
        output = _node_test(node, "sandbox_model")
    assert receiver.bodies == [{}]
    assert "Submission uploaded correctly" in output, output
    assert "No submission appeared in the last 5 minutes" not in output


def test_node_test_fails_for_a_node_that_drops_its_trigger_id(
    cli, configured, monkeypatch, tmp_path
):
    sb, node, _ = cli
    monkeypatch.chdir(tmp_path)
    receiver = Node()
    with UvicornThread(receiver.app) as server:
        numerapi.NumerAPI(sb.public_id, sb.secret_key).set_submission_webhook(
            sb.models["sandbox_model"], f"{server.url}/hook"
        )
        configured("sandbox_model", CLASSIC)
        _deployed_node(sb, receiver, monkeypatch, with_trigger=False)
        output = _node_test(node, "sandbox_model")
    assert "Your node did not submit the Trigger ID assigned during this test" in output


def test_node_test_fails_when_nothing_was_submitted_this_round(cli, configured, monkeypatch):
    _sb, node, _ = cli
    configured("sandbox_model", CLASSIC)
    monkeypatch.setattr(_node_test_module(), "monitor", lambda *args, **kwargs: None)
    output = _node_test(node, "sandbox_model")
    assert "No submission found for current round, test failed" in output
