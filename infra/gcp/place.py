"""The nodes on GCP: `up`, `down` and `status` of the Terraform stack, its keys and its pool."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import google.auth
from google.auth.exceptions import DefaultCredentialsError
from prefect_gcp import GcpCredentials
from prefect_gcp.cloud_storage import GcsBucket

from deployments import recovery
from infra.cloud import (
    NumeraiKeys,
    PlaceStatus,
    missing_stack_status,
    remove_pool_and_block,
    stack_status,
)
from infra.gcp.errors import UP_COMMAND, GcpSettingsError, TerraformFailed
from infra.gcp.pool import (
    IMAGE_VARIABLE,
    POOL_TYPE,
    SECRET_OUTPUTS,
    image_uri,
    missing_outputs,
    pool_mismatches,
    stack_pool_template,
)
from infra.gcp.secrets import SecretManager
from infra.gcp.settings import GcpSettings
from infra.gcp.terraform import Progress, Terraform, no_progress
from infra.pools import (
    read_pool_template,
    require_prefect_api,
    set_variable,
    upsert_pool,
)

PLACE = "gcp"
BUCKET = "google_storage_bucket.cache"  # the Terraform address of the results bucket
_BLOCK_TYPE = "gcs-bucket"
# Written by `down` in Terraform's working directory when it keeps the bucket; `up` adopts it.
_KEPT_BUCKET = "kept-bucket.json"


@dataclass(frozen=True)
class UpResult:
    """What `up` built: the Terraform outputs, the pool and its image."""

    outputs: dict[str, str]
    pool_name: str
    image: str
    pool_created: bool = False
    keys_stored: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def up(
    settings: GcpSettings,
    keys: NumeraiKeys | None,
    progress: Progress = no_progress,
    *,
    secrets: SecretManager | None = None,
) -> UpResult:
    """Apply the Terraform stack, store any keys given, save the result block, upsert the pool.

    Without `keys` the secrets keep their versions.
    """
    require_prefect_api()  # before the stack is applied, not after
    terraform = Terraform(settings, progress)
    terraform.init()
    project = resolve_project(settings, outputs_or_empty(terraform))
    _adopt_kept_bucket(terraform, project, settings.region)
    terraform.apply(project, settings.region)
    (terraform.work_dir / _KEPT_BUCKET).unlink(missing_ok=True)
    outputs = terraform.outputs()
    if keys is not None:
        secrets = secrets or SecretManager(settings.secret_manager_url)
        values = keys.by_env_name()
        for env, output in SECRET_OUTPUTS.items():
            progress(f"Adding a version of secret {outputs[output]} ({env})")
            secrets.add_version(outputs["project"], outputs[output], values[env].get_secret_value())
    image = image_uri(outputs, settings.image_tag)
    template = stack_pool_template(outputs, settings)
    progress(f"Saving the GcsBucket block {settings.results_block}")
    _save_results_block(outputs, settings.results_block)
    progress(f"Creating or updating the work pool {settings.pool_name}")
    created = upsert_pool(settings.pool_name, POOL_TYPE, template)
    recovery.apply()  # crashed and silent node runs run again, on any pool
    # prefect.yaml's Cloud Run node tags its image build with this repository.
    set_variable(IMAGE_VARIABLE, image.rsplit(":", 1)[0])
    return UpResult(outputs, settings.pool_name, image, created, keys is not None)


def down(
    settings: GcpSettings, *, delete_bucket: bool = False, progress: Progress = no_progress
) -> list[str]:
    """Destroy the stack, then delete its pool and result block. Returns what was done.

    The bucket holds trained models and outlives the stack unless `delete_bucket`: Terraform
    forgets it before `destroy`, and the next `up` adopts it again.
    """
    terraform = Terraform(settings, progress)
    outputs = outputs_or_empty(terraform)
    done: list[str] = []
    if not outputs:
        done.append(f"no GCP stack is applied (no Terraform state in {terraform.work_dir})")
        done += _kept_bucket_note(terraform)
    else:
        terraform.init()
        project, region = outputs["project"], outputs.get("region") or settings.region
        bucket = outputs.get("bucket_name", "")
        if delete_bucket:
            # `destroy` deletes a bucket that holds objects only once the state allows it.
            terraform.apply(project, region, f"-target={BUCKET}", force_destroy=True)
            terraform.destroy(project, region, force_destroy=True)
            done.append(f"deleted bucket {bucket} and the models in it")
        else:
            terraform.forget(BUCKET)
            terraform.destroy(project, region)
            (terraform.work_dir / _KEPT_BUCKET).write_text(
                json.dumps({"project": project, "bucket": bucket})
            )
            done.append(f"kept bucket {bucket} (trained models); `down --delete-bucket` deletes it")
        done.append(f"destroyed the GCP stack in project {project}")
    return done + remove_pool_and_block(
        settings.pool_name, POOL_TYPE, settings.results_block, _BLOCK_TYPE
    )


def status(settings: GcpSettings) -> PlaceStatus:
    """The stack's outputs, and whether the pool matches them."""
    terraform = Terraform(settings)
    where = f"Terraform state in {terraform.work_dir}"
    outputs = outputs_or_empty(terraform)
    template = read_pool_template(settings.pool_name)
    if not outputs:
        return missing_stack_status(
            PLACE,
            where,
            pool_name=settings.pool_name,
            pool_exists=template is not None,
            problem=f"no GCP stack is applied ({where}); `{UP_COMMAND}` creates it",
        )
    missing = missing_outputs(outputs)
    return stack_status(
        PLACE,
        where,
        pool_name=settings.pool_name,
        pool_template=template,
        stack_state="applied",
        outputs=outputs,
        problems=[f"the stack's outputs lack {', '.join(missing)}"] if missing else [],
        mismatches=(None if missing else (lambda found: pool_mismatches(found, outputs, settings))),
    )


