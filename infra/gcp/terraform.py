"""The Terraform CLI for the GCP stack, in `<home>/infra/gcp` (shared runner, GCP errors)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from infra.gcp.errors import (
    UP_COMMAND,
    GcpSettingsError,
    TerraformConfigMissing,
    TerraformFailed,
    TerraformMissing,
)
from infra.gcp.settings import GcpSettings
from infra.terraform import Progress, TerraformCli, TerraformPlace, no_progress

__all__ = ["GCP", "Progress", "Terraform", "no_progress", "stack_variables"]

GCP = TerraformPlace(
    name="gcp",
    env_prefix="NUMERAI_NODES_GCP_",
    up_command=UP_COMMAND,
    causes="credentials, project, quota",
    missing=TerraformMissing,
    config_missing=TerraformConfigMissing,
    failed=TerraformFailed,
    settings_error=GcpSettingsError,
)


class Terraform(TerraformCli):
    """The Terraform CLI in `<home>/infra/gcp`; give every command `stack_variables(...)`."""

    def __init__(
        self, settings: GcpSettings, progress: Progress = no_progress, work_dir: Path | None = None
    ):
        super().__init__(GCP, settings.terraform, settings.config_dir, progress, work_dir)
        self.settings = settings


def stack_variables(
    project: str,
    region: str,
    *,
    force_destroy: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The stack's Terraform variables (never a secret: they show in the process list and the
    state)."""
    variables = {"project": project, "region": region}
    if force_destroy:
        variables["force_destroy"] = "true"
    return variables | dict(extra or {})
