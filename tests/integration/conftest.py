"""Integration fixtures: one local stack (`numerai-nodes up --sandbox`) for the modules using it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from deployments.cli import app
from infra.local.stack import LocalStack, StackSettings
from tests.integration import podman
from tests.integration.azurite import Azurite
from tests.integration.azurite import unavailable as azurite_unavailable
from tests.integration.containers import Launcher, LocalProcesses, Podman
from tests.integration.local_stack import PROJECT, Stack, logs
from tests.integration.postgres import Postgres
from tests.integration.servers import free_port

# A run silent this long is marked crashed: above the 30 s heartbeat with room for a busy machine,
# and short enough for a test to wait for.
SILENCE_SECONDS = 45


@pytest.fixture(scope="session")
def _stack_session(tmp_path_factory) -> Iterator[tuple[Stack, dict[str, str]]]:
    """`numerai-nodes up --sandbox`, run in-process with this stack's home and ports, once a
    session; with the settings its modules run under (`stack` applies them module by module)."""
    root = tmp_path_factory.mktemp("round-day")
    home = root / "home"
    ports = {"prefect": free_port(), "gateway": free_port(), "sandbox": free_port()}
    settings_env = {
        "NUMERAI_NODES_HOME": str(home),
        "NUMERAI_NODES_START_TIMEOUT_SECONDS": "150",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "NUMERAI_NODES_SILENCE_SECONDS": str(SILENCE_SECONDS),
        "NUMERAI_NODES_RESTART_DELAY_SECONDS": "10",
        **{f"NUMERAI_NODES_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }
    with contextlib.ExitStack() as cleanup:
        database = None
        if Postgres.available():
            database = cleanup.enter_context(Postgres(root / "pg"))
            settings_env["NUMERAI_NODES_DATABASE_URL"] = database.url
        with _stack_settings(settings_env):
            # Subprocesses (the CLI as users run it) get the same settings, and no keys or API URL.
            env = {
                key: value
                for key, value in os.environ.items()
                if not key.startswith(
                    ("NUMERAI_PUBLIC", "NUMERAI_SECRET", "NUMERAI_API", "PREFECT_API")
                )
            }
            env["COLUMNS"] = "200"
            local = LocalStack(StackSettings(_env_file=None), project_dir=PROJECT)
            cleanup.callback(_down, local, settings_env)
            started = _up(local)
        yield Stack(local, env, ports, home, database, started), settings_env


@pytest.fixture(scope="module")
def stack(_stack_session) -> Iterator[Stack]:
    """The session's local stack, up, with its settings and working directory for this module
    alone: other modules (and pytest-xdist's other files in this process) see neither."""
    running, settings_env = _stack_session
    with _stack_settings(settings_env):
        if not running.stack.is_up():  # a module stopped it (test_round_day's `down`)
            _up(running.stack)
        yield running


@contextlib.contextmanager
def _stack_settings(settings_env: dict[str, str]) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(PROJECT)
        for name, value in settings_env.items():
            patch.setenv(name, value)
        for name in ("NUMERAI_NODES_TOKEN_TOURNAMENT", "NUMERAI_NODES_GATEWAY_PUBLIC_URL"):
            patch.delenv(name, raising=False)
        yield


def _up(local: LocalStack) -> str:
    started = CliRunner().invoke(app, ["up", "--sandbox", "--sandbox-size", "tiny"])
    assert started.exit_code == 0, started.output + logs(local)
    return started.output


def _down(local: LocalStack, settings_env: dict[str, str]) -> None:
    with _stack_settings(settings_env):
        local.down()


@pytest.fixture(scope="session")
def image_build() -> podman.Build | None:
    """The project's image, built once a session from the unchanged Dockerfile with podman
    (layers kept between runs), or None where podman cannot run."""
    if podman.unavailable():
        return None
    return podman.build()


@pytest.fixture(scope="session")
def node_image(image_build) -> str:
    """The node image's name; the test is skipped, with the reason, where podman cannot run."""
    if image_build is None:
        pytest.skip(podman.unavailable() or "podman cannot run here")
    return image_build.image


@pytest.fixture(scope="session")
def launcher(image_build, tmp_path_factory) -> Launcher:
    """How the cloud fakes start a task's container: the real image with podman where podman
    runs, else a local process (the same command, a fresh home) so the worker tests still run."""
    if image_build is None:
        return LocalProcesses(PROJECT, tmp_path_factory.mktemp("container-homes"))
    return Podman()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Iterator[Azurite]:
    """Azurite's Blob storage on loopback for the session; the test is skipped, with the install
    command, where Azurite is not installed."""
    reason = azurite_unavailable()
    if reason:
        pytest.skip(reason)
    with Azurite(tmp_path_factory.mktemp("azurite")) as running:
        yield running
