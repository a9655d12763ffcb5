"""`numerai-nodes infra aws up`, `down` and `status`: the ECS stack, key secrets and ecs pool."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer
from pydantic import SecretStr
from rich.markup import escape
from rich.table import Table

from deployments.cli.output import console, err_console, fail, settings_or_fail
from flows.errors import NodeError

app = typer.Typer(
    help="Nodes on AWS ECS: the CloudFormation stack, the Numerai key secrets and the ecs pool.",
    no_args_is_help=True,
)

Region = Annotated[
    str | None, typer.Option(help="AWS region (env NUMERAI_NODES_AWS_REGION, else AWS_REGION).")
]
StackName = Annotated[
    str | None,
    typer.Option("--stack", help="Stack name (env NUMERAI_NODES_AWS_STACK_NAME; numerai-nodes)."),
]
Pool = Annotated[
    str | None, typer.Option(help="Work pool name (env NUMERAI_NODES_AWS_POOL_NAME; ecs).")
]


def _settings(**overrides: object):
    from infra.aws.place import AwsSettings

    return settings_or_fail(AwsSettings, "NUMERAI_NODES_AWS_", "AWS", **overrides)


def _keys(skip: bool):
    """The Numerai keys from the environment, else hidden prompts (None with --skip-keys)."""
    from infra.aws.place import NumeraiKeys

    if skip:
        return None
    public_id = os.environ.get("NUMERAI_PUBLIC_ID")
    secret_key = os.environ.get("NUMERAI_SECRET_KEY")
    if not (public_id and secret_key):
        if not sys.stdin.isatty():
            raise fail(
                "Numerai keys are needed: set NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY, run in a "
                "terminal to be prompted, or pass --skip-keys to keep the secrets as they are."
            )
        public_id = public_id or typer.prompt("Numerai public id", hide_input=True)
        secret_key = secret_key or typer.prompt("Numerai secret key", hide_input=True)
    return NumeraiKeys(SecretStr(public_id), SecretStr(secret_key))


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _print_event(event) -> None:
    colour = (
        "red"
        if "FAILED" in event.status or "ROLLBACK" in event.status
        else "green"
        if event.status.endswith("COMPLETE")
        else "yellow"
    )
    reason = f"  {escape(event.reason)}" if event.reason else ""
    err_console.print(
        f"{event.timestamp:%H:%M:%S} [{colour}]{event.status:<20}[/] "
        f"{escape(event.logical_id)} [dim]{escape(event.resource_type)}[/]{reason}",
        highlight=False,
    )


@app.command("up")
def up(
    region: Region = None,
    stack_name: StackName = None,
    pool: Pool = None,
    image_tag: Annotated[
        str | None,
        typer.Option(help="Node image tag in the stack's ECR repository (default latest)."),
    ] = None,
    subnets: Annotated[
        str | None,
        typer.Option(help="Comma-separated subnets for flow runs; default: the default VPC's."),
    ] = None,
    vpc_id: Annotated[str | None, typer.Option(help="VPC of --subnets.")] = None,
    security_groups: Annotated[
        str | None, typer.Option(help="Comma-separated security groups with --subnets.")
    ] = None,
    skip_keys: Annotated[
        bool, typer.Option("--skip-keys", help="Leave the Numerai key secrets as they are.")
    ] = False,
) -> None:
    """Create or update the stack, put the Numerai keys into Secrets Manager, create the pool.

    Keys come from NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY, or hidden prompts. The pool lives on
    the Prefect API of PREFECT_API_URL. Then push the node image and run an ECS worker.
    """
    from infra.aws import place as aws

    settings = _settings(region=region, stack_name=stack_name, pool_name=pool, image_tag=image_tag)
    keys = _keys(skip_keys)
    try:
        with err_console.status(f"Deploying stack {settings.stack_name}"):
            result = aws.up(
                settings,
                keys,
                subnets=_split(subnets),
                vpc_id=vpc_id,
                security_groups=_split(security_groups),
                on_event=_print_event,
            )
    except NodeError as exc:
        raise fail(escape(str(exc))) from None
    verb = {"created": "Created", "updated": "Updated", "unchanged": "No change to"}[result.action]
    err_console.print(
        f"{verb} stack {result.stack_name} in {result.region} ({result.stack_status}).",
        highlight=False,
    )
    console.print(
        f"Work pool {result.pool_name}: {'created' if result.pool_created else 'updated'}; "
        f"results in block s3-bucket/{result.block_name} "
        f"(bucket {result.outputs['BucketName']}).",
        highlight=False,
    )
    console.print(f"Image: {result.image}", highlight=False)
    if not result.keys_put:
        err_console.print("[yellow]The Numerai key secrets were left as they are.[/]")
    console.print(
        "Next: push the image, start a worker (`prefect worker start --pool "
        f"{result.pool_name} --type ecs`, with the {result.outputs.get('WorkerPolicyArn', '')} "
        "policy), and check with `numerai-nodes doctor`.",
        highlight=False,
    )


@app.command("down")
def down(
    region: Region = None,
    stack_name: StackName = None,
    pool: Pool = None,
    delete_bucket: Annotated[
        bool,
        typer.Option("--delete-bucket", help="Also delete the bucket and the models in it."),
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the stack, its images and key secrets, the pool and the result block."""
    from infra.aws import place as aws

    settings = _settings(region=region, stack_name=stack_name, pool_name=pool)
    if not yes and not typer.confirm(
        f"Delete stack {settings.stack_name}, its key secrets, images and work pool "
        f"{settings.pool_name}?"
    ):
        raise typer.Exit(1)
    try:
        with err_console.status(f"Deleting stack {settings.stack_name}"):
            done = aws.down(settings, delete_bucket=delete_bucket, on_event=_print_event)
    except NodeError as exc:
        raise fail(escape(str(exc))) from None
    for line in done:
        err_console.print(f"- {escape(line)}", highlight=False)


@app.command("status")
def status(
    region: Region = None,
    stack_name: StackName = None,
    pool: Pool = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """Show the stack's status and outputs, and whether the work pool matches them."""
    from infra.aws import place as aws

    settings = _settings(region=region, stack_name=stack_name, pool_name=pool)
    try:
        found = aws.status(settings)
    except NodeError as exc:
        raise fail(escape(str(exc))) from None
    if as_json:
        console.print_json(json.dumps(found.to_json()))
        return
    if found.stack_status is None:
        err_console.print(
            f"Stack {found.stack_name} does not exist in {found.region}. Create it with: "
            "numerai-nodes infra aws up",
            highlight=False,
        )
        return
    console.print(
        f"Stack {found.stack_name} in {found.region}: [bold]{found.stack_status}[/]",
        highlight=False,
    )
    table = Table("output", "value")
    for key, value in sorted(found.outputs.items()):
        table.add_row(key, value)
    console.print(table)
    if not found.pool_present:
        console.print(f"Work pool {found.pool_name}: [red]missing[/]", highlight=False)
    elif found.pool_mismatches:
        console.print(
            f"Work pool {found.pool_name}: [red]does not match[/]: "
            + escape("; ".join(found.pool_mismatches)),
            highlight=False,
        )
    else:
        console.print(f"Work pool {found.pool_name}: [green]matches the stack[/]")
