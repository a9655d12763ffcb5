"""A fleet on the local stack: 5 Classic models over 2 specs, trained on pool `train` ahead of
round day and predicting on pool `predict`, each through its own webhook.

The stack of this module runs in a project directory of its own (tests/integration/local_stack.py
`fleet_project`), whose nodes.yaml says `defaults: {pool: predict, train: false, training:
{pool: train}}`. The tests run in order: up, training, a round, a spec changed, down.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.catalogue import Node
from deployments.fleet import training_deployment
from deployments.fleet_yaml import sync
from flows import events
from flows.entrypoints import TOURNAMENT_FLOW, TRAINING_FLOW
from flows.settings import API_URL_ENV, HOME_ENV
from flows.store import ModelRecord, model_store
from infra.local import prefect_setup
from infra.local.prefect_setup import RECORDING_LAG_SECONDS
from infra.local.round import open_round
from infra.local.stack import LocalStack, StackSettings
from tests.integration.local_stack import fleet_declarations, fleet_project, logs
from tests.integration.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

SPECS: dict[str, dict[str, Any]] = {
    "alpha": {"data_version": "v5.2", "feature_set": "small", "params": {"n_estimators": 20}},
    "beta": {"extends": "alpha", "params": {"n_estimators": 24}},
}
NODES = {f"fleet-a{i}": "alpha" for i in (1, 2, 3)} | {f"fleet-b{i}": "beta" for i in (1, 2)}
FINISHED = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


@dataclass
class Fleet:
    """The running fleet stack, and ways to look in."""

    stack: LocalStack
    project: Path

    @property
    def api_url(self) -> str:
        return self.stack.prefect_api_url

    @property
    def sandbox_url(self) -> str:
        return self.stack.sandbox_url.rstrip("/")

    def post(self, path: str, body: dict | None = None) -> Any:
        url, deadline = f"{self.api_url}/{path}", time.monotonic() + 30
        # SQLite answers 503 ("database is locked") now and then while five runs write.
        while (answer := httpx.post(url, json=body or {}, timeout=30)).status_code == 503:
            assert time.monotonic() < deadline, answer.text
            time.sleep(0.5)
        assert answer.is_success, (path, answer.status_code, answer.text[:500])
        return answer.json()

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.api_url}/{path}", timeout=30)
        assert answer.is_success, (path, answer.status_code, answer.text[:500])
        return answer.json()

    def sandbox(self, path: str) -> Any:
        return httpx.get(f"{self.sandbox_url}/_sandbox/{path}", timeout=30).json()

    def deployment_id(self, flow: str, name: str) -> str:
        return self.get(f"deployments/name/{flow}/{name}")["id"]

    def records(self) -> list[ModelRecord]:
        """The model store the stack's runs write to (its home, keyed by the sandbox's API)."""
        env = {HOME_ENV: str(self.stack.home), API_URL_ENV: self.stack.sandbox_url}
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            return model_store().records()

    def flow_runs(self, deployment_ids: list[str]) -> list[dict]:
        query = {"flow_runs": {"deployment_id": {"any_": deployment_ids}}, "limit": 200}
        return self.post("flow_runs/filter", query)

    def node_runs(self) -> list[dict]:
        return self.flow_runs([self.deployment_id(TOURNAMENT_FLOW.flow_name, n) for n in NODES])

    def training_runs(self) -> list[dict]:
        names = [training_deployment(spec) for spec in SPECS]
        return self.flow_runs([self.deployment_id(TRAINING_FLOW.flow_name, n) for n in names])

    def wait_finished(self, run_ids: list[str], timeout: float = 300) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            runs = self.post("flow_runs/filter", {"flow_runs": {"id": {"any_": run_ids}}})
            if len(runs) == len(run_ids) and all(r["state_type"] in FINISHED for r in runs):
                return runs
            assert time.monotonic() < deadline, f"runs still going: {runs}{logs(self.stack)}"
            time.sleep(1)

    def play_round(self, timeout: float = 300) -> tuple[int, dict[str, str], list[dict]]:
        """Open a Classic round; wait until every model has a submission and every run of the
        round has ended. Returns the round, each model's trigger id, and the node runs."""
        number = open_round(self.sandbox_url)
        deadline = time.monotonic() + timeout
        while True:
            triggers = self.triggers(number)
            wanted = set(triggers.values())
            runs = [r for r in self.node_runs() if r["parameters"].get("trigger_id") in wanted]
            submitted = {s["model_name"] for s in self.submissions(number)}
            ended = len(runs) == len(NODES) and all(r["state_type"] in FINISHED for r in runs)
            if submitted == set(NODES) and ended:
                return number, triggers, runs
            assert time.monotonic() < deadline, (
                f"round {number}: submitted {sorted(submitted)}, runs {runs}{logs(self.stack)}"
            )
            time.sleep(1)

    def triggers(self, number: int) -> dict[str, str]:
        """The trigger id the sandbox sent to each model's webhook for round `number`."""
        names = {m["id"]: m["name"] for m in self.sandbox("state")["models"]}
        return {
            names[d["model_id"]]: d["trigger_id"]
            for d in self.sandbox("webhooks")
            if d["round"] == number
        }

    def submissions(self, number: int) -> list[dict]:
        return [s for s in self.sandbox("submissions") if s["round"] == number]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    project = fleet_project(root / "project", fleet_declarations(NODES, SPECS))
    ports: set[int] = set()
    while len(ports) < 3:  # the system may hand out a port it just handed out
        ports.add(free_port())
    prefect, gateway, sandbox = sorted(ports)
    settings = StackSettings(
        home=root / "home",
        prefect_port=prefect,
        gateway_port=gateway,
        sandbox_port=sandbox,
        start_timeout_seconds=150,
        database_url=None,  # SQLite of its own, whatever database the session's stack uses
        _env_file=None,
    )
    stack = LocalStack(settings, project_dir=project)
    with contextlib.ExitStack() as cleanup, pytest.MonkeyPatch.context() as patch:
        for name in ("PREFECT_UI_ENABLED", "PREFECT_SERVER_UI_ENABLED"):
            patch.setenv(name, "false")
        for name in ("NUMERAI_NODES_GATEWAY_PUBLIC_URL", "NUMERAI_NODES_DATABASE_URL"):
            patch.delenv(name, raising=False)
        cleanup.callback(stack.down)
        stack.up(sandbox=True, sandbox_size="tiny")
        yield Fleet(stack, project)


