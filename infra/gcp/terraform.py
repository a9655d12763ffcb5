"""The Terraform CLI, run in a working directory under the project's home that holds its state."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flows.settings import load_settings
from infra.cloud import key_env_names
from infra.gcp.errors import (
    UP_COMMAND,
    GcpSettingsError,
    TerraformConfigMissing,
    TerraformFailed,
    TerraformMissing,
)
from infra.gcp.settings import GcpSettings

Progress = Callable[[str], None]
_TAIL_LINES = 15


def no_progress(line: str) -> None:
    """A progress callback that drops every line."""


def state_dir() -> Path:
    """Where Terraform runs and keeps its state: `<home>/infra/gcp`, never the source tree."""
    return (load_settings().home / "infra" / "gcp").resolve()


class Terraform:
    """The Terraform CLI in the stack's working directory; output lines go to `progress`.

    Before a command that reads the configuration, the `*.tf` files of `settings.config_dir` are
    copied into the working directory, so the state and `.terraform/` stay out of the sources.
    """

    def __init__(
        self, settings: GcpSettings, progress: Progress = no_progress, work_dir: Path | None = None
    ):
        self.settings = settings
        self.progress = progress
        self.work_dir = (work_dir or state_dir()).resolve()

    def init(self) -> None:
        self.run("init", "-input=false", "-no-color")

    def apply(
        self,
        project: str,
        region: str,
        *extra: str,
        force_destroy: bool = False,
        variables: Mapping[str, str] | None = None,
    ) -> None:
        """`terraform apply` with the project, region and further `variables` (no secret ever:
        they show in the process list and the state)."""
        given = _vars(project, region, force_destroy, variables)
        self.run("apply", "-auto-approve", "-input=false", "-no-color", *given, *extra)

    def destroy(self, project: str, region: str, *, force_destroy: bool = False) -> None:
        variables = _vars(project, region, force_destroy)
        self.run("destroy", "-auto-approve", "-input=false", "-no-color", *variables)

    def adopt(self, address: str, resource_id: str, project: str, region: str) -> None:
        """Bring an existing resource under the state (`terraform import`)."""
        variables = _vars(project, region, False)
        self.run("import", "-input=false", "-no-color", *variables, address, resource_id)

    def forget(self, address: str) -> None:
        """Drop a resource from the state, so `destroy` leaves it in the cloud (`state rm`)."""
        self.run("state", "rm", address, configured=False)

    def outputs(self) -> dict[str, str]:
        """The stack's outputs as strings; empty when there is no state yet."""
        if not self.work_dir.is_dir():
            return {}
        text = self.run("output", "-json", "-no-color", capture=True, configured=False)
        try:
            raw = json.loads(text or "{}")
        except json.JSONDecodeError:
            raise TerraformFailed(
                f"`terraform output -json` printed no JSON. Run `{UP_COMMAND}` again."
            ) from None
        return {name: _as_text(entry.get("value")) for name, entry in raw.items()}

    def run(self, *args: str, capture: bool = False, configured: bool = True) -> str:
        """Run `terraform <args>`: stream its lines to progress, or with `capture` return stdout.

        `configured` copies the configuration into the working directory first.
        """
        binary = self._binary()
        if configured:
            self._copy_configuration()
        tail: list[str] = []
        out = ""
        with subprocess.Popen(
            [binary, *args],
            cwd=self.work_dir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if not capture else subprocess.PIPE,
            text=True,
        ) as process:
            if capture:
                out, err = process.communicate()
                tail = err.splitlines()[-_TAIL_LINES:]
            else:
                assert process.stdout is not None
                for raw in process.stdout:
                    line = raw.rstrip("\n")
                    self.progress(line)
                    tail = [*tail[-(_TAIL_LINES - 1) :], line]
        if process.returncode != 0:
            last = "\n".join(line for line in tail if line.strip())
            raise TerraformFailed(
                f"`terraform {args[0]}` failed with exit code {process.returncode}"
                + (f":\n{last}\n" if last else ". ")
                + f"Fix the cause above (credentials, project, quota), then run `{UP_COMMAND}` "
                "again."
            )
        return out

    def _binary(self) -> str:
        binary = shutil.which(self.settings.terraform)
        if binary is None:
            raise TerraformMissing(
                f"Terraform was not found ('{self.settings.terraform}'). Install Terraform 1.5 or "
                "newer (developer.hashicorp.com/terraform/install), or set "
                f"NUMERAI_NODES_GCP_TERRAFORM to its path, then run `{UP_COMMAND}` again."
            )
        return binary

    def _env(self) -> dict[str, str]:
        # The keys go to Secret Manager through its API: Terraform never sees them.
        hidden = {*key_env_names(), "PREFECT_API_KEY"}
        env = {name: value for name, value in os.environ.items() if name not in hidden}
        return env | {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}

    def _copy_configuration(self) -> None:
        source = self.settings.config_dir.resolve()
        files = sorted(source.glob("*.tf"))
        if not files:
            raise TerraformConfigMissing(
                f"{source} holds no Terraform configuration (*.tf). Unset "
                "NUMERAI_NODES_GCP_CONFIG_DIR to use the one numerai-nodes ships, or point it at "
                "yours."
            )
        if self.work_dir == source:
            raise GcpSettingsError(
                f"Terraform would keep its state in its configuration, {source}. Set "
                "NUMERAI_NODES_HOME to a directory outside the source tree."
            )
        self.work_dir.mkdir(parents=True, exist_ok=True)
        names = {path.name for path in files}
        for stale in self.work_dir.glob("*.tf"):
            if stale.name not in names:
                stale.unlink()
        for path in files:
            shutil.copyfile(path, self.work_dir / path.name)


def _vars(
    project: str, region: str, force_destroy: bool, extra: Mapping[str, str] | None = None
) -> list[str]:
    variables = [f"-var=project={project}", f"-var=region={region}"]
    if force_destroy:
        variables.append("-var=force_destroy=true")
    return variables + [f"-var={name}={value}" for name, value in (extra or {}).items()]


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
