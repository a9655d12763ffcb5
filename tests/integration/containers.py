"""Where the cloud fakes start a task's container: a real OCI container (podman) or a local process.

A fake of ECS or Cloud Run hands over a `Container`: the image, command, environment, CPU and
memory the platform would give it. `Podman` runs it in the project's real image, built from the
unchanged Dockerfile (`tests/integration/podman.py`); `LocalProcesses` runs the command in the
project directory with a fresh home, for machines where containers cannot run. Either way the
container's end is an exit code, 137 after a SIGKILL as Docker reports an out-of-memory kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psutil

from tests.integration import podman

# Docker reports a container killed by signal N as exit code 128 + N (137 after SIGKILL, an OOM).
SIGNAL_EXIT_BASE = 128


@dataclass(frozen=True)
class Container:
    """One container as a platform starts it: from `image`, `command` with `env`, within limits."""

    name: str
    image: str
    command: Sequence[str]
    env: Mapping[str, str]
    cpus: float | None = None
    memory_mib: int | None = None
    # Host files the container reads at the same path (a test CA bundle, a test network's).
    files: Sequence[Path] = field(default_factory=tuple)


class Launcher(Protocol):
    """Starts containers and kills them."""

    kind: str

    def start(self, container: Container, log_path: Path) -> subprocess.Popen[bytes]: ...

    def kill(self, container: Container, process: subprocess.Popen[bytes]) -> None: ...


def exit_code(returncode: int) -> int:
    """A process's return code as a container runtime reports it (-9 -> 137)."""
    return SIGNAL_EXIT_BASE - returncode if returncode < 0 else returncode


class Podman:
    """Real containers: `podman run` of the task's image, network host, the task's CPU and memory.

    The environment reaches podman by name (`--env NAME`), so no value (a Numerai key from a
    secret) is ever on a command line.
    """

    kind = "podman"

    def start(self, container: Container, log_path: Path) -> subprocess.Popen[bytes]:
        args = [*podman.run_args(), "--rm", "--name", container.name]
        if container.cpus:
            args += ["--cpus", f"{container.cpus:g}"]
        if container.memory_mib:
            # No swap beyond the limit: the limit is the machine's memory, as on Fargate.
            limit = f"{container.memory_mib}m"
            args += ["--memory", limit, "--memory-swap", limit]
        for path in container.files:
            args += ["--volume", f"{path}:{path}:ro"]
        for name in container.env:
            args += ["--env", name]
        args += [container.image, *container.command]
        with log_path.open("wb") as log:
            return subprocess.Popen(
                args,
                env={**os.environ, **container.env},
                cwd=log_path.parent,  # conmon writes a file `oom` there after an OOM kill
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, container: Container, process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            podman.kill(container.name)


class LocalProcesses:
    """The command as a local process in `workdir`, with a fresh home under `homes` per container.

    `base_env` is what the image would provide (PATH to this interpreter's scripts, a locale).
    """

    kind = "process"

    def __init__(self, workdir: Path, homes: Path, base_env: Mapping[str, str] | None = None):
        self.workdir = workdir
        self.homes = homes
        self.base_env = {
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.defpath]),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            **(base_env or {}),
        }

    def home_of(self, container: Container) -> Path:
        return self.homes / container.name

    def start(self, container: Container, log_path: Path) -> subprocess.Popen[bytes]:
        home = self.home_of(container)
        home.mkdir(parents=True, exist_ok=True)
        # A fresh container: nothing on its disk from earlier runs.
        fresh = {
            "HOME": str(home),
            "PREFECT_HOME": str(home / "prefect"),
            "NUMERAI_NODES_HOME": str(home / "nodes"),
        }
        with log_path.open("wb") as log:
            return subprocess.Popen(
                list(container.command),
                cwd=self.workdir,
                env={**self.base_env, **container.env, **fresh},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, container: Container, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and all its descendants at once, as an OOM kill ends a container.

        Killing the process group is not enough: Prefect starts the flow engine in its own session.
        """
        try:
            root = psutil.Process(process.pid)
            processes = [*root.children(recursive=True), root]
        except psutil.NoSuchProcess:
            return
        for each in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                each.send_signal(signal.SIGKILL)
