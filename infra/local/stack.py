"""The local stack: a Prefect server, a process worker, the webhook gateway, maybe the sandbox."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import httpx
import psutil
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deployments.catalogue import CATALOGUE, CatalogueError, Node, load_nodes, nodes_on_pool
from flows.errors import NodeError

HOST = "127.0.0.1"
STACK_FILE = "stack.json"
SANDBOX_READY_FILE = "sandbox.json"
WORKER_NAME = "numerai-nodes-local"
STOP_ORDER = ("worker", "gateway", "sandbox", "server")
LOG_TAIL_LINES = 20
_POSTGRES_SCHEMES = ("postgresql+asyncpg://", "postgresql://", "postgres://")
_SECRET_ENV = ("PREFECT_API_DATABASE_CONNECTION_URL",)


class StackSettings(BaseSettings):
    """Settings of the local stack, read from `NUMERAI_NODES_*` environment variables (and .env)."""

    model_config = SettingsConfigDict(env_prefix="NUMERAI_NODES_", env_file=".env", extra="ignore")

    home: Path = Field(
        Path(".numerai-nodes"), description="Project-local working directory (as for the nodes)."
    )
    prefect_port: int = Field(4200, ge=1, le=65535, description="Port of the Prefect server.")
    gateway_port: int = Field(8787, ge=1, le=65535, description="Port of the webhook gateway.")
    sandbox_port: int = Field(8686, ge=1, le=65535, description="Port of the sandbox (--sandbox).")
    database_url: SecretStr | None = Field(
        None,
        description="PostgreSQL URL for the Prefect server, e.g. "
        "`postgresql://prefect:PASSWORD@127.0.0.1:5432/prefect`. Unset: SQLite under the home.",
    )
    run_dir: Path | None = Field(
        None, description="Where PIDs (stack.json) and logs live. Default: `<home>/run`."
    )
    worker_poll_seconds: float = Field(
        1.0, gt=0, description="How often the worker asks for scheduled flow runs."
    )
    work_pool: str = Field("local", description="The `process` work pool the worker serves.")
    gateway_public_url: str | None = Field(
        None,
        description="A public URL that reaches the gateway (a tunnel or a reverse proxy). "
        "Without it, `up` registers webhooks only on the sandbox.",
    )
    start_timeout_seconds: float = Field(
        180.0, gt=0, description="How long to wait for each process to become ready."
    )
    stop_timeout_seconds: float = Field(
        15.0, gt=0, description="How long each process gets to stop after SIGINT."
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        url = value.get_secret_value()
        for scheme in _POSTGRES_SCHEMES:
            if url.startswith(scheme):
                # Prefect's server talks to PostgreSQL through asyncpg.
                return SecretStr("postgresql+asyncpg://" + url[len(scheme) :])
        raise ValueError(
            "must be a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:5432/DB); "
            "leave it unset to use SQLite"
        )

    @model_validator(mode="after")
    def _default_run_dir(self) -> StackSettings:
        if self.run_dir is None:
            self.run_dir = self.home / "run"
        return self


class StackError(NodeError, RuntimeError):
    """The local stack could not start or stop; the message names the cause and the log."""


class PortInUse(StackError):
    """A port the stack needs is taken."""


class StackAlreadyUp(StackError):
    """stack.json names live processes: the stack runs already."""

    def __init__(self, info: StackInfo):
        self.info = info
        super().__init__(
            f"The local stack is already up (Prefect UI {info.ui_url}): `numerai-nodes status` "
            "shows it, `numerai-nodes down` stops it."
        )


@dataclass(frozen=True)
class ProcessStatus:
    """One process of the stack, as `status` reports it."""

    name: str
    pid: int
    alive: bool
    url: str | None
    log: Path

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "log": str(self.log)}


@dataclass(frozen=True)
class StackInfo:
    """Where the running stack listens, and what it registered. Holds no secrets."""

    run_dir: Path
    prefect_api_url: str
    ui_url: str
    gateway_url: str
    sandbox_url: str | None
    database: str
    work_pool: str
    processes: list[ProcessStatus]
    webhooks: dict[str, str] = field(default_factory=dict)  # node -> masked URL
    startup_seconds: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "run_dir": str(self.run_dir),
            "processes": [process.to_json() for process in self.processes],
        }


class Reporter(Protocol):
    """How the stack tells a user what it is doing (the CLI shows spinners)."""

    def step(self, message: str) -> AbstractContextManager[object]: ...

    def note(self, message: str) -> None: ...


class SilentReporter:
    """A Reporter that shows nothing."""

    def step(self, message: str) -> AbstractContextManager[object]:
        return nullcontext()

    def note(self, message: str) -> None:
        pass


@dataclass(frozen=True)
class _Process:
    name: str
    pid: int
    create_time: float
    url: str | None
    log: str


@dataclass(frozen=True)
class _Sandbox:
    url: str
    public_id: str
    secret_key: str = field(repr=False)
    models: dict[str, str]
    yahoo_url: str | None = None

    def env(self) -> dict[str, str]:
        env = {
            "NUMERAI_API_URL": self.url,
            "NUMERAI_PUBLIC_ID": self.public_id,
            "NUMERAI_SECRET_KEY": self.secret_key,
        }
        if self.yahoo_url:  # the sandbox's Yahoo fake, for Signals nodes
            env["NUMERAI_NODES_YAHOO_URL"] = self.yahoo_url
        return env


# Popen objects of the children this interpreter started, so that it can reap them.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class LocalStack:
    """Starts, inspects and stops the local stack; what it knows lives in the run directory."""

    def __init__(
        self,
        settings: StackSettings | None = None,
        *,
        project_dir: Path | None = None,
        reporter: Reporter | None = None,
    ):
        self.settings = settings or StackSettings()
        self.project_dir = (project_dir or Path.cwd()).absolute()
        self.reporter = reporter or SilentReporter()
        self._state: dict[str, Any] = {}

    # Where things are --------------------------------------------------------------------------

    @property
    def run_dir(self) -> Path:
        return self.project_dir / (self.settings.run_dir or self.settings.home / "run")

    @property
    def stack_file(self) -> Path:
        return self.run_dir / STACK_FILE

    @property
    def logs_dir(self) -> Path:
        return self.run_dir / "logs"

    @property
    def home(self) -> Path:
        return self.project_dir / self.settings.home

    @property
    def sandbox_ready_file(self) -> Path:
        """Written by the sandbox once it listens (it holds the sandbox's keys; removed on stop)."""
        return self.run_dir / SANDBOX_READY_FILE

    # Inspecting --------------------------------------------------------------------------------

    def info(self) -> StackInfo | None:
        """What stack.json records, with each process's liveness; None when there is none."""
        state = self._read()
        if state is None:
            return None
        return StackInfo(
            run_dir=self.run_dir,
            prefect_api_url=state.get("prefect_api_url", self.prefect_api_url),
            ui_url=state.get("ui_url", self.ui_url),
            gateway_url=state.get("gateway_url", self.gateway_url),
            sandbox_url=state.get("sandbox_url"),
            database=state.get("database", "sqlite"),
            work_pool=state.get("work_pool", self.settings.work_pool),
            processes=self.status(),
            webhooks=dict(state.get("webhooks") or {}),
            startup_seconds=dict(state.get("startup_seconds") or {}),
        )

    def status(self) -> list[ProcessStatus]:
        """Every process stack.json records, in start order; empty when the stack is not up."""
        state = self._read() or {}
        return [
            ProcessStatus(p.name, p.pid, _alive(p), p.url, Path(p.log))
            for p in _processes(state).values()
        ]

    def is_up(self) -> bool:
        """Whether any process of stack.json still runs."""
        return any(process.alive for process in self.status())

    def sandbox_keys(self) -> dict[str, str] | None:
        """The running sandbox's URL and keys as env vars (NUMERAI_API_URL, ...), or None."""
        sandbox = self._read_sandbox_ready()
        return sandbox.env() if sandbox else None

    def sandbox_models(self) -> dict[str, str]:
        """The running sandbox's model names and ids; empty without a sandbox."""
        sandbox = self._read_sandbox_ready()
        return dict(sandbox.models) if sandbox else {}

    def log_tail(self, name: str, lines: int) -> str:
        """The last `lines` lines of a process's log."""
        return _tail(self.logs_dir / f"{name}.log", lines)

    # Starting ----------------------------------------------------------------------------------

    def up(self, sandbox: bool = False, sandbox_size: str = "small") -> StackInfo:
        """Start the server, the sandbox (optional), the worker and the gateway; deploy; register.

        Raises StackAlreadyUp when stack.json names live processes. On any failure, everything
        started so far is stopped again.
        """
        nodes = nodes_on_pool(load_nodes(self.project_dir / CATALOGUE), self.settings.work_pool)
        if not nodes:
            raise CatalogueError(
                f"prefect.yaml has no node on the work pool {self.settings.work_pool!r}, so the "
                "local stack has nothing to run. Give a node `work_pool: *local_pool`."
            )
        existing = self.info()
        if existing is not None:
            if any(process.alive for process in existing.processes):
                raise StackAlreadyUp(existing)
            self.stack_file.unlink(missing_ok=True)  # stale: every process is gone
        self._check_ports(sandbox)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o700)
        self.logs_dir.mkdir(exist_ok=True)
        self.sandbox_ready_file.unlink(missing_ok=True)
        self._state = self._initial_state(sandbox)
        self._write()
        try:
            return self._start(nodes, sandbox, sandbox_size)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise

    def _start(self, nodes: list[Node], sandbox: bool, sandbox_size: str) -> StackInfo:
        timings: dict[str, float] = self._state["startup_seconds"]
        started = time.monotonic()
        server = self._spawn("server", self._server_command(), self._server_env(), self.ui_url)
        sandbox_process = None
        if sandbox:
            sandbox_process = self._spawn(
                "sandbox", self._sandbox_command(nodes, sandbox_size), self._env(), self.sandbox_url
            )
        with self.reporter.step(
            "Starting the Prefect server (the first start migrates its database: 20-40 s)"
        ):
            self._wait_until("Prefect server", server, self._server_healthy)
        timings["server"] = round(time.monotonic() - started, 1)
        running_sandbox = None
        if sandbox_process is not None:
            with self.reporter.step(
                f"Starting the sandbox ({sandbox_size} data; the first start generates it)"
            ):
                self._wait_until("sandbox", sandbox_process, self.sandbox_ready_file.exists)
                running_sandbox = self._read_sandbox_ready()
            timings["sandbox"] = round(time.monotonic() - started, 1)

        with self.reporter.step(f"Creating the work pool {self.settings.work_pool!r}"):
            self._create_work_pool()
        worker_started = datetime.now(UTC)
        worker_env = self._env(
            {**self._worker_settings_env(), **(running_sandbox.env() if running_sandbox else {})}
        )
        worker = self._spawn("worker", self._worker_command(), worker_env, None)
        deploy = self._start_deploy(nodes)  # runs while the worker and the gateway start
        try:
            triggered = [node for node in nodes if node.has_trigger]
            tokens = self._tokens(triggered)
            gateway_command = [sys.executable, "-m", "deployments.gateway"]
            gateway_env = self._gateway_env(triggered)
            gateway = self._spawn("gateway", gateway_command, gateway_env, self.gateway_url)
            with self.reporter.step("Deploying the local nodes of prefect.yaml"):
                self._finish_deploy(deploy)
            timings["deploy"] = round(time.monotonic() - started, 1)
        finally:
            if deploy.poll() is None:
                deploy.kill()
                deploy.wait()
        with self.reporter.step("Starting the worker and the gateway"):
            self._wait_until("worker", worker, lambda: self._worker_online(worker_started))
            timings["worker"] = round(time.monotonic() - started, 1)
            self._wait_until("gateway", gateway, self._gateway_healthy)
            timings["gateway"] = round(time.monotonic() - started, 1)
        with self.reporter.step("Registering the webhooks"):
            self._register_all(nodes, triggered, tokens, running_sandbox)
        timings["total"] = round(time.monotonic() - started, 1)
        self._state["complete"] = True
        self._write()
        info = self.info()
        assert info is not None
        return info

    # Stopping ----------------------------------------------------------------------------------

    def down(self) -> list[ProcessStatus]:
        """Stop every process of stack.json (workers first, the server last); returns them.

        Only PIDs recorded in stack.json are signalled, and only while they are the very process
        that was started (same start time). Harmless when nothing runs.
        """
        state = self._read()
        if state is None:
            return []
        processes = _processes(state)
        ordered = [processes[name] for name in STOP_ORDER if name in processes]
        ordered += [p for name, p in processes.items() if name not in STOP_ORDER]
        for process in ordered:
            _stop(process, self.settings.stop_timeout_seconds)
        statuses = [ProcessStatus(p.name, p.pid, _alive(p), p.url, Path(p.log)) for p in ordered]
        if not any(status.alive for status in statuses):
            self.stack_file.unlink(missing_ok=True)
        return statuses

    # URLs --------------------------------------------------------------------------------------

    @property
    def prefect_api_url(self) -> str:
        return f"http://{HOST}:{self.settings.prefect_port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.settings.prefect_port}"

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.settings.gateway_port}"

    @property
    def sandbox_url(self) -> str:
        return f"http://{HOST}:{self.settings.sandbox_port}/"

    # Internals: state --------------------------------------------------------------------------

    def _initial_state(self, sandbox: bool) -> dict[str, Any]:
        return {
            "version": 1,
            "started_at": datetime.now(UTC).isoformat(),
            "complete": False,
            "project_dir": str(self.project_dir),
            "prefect_api_url": self.prefect_api_url,
            "ui_url": self.ui_url,
            "gateway_url": self.gateway_url,
            "sandbox_url": self.sandbox_url if sandbox else None,
            "database": "postgresql" if self.settings.database_url else "sqlite",
            "work_pool": self.settings.work_pool,
            "ports": {
                "prefect": self.settings.prefect_port,
                "gateway": self.settings.gateway_port,
                **({"sandbox": self.settings.sandbox_port} if sandbox else {}),
            },
            "processes": {},
            "webhooks": {},
            "startup_seconds": {},
        }

    def _read(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.stack_file.read_text())
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise StackError(
                f"{self.stack_file} is damaged ({exc}). Stop the processes it lists by hand, "
                "then delete it."
            ) from None

    def _write(self) -> None:
        tmp = self.stack_file.with_name(f".{STACK_FILE}.tmp")
        tmp.write_text(json.dumps(self._state, indent=2))
        tmp.chmod(0o600)
        tmp.replace(self.stack_file)

    def _read_sandbox_ready(self) -> _Sandbox | None:
        try:
            raw = json.loads(self.sandbox_ready_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return _Sandbox(
            raw["url"],
            raw["public_id"],
            raw["secret_key"],
            dict(raw["models"]),
            raw.get("yahoo_url"),
        )

    # Internals: processes ----------------------------------------------------------------------

    def _check_ports(self, sandbox: bool) -> None:
        wanted = {
            "Prefect server": ("prefect", self.settings.prefect_port),
            "gateway": ("gateway", self.settings.gateway_port),
        }
        if sandbox:
            wanted["sandbox"] = ("sandbox", self.settings.sandbox_port)
        seen: dict[int, str] = {}
        for what, (key, port) in wanted.items():
            setting = f"NUMERAI_NODES_{key.upper()}_PORT"

            if port in seen:
                raise PortInUse(
                    f"The {what} and the {seen[port]} are both set to port {port}; "
                    f"give the {what} another port with {setting}."
                )
            seen[port] = what
            if not _port_free(port):
                raise PortInUse(
                    f"Port {port} ({what}) is in use on {HOST}. Stop what listens there, or "
                    f"pick another port with {setting} (`up --{key}-port`)."
                )

    def _spawn(
        self, name: str, command: list[str], env: Mapping[str, str], url: str | None
    ) -> _Process:
        log = self.logs_dir / f"{name}.log"
        with log.open("wb") as handle:
            popen = subprocess.Popen(
                command,
                cwd=self.project_dir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: down signals the whole group
            )
        _CHILDREN[popen.pid] = popen
        process = _Process(name, popen.pid, _create_time(popen.pid), url, str(log))
        self._state["processes"][name] = asdict(process)
        self._write()
        return process

    def _wait_until(self, what: str, process: _Process, ready: Callable[[], bool]) -> None:
        """Wait for `ready`, failing fast when any process started so far has exited."""
        deadline = time.monotonic() + self.settings.start_timeout_seconds
        while not ready():
            for started in _processes(self._state).values():
                if not _alive(started):
                    raise StackError(
                        f"The {started.name} process exited while starting. The end of its log "
                        f"{started.log}:\n{_tail(Path(started.log), LOG_TAIL_LINES)}"
                    )
            if time.monotonic() > deadline:
                raise StackError(
                    f"The {what} was not ready after {self.settings.start_timeout_seconds:.0f} s; "
                    f"see its log {process.log} (NUMERAI_NODES_START_TIMEOUT_SECONDS waits longer)."
                )
            time.sleep(0.25)

    def _env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of every child: this project's Prefect home and API, and `extra`."""
        env = {key: value for key, value in os.environ.items() if key not in _SECRET_ENV}
        env.update(
            {
                "PREFECT_HOME": str(self.home / "prefect"),
                "PREFECT_API_URL": self.prefect_api_url,
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "NUMERAI_NODES_HOME": str(self.home),
                **(extra or {}),
            }
        )
        return env

    def _server_env(self) -> dict[str, str]:
        url = self.settings.database_url
        database = (
            url.get_secret_value()
            if url
            else f"sqlite+aiosqlite:///{self.home / 'prefect' / 'prefect.db'}"
        )
        (self.home / "prefect").mkdir(parents=True, exist_ok=True)
        return self._env({"PREFECT_API_DATABASE_CONNECTION_URL": database})

    def _gateway_env(self, nodes: list[Node]) -> dict[str, str]:
        # The gateway reads each node's token from NUMERAI_NODES_TOKEN_<NODE> or its Secret block.
        return self._env(
            {
                "NUMERAI_NODES_GATEWAY_HOST": HOST,
                "NUMERAI_NODES_GATEWAY_PORT": str(self.settings.gateway_port),
                "NUMERAI_NODES_GATEWAY_NODES": json.dumps([node.name for node in nodes]),
                "NUMERAI_NODES_GATEWAY_PREFECT_API_URL": self.prefect_api_url,
            }
        )

    def _server_command(self) -> list[str]:
        port = str(self.settings.prefect_port)
        return [*_prefect(), "server", "start", "--host", HOST, "--port", port]

    def _worker_command(self) -> list[str]:
        pool = self.settings.work_pool
        return [*_prefect(), "worker", "start", "--pool", pool, "--type", "process",
                "--name", WORKER_NAME]  # fmt: skip

    def _worker_settings_env(self) -> dict[str, str]:
        poll = self.settings.worker_poll_seconds
        return {
            "PREFECT_WORKER_QUERY_SECONDS": str(poll),
            "PREFECT_WORKER_PREFETCH_SECONDS": str(max(2.0, 2 * poll)),
            # A short heartbeat lets `doctor` see a stopped worker within seconds.
            "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
        }

    def _sandbox_command(self, nodes: list[Node], size: str) -> list[str]:
        command = [
            sys.executable, "-m", "sandbox", "serve",
            "--host", HOST, "--port", str(self.settings.sandbox_port),
            "--root", str(self.home / "sandbox"), "--size", size,
            "--ready-file", str(self.sandbox_ready_file),
        ]  # fmt: skip
        for spec in dict.fromkeys(_sandbox_model(node) for node in nodes if node.numerai_model):
            command += ["--model", spec]
        return command

    # Internals: readiness ----------------------------------------------------------------------

    def _server_healthy(self) -> bool:
        return _get_ok(f"{self.prefect_api_url}/health")

    def _gateway_healthy(self) -> bool:
        return _get_ok(f"{self.gateway_url}/healthz")

    def _worker_online(self, since: datetime) -> bool:
        url = f"{self.prefect_api_url}/work_pools/{self.settings.work_pool}/workers/filter"
        try:
            response = httpx.post(url, json={}, timeout=5)
        except httpx.HTTPError:
            return False
        if not response.is_success:
            return False
        for worker in response.json():
            beat = worker.get("last_heartbeat_time")
            if worker.get("name") == WORKER_NAME and beat and datetime.fromisoformat(beat) >= since:
                return True
        return False

    # Internals: Prefect objects ----------------------------------------------------------------

    def _create_work_pool(self) -> None:
        from prefect.workers.process import ProcessWorker

        response = httpx.post(
            f"{self.prefect_api_url}/work_pools/",
            json={
                "name": self.settings.work_pool,
                "type": "process",
                "base_job_template": ProcessWorker.get_default_base_job_template(),
            },
            timeout=30,
        )
        if response.status_code == 409:  # it exists already: a database kept from before
            return
        if not response.is_success:
            raise StackError(
                f"Creating the work pool {self.settings.work_pool!r} failed: HTTP "
                f"{response.status_code} {response.text[:300]}"
            )

    @property
    def _deploy_log(self) -> Path:
        return self.logs_dir / "deploy.log"

    def _start_deploy(self, nodes: list[Node]) -> subprocess.Popen[bytes]:
        """Start `prefect deploy` of the stack's nodes in the project directory, on its server."""
        names = [argument for node in nodes for argument in ("--name", node.full_name)]
        with self._deploy_log.open("wb") as handle:
            return subprocess.Popen(
                [*_prefect(), "--no-prompt", "deploy", *names],
                cwd=self.project_dir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )

    def _finish_deploy(self, deploy: subprocess.Popen[bytes]) -> None:
        try:
            code = deploy.wait(self.settings.start_timeout_seconds)
        except subprocess.TimeoutExpired:
            raise StackError(
                f"prefect deploy did not finish in {self.settings.start_timeout_seconds:.0f}"
                f" s; see {self._deploy_log}"
            ) from None
        if code != 0:
            raise StackError(
                f"prefect deploy failed (exit code {code}). The end of its output "
                f"({self._deploy_log}):\n{_tail(self._deploy_log, LOG_TAIL_LINES)}"
            )

    def _tokens(self, nodes: list[Node]) -> dict[str, str]:
        """Each node's webhook token, created (in its Secret block on this server) when missing."""
        from deployments.webhooks import ensure_token

        tokens = {}
        with self._prefect_api():
            for node in nodes:
                tokens[node.name], created = ensure_token(node.name)
                if created:
                    self.reporter.note(
                        f"Created the webhook token of node {node.name!r} (Prefect Secret block "
                        f"on this server)."
                    )
        return tokens

    def _register_all(
        self,
        nodes: list[Node],
        triggered: list[Node],
        tokens: dict[str, str],
        sandbox: _Sandbox | None,
    ) -> None:
        from deployments.webhooks import mask_url

        for node in nodes:
            if not node.has_trigger:
                self.reporter.note(
                    f"Node {node.name!r} has no webhook trigger in prefect.yaml; "
                    "its webhook is not registered."
                )
        public_base = self.gateway_url if sandbox else self.settings.gateway_public_url
        if not public_base:
            if triggered:
                self.reporter.note(
                    "Webhooks are not registered on Numerai: it cannot reach "
                    f"{self.gateway_url}. Expose the gateway (e.g. a tunnel), set "
                    "NUMERAI_NODES_GATEWAY_PUBLIC_URL, and run: numerai-nodes webhook register NODE"
                )
            return
        for node in triggered:
            try:
                url = self._register(node, tokens[node.name], public_base, sandbox)
            except NodeError as exc:
                if sandbox:
                    raise
                self.reporter.note(f"The webhook of node {node.name!r} was not registered: {exc}")
                continue
            self._state["webhooks"][node.name] = mask_url(url)
            self._write()

    def _register(self, node: Node, token: str, public_base: str, sandbox: _Sandbox | None) -> str:
        from deployments.webhooks import register
        from flows.keys import load_keys
        from flows.numerai import NumeraiClient
        from flows.settings import load_settings

        if sandbox:
            numerai = NumeraiClient(
                sandbox.url, sandbox.public_id, sandbox.secret_key, tournament=node.tournament
            )
        else:
            settings = load_settings()
            with self._prefect_api():
                public_id, secret_key = load_keys(settings)
            numerai = NumeraiClient(
                settings.api_url, public_id, secret_key, tournament=node.tournament
            )
        return register(
            node,
            numerai=numerai,
            prefect_api_url=self.prefect_api_url,
            public_base=public_base,
            token=token,
        )

    def _prefect_api(self) -> AbstractContextManager[None]:
        from deployments.webhooks import prefect_api

        return prefect_api(self.prefect_api_url)


def _sandbox_model(node: Node) -> str:
    """The sandbox's `--model` spec: `name` for Classic, `name:<tournament id>` otherwise."""
    return node.numerai_model if node.tournament == 8 else f"{node.numerai_model}:{node.tournament}"


def _processes(state: Mapping[str, Any]) -> dict[str, _Process]:
    return {name: _Process(**raw) for name, raw in (state.get("processes") or {}).items()}


def _prefect() -> list[str]:
    return [sys.executable, "-m", "prefect"]


def _create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def _same_process(process: _Process) -> psutil.Process | None:
    """The live process of a record; None when it is gone, a zombie, or its PID was reused."""
    try:
        live = psutil.Process(process.pid)
        if abs(live.create_time() - process.create_time) > 0.5:
            return None
        if live.status() == psutil.STATUS_ZOMBIE:
            _reap(process.pid)
            return None
        return live
    except psutil.Error:
        return None


def _alive(process: _Process) -> bool:
    return _same_process(process) is not None


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)


