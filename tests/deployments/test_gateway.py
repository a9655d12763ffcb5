"""The webhook gateway over real HTTP, against a real `prefect server start`."""

from __future__ import annotations

import json
import logging
import random
import secrets
import select
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings
from pydantic import SecretStr, ValidationError

from deployments.events import EVENT_NAME, MAX_TRIGGER_ID_LENGTH, build_event, event_id
from deployments.gateway import MAX_BODY_BYTES, GatewaySettings, create_app, load_gateway_settings
from deployments.outbox import Outbox, OutboxEntry
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
T = TypeVar("T")


def _settings(api_url: str, outbox_path: Path, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        "prefect_api_url": api_url,
        "prefect_api_key": None,
        "prefect_api_auth_string": None,
        "tokens": {node: SecretStr(token) for node, token in TOKENS.items()},
        "prefect_timeout_seconds": 3,
        "outbox_path": outbox_path,
        "redeliver_after_seconds": 2,
        "delivery_backoff_max_seconds": 0.5,
    }
    return GatewaySettings(**{**values, **overrides})


class _FakeEventsApi:
    """A working stand-in for Prefect's events API (an httpx transport handler): it stores
    posted events by id and lists them back; `failure` makes every request answer that status."""

    def __init__(self, failure: int | None = None):
        self.failure = failure
        self.events: dict[str, dict[str, Any]] = {}
        self.posts = 0
        self.authorizations: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.authorizations.append(request.headers.get("authorization", ""))
        if self.failure is not None:
            return httpx.Response(self.failure)
        path = request.url.path
        if path.endswith("/events"):
            self.posts += 1
            for event in json.loads(request.content):
                self.events.setdefault(event["id"], event)
            return httpx.Response(204)
        if path.endswith("/events/filter"):
            wanted = json.loads(request.content)["filter"]["id"]["id"]
            found = [self.events[i] for i in wanted if i in self.events]
            return httpx.Response(200, json={"events": found})
        if path.endswith("/health"):
            return httpx.Response(200, json=True)
        return httpx.Response(404)


def _fake_app(tmp_path: Path, api: _FakeEventsApi, **overrides: Any) -> Any:
    settings = _settings("http://prefect.invalid/api", tmp_path / "outbox.sqlite", **overrides)
    return create_app(settings, transport=httpx.MockTransport(api))


def _wait_until(check: Callable[[], T | None], what: str, timeout: float = EVENT_WAIT_SECONDS) -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _wait_for_entry(
    path: Path, event_id: str, ready: Callable[[OutboxEntry], bool], what: str
) -> OutboxEntry:
    """The outbox entry of `event_id`, once `ready(entry)` holds."""
    outbox = Outbox(path)

    def check() -> OutboxEntry | None:
        entry = outbox.get(event_id)
        return entry if entry is not None and ready(entry) else None

    return _wait_until(check, what)


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    env = {"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.2"}
    with PrefectServer(tmp_path_factory.mktemp("prefect-home"), env=env) as server:
        yield server


@pytest.fixture(scope="module")
def outbox_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway") / "outbox.sqlite"


@pytest.fixture(scope="module")
def gateway(prefect: PrefectServer, outbox_path: Path) -> Iterator[str]:
    with UvicornThread(create_app(_settings(prefect.api_url, outbox_path))) as served:
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
    prefect: PrefectServer, gateway: str, outbox_path: Path
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
    # Once Prefect shows the event, the outbox counts it delivered.
    entry = _wait_for_entry(
        outbox_path, expected_id, lambda e: e.delivered_at is not None, "delivered in the outbox"
    )
    assert entry.attempts == 1 and entry.last_error is None


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


