"""`numerai-nodes node add | list | remove | sync`: the fleet of nodes.yaml, kept in step with
prefect.yaml, Prefect and Numerai (numerai-cli's `node config` / `node destroy`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from deployments.cli.output import console, err_console, fail
from deployments.cli.webhook import PublicUrl

if TYPE_CHECKING:
    from deployments.catalogue import Node
    from infra.local.stack import LocalStack

NodeArg = Annotated[str, typer.Argument(help="The node's name (its Numerai model's by default).")]
SandboxOpt = Annotated[
    bool,
    typer.Option(
        "--sandbox",
        help="Register on (or clear from) the local stack's sandbox, and add the model to its "
        "account when missing (on Numerai you create the model on numer.ai first).",
    ),
]


def add(
    name: NodeArg,
    spec: Annotated[str, typer.Option(help="The spec of nodes.yaml the node predicts with.")],
    numerai_model: Annotated[
        str | None, typer.Option(help="Its model's name on numer.ai (default: NAME).")
    ] = None,
    pool: Annotated[str | None, typer.Option(help="Work pool (default: nodes.yaml's).")] = None,
    size: Annotated[
        str | None, typer.Option(help="Size preset on an ECS or Cloud Run pool (`sizes`).")
    ] = None,
    train: Annotated[
        bool | None,
        typer.Option(
            "--train/--no-train",
            help="May it train on round day when its spec's model is not stored (default: "
            "nodes.yaml's)?",
        ),
    ] = None,
    deploy: Annotated[
        bool,
        typer.Option(
            "--deploy",
            help="Also deploy it (and its spec's training) on the Prefect API, and register its "
            "webhook on Numerai.",
        ),
    ] = False,
    sandbox: SandboxOpt = False,
    public_url: PublicUrl = None,
) -> None:
    """Declare a node in nodes.yaml (one line) and write its deployments into prefect.yaml.

    With --deploy it is deployed at once and Numerai's webhook of its model points at it.
    """
    from deployments.catalogue import find_node
    from deployments.fleet_yaml import add_node, sync
    from deployments.lifecycle import deploy as deploy_node
    from deployments.lifecycle import deployables

    given = {"spec": spec, "numerai_model": numerai_model, "pool": pool, "size": size}
    fields: dict[str, object] = {key: value for key, value in given.items() if value is not None}
    if train is not None:
        fields["train"] = train
    add_node(name, fields)
    sync()
    node = find_node(name)  # sync wrote it into prefect.yaml
    console.print(
        f"Added node [bold]{escape(name)}[/] (Numerai model {escape(node.numerai_model)}, spec "
        f"{escape(spec)}) to nodes.yaml; prefect.yaml deploys it as {escape(node.full_name)}.",
        highlight=False,
    )
    if not deploy:
        console.print(
            f"Deploy it: numerai-nodes node add … --deploy, or {node.deploy_command} and "
            f"numerai-nodes webhook register {name}",
            highlight=False,
        )
        return
    from deployments.cli.webhook import register_command
    from infra.local.environment import local_stack_defaults

    with local_stack_defaults(require_api=True) as stack:
        targets = deployables(node)
        with err_console.status(f"Deploying {', '.join(t.full_name for t in targets)}"):
            deploy_node(targets)
        console.print(f"Deployed {', '.join(t.full_name for t in targets)}.", highlight=False)
        if sandbox:
            _add_sandbox_model(stack, node)
    register_command(name, public_url=public_url, sandbox=sandbox, local=False)


def remove(
    name: NodeArg,
    keep_deployment: Annotated[
        bool, typer.Option("--keep-deployment", help="Leave its Prefect deployment in place.")
    ] = False,
    sandbox: SandboxOpt = False,
) -> None:
    """Clear the node's Numerai webhook, delete its deployment, remove it from nodes.yaml.

    Its past runs stay in the Prefect UI. Its spec's training deployment goes too when no other
    node uses the spec. Without Numerai keys the webhook is left (and the command says so).
    """
    from deployments.catalogue import node_named
    from deployments.fleet import read_fleet, resolve, training_deployment
    from deployments.fleet_yaml import remove_node, sync
    from deployments.lifecycle import delete_deployment
    from flows.entrypoints import TRAINING_FLOW
    from infra.local.environment import local_stack_defaults

    node = node_named(name)
    declared = {n.name: n for n in resolve(read_fleet())}
    if name not in declared:
        raise fail(
            f"nodes.yaml declares no node {name!r} (nodes: {', '.join(declared) or 'none'}). "
            "Nodes of prefect.aws.yaml, prefect.gcp.yaml and prefect.azure.yaml are removed by "
            "editing those files."
        )
    spec = declared[name].spec.name
    orphaned = not any(n.spec.name == spec for n in declared.values() if n.name != name)
    with local_stack_defaults(require_api=not keep_deployment) as stack:
        if node is not None:
            _clear_webhook(stack, node, sandbox)
        if not keep_deployment and node is not None:
            gone = delete_deployment(node.full_name)
            console.print(
                f"{'Deleted' if gone else 'No'} deployment {escape(node.full_name)}"
                f"{'' if gone else ' to delete'}.",
                highlight=False,
            )
            training = f"{TRAINING_FLOW.flow_name}/{training_deployment(spec)}"
            if orphaned and delete_deployment(training):
                console.print(f"Deleted {training}: no other node uses spec {spec}.")
    remove_node(name)
    sync()
    console.print(f"Removed node [bold]{escape(name)}[/] from nodes.yaml and prefect.yaml.")


def list_nodes(
    as_json: Annotated[bool, typer.Option("--json", help="Print the nodes as JSON.")] = False,
) -> None:
    """The nodes: nodes.yaml's (with spec, pool, size, round-day training) and the cloud files',
    and whether each is deployed on the Prefect API (when one is reachable)."""
    from deployments.catalogue import load_nodes
    from deployments.fleet import DECLARATIONS, read_fleet, resolve
    from infra.local.environment import local_stack_defaults

    declared = {n.name: n for n in resolve(read_fleet())} if DECLARATIONS.exists() else {}
    nodes = load_nodes()
    with local_stack_defaults():
        deployed = _deployed([node.full_name for node in nodes])
    rows = []
    table = Table("node", "Numerai model", "tournament", "spec", "pool", "train", "deployed")
    shown = {True: "[green]yes[/]", False: "[yellow]no[/]", None: "[dim]?[/]"}
    for node in nodes:
        fleet = declared.get(node.name)
        rows.append(
            {
                "node": node.name,
                "numerai_model": node.numerai_model,
                "tournament": node.tournament.label,
                "spec": fleet.spec.name if fleet else None,
                "pool": node.work_pool,
                "size": fleet.size if fleet else None,
                "train_on_round_day": fleet.train if fleet else None,
                "file": "nodes.yaml" if fleet else node.prefect_file,
                "deployed": deployed.get(node.full_name),
            }
        )
        size = f" ({fleet.size})" if fleet and fleet.size else ""
        table.add_row(
            node.name,
            node.numerai_model,
            node.tournament.label,
            fleet.spec.name if fleet else f"[dim]({node.prefect_file})[/]",
            node.work_pool + size,
            ("round day" if fleet.train else "ahead") if fleet else "-",
            shown[deployed.get(node.full_name)],
        )
    if as_json:
        console.print_json(json.dumps(rows))
        return
    console.print(table)


def sync_command(
    check: Annotated[
        bool,
        typer.Option("--check", help="Change nothing; exit 1 if prefect.yaml is out of step."),
    ] = False,
) -> None:
    """Write nodes.yaml's node and training deployments into prefect.yaml (below its mark)."""
    from deployments.fleet_yaml import in_step, sync

    if check:
        if not in_step():
            raise fail("prefect.yaml is out of step with nodes.yaml: run numerai-nodes node sync")
        console.print("prefect.yaml is in step with nodes.yaml.")
        return
    changed = sync()
    console.print("prefect.yaml updated." if changed else "prefect.yaml was already in step.")