def test_up_serves_every_process_pool_with_a_worker_of_its_own(fleet):
    info = fleet.stack.info()
    assert info is not None and info.work_pools == ["local", "predict", "train"]
    expected = ("server", "sandbox", "zygote", "worker", "worker-predict", "worker-train",
                "gateway")  # fmt: skip
    assert {p.name: p.alive for p in info.processes} == dict.fromkeys(expected, True)
    for pool in info.work_pools:
        assert fleet.get(f"work_pools/{pool}")["type"] == "process"
        workers = fleet.post(f"work_pools/{pool}/workers/filter")
        assert [w["name"] for w in workers] == [prefect_setup.WORKER_NAME]
    deployed = {(d["name"], d["work_pool_name"]) for d in fleet.post("deployments/filter")}
    assert deployed == {(n, "predict") for n in NODES} | {
        (training_deployment(s), "train") for s in SPECS
    }
    assert set(info.webhooks) == set(NODES)
    assert set(fleet.stack.sandbox_models()) == set(NODES)
    assert sorted(info.paused_schedules) == sorted(
        [f"{TOURNAMENT_FLOW.flow_name}/{n}" for n in NODES]
        + [f"{TRAINING_FLOW.flow_name}/{training_deployment(s)}" for s in SPECS]
    )


def test_each_spec_trains_once_on_the_training_pool(fleet):
    assert fleet.records() == []
    ids = [fleet.deployment_id(TRAINING_FLOW.flow_name, training_deployment(s)) for s in SPECS]
    started = [fleet.post(f"deployments/{i}/create_flow_run") for i in ids]

    runs = fleet.wait_finished([run["id"] for run in started])

    assert {(r["state_type"], r["work_pool_name"]) for r in runs} == {("COMPLETED", "train")}
    records = fleet.records()
    assert sorted(r.family for r in records) == sorted(SPECS)
    assert sorted(r.trained_by for r in records) == sorted(r["name"] for r in runs)


