"""The sandbox calls registered webhooks like Numerai: on triggerModelWebhook and on a new round."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numerapi
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from flows.tournaments import CLASSIC
from sandbox.classic_spec import DATA_VERSION
from sandbox.runner import Sandbox
from tests.integration.servers import UvicornThread


class Receiver:
    """A webhook endpoint that records bodies and can fail its first calls."""

    def __init__(self, fail_first: int = 0):
        self.bodies: list[dict] = []
        self.fail_first = fail_first
        self.calls = 0
        self.lock = threading.Lock()
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request):
        with self.lock:
            self.calls += 1
            if self.calls <= self.fail_first:
                return JSONResponse({"error": "busy"}, status_code=503)
            self.bodies.append(await request.json())
        return JSONResponse({}, status_code=202)


@pytest.fixture
def sandbox(tmp_path):
    with Sandbox(tmp_path, size="tiny", models=("alpha", "beta")) as running:
        running.webhooks.retry_delays_s = (0.05, 0.05, 0.05)
        yield running


def _api(sandbox: Sandbox, monkeypatch) -> numerapi.NumerAPI:
    monkeypatch.setattr(numerapi.base_api, "API_TOURNAMENT_URL", sandbox.url)
    return numerapi.NumerAPI(sandbox.public_id, sandbox.secret_key)


def test_trigger_model_webhook_posts_the_trigger_id_round_and_data_version(sandbox, monkeypatch):
    receiver = Receiver()
    with UvicornThread(receiver.app) as server:
        api = _api(sandbox, monkeypatch)
        model_id = api.get_models()["alpha"]
        assert api.set_submission_webhook(model_id, f"{server.url}/hook")
        query = "mutation($m: String!) { triggerModelWebhook(modelId: $m) }"
        trigger_id = api.raw_query(query, {"m": model_id}, authorization=True)["data"][
            "triggerModelWebhook"
        ]
        assert sandbox.webhooks.wait(10)
    assert receiver.bodies == [
        {
            "triggerId": trigger_id,
            "roundNumber": sandbox.current_round(),
            "dataVersion": DATA_VERSION,
        }
    ]
    (delivery,) = sandbox.webhooks.deliveries
    assert delivery.status_code == 202 and delivery.delivered_at is not None


def test_opening_a_round_calls_every_registered_webhook_once(sandbox, monkeypatch):
    receiver = Receiver()
    with UvicornThread(receiver.app) as server:
        api = _api(sandbox, monkeypatch)
        models = api.get_models()
        api.set_submission_webhook(models["alpha"], f"{server.url}/hook")
        new_round = sandbox.open_round()
        assert sandbox.webhooks.wait(10)
    # beta has no webhook: only alpha is called, for the new round.
    assert [body["roundNumber"] for body in receiver.bodies] == [new_round]
    assert {t.model_id for t in sandbox.state.triggers} == {models["alpha"]}


def test_a_failing_webhook_is_retried_until_it_answers(sandbox, monkeypatch):
    receiver = Receiver(fail_first=2)
    with UvicornThread(receiver.app) as server:
        api = _api(sandbox, monkeypatch)
        api.set_submission_webhook(api.get_models()["alpha"], f"{server.url}/hook")
        sandbox.open_round()
        assert sandbox.webhooks.wait(10)
    (delivery,) = sandbox.webhooks.deliveries
    assert delivery.attempts == 3 and delivery.status_code == 202
    assert len(receiver.bodies) == 1


def test_an_unreachable_webhook_is_given_up_with_the_error_recorded(sandbox, monkeypatch):
    api = _api(sandbox, monkeypatch)
    api.set_submission_webhook(api.get_models()["alpha"], "http://127.0.0.1:9/hook")
    sandbox.open_round()
    assert sandbox.webhooks.wait(10)
    (delivery,) = sandbox.webhooks.deliveries
    assert delivery.delivered_at is None and delivery.attempts == 4
    assert delivery.error == "ConnectError"


def _data_version_sent(sandbox: Sandbox, monkeypatch) -> str:
    """The `dataVersion` of the webhook a new round sends."""
    receiver = Receiver()
    with UvicornThread(receiver.app) as server:
        api = _api(sandbox, monkeypatch)
        api.set_submission_webhook(api.get_models()["alpha"], f"{server.url}/hook")
        sandbox.open_round()
        assert sandbox.webhooks.wait(10)
    [body] = receiver.bodies
    return body["dataVersion"]


def test_the_webhook_names_the_version_the_sandbox_serves(tmp_path: Path, monkeypatch):
    with Sandbox(tmp_path, models=("alpha",), data_version="v5.3") as sb:
        assert _data_version_sent(sb, monkeypatch) == "v5.3"
        assert all(name.startswith("v5.3/") for name in sb.backend.datasets(CLASSIC, None))


def test_the_newest_of_real_files_is_chosen_as_a_version_not_as_text(
    sandbox: Sandbox, tmp_path: Path, monkeypatch
):
    real = tmp_path / "real"
    for version in ("v5.9", "v5.10"):
        (real / version).mkdir(parents=True)
        live = sandbox.backend.dataset_path(CLASSIC, f"{DATA_VERSION}/live.parquet", None)
        shutil.copy(live, real / version / "live.parquet")
    with Sandbox(tmp_path / "root", data_dir=real, models=("alpha",)) as sb:
        assert sb.backend.data_version(CLASSIC) == "v5.10"  # as text, "v5.9" > "v5.10"
        assert _data_version_sent(sb, monkeypatch) == "v5.10"
