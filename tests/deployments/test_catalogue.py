"""prefect.yaml: cloud nodes build an amd64 image sized by preset; the local stack skips them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from deployments.catalogue import load_nodes, nodes_on_pool
from infra.presets import job_variables, preset_names

ROOT = Path(__file__).parents[2]
CATALOGUE = ROOT / "prefect.yaml"
_POOL_TYPES = {"ecs": "ecs", "cloud-run": "cloud-run-v2"}


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(CATALOGUE.read_text())


@pytest.mark.parametrize("pool_type", ["ecs", "cloud-run-v2"])
def test_size_anchors_match_the_presets(document, pool_type):
    sizes = document["definitions"]["sizes"][pool_type]
    assert sorted(sizes) == sorted(preset_names())
    for preset in preset_names():
        assert sizes[preset] == job_variables(preset, pool_type), preset


def test_cloud_nodes_build_for_amd64_push_and_size_from_a_preset(document):
    cloud = [entry for entry in document["deployments"] if entry["work_pool"]["name"] != "local"]
    assert {entry["work_pool"]["name"] for entry in cloud} == {"ecs", "cloud-run"}
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
        assert sizing in [job_variables(p, pool_type) for p in preset_names()]


def test_local_nodes_build_nothing(document):
    for entry in document["deployments"]:
        if entry["work_pool"]["name"] == "local":
            assert "build" not in entry and "push" not in entry


def test_the_local_stack_takes_only_local_nodes():
    nodes = load_nodes(CATALOGUE)
    local = nodes_on_pool(nodes, "local")
    assert {node.name for node in local} == {"tournament", "signals"}
    assert {node.name for node in nodes} - {node.name for node in local} == {
        "tournament-aws",
        "tournament-gcp",
    }
    assert all(node.has_trigger for node in nodes)