DIGITS = b"1" * 4301  # one past Python's limit for int(str)
OVER_LONG = "out of range"
TOO_DEEP = "nested too deeply"
# Each body the gateway must refuse with a 422, and a word of the message it must give.
INVALID_BODIES = {
    b"{not json": "not valid JSON",
    b"": "empty",
    b'["triggerId"]': "JSON list",
    b'"trig"': "JSON str",
    b'{"triggerId": NaN}': "NaN",
    b'{"triggerId": "t", "x": -Infinity}': "Infinity",
    b'{"triggerId": "t", "roundNumber": 1e999}': OVER_LONG,
    b'{"triggerId": "t", "x": [-1e400]}': OVER_LONG,
    b"\xff\xfe": "UTF-8",
    b'{"triggerId": "caf\xe9"}': "UTF-8",
    b'{"triggerId": "\xe2\x82"}': "UTF-8",
    '{"triggerId": "t"}'.encode("utf-16"): "UTF-8",
    b'\xef\xbb\xbf{"triggerId": "t"}': "not valid JSON",
    b'{"triggerId": "\\ud800"}': "lone surrogate",
    b'{"triggerId": "t", "\\udfff": 1}': "lone surrogate",
    b'{"triggerId": "a\\u0000b"}': "NUL",
    b"[" + DIGITS + b"]": OVER_LONG,
    DIGITS: OVER_LONG,
    b'{"triggerId": ' + DIGITS + b"}": OVER_LONG,
    b'{"triggerId": "t", "roundNumber": -' + DIGITS + b"}": OVER_LONG,
    b'{"triggerId": "t", "dataVersion": ' + DIGITS + b"}": OVER_LONG,
    b'{"triggerId": "t", "x": {"y": [' + DIGITS + b"]}}": OVER_LONG,
    b'{"triggerId": "t", "x": ' + str(2**64).encode() + b"}": "beyond 64 bits",
    b'{"triggerId": "t", "x": ' + b"9" * 4300 + b"}": "beyond 64 bits",
    b"[" * 30_000: TOO_DEEP,
    b'{"a":' * 12_000: TOO_DEEP,
    b'{"triggerId": "t", "x": ' + b"[" * 32 + b"]" * 32 + b"}": TOO_DEEP,
    b'{"triggerId": "t", "x": ' + b'{"a": ' * 40 + b"1" + b"}" * 41: TOO_DEEP,
    b'{"triggerId": "t", "x": [' + b'{"a": [' * 20 + b"]}" * 20 + b"]}": TOO_DEEP,
    b'{"roundNumber": 1}': "triggerId: Field required",
    b'{"triggerId": 12}': "triggerId: Input should be a valid string",
    json.dumps({"triggerId": "t" * (MAX_TRIGGER_ID_LENGTH + 1)}).encode(): "triggerId",
    b'{"triggerId": "t", "roundNumber": "x"}': "roundNumber",
    b'{"triggerId": "t", "roundNumber": 1.0}': "roundNumber",
}


@pytest.mark.integration
def test_refused_requests_create_no_event(prefect: PrefectServer, gateway: str) -> None:
    hook = _hook(gateway, "gamma")
    for content, problem in INVALID_BODIES.items():
        response = httpx.post(hook, content=content, headers={"content-type": "application/json"})
        assert response.status_code == 422, content[:80]
        assert response.json()["error"] == "invalid_body"
        assert problem in response.json()["message"], (content[:80], response.json())
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


def test_bodies_at_the_limits_are_taken_and_delivered(tmp_path: Path) -> None:
    api = _FakeEventsApi()
    at_limits = [
        {"triggerId": "deep", "x": json.loads("[" * 31 + "]" * 31)},
        {"triggerId": "ints", "roundNumber": 2**63 - 1, "x": -(2**63 - 1)},
        {"triggerId": "floats", "x": [1e308, -2.5e-308]},
        {"triggerId": "emoji \U0001f600", "dataVersion": "v5.2", "isTest": True},
    ]
    with UvicornThread(_fake_app(tmp_path, api)) as served:
        answers = [httpx.post(_hook(served.url, "alpha"), json=body) for body in at_limits]
        assert [answer.status_code for answer in answers] == [202] * len(at_limits)
        ids = {answer.json()["event_id"] for answer in answers}
        _wait_until(lambda: set(api.events) == ids, "every event to reach the fake Prefect")
    assert [api.events[a.json()["event_id"]]["payload"] for a in answers] == at_limits


def _mutations(rng: random.Random, count: int) -> Iterator[bytes]:
    """Seeded mutations of a valid body: flipped bytes, cuts, and inserted troublemakers."""
    base = json.dumps(
        {"triggerId": "fuzz", "roundNumber": 901, "dataVersion": "v5.2", "x": {"a": [1, 2.5]}}
    ).encode()
    pieces = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\", b"\\u", b"\\ud800",
              b"\\u0000", b"\x00", b"\xff", b"\xc3", b"9" * 5000, b"9" * 30, b"1e999", b"-",
              b"NaN", b"Infinity", b"null", b"true", b" ", b"[" * 40, b'{"a":' * 40,
              b"[" * 3000]  # fmt: skip
    for _ in range(count):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data) + 1)
            match rng.randrange(4):
                case 0 if data:
                    data[at % len(data)] = rng.randrange(256)
                case 1:
                    data[at:at] = rng.choice(pieces)
                case 2:
                    del data[at : at + rng.randint(1, 8)]
                case _:
                    data = data[: max(at, 1)]
        yield bytes(data)


