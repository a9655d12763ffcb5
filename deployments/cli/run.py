"""`numerai-nodes run`: run a node in this process, against Numerai or a sandbox."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from deployments.cli.output import (
    ConsoleReporter,
    console,
    err_console,
    fail,
    quiet_expected_tracebacks,
)
from deployments.cli.stack import load_stack
from flows.tournaments import CLASSIC, SIGNALS, Tournament

# Prefect's temporary server gets this long to start (its default, 20 s, is short on a busy
# machine: the run then died with a traceback).
_EPHEMERAL_START_S = 90

app = typer.Typer(
    help="Run a node in this process (no deployment, no worker).", no_args_is_help=True
)


def _parse_params(values: list[str]) -> dict:
    params: dict = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise fail(f"--param takes KEY=VALUE, got '{item}'")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


NodeName = Annotated[
    str | None,
    typer.Option(
        "--node",
        help="Take the model settings (model, data version, features, target, parameters) of "
        "this node of prefect.yaml. Default: the node named after the command, when declared.",
    ),
]
Sandbox = Annotated[bool, typer.Option("--sandbox", help="Start a local Numerai and submit to it.")]
SandboxSize = Annotated[str, typer.Option(help="Sandbox data size: tiny, small or bench.")]
Model = Annotated[
    str | None, typer.Option("--model", "-m", help="Numerai model name to submit as.")
]
Target = Annotated[
    str | None, typer.Option(help="Target column to train on (default: the node's).")
]
DataVersion = Annotated[
    str | None, typer.Option(help="Numerai dataset version (default: the node's).")
]
Params = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="Model parameter KEY=VALUE (repeatable)."),
]
TriggerId = Annotated[
    str | None, typer.Option(help="Trigger id to submit with (Numerai's webhook sets it).")
]
RoundNumber = Annotated[
    int | None, typer.Option("--round", help="Round to predict (default: the open one).")
]
Score = Annotated[bool, typer.Option(help="Score the model per era on validation data.")]
Force = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Submit even if the round already has a submission (Numerai keeps the new file "
        "as the round's submission). Without it a run never uploads over one.",
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command("tournament")
def tournament(
    node_name: NodeName = None,
    sandbox: Sandbox = False,
    sandbox_size: SandboxSize = "small",
    model: Model = None,
    data_version: DataVersion = None,
    feature_set: Annotated[
        str | None, typer.Option(help="Feature set from features.json (default: the node's).")
    ] = None,
    target: Target = None,
    param: Params = None,
    trigger_id: TriggerId = None,
    round_number: RoundNumber = None,
    score: Score = True,
    force: Force = False,
    as_json: AsJson = False,
) -> None:
    """Run the Classic tournament node in-process: download, train or load, predict, submit.

    Without --sandbox it talks to Numerai. Public data needs no keys; with no keys it writes
    the predictions to a file and does not upload.
    """
    declared = _declared(node_name, CLASSIC)
    params = {**declared.pop("params", {}), **_parse_params(param or [])}
    with _api(sandbox, sandbox_size, CLASSIC) as sandbox_models:
        from flows.tournament import TournamentNode, tournament_node

        name, upload = _submit_as(model, sandbox_models)
        # The declared node's settings apply where no option was given, then the flow's defaults.
        given = declared | _given(
            numerai_model=name, data_version=data_version, feature_set=feature_set, target=target
        )
        node = TournamentNode(**given, params=params, score_validation=score, upload=upload)
        outcome, seconds = _run_flow(tournament_node, node, trigger_id, round_number, force)
    _print_outcome("Tournament node", outcome, seconds, as_json)


@app.command("signals")
def signals(
    node_name: NodeName = None,
    sandbox: Sandbox = False,
    sandbox_size: SandboxSize = "tiny",
    model: Model = None,
    data_version: DataVersion = None,
    target: Target = None,
    param: Params = None,
    trigger_id: TriggerId = None,
    round_number: RoundNumber = None,
    score: Score = True,
    force: Force = False,
    as_json: AsJson = False,
) -> None:
    """Run the Signals node in-process: live universe, Yahoo prices, train or load, submit.

    Without --sandbox it talks to Numerai and Yahoo Finance (NUMERAI_NODES_YAHOO_URL points it
    elsewhere). With no keys it writes the predictions to a file and does not upload.
    """
    declared = _declared(node_name, SIGNALS)
    params = {**declared.pop("params", {}), **_parse_params(param or [])}
    with _api(sandbox, sandbox_size, SIGNALS) as sandbox_models:
        from flows.signals import SignalsNode, signals_node

        name, upload = _submit_as(model, sandbox_models)
        given = declared | _given(numerai_model=name, data_version=data_version, target=target)
        node = SignalsNode(**given, params=params, score_validation=score, upload=upload)
        outcome, seconds = _run_flow(signals_node, node, trigger_id, round_number, force)
    _print_outcome("Signals node", outcome, seconds, as_json)


def _declared(node_name: str | None, tournament: Tournament) -> dict:
    """The model settings of a node of prefect.yaml (by default the one named after the
    command), so `run` trains what the deployed node trains; {} when there is no such node."""
    from deployments.catalogue import CATALOGUE, find_node, load_nodes

    if node_name is None:
        default = "signals" if tournament == SIGNALS else "tournament"
        nodes = {node.name: node for node in load_nodes()} if CATALOGUE.exists() else {}
        if default not in nodes:
            return {}
        found = nodes[default]
    else:
        found = find_node(node_name)
    if found.tournament != tournament:
        kind = found.tournament.label
        raise fail(f"Node {found.name!r} is a {kind} node, not a {tournament.label} one.")
    settings = dict(found.parameters.get("node") or {})
    settings.pop("numerai_model", None)  # --model, or the sandbox's model, says who submits
    err_console.print(f"Model settings of node {found.name!r} (prefect.yaml).")
    return settings


def _given(**options: str | None) -> dict[str, str]:
    """The options the user gave (the others keep the node settings' defaults)."""
    return {key: value for key, value in options.items() if value is not None}


def _submit_as(model: str | None, sandbox_models: list[str]) -> tuple[str | None, bool]:
    """The model to submit as, and whether to upload (only with keys)."""
    from flows.keys import load_keys
    from flows.settings import load_settings

    has_keys = all(load_keys(load_settings()))
    name = model or (sandbox_models[0] if sandbox_models else None)
    if has_keys and not name:
        raise fail("Name the Numerai model to submit as: --model NAME")
    if not has_keys:
        err_console.print(
            "[yellow]No Numerai keys found (NUMERAI_PUBLIC_ID / NUMERAI_SECRET_KEY): the "
            "predictions are written to a file and not uploaded.[/]"
        )
    return name, has_keys


@contextlib.contextmanager
def _api(sandbox: bool, size: str, tournament: Tournament):
    """Point this process at a sandbox (yield its model names in `tournament`), or at Numerai
    (yield []); and at a Prefect API for the run's history and the model cache's records."""
    with run_prefect_api():
        if not sandbox:
            os.environ.setdefault("NUMERAI_NODES_SHOW_PROGRESS", str(sys.stderr.isatty()))
            yield []
            return
        with _sandbox(size, tournament) as models:
            yield models


@contextlib.contextmanager
def run_prefect_api():
    """The running local stack's Prefect API when no PREFECT_API_URL is set (the run shows in
    its UI); else Prefect's temporary server, given time to start on a busy machine."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
        temporary_settings,
    )

    from deployments.webhooks import prefect_api

    if PREFECT_API_URL.value():
        yield
        return
    info = load_stack().info()
    if info is not None and any(p.alive and p.name == "server" for p in info.processes):
        err_console.print(f"Using the local stack's Prefect server ({info.ui_url}).")
        with prefect_api(info.prefect_api_url):
            yield
        return
    timeout = max(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), _EPHEMERAL_START_S)
    with temporary_settings({PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: timeout}):
        yield


@contextlib.contextmanager
def _sandbox(size: str, tournament: Tournament):
    """The local stack's sandbox when it runs; else a sandbox of this run on the stack's sandbox
    port, so the next run finds the same data and the same trained model."""
    from flows.settings import load_settings
    from infra.local.processes import port_free
    from infra.local.sandbox import model_names, sandbox_env, start_sandbox

    stack = load_stack()
    ready = stack.sandbox() if stack.is_up() else None
    running = None
    if ready is not None:
        err_console.print(f"Using the local stack's sandbox at {ready.url}")
    else:
        port = stack.settings.sandbox_port
        if not port_free(port):
            err_console.print(
                f"[yellow]Port {port} is taken, so this sandbox listens on another one: the next "
                "run will not find its data or model (NUMERAI_NODES_SANDBOX_PORT picks one).[/]"
            )
            port = 0
        home = load_settings().home
        running = start_sandbox(home / "sandbox", size, reporter=ConsoleReporter(), port=port)
        ready = running.ready
        err_console.print(
            f"Sandbox listening at {ready.url} with model(s) {', '.join(ready.models)}"
        )
    env = sandbox_env(ready)
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield model_names(ready, tournament)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if running is not None:
            running.stop()


def _run_flow(node_flow, node, trigger_id: str | None, round_number: int | None, force: bool):
    from flows.errors import NodeError

    quiet_expected_tracebacks()
    started = time.perf_counter()
    try:
        state = node_flow(node, trigger_id, round_number, force, return_state=True)
    except RuntimeError as exc:
        if "ephemeral" not in str(exc).lower():
            raise
        raise fail(
            f"Prefect's temporary server did not start in time ({exc}). Start the local stack "
            "(`numerai-nodes up`) and run again: runs then use its server."
        ) from None
    seconds = time.perf_counter() - started
    result = state.result(raise_on_failure=False)
    if isinstance(result, NodeError):
        raise fail(str(result))
    if isinstance(result, BaseException):
        raise fail(f"The node failed unexpectedly: {type(result).__name__}: {result}")
    return result, seconds


def _print_outcome(title: str, outcome, seconds: float, as_json: bool) -> None:
    data = outcome.model_dump(mode="json") | {"seconds": round(seconds, 1)}
    if as_json:
        console.print_json(json.dumps(data))
        return
    table = Table(title=title, show_header=False)
    for key in ("model_name", "round_number", "status", "submission_id", "trigger_id"):
        table.add_row(key.replace("_", " "), str(data[key] or "-"))
    table.add_row("predictions", str(Path(data["predictions_path"])))
    table.add_row("run time", f"{seconds:.1f} s")
    console.print(table)
