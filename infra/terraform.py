"""The Terraform CLI for a cloud place: run in `<home>/infra/<place>`, where it keeps its state.

What differs between places (the folder, the setting names in messages, the error classes) is a
`TerraformPlace`; running the CLI, copying the configuration and reading outputs are shared.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flows.settings import load_settings
from infra.cloud import (
    CloudError,
    PlaceStatus,
    key_env_names,
    missing_stack_status,
    stack_status,
)
from infra.pools import read_pool_template

Progress = Callable[[str], None]
_TAIL_LINES = 15


def no_progress(line: str) -> None:
    """A progress callback that drops every line."""


@dataclass(frozen=True)
class TerraformPlace:
    """One place's Terraform: its folder under the home, its commands and its error classes."""

    name: str  # <home>/infra/<name>
    env_prefix: str  # of the settings the messages name, e.g. NUMERAI_NODES_AZURE_
    up_command: str
    causes: str  # what usually makes a command fail there, for the message
    missing: type[CloudError]
    config_missing: type[CloudError]
    failed: type[CloudError]
    settings_error: type[CloudError]

    def state_dir(self) -> Path:
        """Where Terraform runs and keeps its state: `<home>/infra/<name>`, never the sources."""
        return (load_settings().home / "infra" / self.name).resolve()


class TerraformCli:
    """The Terraform CLI in a place's working directory; output lines go to `progress`.

    Before a command that reads the configuration, the `*.tf` files of `config_dir` are copied
    into the working directory, so the state and `.terraform/` stay out of the sources.
    """

    def __init__(
        self,
        place: TerraformPlace,
        binary: str,
        config_dir: Path,
        progress: Progress = no_progress,
        work_dir: Path | None = None,
    ):
        self.place = place
        self.binary = binary
        self.config_dir = config_dir
        self.progress = progress
        self.work_dir = (work_dir or place.state_dir()).resolve()

    def init(self) -> None:
        self.run("init", "-input=false", "-no-color")

    def apply(self, variables: Mapping[str, str], *extra: str) -> None:
        self.run("apply", "-auto-approve", "-input=false", "-no-color", *_vars(variables), *extra)

    def destroy(self, variables: Mapping[str, str]) -> None:
        self.run("destroy", "-auto-approve", "-input=false", "-no-color", *_vars(variables))

    def adopt(self, address: str, resource_id: str, variables: Mapping[str, str]) -> None:
        """Bring an existing resource under the state (`terraform import`)."""
        self.run("import", "-input=false", "-no-color", *_vars(variables), address, resource_id)

    def forget(self, *addresses: str) -> None:
        """Drop resources from the state, so `destroy` leaves them in the cloud (`state rm`)."""
        self.run("state", "rm", *addresses, configured=False)

    def outputs(self) -> dict[str, str]:
        """The stack's outputs as strings; empty when there is no state yet."""
        if not self.work_dir.is_dir():
            return {}
        text = self.run("output", "-json", "-no-color", capture=True, configured=False)
        try:
            raw = json.loads(text or "{}")
        except json.JSONDecodeError:
            raise self.place.failed(
                f"`terraform output -json` printed no JSON. Run `{self.place.up_command}` again."
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
            raise self.place.failed(
                f"`terraform {args[0]}` failed with exit code {process.returncode}"
                + (f":\n{last}\n" if last else ". ")
                + f"Fix the cause above ({self.place.causes}), then run "
                f"`{self.place.up_command}` again."
            )
        return out

    def _binary(self) -> str:
        binary = shutil.which(self.binary)
        if binary is None:
            raise self.place.missing(
                f"Terraform was not found ('{self.binary}'). Install Terraform 1.5 or newer "
                "(developer.hashicorp.com/terraform/install), or set "
                f"{self.place.env_prefix}TERRAFORM to its path, then run "
                f"`{self.place.up_command}` again."
            )
        return binary

    def _env(self) -> dict[str, str]:
        # The keys go to the cloud's secret store through its API: Terraform never sees them,
        # nor the Prefect API key.
        hidden = {*key_env_names(), "PREFECT_API_KEY"}
        env = {name: value for name, value in os.environ.items() if name not in hidden}
        return env | {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}

    def _copy_configuration(self) -> None:
        source = self.config_dir.resolve()
        files = sorted(source.glob("*.tf"))
        if not files:
            raise self.place.config_missing(
                f"{source} holds no Terraform configuration (*.tf). Unset "
                f"{self.place.env_prefix}CONFIG_DIR to use the one numerai-nodes ships, or point "
                "it at yours."
            )
        if self.work_dir == source:
            raise self.place.settings_error(
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


def outputs_or_empty(terraform: TerraformCli) -> dict[str, str]:
    """The outputs of the applied stack; empty when it was never applied (or was destroyed)."""
    try:
        return terraform.outputs()
    except terraform.place.failed:
        # No state, or a directory never initialised: there is no stack yet.
        return {}


def terraform_status(
    terraform: TerraformCli,
    label: str,
    pool_name: str,
    missing_outputs: Callable[[dict[str, str]], list[str]],
    pool_mismatches: Callable[[dict[str, Any], dict[str, str]], list[str]],
) -> PlaceStatus:
    """A Terraform place's status: its outputs, and whether pool `pool_name` matches them.

    `label` names the stack in messages ("GCP"); `pool_mismatches(template, outputs)` lists
    the pool's variables that differ from what the outputs say.
    """
    place = terraform.place
    where = f"Terraform state in {terraform.work_dir}"
    outputs = outputs_or_empty(terraform)
    template = read_pool_template(pool_name)
    if not outputs:
        return missing_stack_status(
            place.name,
            where,
            pool_name=pool_name,
            pool_exists=template is not None,
            problem=f"no {label} stack is applied ({where}); `{place.up_command}` creates it",
        )
    missing = missing_outputs(outputs)
    return stack_status(
        place.name,
        where,
        pool_name=pool_name,
        pool_template=template,
        stack_state="applied",
        outputs=outputs,
        problems=[f"the stack's outputs lack {', '.join(missing)}"] if missing else [],
        mismatches=None if missing else (lambda found: pool_mismatches(found, outputs)),
    )


def _vars(variables: Mapping[str, str]) -> list[str]:
    return [f"-var={name}={value}" for name, value in variables.items()]


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
