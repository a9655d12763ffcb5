"""Webhook registration: gateway URLs, Prefect Cloud detection, and registering on a sandbox."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deployments.catalogue import Node
from deployments.webhooks import (
    gateway_url,
    is_loopback,
    is_prefect_cloud,
    mask_url,
    register,
)
from flows.errors import ConfigurationError
from flows.numerai import NumeraiClient
from flows.tournaments import Tournament
from sandbox.runner import Sandbox

WORKSPACE = f"https://api.prefect.cloud/api/accounts/{uuid.uuid4()}/workspaces/{uuid.uuid4()}"
TOKEN = "t0ken-abcdefghijklmnop"
NODE = Node(
    name="tournament",
    deployment="tournament",
    flow_name="tournament-node",
    entrypoint="flows/tournament.py:tournament_node",
    work_pool="local",
    numerai_model="my_model",
    tournament=Tournament.CLASSIC,
    has_trigger=True,
)


@pytest.mark.parametrize(
    ("api_url", "cloud"),
    [
        (WORKSPACE, True),
        (WORKSPACE + "/", True),
        ("https://api.prefect.cloud/api/", True),
        ("https://api.stg.prefect.cloud/api/accounts/x/workspaces/y", True),
        # A stand-in for Cloud on loopback is recognised by the workspace path.
        (f"http://127.0.0.1:9/api/accounts/{uuid.uuid4()}/workspaces/{uuid.uuid4()}", True),
        ("http://127.0.0.1:4200/api", False),
        ("https://prefect.example.org/api", False),
        ("https://notprefect.cloud.example.org/api", False),
        ("", False),
        (None, False),
    ],
)
def test_is_prefect_cloud(api_url: str | None, cloud: bool) -> None:
    assert is_prefect_cloud(api_url) is cloud


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://127.0.0.1:8787", f"http://127.0.0.1:8787/hooks/tournament/{TOKEN}"),
        ("http://127.0.0.1:8787/", f"http://127.0.0.1:8787/hooks/tournament/{TOKEN}"),
        ("https://hooks.example.org/numerai", f"https://hooks.example.org/numerai/hooks/tournament/{TOKEN}"),
    ],
)  # fmt: skip
def test_gateway_url_composition(base: str, expected: str) -> None:
    assert gateway_url(base, "tournament", TOKEN) == expected


def test_gateway_url_quotes_the_token() -> None:
    assert gateway_url("http://h", "n", "a/b?c") == "http://h/hooks/n/a%2Fb%3Fc"


@pytest.mark.parametrize(
    ("base", "node", "token", "message"),
    [
        ("ftp://h", "tournament", TOKEN, "http:// or https://"),
        ("127.0.0.1:8787", "tournament", TOKEN, "http:// or https://"),
        ("http://h/?x=1", "tournament", TOKEN, "query"),
        ("http://h", "Bad Name", TOKEN, "Invalid node name"),
        ("http://h", "tournament", "", "empty webhook token"),
    ],
)
def test_gateway_url_rejects_bad_parts(base: str, node: str, token: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        gateway_url(base, node, token)


def test_mask_url_hides_the_last_segment() -> None:
    assert mask_url(f"http://127.0.0.1:8787/hooks/tournament/{TOKEN}") == (
        "http://127.0.0.1:8787/hooks/tournament/****"
    )
    assert (
        mask_url("https://api.prefect.cloud/hooks/slug-0") == "https://api.prefect.cloud/hooks/****"
    )


def test_is_loopback() -> None:
    assert is_loopback("http://127.0.0.1:8787/x")
    assert is_loopback("http://localhost/")
    assert is_loopback("http://[::1]:80/")
    assert not is_loopback("https://hooks.example.org/")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    with Sandbox(tmp_path_factory.mktemp("sandbox"), models=("my_model",)) as running:
        yield running


def _client(sandbox: Sandbox) -> NumeraiClient:
    return NumeraiClient(sandbox.url, sandbox.public_id, sandbox.secret_key)


def test_register_sets_the_gateway_url_on_the_model(sandbox: Sandbox) -> None:
    url = register(
        NODE,
        numerai=_client(sandbox),
        prefect_api_url="http://127.0.0.1:4200/api",
        public_base="http://127.0.0.1:8787",
        token=TOKEN,
    )
    assert url == f"http://127.0.0.1:8787/hooks/tournament/{TOKEN}"
    assert sandbox.state.webhook(sandbox.models["my_model"]) == url


def test_register_on_cloud_sets_the_cloud_webhook_url(sandbox: Sandbox) -> None:
    cloud = _FakeCloud()
    url = register(
        NODE,
        numerai=_client(sandbox),
        prefect_api_url=WORKSPACE,
        prefect_api_key="key",
        cloud_transport=httpx.MockTransport(cloud.handle),
    )
    assert url == "https://api.prefect.cloud/hooks/slug-0"
    assert [webhook["name"] for webhook in cloud.webhooks] == ["numerai-nodes-tournament"]
    assert sandbox.state.webhook(sandbox.models["my_model"]) == url


def test_register_names_an_unknown_model(sandbox: Sandbox) -> None:
    node = dataclasses.replace(NODE, numerai_model="nobody")
    with pytest.raises(LookupError, match=r"no model named 'nobody'.*my_model"):
        register(
            node,
            numerai=_client(sandbox),
            prefect_api_url="http://127.0.0.1:4200/api",
            public_base="http://127.0.0.1:8787",
            token=TOKEN,
        )


def test_register_self_hosted_needs_a_public_url() -> None:
    numerai = NumeraiClient("http://127.0.0.1:9/", "id", "key")
    with pytest.raises(ConfigurationError, match="--public-url"):
        register(NODE, numerai=numerai, prefect_api_url="http://127.0.0.1:4200/api", token=TOKEN)


def test_register_refuses_a_loopback_url_for_the_real_numerai() -> None:
    # Checked before any request, so nothing reaches numer.ai here.
    numerai = NumeraiClient("https://api-tournament.numer.ai", "id", "key")
    with pytest.raises(ConfigurationError, match="only this machine reaches") as caught:
        register(
            NODE,
            numerai=numerai,
            prefect_api_url="http://127.0.0.1:4200/api",
            public_base="http://127.0.0.1:8787",
            token=TOKEN,
        )
    assert TOKEN not in str(caught.value)


class _FakeCloud:
    """The workspace's /webhooks endpoints, in memory."""

    def __init__(self) -> None:
        self.webhooks: list[dict[str, Any]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.split("/workspaces/", 1)[1].split("/", 1)[1]
        if (request.method, path) == ("POST", "webhooks/filter"):
            return httpx.Response(200, json=self.webhooks)
        if (request.method, path) == ("POST", "webhooks/"):
            webhook = {**json.loads(request.content), "id": str(uuid.uuid4()), "slug": "slug-0"}
            self.webhooks.append(webhook)
            return httpx.Response(201, json=webhook)
        return httpx.Response(404)
