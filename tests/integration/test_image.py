"""The node image, built from the unchanged Dockerfile and run with podman: what it holds and runs.

The cloud worker tests (test_ecs_worker.py, test_cloud_run_worker.py) run the node's flow runs in
this image; these check the image itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

import pytest

from deployments.presets import ECS, machine
from flows.memory import training_mib
from models.footprint import TRAIN_BYTES_PER_VALUE
from tests.integration import podman

pytestmark = [pytest.mark.container, pytest.mark.integration]

# Development tools and test-only packages (import names) that must stay out of the image.
_DEV_MODULES = ("pytest", "moto", "ruff", "mypy", "cfnlint", "hcl2", "socks", "numerblox", "tests")
_PROBE = f"""
import importlib.util, json, os, pathlib
cache = pathlib.Path(".numerai-nodes") / "probe"
cache.mkdir(parents=True)
(cache / "written").write_text("ok")
print(json.dumps({{
    "uid": os.getuid(),
    "cwd": os.getcwd(),
    "dev": [m for m in {_DEV_MODULES!r} if importlib.util.find_spec(m)],
    "files": sorted(p.name for p in pathlib.Path(".").iterdir()),
}}))
"""


def _run(image: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*podman.run_args(), "--rm", image, *command],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_image_runs_as_its_own_user_writes_its_cache_and_holds_no_dev_tools(node_image):
    done = _run(node_image, "python", "-c", _PROBE)
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout)

    assert probe["uid"] == 1000, "the node must not run as root"
    assert probe["cwd"] == "/app"
    assert probe["dev"] == [], f"development tools in the image: {probe['dev']}"
    # The build context leaves out local state and development files (.dockerignore).
    assert {"flows", "models", "deployments", "prefect.yaml", "nodes.yaml"} <= set(probe["files"])
    leaked = {".git", ".numerai-nodes", ".mypy_cache", "tests", "benchmarks", ".env"}
    assert not leaked & (set(probe["files"]) - {".numerai-nodes"}), probe["files"]


def test_the_image_starts_the_cli(node_image):
    done = _run(node_image)  # the image's CMD: `numerai-nodes --help`

    assert done.returncode == 0, done.stderr
    assert "numerai-nodes" in done.stdout and "round" in done.stdout


# --- a node in the image, under a size preset's memory -----------------------------------------
# The sandbox's `bench` data: 500,000 training rows x 500 int8 features (the `all` set).
BENCH_ROWS, BENCH_FEATURES = 500_000, 500
MODEL = "sandbox_model"


@pytest.fixture(scope="module")
def bench_sandbox(tmp_path_factory):
    from sandbox.runner import Sandbox

    with Sandbox(tmp_path_factory.mktemp("bench"), size="bench", models=[MODEL]) as sandbox:
        yield sandbox


def _node_run(image, sandbox, prefect_api, trigger_id: str, memory_mib: int, cpus: float):
    """`numerai-nodes run tournament` in a fresh container limited like a Fargate task."""
    env = {
        "PREFECT_API_URL": prefect_api,
        "NUMERAI_API_URL": sandbox.url,
        "NUMERAI_PUBLIC_ID": sandbox.public_id,
        "NUMERAI_SECRET_KEY": sandbox.secret_key,
    }
    limits = [
        "--memory",
        f"{memory_mib}m",
        "--memory-swap",
        f"{memory_mib}m",
        "--cpus",
        f"{cpus:g}",
    ]
    command = ["numerai-nodes", "run", "tournament", "--model", MODEL, "--feature-set", "all"]
    command += ["--param", "n_estimators=20", "--no-score", "--trigger-id", trigger_id]
    return subprocess.run(
        [*podman.run_args(), "--rm", *limits]
        + [arg for name in env for arg in ("--env", name)]
        + [image, *command],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tempfile.gettempdir(),  # where conmon would leave its `oom` file after a kill
    )


def test_a_node_trains_and_submits_on_bench_data_within_the_gen_s_preset(
    node_image, bench_sandbox, prefect_server
):
    vcpu, memory_mib = machine("gen-s", ECS)
    # What the sizing table says: the bench training set fits in gen-s.
    needed = training_mib(BENCH_ROWS, BENCH_FEATURES, TRAIN_BYTES_PER_VALUE)
    assert needed < memory_mib

    done = _node_run(node_image, bench_sandbox, prefect_server, "gen-s-1", memory_mib, vcpu)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    submitted = [s for s in bench_sandbox.submissions() if s.trigger_id == "gen-s-1"]
    assert len(submitted) == 1


def test_too_little_memory_for_the_training_set_is_named_before_training_and_nothing_is_sent(
    node_image, bench_sandbox, prefect_server
):
    needed = training_mib(BENCH_ROWS, BENCH_FEATURES, TRAIN_BYTES_PER_VALUE)
    too_little = needed * 3 // 4

    done = _node_run(node_image, bench_sandbox, prefect_server, "too-little", too_little, 1)

    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]  # refused by the node, not killed (137)
    assert "Out of memory at this machine" in output
    assert f"{BENCH_ROWS:,} rows x {BENCH_FEATURES:,} features" in output
    assert "Traceback" not in done.stderr
    assert [s for s in bench_sandbox.submissions() if s.trigger_id == "too-little"] == []


# --- the example R model (examples/r_model), in its own image over the node's -----------------
R_MODEL = "r_model"
_R_NODE = """
import sys
from flows.command import CommandSpec
from flows.tournament import TournamentNode, tournament_node

run = ["Rscript", "examples/r_model/model.R"]
command = CommandSpec(
    train=[*run, "train"], predict=[*run, "predict"],
    files=["examples/r_model/model.R"], data_format="csv",
)
node = TournamentNode(numerai_model=sys.argv[1], data_version="v5.2", command=command)
tournament_node(node, trigger_id=sys.argv[2])
"""


@pytest.fixture(scope="module")
def r_image(node_image) -> podman.Build:
    """examples/r_model/Dockerfile built over the node image (R from Debian's packages)."""
    dockerfile = podman.PROJECT / "examples" / "r_model" / "Dockerfile"
    return podman.build(
        "localhost/numerai-nodes-r:test",
        dockerfile=dockerfile,
        build_args={"NODE_IMAGE": node_image},
    )


@pytest.fixture(scope="module")
def r_sandbox(tmp_path_factory):
    from sandbox.runner import Sandbox

    with Sandbox(tmp_path_factory.mktemp("r"), size="tiny", models=[R_MODEL]) as sandbox:
        yield sandbox


def test_the_r_example_trains_predicts_and_submits_once_from_its_own_image(
    r_image, r_sandbox, prefect_server
):
    env = {
        "PREFECT_API_URL": prefect_server,
        "NUMERAI_API_URL": r_sandbox.url,
        "NUMERAI_PUBLIC_ID": r_sandbox.public_id,
        "NUMERAI_SECRET_KEY": r_sandbox.secret_key,
    }
    done = subprocess.run(
        [*podman.run_args(), "--rm"]
        + [arg for name in env for arg in ("--env", name)]
        + [r_image.image, "python", "-c", _R_NODE, R_MODEL, "r-1"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tempfile.gettempdir(),
    )

    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "[train] trained on" in output and "[predict] predicted" in output  # R's own lines
    (submission,) = r_sandbox.submissions(R_MODEL)
    assert submission.trigger_id == "r-1"
    assert set(submission.ids) == set(r_sandbox.live_ids())