def _valid_by_stdlib(content: bytes) -> bool:
    """An independent oracle for the few mutations that stay a valid webhook body."""
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("triggerId"), str)


def test_fuzzed_bodies_get_a_4xx_or_a_delivered_202_never_a_5xx(tmp_path: Path) -> None:
    api = _FakeEventsApi()
    bodies = list(dict.fromkeys(_mutations(random.Random(2035), 600)))
    with (
        UvicornThread(_fake_app(tmp_path, api)) as served,
        httpx.Client(timeout=10) as client,
        ThreadPoolExecutor(8) as pool,  # each loopback round trip waits ~40 ms: overlap them
    ):
        url = _hook(served.url, "alpha")
        responses = pool.map(lambda body: client.post(url, content=body), bodies)
        answers = dict(zip(bodies, responses, strict=True))
        accepted = {r.json()["event_id"] for r in answers.values() if r.status_code == 202}
        _wait_until(lambda: set(api.events) == accepted, "the accepted events to be delivered")

    statuses = [response.status_code for response in answers.values()]
    assert set(statuses) <= {202, 413, 422}, sorted(set(statuses))
    assert statuses.count(422) > 100 and statuses.count(202) > 0
    for content, response in answers.items():
        if response.status_code == 202:
            assert _valid_by_stdlib(content), content[:80]
        else:
            assert response.json()["error"] == "invalid_body", content[:80]


def _post_slowly(base: str, path: str, body: bytes, pause: float) -> tuple[bytes, float]:
    """POST `body` one byte every `pause` seconds over a raw socket; returns the raw answer
    (with `[closed]` appended when the server then closes the connection) and the seconds
    until it began."""
    host, port = base.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n\r\n"
        sock.sendall(head.encode())
        for byte in body:
            if select.select([sock], [], [], pause)[0]:
                break  # the server answered before the body was complete
            sock.sendall(bytes([byte]))
        first = sock.recv(65536)
        elapsed = time.monotonic() - started
        answer = first
        while answer.count(b"\r\n\r\n") == 0 or not answer.endswith(b"}"):
            if not (more := sock.recv(65536)):
                break
            answer += more
        sock.settimeout(1)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:  # closed with unread bytes of ours still in its buffer
            closed = True
        except TimeoutError:
            closed = False
    return answer + (b"\n[closed]" if closed else b""), elapsed


def test_a_dripping_body_gets_408_at_the_body_timeout(tmp_path: Path) -> None:
    api = _FakeEventsApi()
    body = json.dumps({"triggerId": "slow-drip", "pad": "x" * 40}).encode()
    path = f"/hooks/alpha/{TOKENS['alpha']}"
    app = _fake_app(tmp_path, api, body_timeout_seconds=0.5)
    with UvicornThread(app) as served:
        answer, elapsed = _post_slowly(served.url, path, body, pause=0.1)  # 6 s of drip
        quick, _ = _post_slowly(served.url, path, body[:-1] + b"}", pause=0.0)

    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"error":"body_timeout"' in answer and answer.endswith(b"[closed]")
    assert 0.5 <= elapsed < 2.0
    assert quick.startswith(b"HTTP/1.1 202") and not quick.endswith(b"[closed]"), quick[:200]
    assert Outbox(tmp_path / "outbox.sqlite").counts()["undelivered"] + len(api.events) == 1


