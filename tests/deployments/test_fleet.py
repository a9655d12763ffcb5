"""nodes.yaml: models declared in a line each, and the deployments prefect.yaml gets from them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from deployments.catalogue import load_nodes
from deployments.events import EVENT_NAME, node_resource_id
from deployments.fleet import FleetError, deployments, read_fleet, resolve
from deployments.fleet_yaml import GENERATED_MARK, add_node, in_step, remove_node, sync

ROOT = Path(__file__).parents[2]

FLEET = """\
# my fleet
defaults:
  pool: predict
  training: {pool: train}
pools: {aws: ecs}
specs:
  small:                       # shared by three models
    data_version: v5.2
    params: {n_estimators: 50}
  cyrus:
    extends: small
    target: target_cyrus_v4_20
    params: {learning_rate: 0.02}
    training: {size: mem-l, pool: aws, schedule: null}
nodes:
  alpha: {spec: small}
  beta: {spec: small}
  gamma: {spec: small, numerai_model: gamma_on_numerai}
  delta: {spec: cyrus}
  epsilon: {spec: cyrus, pool: aws, size: gen-s}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "nodes.yaml").write_text(FLEET)
    catalogue = (ROOT / "prefect.yaml").read_text()
    (tmp_path / "prefect.yaml").write_text(catalogue[: catalogue.index(GENERATED_MARK)])
    (tmp_path / "prefect.yaml").write_text(
        (tmp_path / "prefect.yaml").read_text() + GENERATED_MARK + "\n"
    )
    return tmp_path


def _entries(project: Path) -> dict[str, dict]:
    document = yaml.safe_load((project / "prefect.yaml").read_text())
    return {entry["name"]: entry for entry in document["deployments"]}


def test_the_shipped_nodes_yaml_and_prefect_yaml_are_in_step():
    assert in_step(ROOT / "prefect.yaml", ROOT / "nodes.yaml"), "run `numerai-nodes node sync`"


def test_five_models_over_two_specs_give_five_nodes_and_two_trainings(project):
    assert sync(project / "prefect.yaml", project / "nodes.yaml")
    entries = _entries(project)

    nodes = {name: e for name, e in entries.items() if "node" in e.get("parameters", {})}
    trainings = {name: e for name, e in entries.items() if "spec" in e.get("parameters", {})}
    assert set(nodes) == {"alpha", "beta", "gamma", "delta", "epsilon"}
    assert set(trainings) == {"train-small", "train-cyrus"}
    assert "round-watchdog" in entries  # what is above the mark stays

    gamma = nodes["gamma"]["parameters"]["node"]
    assert gamma["numerai_model"] == "gamma_on_numerai" and gamma["spec"] == "small"
    assert nodes["alpha"]["parameters"]["node"]["numerai_model"] == "alpha"
    assert nodes["alpha"]["work_pool"] == {"name": "predict", "work_queue_name": "default"}
    assert nodes["alpha"]["parameters"]["node"]["train"] is False  # nodes train ahead
    for name, entry in nodes.items():
        (trigger,) = entry["triggers"]
        assert trigger["match"] == {"prefect.resource.id": node_resource_id(name)}
        assert trigger["expect"] == [EVENT_NAME]
        assert "numerai-node" in entry["tags"] and entry["concurrency_limit"] == 1

    delta = nodes["delta"]["parameters"]["node"]
    assert delta["target"] == "target_cyrus_v4_20" and delta["data_version"] == "v5.2"
    assert delta["params"] == {"n_estimators": 50, "learning_rate": 0.02}  # extends merges them
    assert nodes["epsilon"]["work_pool"]["job_variables"] == {"cpu": 1024, "memory": 4096}

    small = trainings["train-small"]
    assert small["work_pool"]["name"] == "train"
    assert small["parameters"]["spec"] == {
        "name": "small",
        "data_version": "v5.2",
        "params": {"n_estimators": 50},
    }
    assert small["schedules"][0]["cron"] == "0 6 * * *"
    cyrus = trainings["train-cyrus"]
    assert cyrus["work_pool"] == {
        "name": "aws",
        "work_queue_name": "default",
        "job_variables": {"cpu": 4096, "memory": 30720},
    }
    assert "schedules" not in cyrus  # by hand only
    # The catalogue reads the generated nodes like hand-written ones.
    assert {node.name for node in load_nodes(project / "prefect.yaml")} >= set(nodes)
    assert not sync(project / "prefect.yaml", project / "nodes.yaml"), "a second sync is a no-op"


