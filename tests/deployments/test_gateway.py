"""The webhook gateway over real HTTP, against a real `prefect server start`."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr, ValidationError

from deployments.events import EVENT_NAME, MAX_TRIGGER_ID_LENGTH, event_id
from deployments.gateway import MAX_BODY_BYTES, GatewaySettings, create_app, load_gateway_settings
from deployments.tokens import (
    MissingToken,
    create_or_rotate,
    load_token,
    require_token,
    token_block_name,
    token_env_var,
)
from tests.integration.servers import PrefectServer, UvicornThread, free_port

TOKENS = {node: secrets.token_urlsafe(32) for node in ("alpha", "beta", "gamma")}
EVENT_WAIT_SECONDS = 15.0


def _settings(api_url: str, **overrides: Any) -> GatewaySettings:
    tokens = {node: SecretStr(token) for node, token in TOKENS.items()}
    return GatewaySettings(
        prefect_api_url=api_url,
        prefect_api_key=None,
        prefect_api_auth_string=None,
        tokens=tokens,
        prefect_timeout_seconds=3,
        **overrides,
    )


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    env = {"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.2"}
    with PrefectServer(tmp_path_factory.mktemp("prefect-home"), env=env) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(prefect: PrefectServer) -> Iterator[str]:
    with UvicornThread(create_app(_settings(prefect.api_url))) as served:
        yield served.url


def _hook(base: str, node: str, token: str | None = None) -> str:
    return f"{base}/hooks/{node}/{TOKENS[node] if token is None else token}"


def _events(prefect: PrefectServer, **resource: Any) -> list[dict[str, Any]]:
    query = {"filter": {"event": {"name": [EVENT_NAME]}, "resource": resource}, "limit": 50}
    response = httpx.post(f"{prefect.api_url}/events/filter", json=query, timeout=10)
    response.raise_for_status()
    return response.json()["events"]


def _wait_for_events(prefect: PrefectServer, count: int, **resource: Any) -> list[dict]:
    deadline = time.monotonic() + EVENT_WAIT_SECONDS
    while len(events := _events(prefect, **resource)) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"expected {count} event(s) for {resource}, found {len(events)}")
        time.sleep(0.2)
    return events


@pytest.mark.integration
def test_valid_post_becomes_one_event_with_the_deterministic_id(
    prefect: PrefectServer, gateway: str
) -> None:
    body = {"triggerId": "trig-valid", "roundNumber": 901, "isTest": False, "unknown": [1]}
    response = httpx.post(_hook(gateway, "alpha"), json=body)

    assert response.status_code == 202
    expected_id = str(event_id("alpha", "trig-valid"))
    assert response.json() == {"event_id": expected_id, "node": "alpha", "trigger_id": "trig-valid"}
    (event,) = _wait_for_events(
        prefect, 1, id=["numerai.node.alpha"], labels={"numerai.trigger-id": "trig-valid"}
    )
    assert event["id"] == expected_id
    assert event["payload"] == body
    assert event["resource"] == {
        "prefect.resource.id": "numerai.node.alpha",
        "numerai.trigger-id": "trig-valid",
    }


@pytest.mark.integration
def test_the_same_delivery_twice_is_one_event(prefect: PrefectServer, gateway: str) -> None:
    body = {"triggerId": "trig-twice", "roundNumber": 902}
    first = httpx.post(_hook(gateway, "beta"), json=body)
    second = httpx.post(_hook(gateway, "beta"), json=body)

    assert first.status_code == second.status_code == 202
    assert first.json()["event_id"] == second.json()["event_id"]
    labels = {"numerai.trigger-id": "trig-twice"}
    _wait_for_events(prefect, 1, id=["numerai.node.beta"], labels=labels)
    time.sleep(0.5)  # a duplicate, if any, would land within the persister's flush interval
    assert len(_events(prefect, id=["numerai.node.beta"], labels=labels)) == 1


@pytest.mark.integration
def test_refused_requests_create_no_event(prefect: PrefectServer, gateway: str) -> None:
    hook = _hook(gateway, "gamma")
    invalid = {
        b"{not json": "not valid JSON",
        b"": "empty",
        b'["triggerId"]': "JSON list",
        b'"trig"': "JSON str",
        b'{"triggerId": NaN}': "NaN",
        b"\xff\xfe": "UTF-8",
        b"[" * 30_000: "nested too deeply",
        b'{"roundNumber": 1}': "triggerId: Field required",
        b'{"triggerId": 12}': "triggerId: Input should be a valid string",
        json.dumps({"triggerId": "t" * (MAX_TRIGGER_ID_LENGTH + 1)}).encode(): "triggerId",
        b'{"triggerId": "t", "roundNumber": "x"}': "roundNumber",
    }
    for content, problem in invalid.items():
        response = httpx.post(hook, content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422, content
        assert response.json()["error"] == "invalid_body"
        assert problem in response.json()["message"], (content, response.json())
    wrong_token = _hook(gateway, "gamma", "wrong-" + "x" * 40)
    assert httpx.post(wrong_token, json={"triggerId": "w"}).status_code == 404
    too_big = {"triggerId": "big", "pad": "x" * MAX_BODY_BYTES}
    assert httpx.post(hook, json=too_big).status_code == 413

    # A valid delivery after the refused ones: once it is stored, nothing else was.
    assert httpx.post(hook, json={"triggerId": "barrier"}).status_code == 202
    _wait_for_events(prefect, 1, id=["numerai.node.gamma"])
    time.sleep(0.5)
    events = _events(prefect, id=["numerai.node.gamma"])
    assert [event["resource"]["numerai.trigger-id"] for event in events] == ["barrier"]
    assert _events(prefect, id_prefix=["numerai.node.nobody"]) == []


@pytest.mark.integration
def test_wrong_token_and_unknown_node_get_the_same_404(gateway: str) -> None:
    body = {"triggerId": "trig-404"}
    wrong_token = httpx.post(_hook(gateway, "alpha", TOKENS["beta"]), json=body)
    unknown_node = httpx.post(f"{gateway}/hooks/nobody/{TOKENS['alpha']}", json=body)
    invalid_name = httpx.post(f"{gateway}/hooks/No%20Body/{TOKENS['alpha']}", json=body)
    non_ascii = httpx.post(f"{gateway}/hooks/alpha/t%C3%B6ken", json=body)

    assert wrong_token.status_code == unknown_node.status_code == 404
    for other in (unknown_node, invalid_name, non_ascii):
        assert (other.status_code, other.content) == (404, wrong_token.content)
        assert other.headers["content-type"] == wrong_token.headers["content-type"]
    assert wrong_token.json()["error"] == "not_found"


@pytest.mark.integration
def test_body_size_limit_is_enforced_while_streaming(gateway: str) -> None:
    padding = MAX_BODY_BYTES - len(json.dumps({"triggerId": "edge", "pad": ""}).encode())
    at_limit = json.dumps({"triggerId": "edge", "pad": "x" * padding}).encode()
    assert len(at_limit) == MAX_BODY_BYTES
    assert httpx.post(_hook(gateway, "alpha"), content=at_limit).status_code == 202

    over = at_limit[:-2] + b'x"}'

    def chunks() -> Iterator[bytes]:  # no Content-Length: the gateway must count
        for start in range(0, len(over), 4096):
            yield over[start : start + 4096]

    assert httpx.post(_hook(gateway, "alpha"), content=over).status_code == 413
    response = httpx.post(_hook(gateway, "alpha"), content=chunks())
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


@pytest.mark.integration
def test_healthz_reports_prefect_and_nodes_without_tokens(gateway: str) -> None:
    response = httpx.get(f"{gateway}/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "prefect_api": "reachable",
        "nodes": ["alpha", "beta", "gamma"],
    }
    assert not any(token in response.text for token in TOKENS.values())


def test_prefect_down_gives_503_with_retry_after() -> None:
    settings = _settings(f"http://127.0.0.1:{free_port()}/api", retry_after_seconds=17)
    with UvicornThread(create_app(settings)) as served:
        response = httpx.post(_hook(served.url, "alpha"), json={"triggerId": "down"})
        health = httpx.get(f"{served.url}/healthz")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "17"
    assert response.json()["error"] == "prefect_unavailable"
    assert health.status_code == 503
    assert health.json()["prefect_api"] == "unreachable"


@pytest.mark.parametrize(
    ("prefect_status", "expected", "error"),
    [
        (500, 503, "prefect_unavailable"),
        (429, 503, "prefect_unavailable"),
        (401, 502, "prefect_rejected"),
    ],
)
def test_prefect_errors_are_never_a_2xx(prefect_status: int, expected: int, error: str) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(prefect_status))
    app = create_app(_settings("http://prefect.invalid/api"), transport=transport)
    with UvicornThread(app) as served:
        response = httpx.post(_hook(served.url, "alpha"), json={"triggerId": "t"})

    assert (response.status_code, response.json()["error"]) == (expected, error)
    assert ("retry-after" in response.headers) == (expected == 503)


def test_gateway_sends_prefect_credentials() -> None:
    seen: list[str] = []

    def prefect(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(204)

    settings = _settings("http://prefect.invalid/api").model_copy(
        update={"prefect_api_key": SecretStr("pnu_key")}
    )
    app = create_app(settings, transport=httpx.MockTransport(prefect))
    with UvicornThread(app) as served:
        assert httpx.post(_hook(served.url, "alpha"), json={"triggerId": "t"}).status_code == 202
    assert seen == ["Bearer pnu_key"]


def test_tokens_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    app = create_app(_settings("http://prefect.invalid/api"), transport=transport)
    with caplog.at_level(logging.DEBUG), UvicornThread(app) as served:
        httpx.post(_hook(served.url, "alpha"), json={"triggerId": "logged"})
        httpx.post(_hook(served.url, "beta", TOKENS["alpha"]), json={"triggerId": "x"})

    # The test's own httpx client logs the URLs it calls; everything else is the gateway's.
    gateway_log = "\n".join(
        record.getMessage() for record in caplog.records if served.url not in record.getMessage()
    )
    assert "logged" in gateway_log
    assert not any(token in gateway_log for token in TOKENS.values())


def test_settings_refuse_short_tokens_and_bad_node_names() -> None:
    with pytest.raises(ValidationError, match="shorter than"):
        GatewaySettings(tokens={"alpha": "short"})
    with pytest.raises(ValidationError, match="Invalid node name"):
        GatewaySettings(tokens={"Bad Name": "x" * 32})


def test_load_gateway_settings_reads_tokens_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NUMERAI_NODES_GATEWAY_NODES", '["alpha", "my_node"]')
    monkeypatch.setenv("NUMERAI_NODES_GATEWAY_PORT", "9999")
    monkeypatch.setenv("NUMERAI_NODES_TOKEN_ALPHA", TOKENS["alpha"])
    monkeypatch.setenv("NUMERAI_NODES_TOKEN_MY_NODE", TOKENS["beta"])

    settings = load_gateway_settings()

    assert settings.port == 9999
    assert {node: token.get_secret_value() for node, token in settings.tokens.items()} == {
        "alpha": TOKENS["alpha"],
        "my_node": TOKENS["beta"],
    }
    assert TOKENS["alpha"] not in repr(settings)


def test_token_names_follow_the_node_name() -> None:
    assert token_env_var("my-node_2") == "NUMERAI_NODES_TOKEN_MY_NODE_2"
    assert token_block_name("my_node-2") == "numerai-nodes-token-my-node-2"


@pytest.mark.integration
def test_tokens_rotate_into_secret_blocks_and_serve_the_gateway(
    prefect: PrefectServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NUMERAI_NODES_TOKEN_DELTA", "NUMERAI_NODES_GATEWAY_PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    with temporary_settings({PREFECT_API_URL: prefect.api_url}):
        assert load_token("delta", environ={}) is None
        with pytest.raises(MissingToken, match="NUMERAI_NODES_TOKEN_DELTA"):
            require_token("delta", environ={})
        first, token = create_or_rotate("delta"), create_or_rotate("delta")
        assert first != token and len(token) >= 43
        assert load_token("delta", environ={}) == SecretStr(token)
        from_env = load_token("delta", environ={token_env_var("delta"): "from-env"})
        assert from_env == SecretStr("from-env")

        settings = load_gateway_settings(["delta"])

    assert settings.prefect_api_url == prefect.api_url
    with UvicornThread(create_app(settings)) as served:
        old = httpx.post(f"{served.url}/hooks/delta/{first}", json={"triggerId": "rotated"})
        new = httpx.post(f"{served.url}/hooks/delta/{token}", json={"triggerId": "rotated"})
    assert (old.status_code, new.status_code) == (404, 202)
