"""The node image for the tests, built with podman from the project's unchanged Dockerfile.

CI machines have no Docker engine and reach no container registry, only the package registries.
So the Dockerfile's two base images are stand-ins made from Debian packages: the Python image is
a minimal Debian with python3 (mmdebstrap), the uv image holds the `uv` and `uvx` binaries that
run these tests. They are passed as the Dockerfile's build arguments, under names of their own,
so a real `python:3.11-slim` is never shadowed. Podman keeps images and build layers between
runs: on a kept machine only what changed is built again.

Three rules of this kind of machine: crun fails on its cgroups (use runc); no rlimit may be
raised above the hard limit (pass podman's ulimits from ours); and the package registry is reached
through a proxy whose CA only the host's bundle holds. The build's `RUN` steps get that bundle and
a uv config that trusts it as mounts, which are not part of any layer: the image stays as the
Dockerfile makes it.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

PROJECT = Path(__file__).parents[2]
IMAGE = "localhost/numerai-nodes:test"
PYTHON_STAND_IN = "localhost/numerai-nodes-test/python:3.11-slim"
UV_STAND_IN = "localhost/numerai-nodes-test/uv:0.13"
_DEBIAN_PACKAGES = "python3,ca-certificates,libgomp1"
_BUILD_TIMEOUT_SECONDS = 1200
_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# One build at a time on the machine: two test workers starting container modules together
# would each build the same layers; the second now waits and finds them in podman's cache.
_BUILD_LOCK = Path(tempfile.gettempdir()) / "numerai-nodes-podman-build.lock"


def podman() -> list[str]:
    return ["podman", "--runtime", "runc"]


def ulimits() -> list[str]:
    """podman's --ulimit flags at our own hard limits (its defaults may exceed them)."""
    flags = []
    # nproc above 4096 was refused here even under the hard limit ("error setting rlimit type 6").
    for name, limit, most in (
        ("nofile", resource.RLIMIT_NOFILE, 65536),
        ("nproc", resource.RLIMIT_NPROC, 4096),
    ):
        _, hard = resource.getrlimit(limit)
        value = most if hard == resource.RLIM_INFINITY else min(hard, most)
        flags += ["--ulimit", f"{name}={value}:{value}"]
    return flags


def run_args() -> list[str]:
    """`podman run` with this machine's runtime, ulimits and the host's network (loopback fakes)."""
    return [*podman(), "run", "--network", "host", *ulimits()]


def unavailable() -> str | None:
    """Why containers cannot run on this machine, or None when they can."""
    for program in ("podman", "runc"):
        if shutil.which(program) is None:
            return (
                f"{program} is not installed: `apt-get install podman buildah runc mmdebstrap` "
                "(.ci/run does) to run the container tests"
            )
    info = subprocess.run([*podman(), "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        return f"podman cannot run here: {info.stderr.strip()[-300:]}"
    return None


def _exists(image: str) -> bool:
    return subprocess.run([*podman(), "image", "exists", image]).returncode == 0


def _uv_binaries() -> list[Path]:
    """The uv and uvx binaries running these tests (`uv run` sets UV); a shim is not a binary."""
    found = os.environ.get("UV") or shutil.which("uv") or ""
    binaries = [Path(found), Path(found).with_name("uvx")]
    for binary in binaries:
        if not binary.is_file() or binary.read_bytes()[:4] != b"\x7fELF":
            raise RuntimeError(f"no uv binary at {binary}: run the tests with `uv run pytest`")
    return binaries


def ensure_base_images() -> None:
    """Make the two stand-in base images unless podman already holds them."""
    if not _exists(UV_STAND_IN):
        with tempfile.TemporaryDirectory() as scratch:
            archive = Path(scratch) / "uv.tar"
            binaries = _uv_binaries()
            _run(["tar", "-C", str(binaries[0].parent), "-cf", str(archive), "uv", "uvx"])
            _run([*podman(), "import", str(archive), UV_STAND_IN])
    if not _exists(PYTHON_STAND_IN):
        if shutil.which("mmdebstrap") is None:
            raise RuntimeError("mmdebstrap is not installed: `apt-get install mmdebstrap`")
        with tempfile.TemporaryDirectory() as scratch:
            rootfs = Path(scratch) / "rootfs.tar"
            debian = ["--variant=minbase", f"--include={_DEBIAN_PACKAGES}", "--quiet"]
            _run(["mmdebstrap", *debian, "bookworm", str(rootfs)])
            _run([*podman(), "import", str(rootfs), PYTHON_STAND_IN])


@dataclass(frozen=True)
class Build:
    """The built image: its name, size in bytes and how long the build took."""

    image: str
    size_bytes: int
    seconds: float


def build(
    image: str = IMAGE,
    *,
    project: Path = PROJECT,
    dockerfile: Path | None = None,
    build_args: dict[str, str] | None = None,
) -> Build:
    """Build the project's Dockerfile as `image`, from the stand-in bases, with the host network
    (the image installs from the package registry). With `dockerfile`, that file instead, with
    its directory as the context and `build_args` (e.g. an example's image over the node's)."""
    if dockerfile is None:
        build_args = {"PYTHON_IMAGE": PYTHON_STAND_IN, "UV_IMAGE": UV_STAND_IN} | (build_args or {})
        context = [str(project)]
    else:
        context = ["--file", str(dockerfile), str(dockerfile.parent)]
    bases = [f"{name}={value}" for name, value in (build_args or {}).items()]
    lock = FileLock(_BUILD_LOCK, timeout=2 * _BUILD_TIMEOUT_SECONDS)
    with lock, tempfile.TemporaryDirectory() as scratch:
        if dockerfile is None:
            ensure_base_images()
        started = time.monotonic()
        uv_config = Path(scratch) / "uv.toml"
        uv_config.write_text("native-tls = true\n")  # trust the system bundle mounted below
        mounts = [f"{uv_config}:/etc/uv/uv.toml:ro"]
        if _CA_BUNDLE.is_file():
            mounts.append(f"{_CA_BUNDLE}:{_CA_BUNDLE}:ro")
        _run(
            [*podman(), "build", "--network", "host", *ulimits(), "--tag", image]
            + [arg for base in bases for arg in ("--build-arg", base)]
            + [arg for mount in mounts for arg in ("--volume", mount)]
            + context,
            timeout=_BUILD_TIMEOUT_SECONDS,
        )
    seconds = time.monotonic() - started
    size = _run([*podman(), "image", "inspect", image, "--format", "{{.Size}}"])
    return Build(image, int(size.strip()), seconds)


def tag(image: str, name: str) -> None:
    """Give `image` another name (the registry path a task definition or a job names)."""
    _run([*podman(), "tag", image, name])


def kill(name: str) -> None:
    """SIGKILL a running container: `podman run` then exits 137, as after an out-of-memory kill."""
    subprocess.run([*podman(), "kill", "--signal", "KILL", name], capture_output=True, timeout=60)


def _run(args: list[str], timeout: float = 600) -> str:
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(args[:6])} …` failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return done.stdout
