"""The catalogue: prefect.yaml's local nodes, and the cloud nodes of prefect.aws.yaml,
prefect.gcp.yaml and prefect.azure.yaml, which build an amd64 image sized by preset."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from deployments.catalogue import load_nodes, nodes_on_pool
from deployments.presets import ACI, job_variables, preset_names, runs_on

ROOT = Path(__file__).parents[2]
CATALOGUE = ROOT / "prefect.yaml"
_POOL_TYPES = {"ecs": "ecs", "cloud-run": "cloud-run-v2", "azure": ACI}


FILES = {
    "local": CATALOGUE,
    "ecs": ROOT / "prefect.aws.yaml",
    "cloud-run": ROOT / "prefect.gcp.yaml",
    "azure": ROOT / "prefect.azure.yaml",
}


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def document() -> dict:
    """Every catalogue file's node deployments, as one document (the watchdog is no node)."""
    entries = [d for path in FILES.values() for d in _load(path)["deployments"]]
    return {"deployments": [d for d in entries if "node" in (d.get("parameters") or {})]}


def test_the_watchdog_is_deployed_beside_the_local_nodes_and_is_no_node():
    (watchdog,) = [d for d in _load(CATALOGUE)["deployments"] if d["name"] == "round-watchdog"]
    assert watchdog["entrypoint"] == "flows/watchdog.py:round_watchdog"
    assert "numerai-node" not in watchdog["tags"]  # no node alert or recovery applies to it
    assert "round-watchdog" not in {node.name for node in load_nodes(CATALOGUE)}


@pytest.mark.parametrize(("pool", "pool_type"), list(_POOL_TYPES.items()))
def test_size_anchors_match_the_presets(pool, pool_type):
    """Every preset the pool can run is an anchor, as deployments/presets.py sizes it; ACI's
    file leaves out the presets beyond one container group."""
    sizes = _load(FILES[pool])["definitions"]["sizes"][pool_type]
    fitting = [preset for preset in preset_names() if runs_on(preset, pool_type)]
    assert sorted(sizes) == sorted(fitting)
    for preset in fitting:
        assert sizes[preset] == job_variables(preset, pool_type), preset


def test_the_aci_anchors_are_named_for_the_pool_and_stop_at_its_limit():
    text = FILES["azure"].read_text()
    assert "&aci-gen-l " in text and "&aci-mem-m " in text
    for beyond in ("gen-xl", "cpu-xl", "mem-l"):
        assert not runs_on(beyond, ACI) and f"&aci-{beyond} " not in text


def test_cloud_nodes_build_for_amd64_push_and_size_from_a_preset(document):
    cloud = [entry for entry in document["deployments"] if entry["work_pool"]["name"] != "local"]
    assert {entry["work_pool"]["name"] for entry in cloud} == {"ecs", "cloud-run", "azure"}
    for entry in cloud:
        (build,) = entry["build"]
        step = build["prefect_docker.deployments.steps.build_docker_image"]
        assert step["platform"] == "linux/amd64"
        assert step["dockerfile"] == "Dockerfile"
        assert step["image_name"].startswith("{{ prefect.variables.numerai_nodes_")
        (push,) = entry["push"]
        assert "prefect_docker.deployments.steps.push_docker_image" in push
        variables = entry["work_pool"]["job_variables"]
        assert variables["image"] == "{{ build-image.image }}"
        pool_type = _POOL_TYPES[entry["work_pool"]["name"]]
        sizing = {key: value for key, value in variables.items() if key != "image"}
        sizes = [job_variables(p, pool_type) for p in preset_names() if runs_on(p, pool_type)]
        assert sizing in sizes


def test_each_file_holds_the_nodes_of_one_place_and_prefect_yaml_builds_nothing():
    for pool, path in FILES.items():
        entries = _load(path)["deployments"]
        assert entries and {entry["work_pool"]["name"] for entry in entries} == {pool}, path
    for entry in _load(CATALOGUE)["deployments"]:
        assert "build" not in entry and "push" not in entry


