"""The GCP stack: Terraform in infra/gcp, the keys in Secret Manager, the Cloud Run v2 work pool."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.pools import (
    RESULT_STORAGE_ENV,
    default_template,
    require_prefect_api,
    set_default,
    set_variable,
    upsert_pool,
)
from infra.presets import CLOUD_RUN_V2, Preset, job_variables

POOL_TYPE = CLOUD_RUN_V2
# The prefect-gcp GcsBucket block that holds every result, the trained model among them.
RESULTS_BLOCK = "numerai-nodes-results"
IMAGE_NAME = "numerai-nodes"
# The Prefect variable prefect.yaml names as the Cloud Run node's image repository.
IMAGE_VARIABLE = "numerai_nodes_cloud_run_image"
# Environment variable -> the Terraform output naming its Secret Manager secret.
SECRET_OUTPUTS = {
    "NUMERAI_PUBLIC_ID": "public_id_secret",
    "NUMERAI_SECRET_KEY": "secret_key_secret",
}
# Every Terraform output the pool needs.
REQUIRED_OUTPUTS = (
    "project",
    "region",
    "repository_url",
    "bucket_name",
    "service_account_email",
    *SECRET_OUTPUTS.values(),
)


class GcpStackError(Exception):
    """An expected failure of the GCP stack; the message names the cause and the fix."""


def image_uri(outputs: dict[str, str], tag: str = "latest") -> str:
    """The node image in the stack's Artifact Registry repository."""
    return f"{outputs['repository_url']}/{IMAGE_NAME}:{tag}"


def cloud_run_pool_template(
    outputs: dict[str, str],
    image: str,
    preset: str = "gen-m",
    credentials_block_id: str | None = None,
    *,
    results_block: str = RESULTS_BLOCK,
) -> dict[str, Any]:
    """prefect-gcp's Cloud Run v2 job template, its defaults filled from the Terraform outputs.

    The keys reach the job from Secret Manager (`env_from_secrets`), never as plain values; the
    result storage block lets a fresh container load the cached model instead of training.
    `credentials_block_id` is the id of a GcpCredentials block document (`credentials_block_id()`
    finds it by name): a pool default can only reference a block by id. Without it the worker
    uses Application Default Credentials, in the stack's project.
    """
    missing = [name for name in REQUIRED_OUTPUTS if not outputs.get(name)]
    if missing:
        raise GcpStackError(
            f"The GCP stack outputs lack {', '.join(missing)}. "
            "Create or update the stack with `numerai-nodes infra gcp up`."
        )
    template = default_template(POOL_TYPE)
    set_default(template, "region", outputs["region"])
    set_default(template, "image", image)
    set_default(template, "service_account_name", outputs["service_account_email"])
    for variable, value in job_variables(preset, POOL_TYPE).items():
        set_default(template, variable, value)
    set_default(template, "env", {RESULT_STORAGE_ENV: f"gcs-bucket/{results_block}"})
    set_default(
        template,
        "env_from_secrets",
        {
            env: {"secret": outputs[output], "version": "latest"}
            for env, output in SECRET_OUTPUTS.items()
        },
    )
    if credentials_block_id:
        credentials: Any = {"$ref": {"block_document_id": credentials_block_id}}
    else:
        credentials = {"project": outputs["project"]}
    set_default(template, "credentials", credentials)
    return template


def credentials_block_id(name: str | None) -> str | None:
    """The id of GcpCredentials block `name` (None for None), or a GcpStackError saying how to
    create it."""
    if not name:
        return None
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, "gcp-credentials")
        except ObjectNotFound:
            raise GcpStackError(
                f"No GcpCredentials block named {name!r} on this Prefect API. Create it "
                "(`prefect block create gcp-credentials`) or unset "
                "NUMERAI_NODES_GCP_CREDENTIALS_BLOCK to use Application Default Credentials."
            ) from None
    return str(document.id)


# --- settings ---------------------------------------------------------------------------------

INFRA_DIR = Path(__file__).resolve().parent  # package data: the .tf files sit beside this module
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
# Never handed to Terraform: the keys go to Secret Manager through the API, not through state.
_KEY_ENV = ("NUMERAI_PUBLIC_ID", "NUMERAI_SECRET_KEY")
_TAIL_LINES = 15
UP = "numerai-nodes infra gcp up"


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
    infra_dir: Path = Field(INFRA_DIR, description="The Terraform configuration (and local state).")
    image_tag: str = Field("latest", description="Tag of the node image the pool runs.")
    preset: Preset = Field("gen-m", description="Size preset of the pool's default CPU and memory.")
    results_block: str = Field(
        RESULTS_BLOCK, description="Name of the GcsBucket block that holds the flow results."
    )
    credentials_block: str | None = Field(
        None,
        description="GcpCredentials block the worker uses. Unset: Application Default Credentials.",
    )
    secret_manager_url: str = Field(
        "https://secretmanager.googleapis.com", description="Base URL of the Secret Manager API."
    )
    artifact_registry_url: str = Field(
        "https://artifactregistry.googleapis.com",
        description="Base URL of the Artifact Registry API.",
    )


