"""Recovering node runs: two Prefect automations that put a dead run back to work.

A node run can die without failing: its process is killed (out of memory, a spot machine taken
back, a worker stopped the hard way), and Prefect shows it Crashed, or, when the worker died with
it, Running for good. Both automations act on runs tagged `numerai-node` only:

- **silent runs are crashed**: a flow run sends a heartbeat event every `heartbeat_seconds`
  (PREFECT_FLOWS_HEARTBEAT_FREQUENCY); one that sent neither a heartbeat nor a final state for
  `silence_seconds` is set Crashed, which frees its concurrency slot for the next round;
- **crashed runs run again**: a run still Crashed `restart_delay_seconds` after its crash is set
  back to Scheduled (AwaitingRestart). It is the same flow run, with the same trigger id: the
  trained model is cached, the submit step uploads once per model and round, the round's close
  ends it (a run after the close fails as "round closed"), and the node refuses a run started
  more than `NUMERAI_NODES_MAX_RESTARTS` times.

`numerai-nodes up` and the `infra … up` commands apply them; `numerai-nodes recovery apply` does
it for any Prefect API (Prefect Cloud included).
"""

from __future__ import annotations

from datetime import timedelta

from prefect import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
from pydantic import Field

from deployments.automations import upsert
from flows.events import NODE_TAG
from flows.settings import HomeSettings

CRASHED_RUNS = "numerai-nodes: run crashed node runs again"
SILENT_RUNS = "numerai-nodes: mark silent node runs crashed"
AUTOMATIONS = (SILENT_RUNS, CRASHED_RUNS)
# The environment variable that makes a flow run send heartbeats (Prefect's own setting).
HEARTBEAT_ENV = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
RESCHEDULED_STATE = "AwaitingRestart"

_FLOW_RUN = {"prefect.resource.id": "prefect.flow-run.*"}
_NODE_RUN = {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{NODE_TAG}"}
_FINAL_EVENTS = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled")}
# States a crashed run is in once somebody (a user, a retry) started it again.
_STARTED_AGAIN = ("Scheduled", "AwaitingRetry", RESCHEDULED_STATE, "Pending", "Running")


class RecoverySettings(HomeSettings):
    """How quickly a dead node run is noticed (env `NUMERAI_NODES_*`)."""

    heartbeat_seconds: int = Field(
        30,
        ge=30,
        description="How often a node's flow run sends a heartbeat (Prefect's minimum is 30 s).",
    )
    restart_delay_seconds: int = Field(
        15,
        ge=10,
        description="How long a node run stays crashed before it is scheduled again (Prefect's "
        "proactive triggers wait at least 10 s); a run that someone restarts sooner is left "
        "alone.",
    )
    silence_seconds: int = Field(
        90,
        ge=35,
        description="A node run with no heartbeat and no final state for this long is marked "
        "Crashed (and then runs again). Keep it above the heartbeat, with room for a busy "
        "machine.",
    )


def heartbeat_env(settings: RecoverySettings | None = None) -> dict[str, str]:
    """The environment a node's flow run needs to send the heartbeats the automation expects."""
    settings = settings or RecoverySettings()
    return {HEARTBEAT_ENV: str(settings.heartbeat_seconds)}


def automations(settings: RecoverySettings | None = None) -> list[AutomationCore]:
    """The two recovery automations, as Prefect's API takes them."""
    settings = settings or RecoverySettings()
    silent = AutomationCore(
        name=SILENT_RUNS,
        description=(
            f"A flow run tagged {NODE_TAG} sent no heartbeat and no final state for "
            f"{settings.silence_seconds} s: its process is gone (a worker killed with it, a lost "
            "machine). Marking it Crashed frees its slot; the crash automation runs it again."
        ),
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", "prefect.flow-run.Crashed", *_FINAL_EVENTS},
            match=_FLOW_RUN,
            match_related=_NODE_RUN,
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=settings.silence_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=(
                    f"No heartbeat for {settings.silence_seconds} s: the node run's process is "
                    "gone. Marked crashed by numerai-nodes."
                ),
            )
        ],
    )
    crashed = AutomationCore(
        name=CRASHED_RUNS,
        description=(
            f"A flow run tagged {NODE_TAG} crashed (killed, out of memory, its machine lost): "
            "schedule the same run again, with the same trigger id. The submit step uploads once "
            "per model and round, and the round's close ends the tries."
        ),
        # Proactive: the run is rescheduled once it has stayed crashed for a while. A process
        # worker reports a crash twice, seconds apart; a run rescheduled at the first report
        # would be crashed again by the second one, while its new process starts.
        trigger=EventTrigger(
            after={"prefect.flow-run.Crashed"},
            expect={f"prefect.flow-run.{state}" for state in _STARTED_AGAIN},
            match=_FLOW_RUN,
            match_related=_NODE_RUN,
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=settings.restart_delay_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.SCHEDULED,
                name=RESCHEDULED_STATE,
                message="The run crashed; numerai-nodes scheduled it again.",
            )
        ],
    )
    return [silent, crashed]


def apply(settings: RecoverySettings | None = None) -> list[str]:
    """Create or update the recovery automations on the current Prefect API; returns their names.

    Applying twice leaves one of each: they are found by name and updated in place.
    """
    wanted = automations(settings)
    with get_client(sync_client=True) as client:
        upsert(client, wanted)
    return [automation.name for automation in wanted]


def missing() -> list[str]:
    """The recovery automations the current Prefect API lacks, or has but disabled."""
    with get_client(sync_client=True) as client:
        found = {
            automation.name: automation.enabled
            for name in AUTOMATIONS
            for automation in client.read_automations_by_name(name)
        }
    return [name for name in AUTOMATIONS if not found.get(name)]
