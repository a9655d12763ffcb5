"""`numerai-nodes infra aws up`, `down` and `status`: the ECS stack, key secrets and ecs pool."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from deployments.cli.output import console, err_console, settings_or_fail
from deployments.cli.places import (
    AsJson,
    DeleteBucket,
    ImageTag,
    Preset,
    SkipKeys,
    Yes,
    numerai_keys,
    print_status,
)

if TYPE_CHECKING:
    from infra.aws.cloudformation import StackEvent
    from infra.aws.settings import AwsSettings

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
    str | None,
    typer.Option("--pool", help="Work pool name (env NUMERAI_NODES_AWS_POOL_NAME; ecs)."),
]

Push = Annotated[
    bool | None,
    typer.Option(
        "--push/--no-push",
        help="An ecs:push pool that Prefect Cloud serves (no worker), or a hybrid ecs pool. "
        "Default: what the stack was set up with (a new stack: hybrid).",
    ),
]


def _hidden_prompt(label: str) -> str:
    return str(typer.prompt(label, hide_input=True))


def _settings(**overrides: object) -> AwsSettings:
    from infra.aws.settings import AwsSettings

    return settings_or_fail(AwsSettings, "NUMERAI_NODES_AWS_", "AWS", **overrides)


def _split(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


def _print_event(event: StackEvent) -> None:
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
    image_tag: ImageTag = None,
    preset: Preset = None,
    subnets: Annotated[
        str | None,
        typer.Option(help="Comma-separated subnets for flow runs; default: the default VPC's."),
    ] = None,
    vpc_id: Annotated[str | None, typer.Option(help="VPC of --subnets.")] = None,
    security_groups: Annotated[
        str | None, typer.Option(help="Comma-separated security groups with --subnets.")
    ] = None,
    skip_keys: SkipKeys = False,
    push: Push = None,
) -> None:
    """Create or update the stack, put the Numerai keys into Secrets Manager, create the pool.

    Keys come from NUMERAI_PUBLIC_ID and NUMERAI_SECRET_KEY, or hidden prompts. The pool lives on
    the Prefect API of PREFECT_API_URL. Then push the node image and run an ECS worker, or, with
    --push on Prefect Cloud, let Prefect Cloud start the tasks (an ecs:push pool): the push user's
    access key comes from NUMERAI_NODES_AWS_PUSH_ACCESS_KEY_ID and
    NUMERAI_NODES_AWS_PUSH_SECRET_ACCESS_KEY, or hidden prompts.
    """
    from infra.aws import place

    settings = _settings(
        region=region, stack_name=stack_name, pool_name=pool, image_tag=image_tag, preset=preset
    )
    keys = numerai_keys(skip_keys)
    with err_console.status(f"Deploying stack {settings.stack_name}"):
        result = place.up(
            settings,
            keys,
            _print_event,
            subnets=_split(subnets),
            vpc_id=vpc_id,
            security_groups=_split(security_groups),
            push=push,
            ask=_hidden_prompt if sys.stdin.isatty() else None,
        )
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
    if not result.keys_stored:
        err_console.print("[yellow]Keys not stored (--skip-keys): the stored keys stay.[/]")
    if result.push_block:
        console.print(
            f"Pool type {result.pool_type}: Prefect Cloud starts the tasks with block "
            f"aws-credentials/{result.push_block}; no worker to run. Next: push the image and "
            "check with `numerai-nodes doctor`.",
            highlight=False,
        )
        return
    console.print(
        "Next: push the image, start a worker (`prefect worker start --pool "
        f"{result.pool_name} --type ecs`, with the {result.outputs.get('WorkerPolicyArn', '')} "
        "policy), and check with `numerai-nodes doctor`.",
        highlight=False,
    )
    if result.hint:
        err_console.print(escape(result.hint), highlight=False)


@app.command("down")
def down(
    region: Region = None,
    stack_name: StackName = None,
    pool: Pool = None,
    delete_bucket: DeleteBucket = False,
    yes: Yes = False,
) -> None:
    """Delete the stack, its images and key secrets, the pool and the result block.

    The bucket with the trained models is kept unless --delete-bucket.
    """
    from infra.aws import place

    settings = _settings(region=region, stack_name=stack_name, pool_name=pool)
    bucket = " and its bucket of trained models" if delete_bucket else ""
    if not yes and not typer.confirm(
        f"Delete stack {settings.stack_name}{bucket}, its key secrets, images and work pool "
        f"{settings.pool_name}?"
    ):
        raise typer.Exit(1)
    with err_console.status(f"Deleting stack {settings.stack_name}"):
        done = place.down(settings, delete_bucket=delete_bucket, progress=_print_event)
    for line in done:
        err_console.print(f"- {escape(line)}", highlight=False)


@app.command("status")
def status(
    region: Region = None,
    stack_name: StackName = None,
    pool: Pool = None,
    as_json: AsJson = False,
) -> None:
    """Show the stack's status and outputs, and whether the work pool matches them."""
    from infra.aws import place

    settings = _settings(region=region, stack_name=stack_name, pool_name=pool)
    print_status(place.status(settings), as_json)
