"""An accepted webhook is never dropped: Prefect or the gateway stops after the 202, and the
event still reaches Prefect once, against real `prefect server start` processes."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from deployments.events import EVENT_NAME, event_id
from deployments.gateway import GatewaySettings, create_app
from deployments.outbox import Outbox, OutboxEntry
from tests.integration.servers import PrefectServer, UvicornThread, free_port

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).parents[2]
TOKEN = secrets.token_urlsafe(32)
WAIT_SECONDS = 60.0
FAST_PERSISTER = {"PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.2"}
# Events stay in the server's memory for two minutes: a crash within that loses them.
SLOW_PERSISTER = {
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "120",
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "1000",
}


class CrashablePrefect(PrefectServer):
    """A Prefect server that can also die the hard way, as a crash or an OOM kill does."""

    def crash(self) -> None:
        """SIGKILL the server's process group (it was started in a session of its own)."""
        process, self._process = self._process, None
        assert process is not None and process.poll() is None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _on_the_same_port(server: PrefectServer, env: dict[str, str]) -> CrashablePrefect:
    """The same server (home, database, port) started again with other settings."""
    again = CrashablePrefect(server.home, env=env)
    again.port, again.api_url = server.port, server.api_url
    return again


def _settings(api_url: str, outbox_path: Path) -> GatewaySettings:
    return GatewaySettings(
        prefect_api_url=api_url,
        prefect_api_key=None,
        prefect_api_auth_string=None,
        tokens={"alpha": SecretStr(TOKEN)},
        prefect_timeout_seconds=3,
        outbox_path=outbox_path,
        redeliver_after_seconds=2,
        delivery_backoff_max_seconds=0.5,
    )


def _wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)
    return result


def _entry(path: Path, event: str, ready: Callable[[OutboxEntry], bool], what: str) -> OutboxEntry:
    def check() -> OutboxEntry | None:
        entry = Outbox(path).get(event)
        return entry if entry is not None and ready(entry) else None

    return _wait_until(check, what)


def _post_json(url: str, body: dict[str, Any]) -> Any:
    """POST and return the answer's JSON. A server just started on SQLite may answer 503
    ("database is locked") while its services start: that one is worth a few more tries."""
    deadline = time.monotonic() + 30
    while (response := httpx.post(url, json=body, timeout=10)).status_code == 503:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.is_success, (url, response.status_code, response.text[:500])
    return response.json()


def _stored(api_url: str, event: str) -> list[dict[str, Any]]:
    """The events with this id that Prefect has stored (its events API reads the database)."""
    query = {"filter": {"id": {"id": [event]}, "event": {"name": [EVENT_NAME]}}, "limit": 50}
    return _post_json(f"{api_url}/events/filter", query)["events"]


def _webhook(base: str, trigger_id: str) -> httpx.Response:
    body = {"triggerId": trigger_id, "roundNumber": 1001}
    return httpx.post(f"{base}/hooks/alpha/{TOKEN}", json=body, timeout=10)


def test_prefect_killed_right_after_the_202_still_gets_the_event_once(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    first = CrashablePrefect(tmp_path / "prefect", env=SLOW_PERSISTER)
    with first, UvicornThread(create_app(_settings(first.api_url, outbox))) as gateway:
        response = _webhook(gateway.url, "crash-after-202")
        event = response.json()["event_id"]
        # Prefect answered 204 to the gateway's POST: the event lives only in its memory now.
        posted = _entry(
            outbox, event, lambda e: e.posted_at is not None and e.last_error is None, "a 204"
        )
        first.crash()
        assert Outbox(outbox).get(event).delivered_at is None  # type: ignore[union-attr]

        with _on_the_same_port(first, FAST_PERSISTER) as restarted:
            delivered = _entry(outbox, event, lambda e: e.delivered_at is not None, "delivery")
            stored = _stored(restarted.api_url, event)
            time.sleep(2.5)  # past redeliver_after: a confirmed event is never posted again
            after = Outbox(outbox).get(event)

    assert response.status_code == 202
    assert event == str(event_id("alpha", "crash-after-202"))
    assert posted.attempts == 1
    assert delivered.attempts >= 2  # the first POST died with the server; the gateway re-posted
    assert [e["id"] for e in stored] == [event]
    assert stored[0]["payload"] == {"triggerId": "crash-after-202", "roundNumber": 1001}
    assert after is not None and after.attempts == delivered.attempts


class _GatewayProcess:
    """`python -m deployments.gateway` as the local stack starts it, configured by env vars."""

    def __init__(self, env: dict[str, str], log: Path):
        self.url = f"http://127.0.0.1:{env['NUMERAI_NODES_GATEWAY_PORT']}"
        self._env = env
        self._log = log
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> _GatewayProcess:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "deployments.gateway"],
                cwd=PROJECT,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _wait_until(self._answers, f"the gateway at {self.url}", timeout=30)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            self._process.wait(15)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no chance to deliver anything on the way out."""
        assert self._process is not None
        self._process.kill()
        self._process.wait(10)

    def _answers(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            pytest.fail(f"the gateway exited: {self._log.read_text()[-3000:]}")
        try:
            httpx.get(f"{self.url}/healthz", timeout=2)
        except httpx.HTTPError:
            return False
        return True


def _gateway_env(home: Path, prefect_api_url: str) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("NUMERAI_NODES_GATEWAY_")}
    return {
        **inherited,
        "NUMERAI_NODES_HOME": str(home),
        "NUMERAI_NODES_GATEWAY_HOST": "127.0.0.1",
        "NUMERAI_NODES_GATEWAY_PORT": str(free_port()),
        "NUMERAI_NODES_GATEWAY_NODES": '["alpha"]',
        "NUMERAI_NODES_TOKEN_ALPHA": TOKEN,
        "NUMERAI_NODES_GATEWAY_PREFECT_API_URL": prefect_api_url,
        "NUMERAI_NODES_GATEWAY_DELIVERY_BACKOFF_MAX_SECONDS": "0.5",
    }


def test_a_gateway_killed_before_delivery_delivers_on_its_next_start(
    tmp_path: Path, prefect_server: str
) -> None:
    """(The session's Prefect server: this test needs no restart of it.)"""
    home = tmp_path / "home"
    log = tmp_path / "gateway.log"
    unreachable = f"http://127.0.0.1:{free_port()}/api"  # so the first run cannot deliver
    with _GatewayProcess(_gateway_env(home, unreachable), log) as first:
        response = _webhook(first.url, "gateway-restart")
        first.kill()
    event = response.json()["event_id"]
    outbox = home / "gateway" / "outbox.sqlite"  # the default place, under the project home
    left = Outbox(outbox).get(event)
    assert _stored(prefect_server, event) == []

    with _GatewayProcess(_gateway_env(home, prefect_server), log):
        delivered = _entry(outbox, event, lambda e: e.delivered_at is not None, "delivery")
        stored = _stored(prefect_server, event)

    assert response.status_code == 202
    assert left is not None and left.delivered_at is None
    assert [e["id"] for e in stored] == [event]
    assert delivered.attempts > left.attempts
    assert f"event {event} is stored in Prefect" in log.read_text()
