"""A node's life on a Prefect API: deployed with `prefect deploy`, listed, deleted, its Numerai
webhook cleared. `numerai-nodes node add | list | remove` call these after editing nodes.yaml."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prefect import get_client
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from deployments.catalogue import Node
from deployments.fleet import DECLARATIONS, read_fleet, resolve, training_deployment
from flows.entrypoints import TOURNAMENT_FLOW, TRAINING_FLOW
from flows.errors import ConfigurationError, NumeraiApiError
from flows.numerai import NumeraiClient

_OUTPUT_LINES = 15


class DeployFailed(ConfigurationError):
    """`prefect deploy` failed; the message holds the end of its output."""


@dataclass(frozen=True)
class Deployable:
    """A deployment of prefect.yaml by its full name: a node, or a spec's training."""

    full_name: str


def deployables(node: Node, declarations: Path = DECLARATIONS) -> list[Deployable]:
    """What deploying `node` deploys: the node, and its spec's training (Classic specs)."""
    found = [Deployable(node.full_name)]
    if declarations.exists():
        for declared in resolve(read_fleet(declarations)):
            if declared.name == node.name and declared.spec.flow is TOURNAMENT_FLOW:
                name = training_deployment(declared.spec.name)
                found.append(Deployable(f"{TRAINING_FLOW.flow_name}/{name}"))
    return found


def deploy(names: Iterable[Deployable], project_dir: Path = Path()) -> None:
    """Run `prefect --no-prompt deploy` for `names`, on the Prefect API of the environment."""
    arguments = [argument for each in names for argument in ("--name", each.full_name)]
    env = dict(os.environ)
    if api_url := PREFECT_API_URL.value():  # the API this process uses, also when set in code
        env["PREFECT_API_URL"] = api_url
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", "deploy", *arguments],
        cwd=project_dir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip().splitlines()[-_OUTPUT_LINES:]
        raise DeployFailed(
            f"prefect deploy failed (exit code {done.returncode}). The end of its output:\n"
            + "\n".join(output)
        )


def deployed_names(names: Iterable[str]) -> dict[str, bool]:
    """Whether each full deployment name exists on the Prefect API of the environment."""
    found = {}
    with get_client(sync_client=True) as client:
        for name in names:
            try:
                client.read_deployment_by_name(name)
                found[name] = True
            except ObjectNotFound:
                found[name] = False
    return found


def delete_deployment(full_name: str) -> bool:
    """Delete a deployment (its runs stay in the UI); whether there was one."""
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(full_name)
        except ObjectNotFound:
            return False
        client.delete_deployment(deployment.id)
    return True


def clear_webhook(numerai: NumeraiClient, node: Node) -> bool:
    """Make Numerai stop calling the node's webhook; whether it had one."""
    registered = numerai.registered_webhooks().get(node.numerai_model)
    if not registered:
        return False
    if not numerai.set_webhook(numerai.model_id(node.numerai_model), None):
        raise NumeraiApiError(
            f"Numerai did not clear the webhook of model {node.numerai_model!r}; check that your "
            "API key has the scope to edit models."
        )
    return True