def test_each_webhook_yields_one_submission_with_its_trigger_id_and_no_training(fleet):
    trained = fleet.records()

    number, triggers, runs = fleet.play_round()

    assert set(triggers) == set(NODES)
    submissions = fleet.submissions(number)
    assert sorted(s["model_name"] for s in submissions) == sorted(NODES)  # one each
    for submission in submissions:
        assert submission["trigger_id"] == triggers[submission["model_name"]]
    assert {(r["state_type"], r["work_pool_name"]) for r in runs} == {("COMPLETED", "predict")}
    assert sorted(r["parameters"]["node"]["name"] for r in runs) == sorted(NODES)
    tasks = _task_names(fleet, runs)
    assert all(any(t.startswith("load-model") for t in tasks[r["id"]]) for r in runs), tasks
    assert not [t for names in tasks.values() for t in names if t.startswith(("train", "store"))]
    assert len(fleet.training_runs()) == len(SPECS)  # none on round day
    assert fleet.records() == trained


def test_a_changed_spec_with_no_training_yet_submits_with_its_last_good_model(fleet):
    """beta's params change and its nodes are deployed again, untrained: they predict with
    beta's last good model, their reports say so, and each sends the stale-model event."""
    changed = {**SPECS, "beta": {**SPECS["beta"], "params": {"n_estimators": 28}}}
    (fleet.project / "nodes.yaml").write_text(fleet_declarations(NODES, changed))
    sync(fleet.project / "prefect.yaml", fleet.project / "nodes.yaml")
    beta = [node for node in fleet.stack.plan().nodes if NODES[node.name] == "beta"]
    _deploy(fleet, beta)
    since = datetime.now(UTC)

    number, triggers, runs = fleet.play_round()

    submitted = {s["model_name"]: s["trigger_id"] for s in fleet.submissions(number)}
    assert submitted == triggers  # on time, each with its own trigger id
    assert {r["state_type"] for r in runs} == {"COMPLETED"}
    summaries = _summaries(fleet, runs)
    for run in runs:
        node = run["parameters"]["node"]["name"]
        assert ("stale model" in summaries[run["id"]]) == (NODES[node] == "beta"), node
    stale = _events(fleet, events.MODEL_STALE, since, len(beta))
    assert sorted((e["payload"]["node"], e["payload"]["trigger_id"]) for e in stale) == sorted(
        (node.name, triggers[node.name]) for node in beta
    )
    assert len(fleet.records()) == len(SPECS)  # nothing trained on round day


def test_down_stops_every_worker(fleet):
    processes = fleet.stack.status()
    assert len(processes) == 7  # server, sandbox, zygote, gateway and a worker per pool

    stopped = fleet.stack.down()

    assert [p.name for p in stopped][:3] == ["worker", "worker-predict", "worker-train"]
    assert not any(p.alive for p in stopped)
    assert not fleet.stack.stack_file.exists()


def _task_names(fleet: Fleet, runs: list[dict]) -> dict[str, list[str]]:
    """Each run's task names, once the server has recorded every run's last task (it records
    task runs from their events, in batches)."""
    query = {"flow_runs": {"id": {"any_": [r["id"] for r in runs]}}, "limit": 200}
    deadline = time.monotonic() + 10 * RECORDING_LAG_SECONDS
    while True:
        names: dict[str, list[str]] = {r["id"]: [] for r in runs}
        for task in fleet.post("task_runs/filter", query):
            names[task["flow_run_id"]].append(task["name"])
        recorded = all(any(n.startswith("report") for n in found) for found in names.values())
        if recorded or time.monotonic() > deadline:
            return names
        time.sleep(0.2)


def _summaries(fleet: Fleet, runs: list[dict]) -> dict[str, str]:
    query = {"artifacts": {"flow_run_id": {"any_": [r["id"] for r in runs]}}, "limit": 200}
    return {
        a["flow_run_id"]: a["data"]
        for a in fleet.post("artifacts/filter", query)
        if (a["key"] or "").endswith("-summary")
    }


def _events(fleet: Fleet, name: str, since: datetime, count: int) -> list[dict]:
    """The `name` events since `since`, once `count` are stored (events land a moment after)."""
    query = {"filter": {"event": {"name": [name]}, "occurred": {"since": since.isoformat()}}}
    deadline = time.monotonic() + 30
    while len(found := fleet.post("events/filter", query)["events"]) < count:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return found


def _deploy(fleet: Fleet, nodes: list[Node]) -> None:
    """`prefect deploy` of `nodes` against the stack's server, as `up` runs it."""
    log = fleet.stack.logs_dir / "deploy-again.log"
    env = {
        **os.environ,
        "PREFECT_API_URL": fleet.api_url,
        "PREFECT_HOME": str(fleet.stack.home / "prefect"),
    }
    deploy = prefect_setup.start_deploy([n.full_name for n in nodes], fleet.project, env, log)
    prefect_setup.finish_deploy(deploy, 300, log)
