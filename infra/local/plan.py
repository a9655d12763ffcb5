"""What the local stack runs: prefect.yaml's process pools, and the nodes and trainings on them.

A participant may split the fleet over pools (`defaults: {pool: predict, training: {pool: train}}`
in nodes.yaml). The stack then serves every pool that prefect.yaml's deployments use, unless
nodes.yaml types it as a cloud pool (ECS, Cloud Run), which a worker of its own place serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from deployments.catalogue import CATALOGUE, CatalogueError, Node, load_nodes
from deployments.fleet import DECLARATIONS, read_fleet
from flows.entrypoints import TRAINING_FLOW


@dataclass(frozen=True)
class Training:
    """A training deployment of prefect.yaml (`train-<spec>`), and its work pool."""

    deployment: str
    work_pool: str

    @property
    def full_name(self) -> str:
        """`flow-name/deployment-name`, as Prefect names deployments."""
        return f"{TRAINING_FLOW.flow_name}/{self.deployment}"


@dataclass(frozen=True)
class LocalPlan:
    """The process pools the stack serves (its own pool first) and what it deploys on them."""

    pools: list[str]
    nodes: list[Node]
    trainings: list[Training]

    @property
    def deployments(self) -> list[Node | Training]:
        """Everything `up` deploys: the nodes, then the trainings."""
        return [*self.nodes, *self.trainings]

    @property
    def deploy_names(self) -> list[str]:
        """Their `prefect deploy --name` selectors (each flow is named as its function)."""
        return [each.full_name for each in self.deployments]


def local_plan(project_dir: Path, work_pool: str) -> LocalPlan:
    """The pools, nodes and trainings of the project's prefect.yaml that run on this machine.

    The stack's own pool `work_pool` is always served (the round watchdog's pool). Without
    nodes.yaml nothing says which other pools are process pools, so only that one is.
    """
    catalogue = project_dir / CATALOGUE
    nodes = [node for node in load_nodes(catalogue) if node.prefect_file == CATALOGUE.name]
    entries = _entries(catalogue)
    pools = _process_pools(project_dir, work_pool, {_pool(entry) for entry in entries})
    local = [node for node in nodes if node.work_pool in pools]
    if not local:
        raise CatalogueError(
            f"prefect.yaml has no node on a process pool of this machine ({', '.join(pools)}), "
            "so the local stack has nothing to run. Declare a node on a process pool in "
            "nodes.yaml (`defaults: {pool: local}`), then `numerai-nodes node sync`."
        )
    trainings = [
        Training(entry["name"], _pool(entry))
        for entry in entries
        if entry.get("entrypoint") == TRAINING_FLOW.entrypoint and _pool(entry) in pools
    ]
    return LocalPlan(pools, local, trainings)


def _entries(catalogue: Path) -> list[dict[str, Any]]:
    document = yaml.safe_load(catalogue.read_text()) or {}
    return [entry for entry in document.get("deployments") or [] if isinstance(entry, dict)]


def _pool(entry: dict[str, Any]) -> str:
    return str((entry.get("work_pool") or {}).get("name") or "")


def _process_pools(project_dir: Path, work_pool: str, used: set[str]) -> list[str]:
    declarations = project_dir / DECLARATIONS
    if not declarations.exists():
        return [work_pool]
    types = read_fleet(declarations).pools
    wanted = [work_pool, *sorted(used - {work_pool, ""})]
    return [pool for pool in wanted if types.get(pool, "process") == "process"]
