"""Crash recovery on the local stack: a node run whose process dies mid-training still submits.

The stack runs its worker under a supervisor and sets up the two recovery automations; nothing
here restarts, reschedules or marks anything by hand: the test only kills processes, the way an
out-of-memory kill or a lost machine would, and watches the round get submitted once.
"""

from __future__ import annotations

import contextlib
import signal
import time

import psutil
import pytest

from deployments import recovery
from tests.integration.conftest import SILENCE_SECONDS
from tests.integration.local_stack import MODEL, Stack, logs

pytestmark = pytest.mark.integration

# Enough trees that training lasts seconds on tiny data, so the kill lands inside it. Each test
# trains its own model (a parameter differs), so neither finds the other's in the model cache.
_TREES = 6_000


def _node(trees: int) -> dict:
    return {
        "name": "tournament",
        "numerai_model": MODEL,
        "model": "models.tournament",
        "data_version": "v5.2",
        "feature_set": "small",
        "target": "target",
        "params": {"n_estimators": trees, "learning_rate": 0.001},
        "score_validation": False,
    }


def _start_run(stack: Stack, trigger_id: str, trees: int) -> str:
    """A run of the tournament deployment, as its webhook trigger would create it."""
    deployment = next(
        d for d in stack.api("deployments/filter").json() if d["name"] == "tournament"
    )
    parameters = {"node": _node(trees), "trigger_id": trigger_id, "round_number": None}
    created = stack.api(
        f"deployments/{deployment['id']}/create_flow_run", {"parameters": parameters}
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


def _wait_training(stack: Stack, run_id: str, timeout: float = 180) -> None:
    """Until the run's train task is running."""
    deadline = time.monotonic() + timeout
    query = {"flow_runs": {"id": {"any_": [run_id]}}}
    while time.monotonic() < deadline:
        tasks = stack.api("task_runs/filter", query).json()
        if any(t["name"].startswith("train") and t["state_type"] == "RUNNING" for t in tasks):
            return
        time.sleep(0.2)
    raise AssertionError(f"the run never started training: {tasks}\n{logs(stack.stack)}")


def _supervisor(stack: Stack) -> psutil.Process:
    record = next(p for p in stack.stack.status() if p.name == "worker")
    return psutil.Process(record.pid)


def _worker(supervisor: psutil.Process) -> psutil.Process:
    """The `prefect worker` process the supervisor runs."""
    (worker,) = supervisor.children()
    return worker


def _flow_run_process(supervisor: psutil.Process, run_id: str) -> psutil.Process:
    for process in supervisor.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if process.environ().get("PREFECT__FLOW_RUN_ID") == run_id:
                return process
    raise AssertionError(f"no process runs flow run {run_id}")


def _wait_final(stack: Stack, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = stack.api("flow_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}}).json()[0]
        if run["state_type"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish: {run['state']}\n{logs(stack.stack)}")


def _history(stack: Stack, run_id: str) -> list[tuple[str, str]]:
    states = stack.get(f"flow_run_states/?flow_run_id={run_id}")
    ordered = sorted(states, key=lambda state: state["timestamp"])
    return [(state["type"], state["name"]) for state in ordered]


def test_the_recovery_automations_are_set_up_by_up(stack):
    result = stack.cli("recovery", "status")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in recovery.AUTOMATIONS:
        assert name in " ".join(result.stdout.split())


def test_a_run_killed_mid_training_runs_again_and_submits_once(stack):
    run_id = _start_run(stack, "crash-train-1", _TREES)
    _wait_training(stack, run_id)
    _flow_run_process(_supervisor(stack), run_id).kill()  # as the kernel's OOM killer does

    run = _wait_final(stack, run_id, timeout=300)

    assert run["state_type"] == "COMPLETED", run["state"]
    history = _history(stack, run_id)
    assert ("CRASHED", "Crashed") in history, history
    assert ("SCHEDULED", recovery.RESCHEDULED_STATE) in history, history
    assert run["run_count"] == 2, str(history)
    (submission,) = stack.submissions("crash-train-1")
    assert submission["model_name"] == MODEL


def test_a_worker_killed_with_its_run_is_restarted_and_the_run_still_submits_once(stack):
    supervisor = _supervisor(stack)
    worker = _worker(supervisor)
    run_id = _start_run(stack, "crash-worker-1", _TREES + 1)
    _wait_training(stack, run_id)
    doomed = [worker, *worker.children(recursive=True)]
    assert any(p.pid == _flow_run_process(supervisor, run_id).pid for p in doomed)
    for process in doomed:  # the worker and its flow run die together: nobody reports the crash
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(doomed, timeout=10)

    # The silent run is marked crashed after SILENCE_SECONDS, then runs on the restarted worker.
    run = _wait_final(stack, run_id, timeout=SILENCE_SECONDS + 240)

    assert run["state_type"] == "COMPLETED", run["state"]
    history = _history(stack, run_id)
    assert ("CRASHED", "Crashed") in history and ("COMPLETED", "Completed") in history, history
    assert supervisor.is_running(), "the supervisor itself was not killed"
    restarted = _worker(supervisor)
    assert restarted.pid != worker.pid
    assert len(stack.submissions("crash-worker-1")) == 1
