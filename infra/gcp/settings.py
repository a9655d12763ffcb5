"""Where the GCP stack lives and how it is built: the settings of `infra gcp`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from deployments.presets import Preset

# Package data: the Terraform configuration sits beside this module, in an installed package too.
CONFIG_DIR = Path(__file__).resolve().parent
RESULTS_BLOCK = "numerai-nodes-results"


class GcpSettings(BaseSettings):
    """Where the GCP stack lives and how it is built; env prefix NUMERAI_NODES_GCP_."""

    model_config = SettingsConfigDict(
        env_prefix="NUMERAI_NODES_GCP_", env_file=".env", extra="ignore"
    )

    project: str | None = Field(
        None,
        description="GCP project ID. Unset: the project of the existing stack, else the one of "
        "Application Default Credentials.",
    )
    region: str = Field(
        "us-central1", description="Region of the jobs, the registry and the bucket."
    )
    pool_name: str = Field("cloud-run", description="The `cloud-run-v2` work pool the stack owns.")
    terraform: str = Field("terraform", description="Terraform binary: a name on PATH or a path.")
    config_dir: Path = Field(
        CONFIG_DIR,
        description="The Terraform configuration (*.tf) to apply. It is copied into "
        "<NUMERAI_NODES_HOME>/infra/gcp, where Terraform runs and keeps its state.",
    )
    image_tag: str = Field("latest", description="Tag of the node image the pool runs.")
    preset: Preset = Field("gen-m", description="Size preset of the pool's default CPU and memory.")
    results_block: str = Field(
        RESULTS_BLOCK, description="Name of the GcsBucket block that holds the flow results."
    )
    credentials_block: str | None = Field(
        None,
        description="GcpCredentials block the worker uses. Unset: Application Default Credentials.",
    )
    push_credentials_block: str = Field(
        "numerai-nodes-cloud-run-push",
        description="Name of the GcpCredentials block a cloud-run-v2:push pool starts jobs with.",
    )
    push_key_file: Path | None = Field(
        None,
        description="JSON key file of the worker service account, for `up --push`: read into "
        "the push pool's GcpCredentials block (then delete the file).",
    )
    secret_manager_url: str = Field(
        "https://secretmanager.googleapis.com", description="Base URL of the Secret Manager API."
    )
    artifact_registry_url: str = Field(
        "https://artifactregistry.googleapis.com",
        description="Base URL of the Artifact Registry API.",
    )
