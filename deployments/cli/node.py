"""`numerai-nodes node test`: prove a deployed node works end to end (the fleet commands, add,
list, remove and sync, are in deployments/cli/fleet.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from deployments.cli.output import console, err_console

app = typer.Typer(
    help="Your nodes: add, list and remove them (nodes.yaml), and test one end to end.",
    no_args_is_help=True,
)


_LEVELS = {"DEBUG": "dim", "INFO": "blue", "WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}


@app.command("test")
def test(
    node: Annotated[str, typer.Argument(help="The node's name in prefect.yaml.")],
    create_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the flow run to appear.")
    ] = 60,
    start_timeout: Annotated[float, typer.Option(help="Seconds a run may wait for a worker.")] = 60,
    timeout: Annotated[float, typer.Option(help="Seconds the run may take in all.")] = 1800,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show log lines whole, tracebacks included.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Trigger NODE the way Numerai does, follow its flow run, and check the submission.

    Numerai (or the sandbox) calls the node's webhook with a fresh trigger id; the test then
    follows the flow run in Prefect, streaming its states and every log line (an error's first
    line only, without its traceback, unless --verbose), and checks that Numerai lists a
    submission with that trigger id. Exit 0 only if every step holds.
    """
    import logging

    from rich.markup import escape

    from deployments.catalogue import find_node
    from deployments.nodetest import Timeouts, run_node_test
    from deployments.watch import LogLine, RunEvent
    from infra.local.environment import local_stack_defaults

    found = find_node(node)

    def on_step(step) -> None:
        if not as_json:
            mark = "[green]✓[/]" if step.ok else "[red]✗[/]"
            line = f"{mark} {step.name}: {escape(step.detail)}"
            console.print(line, highlight=False, soft_wrap=True)

    def on_event(event: RunEvent) -> None:
        if as_json:
            return
        at = f"    [dim]{event.at.astimezone():%H:%M:%S}[/] "
        if isinstance(event, LogLine):
            level = logging.getLevelName(event.level)
            task = f"[magenta]{escape(event.task)}[/]: " if event.task else ""
            text = escape(event.shown(verbose))
            level = f"[{_LEVELS.get(level, 'blue')}]{level:<8}[/]"
            # One record, one line (a terminal wraps it): no line breaks inserted mid-record.
            console.print(f"{at}{level}{task}{text}", highlight=False, soft_wrap=True)
            return
        name = f" [dim]·[/] run [bold]{escape(event.run_name)}[/]" if event.renamed else ""
        console.print(f"{at}[cyan]{'state':<8}[/]{escape(event.name)}{name}", highlight=False)

    with local_stack_defaults(require_api=True):
        result = run_node_test(
            found,
            Timeouts(create=create_timeout, start=start_timeout, finish=timeout),
            on_step=on_step,
            on_event=on_event,
        )
    if as_json:
        console.print_json(json.dumps(result.to_json()))
    if not result.ok:
        failed = next(step for step in result.steps if not step.ok)
        cause = result.failure
        if cause is None:
            err_console.print(f"[bold red]Node test failed[/] at '{failed.name}'.")
            raise typer.Exit(1)
        where = f" at step '{escape(cause.step)}'" if cause.step else ""
        hint = "" if cause.expected or verbose else " (unexpected: --verbose shows the traceback)"
        err_console.print(
            f"[bold red]Node test failed:[/] {escape(result.flow_run_name or '')} failed{where}: "
            f"{escape(cause.message)}{hint}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    console.print(f"[bold green]Node {node} works:[/] submission {result.submission_id}")
