"""`node test`: trigger a node the way Numerai does and prove it ran and submitted with that id."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from deployments.catalogue import Node
from deployments.runs import RunStuck, RunTimeout, wait_for_run
from deployments.watch import Failure, Limits, RunEvent, follow_run
from flows.errors import NodeError
from flows.keys import connect


@dataclass
class Step:
    """One step of the test and its outcome."""

    name: str
    ok: bool
    detail: str


@dataclass
class NodeTestResult:
    """Everything `node test` established, in order."""

    node: str
    steps: list[Step] = field(default_factory=list)
    trigger_id: str | None = None
    flow_run_id: str | None = None
    flow_run_name: str | None = None  # its name at the end, as the Prefect UI shows it
    failure: Failure | None = None
    submission_id: str | None = None

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(step.ok for step in self.steps)

    def to_json(self) -> dict:
        return asdict(self) | {"ok": self.ok}


@dataclass(frozen=True)
class Timeouts:
    """How long each wait may take, in seconds."""

    create: float = 60.0
    start: float = 60.0
    finish: float = 1800.0


def run_node_test(
    node: Node,
    timeouts: Timeouts = Timeouts(),
    on_step: Callable[[Step], None] = lambda step: None,
    on_event: Callable[[RunEvent], None] = lambda event: None,
) -> NodeTestResult:
    """Trigger, follow and verify one node; stops at the first failed step."""
    result = NodeTestResult(node=node.name)

    def step(name: str, ok: bool, detail: str) -> bool:
        result.steps.append(Step(name, ok, detail))
        on_step(result.steps[-1])
        return ok

    numerai = connect(node.tournament)
    with get_client(sync_client=True) as prefect:
        try:
            deployment = prefect.read_deployment_by_name(node.full_name)
        except ObjectNotFound:
            step("deployed", False, _not_deployed(node))
            return result
        step("deployed", True, f"{node.full_name} on work pool '{deployment.work_pool_name}'")
        try:
            model_id = numerai.model_id(node.numerai_model)
            result.trigger_id = numerai.trigger_webhook(model_id)
        except NodeError as exc:
            step("triggered", False, str(exc))
            return result
        step("triggered", True, f"Numerai called the webhook with trigger id {result.trigger_id}")

        triggered_at = time.monotonic()
        run = wait_for_run(prefect, deployment.id, result.trigger_id, timeouts.create)
        if run is None:
            step("flow run created", False, _no_run(node, timeouts.create))
            return result
        result.flow_run_id, result.flow_run_name = str(run.id), run.name
        seconds = time.monotonic() - triggered_at
        state = run.state_name or "Scheduled"
        step("flow run created", True, f"{run.name} ({state}, {seconds:.1f} s after the trigger)")

        limits = Limits(finish=timeouts.finish, start=timeouts.start)
        try:
            end = follow_run(run, on_event, limits)
        except (RunStuck, RunTimeout) as exc:
            step("flow run finished", False, str(exc))
            return result
        result.flow_run_name, result.failure = end.name, end.failure
        if end.state_type != "COMPLETED":
            at = f" at step '{end.failure.step}'" if end.failure and end.failure.step else ""
            step("flow run finished", False, f"{end.name} ended {end.state_name}{at}")
            return result
        step("flow run finished", True, f"{end.name} {end.state_name}")

    try:
        submissions = numerai.submissions(model_id)
    except NodeError as exc:
        step("submitted", False, str(exc))
        return result
    found = [s for s in submissions if s.trigger_id == result.trigger_id]
    if not found:
        step(
            "submitted",
            False,
            f"Numerai lists no submission of {node.numerai_model} with trigger id "
            f"{result.trigger_id}; see the flow run's logs in the Prefect UI.",
        )
        return result
    result.submission_id = found[0].id
    step("submitted", True, f"submission {found[0].id} carries trigger id {result.trigger_id}")
    return result


def _not_deployed(node: Node) -> str:
    return (
        f"{node.full_name} is not deployed on this Prefect API. Deploy it with "
        f"`{node.deploy_command}` (or `numerai-nodes up` for the local "
        "stack)."
    )


def _no_run(node: Node, waited: float) -> str:
    return (
        f"No flow run of {node.full_name} appeared {waited:.0f} s after Numerai called the "
        "webhook. Check the chain with `numerai-nodes doctor`: the webhook URL registered on "
        "Numerai, the gateway (or Prefect Cloud webhook), and the deployment's trigger."
    )
