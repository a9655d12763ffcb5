"""What every place's `numerai-nodes infra <place>` commands share: options, keys, status."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from deployments.cli.output import console

if TYPE_CHECKING:
    from infra.cloud import NumeraiKeys, PlaceStatus

ImageTag = Annotated[
    str | None, typer.Option(help="Tag of the node image the pool runs (default latest).")
]
Preset = Annotated[
    str | None, typer.Option(help="Size preset of the pool's defaults, e.g. gen-m (the default).")
]
SkipKeys = Annotated[
    bool,
    typer.Option("--skip-keys", help="Leave the stored Numerai keys as they are; none are needed."),
]
DeleteBucket = Annotated[
    bool,
    typer.Option(
        "--delete-bucket",
        help="Also delete the results bucket and the trained models in it (kept by default).",
    ),
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]


def numerai_keys(skip: bool) -> NumeraiKeys | None:
    """The Numerai keys from the settings, else hidden prompts in a terminal (None if `skip`)."""
    from infra.cloud import keys_from_settings

    if skip:
        return None
    return keys_from_settings(_hidden_prompt if sys.stdin.isatty() else None)


def _hidden_prompt(label: str) -> str:
    return str(typer.prompt(label, hide_input=True))


def print_status(found: PlaceStatus, as_json: bool) -> None:
    """A place's status: JSON for machines, the summary lines for people."""
    if as_json:
        console.print_json(json.dumps(found.to_json()))
    else:
        for line in found.summary():
            console.print(escape(line), highlight=False)