Progress = Callable[[str], None]


def _ignore(line: str) -> None:
    """A progress callback that drops every line."""


# --- terraform --------------------------------------------------------------------------------


class TerraformMissing(GcpStackError, FileNotFoundError):
    """The Terraform binary is not installed or not where the settings say."""


class TerraformFailed(GcpStackError):
    """A Terraform command exited non-zero."""


class Terraform:
    """The Terraform CLI run in the stack's directory; output lines go to `progress`."""

    def __init__(self, settings: GcpSettings, progress: Progress = _ignore):
        self.settings = settings
        self.progress = progress

    def _binary(self) -> str:
        binary = shutil.which(self.settings.terraform)
        if binary is None:
            raise TerraformMissing(
                f"Terraform was not found ('{self.settings.terraform}'). Install Terraform 1.5 or "
                "newer (developer.hashicorp.com/terraform/install), or set "
                f"NUMERAI_NODES_GCP_TERRAFORM to its path, then run `{UP}` again."
            )
        return binary

    def _env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items() if name not in _KEY_ENV}
        env |= {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}
        return env

    def run(self, *args: str, capture: bool = False) -> str:
        """Run `terraform <args>`: stream its lines to progress, or with `capture` return stdout."""
        binary = self._binary()
        if not self.settings.infra_dir.is_dir():
            raise GcpStackError(
                f"The Terraform configuration {self.settings.infra_dir} does not exist. Run from a "
                "checkout of the project or set NUMERAI_NODES_GCP_INFRA_DIR."
            )
        process = subprocess.Popen(
            [binary, *args],
            cwd=self.settings.infra_dir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if not capture else subprocess.PIPE,
            text=True,
        )
        tail: list[str] = []
        out = ""
        if capture:
            out, err = process.communicate()
            tail = err.splitlines()[-_TAIL_LINES:]
        else:
            assert process.stdout is not None
            for raw in process.stdout:
                line = raw.rstrip("\n")
                self.progress(line)
                tail = [*tail[-(_TAIL_LINES - 1) :], line]
            process.wait()
        if process.returncode != 0:
            last = "\n".join(line for line in tail if line.strip())
            raise TerraformFailed(
                f"`terraform {args[0]}` failed with exit code {process.returncode}"
                + (f":\n{last}\n" if last else ". ")
                + f"Fix the cause above (credentials, project, quota), then run `{UP}` again."
            )
        return out

    def init(self) -> None:
        self.run("init", "-input=false", "-no-color")

    def apply(self, project: str, region: str) -> None:
        self.run("apply", "-auto-approve", "-input=false", "-no-color", *_vars(project, region))

    def destroy(self, project: str, region: str) -> None:
        self.run("destroy", "-auto-approve", "-input=false", "-no-color", *_vars(project, region))

    def outputs(self) -> dict[str, str]:
        """The stack's outputs as strings; empty when there is no state yet."""
        text = self.run("output", "-json", "-no-color", capture=True)
        try:
            raw = json.loads(text or "{}")
        except json.JSONDecodeError:
            raise TerraformFailed(
                f"`terraform output -json` printed no JSON. Run `{UP}` again."
            ) from None
        return {name: _as_text(entry.get("value")) for name, entry in raw.items()}


def _vars(project: str, region: str) -> list[str]:
    return [f"-var=project={project}", f"-var=region={region}"]


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# --- Secret Manager ----------------------------------------------------------------------------


def adc_token() -> str:
    """An OAuth access token from Application Default Credentials."""
    import google.auth
    from google.auth.exceptions import GoogleAuthError
    from google.auth.transport.requests import Request

    try:
        credentials, _ = google.auth.default(scopes=_SCOPES)
        credentials.refresh(Request())
    except GoogleAuthError as exc:
        raise GcpStackError(
            f"No usable Google credentials ({type(exc).__name__}). Run "
            "`gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS, then "
            f"run `{UP}` again."
        ) from None
    return credentials.token


class SecretManager:
    """The two Secret Manager REST calls the stack needs: add a version, and see one exists."""

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.token = token or adc_token
        self.transport = transport

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self.token()}"},
            transport=self.transport,
            timeout=30,
        )

    def add_version(self, project: str, secret: str, value: str) -> str:
        """Store `value` as the secret's new latest version; returns the version's name."""
        payload = base64.b64encode(value.encode()).decode()
        path = f"/v1/projects/{project}/secrets/{secret}:addVersion"
        with self._client() as client:
            response = _send(client, "POST", path, json={"payload": {"data": payload}})
        if response.status_code != 200:
            raise GcpStackError(
                f"Secret Manager refused a new version of secret '{secret}' in project "
                f"'{project}' ({response.status_code}: {_google_error(response)}). Check you may "
                f"add secret versions there (roles/secretmanager.secretVersionAdder), then run "
                f"`{UP}` again."
            )
        return response.json().get("name", "")

    def has_version(self, project: str, secret: str) -> bool:
        """Whether the secret has an enabled latest version (its value is not read)."""
        path = f"/v1/projects/{project}/secrets/{secret}/versions/latest"
        with self._client() as client:
            response = _send(client, "GET", path)
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise GcpStackError(
                f"Could not read secret '{secret}' ({response.status_code}: "
                f"{_google_error(response)})."
            )
        return response.json().get("state") == "ENABLED"


