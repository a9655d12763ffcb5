"""The node catalogue: reading prefect.yaml into the nodes it declares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from deployments.events import EVENT_NAME, node_resource_id
from flows.entrypoints import NODE_FLOWS
from flows.errors import ConfigurationError
from flows.tournaments import Tournament

CATALOGUE = Path("prefect.yaml")
# Nodes on the clouds, in files of their own: `prefect deploy --all` of prefect.yaml then works
# where no cloud pool exists yet. Each is deployed with `--prefect-file`.
CLOUD_CATALOGUES = (Path("prefect.aws.yaml"), Path("prefect.gcp.yaml"), Path("prefect.azure.yaml"))


class CatalogueError(ConfigurationError):
    """prefect.yaml is missing or does not declare nodes the way this project expects."""


@dataclass(frozen=True)
class Node:
    """One prediction node: a deployment of prefect.yaml."""

    name: str
    deployment: str
    flow_name: str
    entrypoint: str
    work_pool: str
    numerai_model: str
    tournament: Tournament
    has_trigger: bool
    parameters: dict = field(default_factory=dict, repr=False)
    prefect_file: str = CATALOGUE.name

    @property
    def full_name(self) -> str:
        """`flow-name/deployment-name`, as Prefect names deployments."""
        return f"{self.flow_name}/{self.deployment}"

    @property
    def deploy_command(self) -> str:
        """The command that deploys this node, from the project directory."""
        file = "" if self.prefect_file == CATALOGUE.name else f" --prefect-file {self.prefect_file}"
        return f"prefect --no-prompt deploy{file} -n {self.full_name}"


def load_nodes(path: Path = CATALOGUE) -> list[Node]:
    """Every node the catalogue declares: prefect.yaml's, and those of the cloud files beside it.

    A node's name is unique across the files.
    """
    if not path.exists():
        raise CatalogueError(
            f"No {path} here. Run numerai-nodes from the project directory, which holds the "
            "node catalogue prefect.yaml."
        )
    nodes = _read(path)
    for cloud in CLOUD_CATALOGUES:
        beside = path.parent / cloud.name
        if beside.exists():
            nodes += _read(beside)
    seen: dict[str, str] = {}
    for node in nodes:
        if node.name in seen:
            raise CatalogueError(
                f"Node {node.name!r} is declared twice ({seen[node.name]} and "
                f"{node.prefect_file}); a node's name must be unique."
            )
        seen[node.name] = node.prefect_file
    return nodes


def _read(path: Path) -> list[Node]:
    document = yaml.safe_load(path.read_text()) or {}
    nodes = [_node(entry, path.name) for entry in document.get("deployments") or []]
    return [node for node in nodes if node is not None]


def nodes_on_pool(nodes: list[Node], pool: str) -> list[Node]:
    """The nodes that run on work pool `pool`."""
    return [node for node in nodes if node.work_pool == pool]


def node_named(name: str, path: Path = CATALOGUE) -> Node | None:
    """The node called `name`, if the catalogue has one."""
    return next((node for node in load_nodes(path) if node.name == name), None)


def find_node(name: str, path: Path = CATALOGUE) -> Node:
    """The node called `name`, or a CatalogueError listing the known ones."""
    if (node := node_named(name, path)) is not None:
        return node
    known = ", ".join(node.name for node in load_nodes(path)) or "none"
    raise CatalogueError(f"The catalogue has no node '{name}' (nodes: {known}).")


def _node(entry: dict, prefect_file: str) -> Node | None:
    settings = (entry.get("parameters") or {}).get("node")
    if not isinstance(settings, dict):
        return None
    name = settings.get("name") or entry["name"]
    entrypoint = entry.get("entrypoint", "")
    flow = NODE_FLOWS.get(entrypoint)
    if flow is None:
        known = ", ".join(NODE_FLOWS)
        raise CatalogueError(
            f"Deployment {entry.get('name')!r} of {prefect_file} declares a node with entrypoint "
            f"{entrypoint!r}, which is not a node flow. Node flows: {known}."
        )
    triggers = entry.get("triggers") or []
    return Node(
        name=name,
        deployment=entry["name"],
        flow_name=flow.flow_name,
        entrypoint=entrypoint,
        work_pool=(entry.get("work_pool") or {}).get("name", ""),
        numerai_model=settings.get("numerai_model", ""),
        tournament=flow.tournament,
        has_trigger=any(_is_node_trigger(trigger, name) for trigger in triggers),
        parameters=entry.get("parameters") or {},
        prefect_file=prefect_file,
    )


def _is_node_trigger(trigger: dict, node: str) -> bool:
    """Whether `trigger` turns the node's webhook event into a run, as the event contract says."""
    match = (trigger.get("match") or {}).get("prefect.resource.id")
    return match == node_resource_id(node) and EVENT_NAME in (trigger.get("expect") or [])
