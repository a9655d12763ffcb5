"""What the local stack knows of itself: stack.json in the run directory, and what status shows."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flows.errors import NodeError
from infra.local.processes import ProcessRecord

STACK_FILE = "stack.json"


class StackError(NodeError, RuntimeError):
    """The local stack could not start or stop; the message names the cause and the log."""


@dataclass(frozen=True)
class ProcessStatus:
    """One process of the stack, as `status` reports it."""

    name: str
    pid: int
    alive: bool
    url: str | None
    log: Path

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "log": str(self.log)}


@dataclass(frozen=True)
class StackInfo:
    """Where the running stack listens, and what it registered. Holds no secrets."""

    run_dir: Path
    prefect_api_url: str
    ui_url: str
    gateway_url: str
    sandbox_url: str | None
    database: str
    work_pool: str
    processes: list[ProcessStatus]
    webhooks: dict[str, str] = field(default_factory=dict)  # node -> masked URL
    startup_seconds: dict[str, float] = field(default_factory=dict)
    paused_schedules: list[str] = field(default_factory=list)  # fallback schedules turned off
    work_pools: list[str] = field(default_factory=list)  # every process pool it serves

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "run_dir": str(self.run_dir),
            "processes": [process.to_json() for process in self.processes],
        }


def read_state(path: Path) -> dict[str, Any] | None:
    """stack.json's content; None when there is none."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise StackError(
            f"{path} is damaged ({exc}). Stop the processes it lists by hand, then delete it."
        ) from None


def write_state(path: Path, state: dict[str, Any]) -> None:
    """Replace stack.json atomically (mode 0600): a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)


def processes(state: dict[str, Any]) -> dict[str, ProcessRecord]:
    """The processes a state records, by name, in start order."""
    return {name: ProcessRecord(**raw) for name, raw in (state.get("processes") or {}).items()}