def _send(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    try:
        return client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        # The request (and its body, a key) stays out of the message.
        raise GcpStackError(
            f"Could not reach {client.base_url} ({type(exc).__name__}). Check the network, then "
            f"run `{UP}` again."
        ) from None


def _google_error(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.reason_phrase


# --- the stack ---------------------------------------------------------------------------------


@dataclass
class StackInfo:
    """What `up` built: the Terraform outputs, the pool and its image."""

    outputs: dict[str, str]
    pool_name: str
    image: str
    pool_created: bool = False
    keys_stored: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def resolve_project(settings: GcpSettings, outputs: dict[str, str]) -> str:
    """The project: from the settings, else the existing stack, else the credentials' default."""
    if settings.project:
        return settings.project
    if outputs.get("project"):
        return outputs["project"]
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        _, project = google.auth.default()
    except DefaultCredentialsError:
        project = None
    if not project:
        raise GcpStackError(
            "No GCP project given. Pass --project or set NUMERAI_NODES_GCP_PROJECT, then run "
            f"`{UP}` again."
        )
    return project


def save_results_block(outputs: dict[str, str], name: str = RESULTS_BLOCK) -> None:
    """Save the GcsBucket block over the stack's bucket; jobs reach it as their service account."""
    from prefect_gcp import GcpCredentials
    from prefect_gcp.cloud_storage import GcsBucket

    block = GcsBucket(
        bucket=outputs["bucket_name"], gcp_credentials=GcpCredentials(project=outputs["project"])
    )
    block.save(name, overwrite=True)


def up(
    settings: GcpSettings,
    keys: tuple[str, str] | None = None,
    progress: Progress = _ignore,
    secrets: SecretManager | None = None,
) -> StackInfo:
    """Apply the Terraform stack, store any keys given, save the result block, upsert the pool."""
    require_prefect_api()  # before the stack is applied, not after
    terraform = Terraform(settings, progress)
    terraform.init()
    project = resolve_project(settings, _outputs_or_empty(terraform))
    terraform.apply(project, settings.region)
    outputs = terraform.outputs()
    keys_stored = False
    if keys is not None:
        secrets = secrets or SecretManager(settings.secret_manager_url)
        for (env, output), value in zip(SECRET_OUTPUTS.items(), keys, strict=True):
            progress(f"Adding a version of secret {outputs[output]} ({env})")
            secrets.add_version(outputs["project"], outputs[output], value)
        keys_stored = True
    image = image_uri(outputs, settings.image_tag)
    template = cloud_run_pool_template(
        outputs,
        image=image,
        preset=settings.preset,
        credentials_block_id=credentials_block_id(settings.credentials_block),
        results_block=settings.results_block,
    )
    progress(f"Saving the GcsBucket block {settings.results_block}")
    save_results_block(outputs, settings.results_block)
    progress(f"Creating or updating the work pool {settings.pool_name}")
    created = upsert_pool(settings.pool_name, POOL_TYPE, template)
    # prefect.yaml's Cloud Run node tags its image build with this repository.
    set_variable(IMAGE_VARIABLE, image.rsplit(":", 1)[0])
    return StackInfo(outputs, settings.pool_name, image, created, keys_stored)


def down(settings: GcpSettings, progress: Progress = _ignore) -> bool:
    """Destroy the stack, then delete its pool and result block; False when there was no stack."""
    terraform = Terraform(settings, progress)
    outputs = _outputs_or_empty(terraform)
    if not outputs:
        return False
    terraform.init()
    terraform.destroy(outputs["project"], outputs.get("region") or settings.region)
    _delete_pool_and_block(settings.pool_name, settings.results_block)
    return True


def stack_outputs(settings: GcpSettings) -> dict[str, str]:
    """The outputs of the applied stack; empty when it was never applied (or was destroyed)."""
    return _outputs_or_empty(Terraform(settings))


def _outputs_or_empty(terraform: Terraform) -> dict[str, str]:
    try:
        return terraform.outputs()
    except TerraformFailed:
        # No state, or a directory never initialised: there is no stack yet.
        return {}


def _delete_pool_and_block(pool_name: str, block_name: str) -> None:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        with contextlib.suppress(ObjectNotFound):
            client.delete_work_pool(pool_name)
        with contextlib.suppress(ObjectNotFound):
            block = client.read_block_document_by_name(block_name, "gcs-bucket")
            client.delete_block_document(block.id)
