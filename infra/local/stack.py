"""The local stack: a Prefect server, a worker per local pool, the gateway, maybe a sandbox."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deployments.catalogue import Node
from flows.settings import HOME_ENV
from flows.tournaments import CLASSIC
from infra.local import prefect_setup, registration, workers
from infra.local.plan import LocalPlan, local_plan
from infra.local.processes import HOST, ProcessRecord, alive, get_ok, port_free, spawn, stop, tail
from infra.local.reporter import Reporter, SilentReporter
from infra.local.sandbox import sandbox_env
from infra.local.settings import StackSettings
from infra.local.state import (
    STACK_FILE,
    ProcessStatus,
    StackError,
    StackInfo,
    processes,
    read_state,
    write_state,
)
from infra.local.supervisor import supervised
from sandbox.ready import READY_FILE, SandboxReady

__all__ = ["LocalStack", "PortInUse", "StackAlreadyUp", "StackError", "StackInfo", "StackSettings"]

LOG_TAIL_LINES = 20
_SECRET_ENV = ("PREFECT_API_DATABASE_CONNECTION_URL",)


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
        return self.run_dir / READY_FILE

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

    # Inspecting --------------------------------------------------------------------------------

    def info(self) -> StackInfo | None:
        """What stack.json records, with each process's liveness; None when there is none."""
        state = read_state(self.stack_file)
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
            work_pools=list(
                state.get("work_pools") or [state.get("work_pool", self.settings.work_pool)]
            ),
            processes=self.status(),
            webhooks=dict(state.get("webhooks") or {}),
            startup_seconds=dict(state.get("startup_seconds") or {}),
            paused_schedules=list(state.get("paused_schedules") or []),
        )

    def status(self) -> list[ProcessStatus]:
        """Every process stack.json records, in start order; empty when the stack is not up."""
        state = read_state(self.stack_file) or {}
        return [_status(p) for p in processes(state).values()]

    def is_up(self) -> bool:
        """Whether any process of stack.json still runs."""
        return any(process.alive for process in self.status())

    def sandbox(self) -> SandboxReady | None:
        """The running sandbox's URLs, keys and models; None without a sandbox."""
        return SandboxReady.read(self.sandbox_ready_file)

    def sandbox_keys(self) -> dict[str, str] | None:
        """The environment that points a node at the running sandbox (URL and keys), or None."""
        sandbox = self.sandbox()
        return sandbox_env(sandbox) if sandbox else None

    def sandbox_models(self) -> dict[str, str]:
        """The running sandbox's model names and ids; empty without a sandbox."""
        sandbox = self.sandbox()
        return dict(sandbox.models) if sandbox else {}

    def plan(self) -> LocalPlan:
        """The process pools this stack serves, and the nodes and trainings it deploys on them."""
        return local_plan(self.project_dir, self.settings.work_pool)

    def log_tail(self, name: str, lines: int) -> str:
        """The last `lines` lines of a process's log."""
        return tail(self.logs_dir / f"{name}.log", lines)

    # Starting ----------------------------------------------------------------------------------

    def up(self, sandbox: bool = False, sandbox_size: str = "small") -> StackInfo:
        """Start the server, the sandbox (optional), a worker per process pool and the gateway;
        deploy the local nodes and trainings; register the nodes' webhooks.

        Raises StackAlreadyUp when stack.json names live processes. On any failure, everything
        started so far is stopped again.
        """
        plan = self.plan()
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
        self._state = self._initial_state(sandbox, plan.pools)
        self._write()
        try:
            return self._start(plan, sandbox, sandbox_size)
        except BaseException:
            with contextlib.suppress(Exception):
                self.down()
            raise

    def _start(self, plan: LocalPlan, sandbox: bool, sandbox_size: str) -> StackInfo:
        nodes = plan.nodes
        timings: dict[str, float] = self._state["startup_seconds"]
        started = time.monotonic()
        server_env = self._server_env(schedules=not sandbox)
        server = self._spawn("server", self._server_command(), server_env, self.ui_url)
        # The zygote imports Prefect and the node flows while the server starts.
        warm = workers.warm_socket(self.run_dir, self.settings.warm_start)
        zygote = self._spawn_zygote(warm) if warm else None
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
                running_sandbox = self.sandbox()
            timings["sandbox"] = round(time.monotonic() - started, 1)

        pools = ", ".join(repr(pool) for pool in plan.pools)
        plural = "s" if len(plan.pools) > 1 else ""
        with self.reporter.step(f"Creating the work pool{plural} {pools}"):
            for pool in plan.pools:
                command = workers.launcher_command() if warm else None
                prefect_setup.create_process_pool(self.prefect_api_url, pool, command)
        worker_started = datetime.now(UTC)
        started_workers = self._spawn_workers(plan.pools, running_sandbox, warm)
        # `prefect deploy` runs while the workers and the gateway start.
        deploy = prefect_setup.start_deploy(
            plan.deploy_names, self.project_dir, self._env(), self._deploy_log
        )
        try:
            triggered = [node for node in nodes if node.has_trigger]
            tokens = registration.tokens(self.prefect_api_url, triggered, self.reporter)
            gateway_command = supervised("gateway", [sys.executable, "-m", "deployments.gateway"])
            gateway_env = self._gateway_env(triggered)
            gateway = self._spawn("gateway", gateway_command, gateway_env, self.gateway_url)
            with self.reporter.step("Deploying the local nodes and trainings of prefect.yaml"):
                prefect_setup.finish_deploy(
                    deploy, self.settings.start_timeout_seconds, self._deploy_log
                )
            timings["deploy"] = round(time.monotonic() - started, 1)
            with self.reporter.step("Setting up crash recovery (automations)"):
                prefect_setup.apply_recovery(self.prefect_api_url)
            if running_sandbox is not None:
                # The sandbox opens rounds on its own clock, not at Numerai's fallback hour (nor
                # trains at the trainings' hour).
                self._state["paused_schedules"] = prefect_setup.pause_schedules(
                    self.prefect_api_url, plan.deployments
                )
        finally:
            if deploy.poll() is None:
                deploy.kill()
                deploy.wait()
        with self.reporter.step(f"Starting the worker{plural} and the gateway"):
            for pool, worker in started_workers.items():
                online = functools.partial(self._worker_online, pool, worker_started)
                self._wait_until(f"worker of pool {pool!r}", worker, online)
            timings["worker"] = round(time.monotonic() - started, 1)
            if zygote is not None and warm is not None:
                self._wait_until("zygote", zygote, warm.exists)
            self._wait_until("gateway", gateway, self._gateway_healthy)
            timings["gateway"] = round(time.monotonic() - started, 1)
        with self.reporter.step("Registering the webhooks"):
            public_base = self.gateway_url if running_sandbox else self.settings.gateway_public_url
            self._state["webhooks"] = registration.register_all(
                self.prefect_api_url, nodes, tokens, public_base, running_sandbox, self.reporter
            )
        timings["total"] = round(time.monotonic() - started, 1)
        self._state["complete"] = True
        self._write()
        info = self.info()
        assert info is not None
        return info

    # Stopping ----------------------------------------------------------------------------------

    def down(self) -> list[ProcessStatus]:
        """Stop every process of stack.json (the workers first, the server last); returns them.

        Only PIDs recorded in stack.json are signalled, and only while they are the very process
        that was started (same start time). Harmless when nothing runs.
        """
        state = read_state(self.stack_file)
        if state is None:
            return []
        recorded = processes(state)
        ordered = [recorded[name] for name in workers.stop_order(recorded)]
        for process in ordered:
            stop(process, self.settings.stop_timeout_seconds)
        statuses = [_status(p) for p in ordered]
        if not any(status.alive for status in statuses):
            self.stack_file.unlink(missing_ok=True)
        return statuses

    # Internals ---------------------------------------------------------------------------------

    def _initial_state(self, sandbox: bool, pools: list[str]) -> dict[str, Any]:
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
            "work_pools": pools,
            "ports": {
                "prefect": self.settings.prefect_port,
                "gateway": self.settings.gateway_port,
                **({"sandbox": self.settings.sandbox_port} if sandbox else {}),
            },
            "processes": {},
            "webhooks": {},
            "startup_seconds": {},
        }

    def _write(self) -> None:
        write_state(self.stack_file, self._state)

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
            if not port_free(port):
                raise PortInUse(
                    f"Port {port} ({what}) is in use on {HOST}. Stop what listens there, or "
                    f"pick another port with {setting} (`up --{key}-port`)."
                )

    def _spawn_zygote(self, socket: Path) -> ProcessRecord:
        """The supervised warm parent of the flow runs (infra/local/zygote.py)."""
        socket.unlink(missing_ok=True)  # a stale one would look ready
        command = supervised(workers.ZYGOTE, workers.zygote_command(socket))
        # The workers' Prefect settings, so that a child need not read its own again; and a
        # working directory without the project's settings files, as a worker's flow run has.
        env = self._env(workers.settings_env(self.settings.worker_poll_seconds, socket))
        return self._spawn(workers.ZYGOTE, command, env, None, cwd=self.run_dir)

    def _spawn_workers(
        self, pools: list[str], sandbox: SandboxReady | None, socket: Path | None
    ) -> dict[str, ProcessRecord]:
        """A supervised process worker per pool, each pointed at the sandbox when it runs."""
        settings = workers.settings_env(self.settings.worker_poll_seconds, socket)
        env = self._env({**settings, **(sandbox_env(sandbox) if sandbox else {})})
        started = {}
        for pool in pools:
            name = workers.process_name(pool, self.settings.work_pool)
            started[pool] = self._spawn(name, supervised(name, workers.command(pool)), env, None)
        return started

    def _spawn(
        self,
        name: str,
        command: list[str],
        env: Mapping[str, str],
        url: str | None,
        cwd: Path | None = None,
    ) -> ProcessRecord:
        log = self.logs_dir / f"{name}.log"
        process = spawn(name, command, env, url, log, cwd or self.project_dir)
        self._state["processes"][name] = asdict(process)
        self._write()
        return process

    def _wait_until(self, what: str, process: ProcessRecord, ready: Callable[[], bool]) -> None:
        """Wait for `ready`, failing fast when any process started so far has exited."""
        deadline = time.monotonic() + self.settings.start_timeout_seconds
        while not ready():
            for started in processes(self._state).values():
                if not alive(started):
                    raise StackError(
                        f"The {started.name} process exited while starting. The end of its log "
                        f"{started.log}:\n{tail(Path(started.log), LOG_TAIL_LINES)}"
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
                HOME_ENV: str(self.home),
                **(extra or {}),
            }
        )
        return env

    def _server_env(self, schedules: bool = True) -> dict[str, str]:
        url = self.settings.database_url
        database = (
            url.get_secret_value()
            if url
            else f"sqlite+aiosqlite:///{self.home / 'prefect' / 'prefect.db'}"
        )
        (self.home / "prefect").mkdir(parents=True, exist_ok=True)
        return self._env(
            {
                "PREFECT_API_DATABASE_CONNECTION_URL": database,
                # Serve run logs live on /api/logs/out, as Prefect Cloud does: `node test`
                # follows a run's logs through Prefect's logs subscriber.
                "PREFECT_SERVER_LOGS_STREAM_OUT_ENABLED": "true",
                "PREFECT_SERVER_LOGS_STREAM_PUBLISHING_ENABLED": "true",
                **prefect_setup.recording_batches(os.environ),
                # A sandbox rehearsal keeps its own clock: its server schedules no runs at
                # Numerai's hours (turning the schedules off after deploying races with the
                # scheduler, which could still add a batch of runs).
                **({} if schedules else {"PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false"}),
            }
        )

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
        return [*prefect_setup.prefect_command(), "server", "start", "--host", HOST, "--port", port]

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

    @property
    def _deploy_log(self) -> Path:
        return self.logs_dir / "deploy.log"

    def _server_healthy(self) -> bool:
        return get_ok(f"{self.prefect_api_url}/health")

    def _gateway_healthy(self) -> bool:
        return get_ok(f"{self.gateway_url}/healthz")

    def _worker_online(self, pool: str, since: datetime) -> bool:
        return prefect_setup.worker_online(self.prefect_api_url, pool, since)


def _status(process: ProcessRecord) -> ProcessStatus:
    return ProcessStatus(process.name, process.pid, alive(process), process.url, Path(process.log))


def _sandbox_model(node: Node) -> str:
    """The sandbox's `--model` spec: `name` for Classic, `name:<tournament id>` otherwise."""
    if node.tournament == CLASSIC:
        return node.numerai_model
    return f"{node.numerai_model}:{int(node.tournament)}"
