"""`numerai-nodes up`, `down` and `status`: the local stack (Prefect server, worker, gateway)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from deployments.cli.output import ConsoleReporter, console, err_console, fail, settings_or_fail

if TYPE_CHECKING:
    from infra.local.stack import LocalStack, StackInfo


def point_sandbox_commands_at_the_stack() -> None:
    """Let `sandbox open-round` and the like find the local stack's sandbox without --url.

    Reads only the settings and the sandbox's ready file: no Prefect import, so every command
    stays quick.
    """
    import os
    from pathlib import Path

    from pydantic import ValidationError

    from infra.local.settings import StackSettings
    from sandbox.cli import SANDBOX_URL_ENV
    from sandbox.ready import READY_FILE, SandboxReady

    try:
        run_dir = StackSettings().run_dir
    except ValidationError:  # the command itself reports bad settings
        return
    ready = SandboxReady.read(Path(run_dir or ".") / READY_FILE) if run_dir else None
    if ready is not None:
        os.environ.setdefault(SANDBOX_URL_ENV, ready.url)


def load_stack(**overrides: object) -> LocalStack:
    """The local stack of this project, with settings from the environment plus `overrides`."""
    from infra.local.stack import LocalStack, StackSettings

    settings = settings_or_fail(StackSettings, "NUMERAI_NODES_", "local stack", **overrides)
    return LocalStack(settings, reporter=ConsoleReporter())


def prefect_api_url(stack: LocalStack, local: bool) -> str:
    """PREFECT_API_URL when set (and not `local`), else the running local stack's server."""
    from prefect.settings import PREFECT_API_URL

    configured = None if local else PREFECT_API_URL.value()
    if configured:
        return configured
    info = stack.info()
    if info is None or not any(p.alive and p.name == "server" for p in info.processes):
        raise fail(
            "No Prefect server to use: start the local stack (numerai-nodes up), or set "
            "PREFECT_API_URL (prefect cloud login, or prefect config set PREFECT_API_URL=...)."
        )
    return info.prefect_api_url


def up(
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="Also start a local Numerai and register on it.")
    ] = False,
    sandbox_size: Annotated[
        str, typer.Option(help="Sandbox data size: tiny, small or bench.")
    ] = "small",
    prefect_port: Annotated[
        int | None,
        typer.Option(help="Prefect server port (env NUMERAI_NODES_PREFECT_PORT; default 4200)."),
    ] = None,
    gateway_port: Annotated[
        int | None,
        typer.Option(help="Gateway port (env NUMERAI_NODES_GATEWAY_PORT; default 8787)."),
    ] = None,
    sandbox_port: Annotated[
        int | None,
        typer.Option(help="Sandbox port (env NUMERAI_NODES_SANDBOX_PORT; default 8686)."),
    ] = None,
) -> None:
    """Start the local stack in the background: Prefect server, a worker per local work pool,
    gateway (and sandbox).

    Then deploy prefect.yaml's nodes and trainings on those pools and register each node's
    webhook. The server uses SQLite under .numerai-nodes unless NUMERAI_NODES_DATABASE_URL names
    a PostgreSQL database. Stop it all with `numerai-nodes down`.
    """
    stack = load_stack(
        prefect_port=prefect_port, gateway_port=gateway_port, sandbox_port=sandbox_port
    )
    from deployments.fleet import DECLARATIONS
    from deployments.fleet_yaml import in_step
    from infra.local.stack import StackAlreadyUp

    if DECLARATIONS.exists() and not in_step():
        err_console.print(
            "[yellow]prefect.yaml is out of step with nodes.yaml: this deploys prefect.yaml as "
            "it is. Run `numerai-nodes node sync` to deploy what nodes.yaml declares.[/]"
        )

    try:
        info = stack.up(sandbox=sandbox, sandbox_size=sandbox_size)
    except StackAlreadyUp as exc:
        if sandbox and exc.info.sandbox_url is None:
            raise fail(
                "The local stack is already up, without the sandbox. Stop it with "
                "`numerai-nodes down`, then run `numerai-nodes up --sandbox`."
            ) from None
        err_console.print(str(exc), highlight=False)
        return
    _print_info(info)
    err_console.print("Stop it with: [bold]numerai-nodes down[/]")


def down() -> None:
    """Stop the local stack: the worker first, then the gateway, the sandbox and the server."""
    stack = load_stack()
    with err_console.status("Stopping the local stack"):
        stopped = stack.down()
    if not stopped:
        err_console.print("The local stack is not running.")
        return
    survivors = [process for process in stopped if process.alive]
    if survivors:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in survivors)
        raise fail(f"Could not stop: {names}. {stack.stack_file} keeps their PIDs.")
    names = ", ".join(process.name for process in stopped)
    err_console.print(f"Stopped the local stack ({names}).")


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
    logs: Annotated[
        int, typer.Option("--logs", metavar="N", help="Also print the last N lines of each log.")
    ] = 0,
) -> None:
    """Show the local stack's processes (pid, alive, url, log) and the Prefect UI URL."""
    stack = load_stack()
    info = stack.info()
    if as_json:
        data = info.to_json() if info else {"processes": []}
        data["running"] = info is not None and any(p.alive for p in info.processes)
        if logs:
            processes = info.processes if info else []
            data["logs"] = {p.name: stack.log_tail(p.name, logs) for p in processes}
        console.print_json(json.dumps(data))
        return
    if info is None:
        err_console.print("The local stack is not running. Start it with: numerai-nodes up")
        return
    _print_info(info)
    for process in info.processes if logs else []:
        console.rule(f"{process.name}: {process.log}", style="dim")
        console.print(stack.log_tail(process.name, logs), markup=False, highlight=False)


def _print_info(info: StackInfo) -> None:
    table = Table("process", "pid", "state", "url")
    table.add_column("log", overflow="fold")
    for process in info.processes:
        state = "[green]alive[/]" if process.alive else "[red]dead[/]"
        table.add_row(process.name, str(process.pid), state, process.url or "-", str(process.log))
    console.print(table)
    console.print(f"Prefect UI: [bold]{info.ui_url}[/]  (API {info.prefect_api_url})")
    pools = ", ".join(info.work_pools or [info.work_pool])
    console.print(f"Work pools: {pools}; database: {info.database}")
    for node, url in info.webhooks.items():
        console.print(f"Webhook of node {node}: {url}", highlight=False)
    if info.paused_schedules:
        console.print(
            "Fallback schedules are off while the sandbox runs (its rounds keep their own "
            f"clock): {', '.join(info.paused_schedules)}",
            highlight=False,
        )
