"""`numerai-nodes train` and `numerai-nodes models`: training a spec apart from round day, and
the model store the nodes read."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from deployments.cli.output import console, err_console, fail, quiet_expected_tracebacks

AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def train(
    spec: Annotated[str, typer.Argument(help="A spec of nodes.yaml (or a node's inline spec).")],
    force: Annotated[
        bool, typer.Option("--force", help="Train again even if the model is stored.")
    ] = False,
    deployment: Annotated[
        bool,
        typer.Option(
            "--deployment",
            help="Run the spec's training deployment (train-SPEC, on its own pool) and wait for "
            "it, instead of training in this process.",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option(help="With --deployment: seconds to wait for the run to end.")
    ] = 6 * 3600,
) -> None:
    """Train a Classic model spec into the model store, ahead of round day.

    Ends in seconds when the model of this spec, data version and code is stored already.
    Every node of the spec then predicts with it. Without --deployment it trains here, against
    the local stack's sandbox when one runs, else Numerai (training data needs no keys).
    """
    from deployments.fleet import find_spec, read_fleet, spec_parameters, training_deployment
    from flows.entrypoints import TOURNAMENT_FLOW, TRAINING_FLOW

    found = find_spec(read_fleet(), spec)
    if found.flow is not TOURNAMENT_FLOW:
        kind = found.flow.tournament.label.capitalize()
        raise fail(f"Spec {spec!r} is a {kind} spec: {kind} models train in the round for now.")
    if deployment:
        name = f"{TRAINING_FLOW.flow_name}/{training_deployment(found.name)}"
        _run_deployment(name, force, timeout)
        return
    from flows.training import ClassicSpec, train_spec

    quiet_expected_tracebacks()
    with _node_environment():
        state = train_spec(ClassicSpec(**spec_parameters(found)), force=force, return_state=True)
    if not state.is_completed():
        error = state.result(raise_on_failure=False)
        raise fail(escape(str(error)))
    record = state.result()
    corr = "-" if record.validation_corr is None else f"{record.validation_corr:+.4f}"
    console.print(
        f"Model of [bold]{escape(found.name)}[/] stored: {record.key} ({record.data_version}, "
        f"{record.size_bytes / 1e6:.1f} MB, validation corr {corr}).",
        highlight=False,
    )


def models(as_json: AsJson = False) -> None:
    """The trained models of the model store: spec, data version, code digest, when, size,
    validation corr, and the nodes that use it (a spec's newest model serves its nodes)."""
    from deployments.fleet import DECLARATIONS, read_fleet, resolve
    from flows.store import model_store

    nodes = resolve(read_fleet()) if DECLARATIONS.exists() else []
    with _node_environment(prefect=False):
        store = model_store()
        records = store.records()
    newest: set[str] = set()
    families: set[str] = set()
    for record in records:  # newest first
        if record.family not in families:
            families.add(record.family)
            newest.add(record.key)
    rows = [
        {
            "spec": record.family,
            "data_version": record.data_version,
            "key": record.key,
            "code": record.code,
            "trained_at": record.trained_at.isoformat(),
            "trained_by": record.trained_by,
            "size_bytes": record.size_bytes,
            "validation_corr": record.validation_corr,
            "nodes": sorted(n.name for n in nodes if n.spec.name == record.family)
            if record.key in newest
            else [],
            "newest": record.key in newest,
        }
        for record in records
    ]
    if as_json:
        console.print_json(json.dumps({"store": store.where, "models": rows}))
        return
    if not rows:
        console.print(
            f"No trained model in the model store ({escape(store.where)}). Train one: "
            "numerai-nodes train SPEC"
        )
        return
    table = Table("spec", "data", "key", "code", "trained (UTC)", "size", "val corr", "nodes")
    for row, record in zip(rows, records, strict=True):
        corr = row["validation_corr"]
        table.add_row(
            record.family,
            record.data_version,
            record.key[6:18],
            record.code[:8],
            f"{record.trained_at:%Y-%m-%d %H:%M}",
            f"{record.size_bytes / 1e6:.1f} MB",
            "-" if corr is None else f"{corr:+.4f}",
            ", ".join(row["nodes"]) if row["newest"] else "[dim](older)[/]",  # type: ignore[arg-type]
        )
    console.print(table)
    console.print(f"[dim]Model store: {escape(store.where)}[/]")


@contextlib.contextmanager
def _node_environment(prefect: bool = True) -> Iterator[None]:
    """The local stack's sandbox and Prefect server when it runs (as its nodes see them), else
    the environment's Numerai and Prefect (a temporary Prefect server if none is set)."""
    from deployments.cli.run import run_prefect_api
    from infra.local.environment import local_stack_defaults

    with local_stack_defaults() as stack:
        if stack is not None or not prefect:
            yield
            return
    with run_prefect_api():
        yield


def _run_deployment(name: str, force: bool, timeout: float) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    from infra.local.environment import local_stack_defaults

    waiting = err_console.status(f"Running {name} and waiting for it to end")
    with local_stack_defaults(require_api=True), waiting:
        run = run_deployment(name, parameters={"force": force}, timeout=timeout)
    assert isinstance(run, FlowRun), "a sync caller gets the flow run, never a coroutine"
    state = run.state
    where = f" on pool {run.work_pool_name}" if run.work_pool_name else ""
    if state is None or not state.is_completed():
        shown = state.name if state else "unknown"
        raise fail(f"{name}: flow run {run.name}{where} ended {shown}. See it in the Prefect UI.")
    console.print(f"{name}: flow run {run.name}{where} completed.", highlight=False)