def resolve_project(settings: GcpSettings, outputs: dict[str, str]) -> str:
    """The project: from the settings, else the existing stack, else the credentials' default."""
    if settings.project:
        return settings.project
    if outputs.get("project"):
        return outputs["project"]
    try:
        _, project = google.auth.default()
    except DefaultCredentialsError:
        project = None
    if not project:
        raise GcpSettingsError(
            "No GCP project given. Pass --project or set NUMERAI_NODES_GCP_PROJECT, then run "
            f"`{UP_COMMAND}` again."
        )
    return project


def outputs_or_empty(terraform: Terraform) -> dict[str, str]:
    """The outputs of the applied stack; empty when it was never applied (or was destroyed)."""
    try:
        return terraform.outputs()
    except TerraformFailed:
        # No state, or a directory never initialised: there is no stack yet.
        return {}


def _adopt_kept_bucket(terraform: Terraform, project: str, region: str) -> None:
    """Import the bucket an earlier `down` kept, so `apply` reuses it instead of failing."""
    record = terraform.work_dir / _KEPT_BUCKET
    if not record.is_file():
        return
    kept = json.loads(record.read_text())
    if kept.get("project") != project or not kept.get("bucket"):
        return
    terraform.progress(f"Adopting bucket {kept['bucket']}, kept by the last `down`")
    try:
        terraform.adopt(BUCKET, kept["bucket"], project, region)
    except TerraformFailed:
        # Deleted by hand since, or already in the state: `apply` creates or keeps it.
        terraform.progress(f"Bucket {kept['bucket']} was not adopted; `apply` handles it")


def _kept_bucket_note(terraform: Terraform) -> list[str]:
    record = terraform.work_dir / _KEPT_BUCKET
    if not record.is_file():
        return []
    bucket = json.loads(record.read_text()).get("bucket")
    return [
        f"bucket {bucket}, kept by an earlier `down`, remains: `{UP_COMMAND}` adopts it, "
        f"`gcloud storage rm --recursive gs://{bucket}` deletes it"
    ]


def _save_results_block(outputs: dict[str, str], name: str) -> None:
    """Save the GcsBucket block over the stack's bucket; jobs reach it as their service account."""
    block = GcsBucket(
        bucket=outputs["bucket_name"], gcp_credentials=GcpCredentials(project=outputs["project"])
    )
    block.save(name, overwrite=True)
