"""The local stack that the round-day and recovery tests share: `numerai-nodes up --sandbox`."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from deployments.fleet_yaml import sync
from infra.local.stack import LocalStack
from tests.integration.postgres import Postgres

PROJECT = Path(__file__).parents[2]
MODEL = "my_model"
# What a project directory needs besides its prefect.yaml and nodes.yaml: the code.
_CODE = ("flows", "models", "deployments", "infra", "sandbox")


@dataclass
class Stack:
    """The running stack, its settings' environment for CLI subprocesses, and ways to look in."""

    stack: LocalStack
    env: dict[str, str]
    ports: dict[str, int]
    home: Path
    database: Postgres | None
    up_output: str

    def url(self, name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[name]}/{path}"

    def get(self, path: str):
        answer = httpx.get(self.url("prefect", f"api/{path}"), timeout=30)
        answer.raise_for_status()
        return answer.json()

    def api(self, path: str, payload: dict | None = None):
        return httpx.post(self.url("prefect", f"api/{path}"), json=payload or {}, timeout=30)

    @property
    def webhook(self) -> str | None:
        state = httpx.get(self.url("sandbox", "_sandbox/state"), timeout=10).json()
        return next(m["webhook"] for m in state["models"] if m["name"] == MODEL)

    def runs(self, trigger_id: str) -> list[dict]:
        runs = self.api("flow_runs/filter", {"limit": 200}).json()
        return [r for r in runs if r["parameters"].get("trigger_id") == trigger_id]

    def submissions(self, trigger_id: str) -> list[dict]:
        found = httpx.get(self.url("sandbox", "_sandbox/submissions"), timeout=10).json()
        return [s for s in found if s["trigger_id"] == trigger_id]

    def wait_completed(self, trigger_id: str, timeout: float = 240) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(trigger_id)
            if runs and runs[0]["state_type"] in ("COMPLETED", "FAILED", "CRASHED"):
                return runs[0]
            time.sleep(1)
        raise AssertionError(f"no finished run for {trigger_id}: {self.runs(trigger_id)}")

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "deployments.cli", *args],
            env=self.env, cwd=PROJECT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


def logs(stack: LocalStack) -> str:
    """The end of every stack process's log, for a failed assertion."""
    return "".join(f"\n--- {p.name}:\n{stack.log_tail(p.name, 30)}" for p in stack.status())


def fleet_declarations(nodes: dict[str, str], specs: dict[str, dict]) -> str:
    """nodes.yaml of a fleet that predicts on pool `predict` and trains on pool `train`: each
    node (`name: spec`) is a Numerai model of its own name, and never trains on round day."""
    document = {
        "defaults": {"pool": "predict", "train": False, "training": {"pool": "train"}},
        "specs": specs,
        "nodes": {name: {"spec": spec} for name, spec in nodes.items()},
    }
    return yaml.safe_dump(document, sort_keys=False)


def fleet_project(root: Path, declarations: str) -> Path:
    """A project directory of its own: the code linked, `declarations` as nodes.yaml, and the
    repository's prefect.yaml with nodes.yaml's deployments generated below its mark."""
    root.mkdir(parents=True)
    for name in _CODE:
        (root / name).symlink_to(PROJECT / name)
    (root / "nodes.yaml").write_text(declarations)
    (root / "prefect.yaml").write_text((PROJECT / "prefect.yaml").read_text())
    sync(root / "prefect.yaml", root / "nodes.yaml")
    return root