def _stop(process: _Process, timeout: float) -> None:
    """SIGINT, then SIGTERM, then SIGKILL, to the process group of a process this stack started."""
    live = _same_process(process)
    if live is None:
        return
    group = process.pid if _group_of(process.pid) == process.pid else None
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        _signal(process.pid, group, sig)
        try:
            live.wait(wait)
            break
        except psutil.TimeoutExpired:
            continue
        except psutil.Error:
            break
    _reap(process.pid)
    if group is not None:
        _stop_group_leftovers(group)


def _stop_group_leftovers(group: int) -> None:
    # Children of the stopped process (the worker's flow runs) share its process group; while
    # any of them exists, Linux does not give the group's id to another process.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group_exists(group):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
        deadline = time.monotonic() + 5.0
        while _group_exists(group) and time.monotonic() < deadline:
            time.sleep(0.1)


def _group_exists(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _signal(pid: int, group: int | None, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group is not None:
            os.killpg(group, sig)
        else:
            os.kill(pid, sig)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: a socket in TIME_WAIT from a stopped stack does not count as in use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _get_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _tail(path: Path, lines: int) -> str:
    """The last `lines` lines of a text file; empty when it does not exist."""
    if lines <= 0:
        return ""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = min(size, max(8192, lines * 400))
            handle.seek(size - block)
            data = handle.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", errors="replace").splitlines()[-lines:])