def test_a_sender_hanging_up_mid_body_is_one_warning_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served = UvicornThread(_fake_app(tmp_path, _FakeEventsApi()))
    uvicorn_logger = logging.getLogger("uvicorn")  # its records do not reach the root logger
    uvicorn_logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO), served:
            host, port = served.url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                head = f"POST /hooks/alpha/{TOKENS['alpha']} HTTP/1.1\r\nHost: x\r\n"
                sock.sendall(f"{head}Content-Length: 100\r\n\r\n".encode() + b'{"triggerId": ')
            _wait_until(
                lambda: any("hung up" in r.getMessage() for r in caplog.records), "the log line"
            )
            time.sleep(0.3)  # an error logged after the line would show up by now
    finally:
        uvicorn_logger.removeHandler(caplog.handler)

    (line,) = [record for record in caplog.records if "hung up" in record.getMessage()]
    assert (line.levelno, line.exc_info, line.name) == (
        logging.WARNING,
        None,
        "numerai_nodes.gateway",
    )
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert Outbox(tmp_path / "outbox.sqlite").counts()["undelivered"] == 0


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
def test_healthz_reports_prefect_outbox_and_nodes_without_tokens(gateway: str) -> None:
    response = httpx.get(f"{gateway}/healthz")

    assert response.status_code == 200
    health = response.json()
    assert set(health["outbox"]) == {"undelivered", "delivered"}
    assert {key: value for key, value in health.items() if key != "outbox"} == {
        "status": "ok",
        "prefect_api": "reachable",
        "delivery": "running",
        "nodes": ["alpha", "beta", "gamma"],
    }
    assert not any(token in response.text for token in TOKENS.values())


def test_with_prefect_down_a_webhook_gets_202_and_waits_in_the_outbox(tmp_path: Path) -> None:
    settings = _settings(f"http://127.0.0.1:{free_port()}/api", tmp_path / "outbox.sqlite")
    with UvicornThread(create_app(settings)) as served:
        response = httpx.post(_hook(served.url, "alpha"), json={"triggerId": "down"})
        entry = _wait_for_entry(
            settings.outbox_path,
            response.json()["event_id"],
            lambda e: e.attempts >= 2,
            "two delivery attempts",
        )
        health = httpx.get(f"{served.url}/healthz")

    assert response.status_code == 202
    assert response.json()["event_id"] == str(event_id("alpha", "down"))
    assert entry.delivered_at is None
    assert entry.last_error is not None and "unreachable" in entry.last_error
    assert health.status_code == 503
    assert health.json()["prefect_api"] == "unreachable"
    assert health.json()["outbox"] == {"undelivered": 1, "delivered": 0}


