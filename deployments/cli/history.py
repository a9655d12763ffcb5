"""`numerai-nodes history`: each round of a node, from its run to Numerai's live scores."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from deployments.cli.output import console


def history(
    node: Annotated[
        str | None, typer.Argument(help="The node; without it, every node of the catalogue.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rounds as JSON.")] = False,
    rounds: Annotated[
        int, typer.Option("--rounds", min=1, help="How many of the latest rounds to show.")
    ] = 20,
) -> None:
    """Per round: the trigger id, the run's state and duration, when it submitted, the
    validation corr of the model used, and Numerai's live scores (final once resolved).

    Uses PREFECT_API_URL and the Numerai settings of the environment, or the running local
    stack (`numerai-nodes up`) when they are not set. The Prefect UI shows the same as the
    node's `<node>-history` artifact, with a chart.
    """
    from rich.table import Table

    from deployments.history import histories
    from flows.history import score_status
    from infra.local.environment import local_stack_defaults

    with local_stack_defaults(require_api=True):
        found = histories(node, rounds)
    if as_json:
        console.print_json(json.dumps({"nodes": [h.model_dump(mode="json") for h in found]}))
        return
    for entry in found:
        table = Table(title=f"{entry.node} ({entry.model or 'no submission yet'})")
        for column in ("round", "trigger", "state", "duration", "submitted at", "val corr"):
            table.add_column(column)
        for column in ("corr20", "mmc", "scores"):
            table.add_column(column)
        for row in entry.rows:
            table.add_row(
                str(row.round),
                (row.trigger_id or "manual")[:8],
                row.state or "-",
                f"{row.duration_seconds:.0f}s" if row.duration_seconds is not None else "-",
                f"{row.submitted_at:%Y-%m-%d %H:%M}" if row.submitted_at else "-",
                *(f"{v:+.4f}" if v is not None else "-" for v in (row.validation_corr,)),
                *(f"{v:+.4f}" if v is not None else "-" for v in (row.corr20, row.mmc)),
                score_status(row),
            )
        console.print(table if entry.rows else f"{entry.node}: no rounds yet.")
        if entry.note:
            console.print(f"[dim]{entry.note}[/]", highlight=False)
