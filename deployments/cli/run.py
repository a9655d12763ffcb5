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
from flows.tournaments import CLASSIC, SIGNALS, Tournament

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
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


@app.command("tournament")
def tournament(
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
    as_json: AsJson = False,
) -> None:
    """Run the Classic tournament node in-process: download, train or load, predict, submit.

    Without --sandbox it talks to Numerai. Public data needs no keys; with no keys it writes
    the predictions to a file and does not upload.
    """
    params = _parse_params(param or [])
    with _api(sandbox, sandbox_size, CLASSIC) as sandbox_models:
        from flows.tournament import TournamentNode, tournament_node

        name, upload = _submit_as(model, sandbox_models)
        # The node's own defaults apply where no option was given: they live in one place.
        given = _given(
            numerai_model=name, data_version=data_version, feature_set=feature_set, target=target
        )
        node = TournamentNode(**given, params=params, score_validation=score, upload=upload)
        outcome, seconds = _run_flow(tournament_node, node, trigger_id, round_number)
    _print_outcome("Tournament node", outcome, seconds, as_json)


@app.command("signals")
def signals(
    sandbox: Sandbox = False,
    sandbox_size: SandboxSize = "tiny",
    model: Model = None,
    data_version: DataVersion = None,
    target: Target = None,
    param: Params = None,
    trigger_id: TriggerId = None,
    round_number: RoundNumber = None,
    score: Score = True,
    as_json: AsJson = False,
) -> None:
    """Run the Signals node in-process: live universe, Yahoo prices, train or load, submit.

    Without --sandbox it talks to Numerai and Yahoo Finance (NUMERAI_NODES_YAHOO_URL points it
    elsewhere). With no keys it writes the predictions to a file and does not upload.
    """
    params = _parse_params(param or [])
    with _api(sandbox, sandbox_size, SIGNALS) as sandbox_models:
        from flows.signals import SignalsNode, signals_node

        name, upload = _submit_as(model, sandbox_models)
        given = _given(numerai_model=name, data_version=data_version, target=target)
        node = SignalsNode(**given, params=params, score_validation=score, upload=upload)
        outcome, seconds = _run_flow(signals_node, node, trigger_id, round_number)
    _print_outcome("Signals node", outcome, seconds, as_json)


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
    """Point this process at a fresh sandbox (yield its model names in `tournament`), or at
    Numerai (yield [])."""
    if not sandbox:
        os.environ.setdefault("NUMERAI_NODES_SHOW_PROGRESS", str(sys.stderr.isatty()))
        yield []
        return
    from flows.settings import load_settings
    from infra.local.sandbox import start_sandbox

    running = start_sandbox(load_settings().home / "sandbox", size, reporter=ConsoleReporter())
    err_console.print(
        f"Sandbox listening at {running.url} with model(s) {', '.join(running.ready.models)}"
    )
    saved = {key: os.environ.get(key) for key in running.env()}
    os.environ.update(running.env())
    try:
        yield running.model_names(tournament)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        running.stop()


def _run_flow(node_flow, node, trigger_id: str | None, round_number: int | None):
    from flows.errors import NodeError

    quiet_expected_tracebacks()
    started = time.perf_counter()
    state = node_flow(node, trigger_id, round_number, return_state=True)
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
