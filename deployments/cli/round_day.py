"""`numerai-nodes round`: rehearse a whole round day on this machine, webhook to submission."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from deployments.cli.output import console, err_console, fail
from flows.tournaments import Tournament


def round_command(
    keep: Annotated[
        bool, typer.Option("--keep", help="Leave the stack up afterwards, to explore the UI.")
    ] = False,
    sandbox_size: Annotated[
        str, typer.Option(help="Sandbox data size: tiny, small or bench.")
    ] = "tiny",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every node to submit.")] = 900,
    chaos: Annotated[
        int | None,
        typer.Option(
            "--chaos",
            metavar="SEED",
            help="Rehearse a bad day: the sandbox injects seeded faults (5xx answers, delays, "
            "truncated downloads, failed uploads, dropped connections).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run a full local round: stack up with the sandbox, deploy, open a round, wait for every
    node to submit, print the table, stack down (unless --keep).

    The sandbox opens the round and calls each node's webhook like Numerai; the gateway turns
    each call into a Prefect event, the deployment's trigger into a flow run, and the worker
    runs it. Exit 1 if any node did not submit.
    """
    from deployments.cli.stack import load_stack
    from deployments.webhooks import prefect_api
    from infra.local.round import follow_round, open_round
    from infra.local.stack import StackAlreadyUp
    from sandbox.chaos import DEFAULT_PROFILE
    from sandbox.cli import set_chaos

    stack = load_stack()
    nodes = stack.plan().nodes  # the nodes on every process pool the stack serves
    started_here = False
    try:
        info = stack.up(sandbox=True, sandbox_size=sandbox_size)
        started_here = True
    except StackAlreadyUp as exc:
        info = exc.info
        if info.sandbox_url is None:
            raise fail(
                "The local stack is up without the sandbox; stop it with `numerai-nodes down` "
                "first."
            ) from None
        err_console.print("Using the local stack that is already up.")
    if chaos is not None and info.sandbox_url is not None:
        # On once the stack is up: setting it up (webhook registration) is not the rehearsal.
        set_chaos(info.sandbox_url, {"seed": chaos, "profile": DEFAULT_PROFILE})
        err_console.print(f"Chaos is on (seed {chaos}, profile {DEFAULT_PROFILE}).")

    try:
        sandbox_url = info.sandbox_url
        # up(sandbox=True) started the sandbox; a stack that was already up was checked above.
        assert sandbox_url is not None, "the local stack has no sandbox"
        with prefect_api(info.prefect_api_url):
            rounds = {t: open_round(sandbox_url, t) for t in sorted({n.tournament for n in nodes})}
            opened = ", ".join(
                f"{Tournament(t).label.capitalize()} round {number}" for t, number in rounds.items()
            )
            err_console.print(f"Opened {opened}. Numerai's webhooks are on their way.")
            with Live(_table([]), console=err_console, transient=True) as live:
                rows = follow_round(
                    sandbox_url, nodes, rounds, timeout, lambda rows: live.update(_table(rows))
                )
    finally:
        if started_here and not keep:
            stack.down()
    if as_json:
        console.print_json(json.dumps([row.to_json() for row in rows]))
    else:
        console.print(_table(rows))
        if keep:
            console.print(f"The stack is still up: Prefect UI {info.ui_url}; stop it with "
                          "`numerai-nodes down`.")  # fmt: skip
    if not all(row.submission_id for row in rows):
        raise typer.Exit(1)


def _table(rows) -> Table:
    table = Table(title="Local round")
    for column in ("node", "round", "webhook → run start", "run", "submission", "state"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row.node,
            str(row.round),
            f"{row.webhook_to_start_s:.1f} s" if row.webhook_to_start_s is not None else "-",
            f"{row.run_s:.1f} s" if row.run_s is not None else "-",
            row.submission_id or "-",
            row.state,
        )
    return table