def test_cloud_nodes_name_their_file_in_the_deploy_command_and_models_are_not_shared():
    nodes = {node.name: node for node in load_nodes(CATALOGUE)}
    assert nodes["tournament"].deploy_command == (
        "prefect --no-prompt deploy -n tournament-node/tournament"
    )
    assert nodes["tournament-aws"].deploy_command == (
        "prefect --no-prompt deploy --prefect-file prefect.aws.yaml "
        "-n tournament-node/tournament-aws"
    )
    by_tournament = [(node.tournament, node.numerai_model) for node in nodes.values()]
    assert len(set(by_tournament)) == len(by_tournament), "two nodes would share one webhook"


def test_a_node_declared_in_two_files_is_refused(tmp_path):
    from deployments.catalogue import CatalogueError

    for name in ("prefect.yaml", "prefect.aws.yaml"):
        (tmp_path / name).write_text(
            "deployments:\n  - name: twice\n    entrypoint: flows/tournament.py:tournament_node\n"
            "    parameters: {node: {name: twice}}\n"
        )
    with pytest.raises(CatalogueError, match=r"'twice' is declared twice"):
        load_nodes(tmp_path / "prefect.yaml")


def test_the_local_stack_takes_only_local_nodes():
    nodes = load_nodes(CATALOGUE)
    local = nodes_on_pool(nodes, "local")
    assert {node.name for node in local} == {"tournament", "signals", "crypto"}
    assert {node.name for node in nodes} - {node.name for node in local} == {
        "tournament-aws",
        "tournament-gcp",
        "tournament-azure",
    }
    assert all(node.has_trigger for node in nodes)


def test_every_node_declares_its_trigger_as_the_event_contract_spells_it(document):
    from deployments.events import EVENT_NAME, node_resource_id

    nodes = load_nodes(CATALOGUE)
    assert nodes and all(node.has_trigger for node in nodes)
    for entry in document["deployments"]:
        name = entry["parameters"]["node"]["name"]
        (trigger,) = entry["triggers"]
        assert trigger["expect"] == [EVENT_NAME]
        assert trigger["match"] == {"prefect.resource.id": node_resource_id(name)}
        # The automation Prefect makes of it is named for what it does, not `<node>__automation_1`.
        assert trigger["name"] == f"{name}: run on Numerai's webhook"


def test_a_node_flow_is_declared_once_and_the_flows_use_that_declaration(monkeypatch):
    from prefect.flows import load_flow_from_entrypoint

    from flows.entrypoints import NODE_FLOWS

    # Prefect puts the entrypoint's folder (flows/) on sys.path, where flows/numerai.py would
    # then shadow numerai-cli's `numerai` package for every later test.
    monkeypatch.setattr(sys, "path", list(sys.path))
    for entrypoint, declared in NODE_FLOWS.items():
        flow = load_flow_from_entrypoint(str(ROOT / entrypoint))
        assert flow.name == declared.flow_name
    tournaments = {node.name: node.tournament for node in load_nodes(CATALOGUE)}
    assert tournaments["tournament"].label == "classic"
    assert tournaments["signals"].label == "signals"
    assert tournaments["crypto"].label == "crypto"


def test_a_deployment_whose_entrypoint_is_no_node_flow_is_refused_by_name(tmp_path):
    from deployments.catalogue import CatalogueError

    catalogue = tmp_path / "prefect.yaml"
    catalogue.write_text(
        "deployments:\n"
        "  - name: mine\n"
        "    entrypoint: flows/other.py:other_node\n"
        "    parameters: {node: {name: mine}}\n"
    )
    with pytest.raises(CatalogueError, match=r"'flows/other\.py:other_node', which is not a node"):
        load_nodes(catalogue)


def test_every_node_has_its_fallback_schedule_on_half_an_hour_after_numerai_opens(document):
    """A lost webhook is caught by the schedule: on by default, since a run without a trigger id
    never uploads over a submission of the round (the sandbox stack turns it off)."""
    for deployment in document["deployments"]:
        (schedule,) = deployment["schedules"]
        assert schedule == {"cron": "30 13 * * 2-6", "timezone": "UTC", "active": True}
