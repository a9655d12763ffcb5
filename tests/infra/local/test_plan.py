"""What the local stack runs: the process pools of prefect.yaml, their nodes, trainings, workers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.catalogue import CatalogueError
from infra.local import workers
from infra.local.launcher import SOCKET_ENV
from infra.local.plan import Training, local_plan
from infra.local.settings import StackSettings
from tests.integration.local_stack import PROJECT, fleet_declarations, fleet_project

SPECS: dict[str, dict[str, Any]] = {
    "alpha": {"params": {"n_estimators": 20}},
    "beta": {"extends": "alpha"},
}


def test_the_repository_runs_on_the_stacks_own_pool() -> None:
    plan = local_plan(PROJECT, "local")
    assert plan.pools == ["local"]
    assert sorted(node.name for node in plan.nodes) == ["crypto", "signals", "tournament"]
    assert plan.trainings == [Training("train-example", "local")]


def test_every_process_pool_of_the_fleet_is_served_with_its_nodes_and_trainings(
    tmp_path: Path,
) -> None:
    declarations = fleet_declarations({"a1": "alpha", "a2": "alpha", "b1": "beta"}, SPECS)
    plan = local_plan(fleet_project(tmp_path / "project", declarations), "local")

    assert plan.pools == ["local", "predict", "train"]  # the watchdog's, the nodes', the trainings'
    assert {(node.name, node.work_pool) for node in plan.nodes} == {
        ("a1", "predict"), ("a2", "predict"), ("b1", "predict")
    }  # fmt: skip
    assert plan.trainings == [Training("train-alpha", "train"), Training("train-beta", "train")]
    assert plan.trainings[0].full_name == "train-spec/train-alpha"
    # `prefect deploy --name` selects `flow/deployment`; each flow is named as its function.
    assert plan.deploy_names == [
        "tournament-node/a1", "tournament-node/a2", "tournament-node/b1",
        "train-spec/train-alpha", "train-spec/train-beta",
    ]  # fmt: skip


def test_pools_typed_as_cloud_pools_in_nodes_yaml_are_left_to_their_place(tmp_path: Path) -> None:
    document = yaml.safe_load(fleet_declarations({"a1": "alpha", "b1": "beta"}, SPECS))
    document["pools"] = {"aws": "ecs", "train": "cloud-run-v2"}
    document["nodes"]["b1"]["pool"] = "aws"
    project = fleet_project(tmp_path / "project", yaml.safe_dump(document, sort_keys=False))

    plan = local_plan(project, "local")

    assert plan.pools == ["local", "predict"]
    assert [node.name for node in plan.nodes] == ["a1"]
    assert plan.trainings == []


def test_without_nodes_yaml_only_the_stacks_own_pool_is_served(tmp_path: Path) -> None:
    project = fleet_project(tmp_path / "project", fleet_declarations({"a1": "alpha"}, SPECS))
    (project / "nodes.yaml").unlink()  # nothing says whether `predict` is a process pool

    with pytest.raises(CatalogueError, match=r"no node on a process pool .*\(local\)"):
        local_plan(project, "local")


def test_a_catalogue_with_no_local_node_is_refused(tmp_path: Path) -> None:
    document = yaml.safe_load(fleet_declarations({"a1": "alpha"}, SPECS))
    document["pools"] = {"predict": "ecs"}
    project = fleet_project(tmp_path / "project", yaml.safe_dump(document, sort_keys=False))

    with pytest.raises(CatalogueError, match="nothing to run"):
        local_plan(project, "local")


def test_each_pool_has_its_worker_and_down_stops_the_workers_first() -> None:
    assert workers.process_name("local", "local") == "worker"
    assert workers.process_name("train", "local") == "worker-train"
    started = ["server", "zygote", "sandbox", "worker", "worker-predict", "gateway",
               "worker-train", "x"]  # fmt: skip
    # The zygote after the workers (their runs are its children), before the rest.
    assert workers.stop_order(started) == [
        "worker", "worker-predict", "worker-train", "zygote", "gateway", "sandbox", "server", "x"
    ]  # fmt: skip


def test_flow_runs_start_warm_unless_turned_off_or_the_socket_path_is_too_long(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NUMERAI_NODES_WARM_START", raising=False)
    assert StackSettings(home=tmp_path, _env_file=None).warm_start is True
    monkeypatch.setenv("NUMERAI_NODES_WARM_START", "false")
    assert StackSettings(home=tmp_path, _env_file=None).warm_start is False
    assert workers.warm_socket(tmp_path, True) == tmp_path / workers.ZYGOTE_SOCKET
    assert workers.warm_socket(tmp_path, False) is None
    assert workers.warm_socket(tmp_path / ("d" * 120), True) is None  # past sockaddr_un
    socket = tmp_path / workers.ZYGOTE_SOCKET
    assert workers.settings_env(1.0, socket)[SOCKET_ENV] == str(socket)
    assert SOCKET_ENV not in workers.settings_env(1.0, None)
    assert workers.launcher_command().endswith("-m infra.local.launcher")
