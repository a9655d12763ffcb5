"""The image installs `uv sync --frozen --no-dev`: the lock's runtime set must run every node."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
# Packages the image holds by name (distribution) and the modules code imports them as.
_RUNTIME_NEEDS = {"prefect", "prefect-aws", "prefect-gcp", "numerapi", "numerai-tools", "lightgbm"}
_DEV_ONLY = {"pytest", "moto", "cfn-lint", "python-hcl2", "pysocks", "ruff"}
_DEV_MODULES = {"pytest", "moto", "cfnlint", "hcl2", "socks", "tests"}
_IMAGE_PACKAGES = ("flows", "models", "deployments", "sandbox")  # the code the image holds


@pytest.fixture(scope="module")
def runtime_lock() -> set[str]:
    """Distribution names `uv sync --frozen --no-dev` installs, read from uv.lock via uv."""
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    exported = subprocess.run(
        [uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        re.split(r"[=<>\[ ;]", line, maxsplit=1)[0].lower()
        for line in exported.splitlines()
        if line and not line.startswith((" ", "#"))
    }


def test_the_image_gets_the_cloud_workers_and_none_of_the_dev_tools(runtime_lock):
    assert runtime_lock >= _RUNTIME_NEEDS, _RUNTIME_NEEDS - runtime_lock
    assert not (_DEV_ONLY & runtime_lock), _DEV_ONLY & runtime_lock


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_code_in_the_image_imports_no_dev_only_package():
    offenders = {
        str(path.relative_to(ROOT)): sorted(_imports(path) & _DEV_MODULES)
        for package in _IMAGE_PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if _imports(path) & _DEV_MODULES
    }
    assert not offenders, offenders