def test_each_model_takes_one_line(project):
    lines = [line for line in FLEET.splitlines() if line.startswith("  ") and "spec:" in line]
    assert len(lines) == 5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("  zeta: {spec: nope}\n", "uses spec 'nope', which nodes.yaml lacks"),
        ("  zeta: {spec: small, numerai_model: alpha}\n", "both submit as Numerai model 'alpha'"),
        ("  zeta: {spec: small, size: gen-s}\n", "on pool 'predict', a process pool"),
        ("  zeta: {spec: small, size: gen-huge}\n", "Unknown size preset 'gen-huge'"),
        ("  Zeta: {spec: small}\n", "'Zeta' is no valid name"),
        ("  zeta: {spec: {model: models.tournament, targett: x}}\n", "no setting 'targett'"),
        ("  zeta: {spec: {tournament: signals}, train: false}\n", "a Signals node with `train"),
        ("  zeta: {spec: {tournament: crypto}, train: false}\n", "a Crypto node with `train"),
        ("  zeta: {spec: {tournament: crypto, score_validation: true}}\n", "'score_validation'"),
        ("  zeta: {spec: small, colour: blue}\n", "nodes.zeta.colour"),
        (
            "  zeta: {spec: {model: models.tournament, command: {train: a, predict: b, "
            "version: '1'}}}\n",
            "gives both `model:` and `command:`",
        ),
        (
            "  zeta: {spec: {tournament: signals, command: {train: a, predict: b, version: "
            "'1'}}}\n",
            "command models are built for Classic specs only",
        ),
        ("  zeta: {spec: {command: {train: a, predict: b}}}\n", "either `files:`"),
        ("  zeta: {spec: {command: {train: a, version: '1'}}}\n", "predict: Field required"),
        (
            "  zeta: {spec: {command: {train: a, predict: b, version: '1', data_format: xml}}}\n",
            "data_format: Input should be 'parquet' or 'csv'",
        ),
    ],
)
def test_a_declaration_that_cannot_work_is_refused_with_its_cause(project, change, message):
    path = project / "nodes.yaml"
    path.write_text(FLEET + change)
    with pytest.raises(FleetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        deployments(read_fleet(path))


COMMAND_SPECS = """\
  r-model:
    command: {train: Rscript train.R, predict: [Rscript, predict.R], files: [train.R, predict.R]}
    data_version: v5.2
  r-model-2:
    extends: small
    command: {train: Rscript train.R, predict: Rscript predict.R, version: "2"}
"""


def test_a_command_model_is_declared_in_place_of_a_model_module(project):
    path = project / "nodes.yaml"
    fleet = FLEET.replace("specs:\n", "specs:\n" + COMMAND_SPECS)
    path.write_text(fleet + "  zeta: {spec: r-model}\n  eta: {spec: r-model-2}\n")
    entries = {entry["name"]: entry for entry in deployments(read_fleet(path))}

    node = entries["zeta"]["parameters"]["node"]
    assert node["command"]["predict"] == ["Rscript", "predict.R"] and "model" not in node
    training = entries["train-r-model"]["parameters"]["spec"]
    assert training["command"] == node["command"] and training["data_version"] == "v5.2"
    # A command spec that extends a module spec keeps its data, not its model.
    extended = entries["eta"]["parameters"]["node"]
    assert extended["command"]["version"] == "2" and extended["data_version"] == "v5.2"
    assert "model" not in extended


def test_specs_that_extend_each_other_in_a_circle_are_refused(project):
    path = project / "nodes.yaml"
    path.write_text(FLEET.replace("  small:", "  small:\n    extends: cyrus"))
    with pytest.raises(FleetError, match="in a circle"):
        resolve(read_fleet(path))


def test_node_add_and_remove_edit_lines_and_keep_the_comments(project):
    path = project / "nodes.yaml"
    add_node("zeta", {"spec": "cyrus", "numerai_model": "zeta_model"}, path)
    text = path.read_text()
    assert "  zeta: {spec: cyrus, numerai_model: zeta_model}\n" in text
    assert "# shared by three models" in text
    assert read_fleet(path).nodes["zeta"].numerai_model == "zeta_model"

    remove_node("beta", path)
    assert set(read_fleet(path).nodes) == {"alpha", "gamma", "delta", "epsilon", "zeta"}
    assert "# my fleet" in path.read_text()


def test_an_add_that_would_not_work_leaves_nodes_yaml_as_it_was(project):
    path = project / "nodes.yaml"
    with pytest.raises(FleetError, match=r"which nodes\.yaml lacks"):
        add_node("zeta", {"spec": "missing"}, path)
    with pytest.raises(FleetError, match="already declares node 'alpha'"):
        add_node("alpha", {"spec": "small"}, path)
    with pytest.raises(FleetError, match="declares no node 'omega'"):
        remove_node("omega", path)
    assert path.read_text() == FLEET


def test_prefect_yaml_without_the_mark_is_refused_not_overwritten(project):
    catalogue = project / "prefect.yaml"
    catalogue.write_text("deployments: []\n")
    with pytest.raises(FleetError, match="has no generated part"):
        sync(catalogue, project / "nodes.yaml")
    assert catalogue.read_text() == "deployments: []\n"


def test_the_shipped_fleet_gives_each_example_node_its_own_numerai_model(tmp_path):
    shutil.copy(ROOT / "nodes.yaml", tmp_path / "nodes.yaml")
    nodes = resolve(read_fleet(tmp_path / "nodes.yaml"))
    models = [node.numerai_model for node in nodes]
    assert len(models) == len(set(models)) == 3
