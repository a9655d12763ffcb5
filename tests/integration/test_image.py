"""The node image, built from the unchanged Dockerfile and run with podman: what it holds and runs.

The cloud worker tests (test_ecs_worker.py, test_cloud_run_worker.py) run the node's flow runs in
this image; these check the image itself.
"""

from __future__ import annotations

import json
import subprocess

import pytest

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