def test_an_outbox_that_cannot_record_gives_503_with_retry_after(tmp_path: Path) -> None:
    api = _FakeEventsApi()
    app = _fake_app(tmp_path, api, retry_after_seconds=17, outbox_timeout_seconds=0.2)
    with UvicornThread(app) as served:
        holder = sqlite3.connect(tmp_path / "outbox.sqlite", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another writer holds the lock past the timeout
        try:
            refused = httpx.post(_hook(served.url, "alpha"), json={"triggerId": "locked"})
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        retried = httpx.post(_hook(served.url, "alpha"), json={"triggerId": "locked"})
        _wait_until(lambda: api.events, "the retried webhook's event")

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "17"
    assert refused.json()["error"] == "outbox_unavailable"
    assert retried.status_code == 202
    assert list(api.events) == [retried.json()["event_id"]]


@pytest.mark.parametrize("prefect_status", [500, 429, 401])
def test_prefect_errors_keep_the_event_until_prefect_takes_it(
    tmp_path: Path, prefect_status: int
) -> None:
    api = _FakeEventsApi(failure=prefect_status)
    path = tmp_path / "outbox.sqlite"
    with UvicornThread(_fake_app(tmp_path, api)) as served:
        response = httpx.post(_hook(served.url, "alpha"), json={"triggerId": "t"})
        event = response.json()["event_id"]
        failed = _wait_for_entry(path, event, lambda e: e.attempts >= 2, "two failed attempts")
        api.failure = None  # Prefect recovers
        delivered = _wait_for_entry(
            path, event, lambda e: e.delivered_at is not None, "delivered in the outbox"
        )

    assert response.status_code == 202
    assert failed.delivered_at is None
    assert failed.last_error is not None and f"HTTP {prefect_status}" in failed.last_error
    assert delivered.last_error is None and list(api.events) == [response.json()["event_id"]]


def test_the_gateway_delivers_what_its_outbox_holds_when_it_starts(tmp_path: Path) -> None:
    """Left by an earlier run: one event never delivered, one delivered eight days ago."""
    now = datetime.now(UTC)
    left = build_event("alpha", {"triggerId": "left-over"}, now)
    stale = build_event("beta", {"triggerId": "stale"}, now)
    eight_days_ago = Outbox(tmp_path / "outbox.sqlite", clock=lambda: time.time() - 8 * 86400)
    eight_days_ago.open().record(stale)
    eight_days_ago.mark_delivered([stale["id"]])
    Outbox(tmp_path / "outbox.sqlite").record(left)

    api = _FakeEventsApi()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    with UvicornThread(_fake_app(tmp_path, api)):
        _wait_until(lambda: outbox.counts()["undelivered"] == 0, "the left-over event's delivery")

    assert api.events == {left["id"]: left}
    assert outbox.get(stale["id"]) is None  # pruned: past the 7-day retention
    assert outbox.counts() == {"undelivered": 0, "delivered": 1}


def test_gateway_sends_prefect_credentials(tmp_path: Path) -> None:
    api = _FakeEventsApi()
    app = _fake_app(tmp_path, api, prefect_api_key=SecretStr("pnu_key"))
    with UvicornThread(app) as served:
        assert httpx.post(_hook(served.url, "alpha"), json={"triggerId": "t"}).status_code == 202
        _wait_until(lambda: Outbox(tmp_path / "outbox.sqlite").counts()["delivered"], "delivery")
    assert api.posts == 1
    assert len(api.authorizations) >= 2  # the POST and the read-back
    assert set(api.authorizations) == {"Bearer pnu_key"}


def test_tokens_never_reach_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = _fake_app(tmp_path, _FakeEventsApi())
    with caplog.at_level(logging.DEBUG), UvicornThread(app) as served:
        httpx.post(_hook(served.url, "alpha"), json={"triggerId": "logged"})
        httpx.post(_hook(served.url, "beta", TOKENS["alpha"]), json={"triggerId": "x"})
        _wait_until(lambda: "stored in Prefect" in caplog.text, "the delivery log line")

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
    monkeypatch.setenv("NUMERAI_NODES_HOME", str(tmp_path / "home"))

    settings = load_gateway_settings()

    assert settings.port == 9999
    assert {node: token.get_secret_value() for node, token in settings.tokens.items()} == {
        "alpha": TOKENS["alpha"],
        "my_node": TOKENS["beta"],
    }
    assert TOKENS["alpha"] not in repr(settings)
    assert settings.outbox_path == tmp_path / "home" / "gateway" / "outbox.sqlite"
    monkeypatch.setenv("NUMERAI_NODES_GATEWAY_OUTBOX_PATH", str(tmp_path / "elsewhere.sqlite"))
    assert GatewaySettings().outbox_path == tmp_path / "elsewhere.sqlite"


def test_token_names_follow_the_node_name() -> None:
    assert token_env_var("my-node_2") == "NUMERAI_NODES_TOKEN_MY_NODE_2"
    assert token_block_name("my_node-2") == "numerai-nodes-token-my-node-2"


@pytest.mark.integration
def test_tokens_rotate_into_secret_blocks_and_serve_the_gateway(
    prefect: PrefectServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("NUMERAI_NODES_TOKEN_DELTA", "NUMERAI_NODES_GATEWAY_PREFECT_API_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NUMERAI_NODES_HOME", str(tmp_path))
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


def test_a_node_added_after_the_gateway_started_is_served_once_its_token_exists(
    prefect: PrefectServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NUMERAI_NODES_TOKEN_EPSILON", raising=False)
    app = create_app(_settings(prefect.api_url, tmp_path / "outbox.sqlite"))
    with UvicornThread(app) as served:
        before = httpx.post(f"{served.url}/hooks/epsilon/{'x' * 43}", json={"triggerId": "early"})
        with temporary_settings({PREFECT_API_URL: prefect.api_url}):
            token = create_or_rotate("epsilon")  # what `node add --deploy` does
        # A miss is remembered for a while: the same name is not looked up again at once.
        still = httpx.post(f"{served.url}/hooks/epsilon/{token}", json={"triggerId": "early"})
        app.state.misses.clear()  # ... until that while is over
        after = httpx.post(f"{served.url}/hooks/epsilon/{token}", json={"triggerId": "added"})
        wrong = httpx.post(f"{served.url}/hooks/epsilon/{'y' * 43}", json={"triggerId": "bad"})
    assert (before.status_code, still.status_code) == (404, 404)
    assert (after.status_code, wrong.status_code) == (202, 404)