def _deployed(names: list[str]) -> dict[str, bool | None]:
    """Which deployments exist; None for each when no Prefect API answers."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    from deployments.lifecycle import deployed_names

    if not PREFECT_API_URL.value():
        return dict.fromkeys(names)
    try:
        return dict(deployed_names(names))
    except (httpx.HTTPError, RuntimeError) as exc:
        err_console.print(f"[yellow]Prefect did not answer ({type(exc).__name__}).[/]")
        return dict.fromkeys(names)


def _add_sandbox_model(stack: LocalStack | None, node: Node) -> None:
    from sandbox.cli import add_model

    running = stack.sandbox() if stack is not None else None
    if running is None:
        raise fail("The local stack has no sandbox running. Start it: numerai-nodes up --sandbox")
    add_model(node.numerai_model, url=running.url, tournament=int(node.tournament))


def _clear_webhook(stack: LocalStack | None, node: Node, sandbox: bool) -> None:
    from deployments.cli.webhook import numerai_client
    from deployments.lifecycle import clear_webhook
    from flows.errors import MissingKeys

    if stack is None and sandbox:
        raise fail("The local stack has no sandbox running. Start it: numerai-nodes up --sandbox")
    try:
        cleared = clear_webhook(numerai_client(stack, node, sandbox), node)
    except MissingKeys:
        err_console.print(
            f"[yellow]No Numerai keys: the webhook of model {escape(node.numerai_model)} is "
            "left as it is (clear it on numer.ai).[/]"
        )
        return
    what = "Cleared" if cleared else "No webhook to clear for"
    console.print(f"{what} Numerai model {escape(node.numerai_model)}.", highlight=False)
