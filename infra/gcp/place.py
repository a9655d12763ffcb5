"""The nodes on GCP: `up`, `down` and `status` of the Terraform stack, its keys and its pool."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import google.auth
from google.auth.exceptions import DefaultCredentialsError
from prefect.settings import PREFECT_API_KEY
from prefect_gcp import GcpCredentials
from prefect_gcp.cloud_storage import GcsBucket

from deployments import recovery
from infra.cloud import (
    NumeraiKeys,
    PlaceStatus,
    remove_pool_and_block,
)
from infra.gcp.errors import UP_COMMAND, GcpSettingsError, TerraformFailed
from infra.gcp.pool import (
    CLOUD_RUN_PUSH,
    IMAGE_VARIABLE,
    POOL_TYPE,
    PREFECT_API_KEY_SECRET,
    SECRET_OUTPUTS,
    image_uri,
    missing_outputs,
    pool_mismatches,
    stack_pool_template,
)
from infra.gcp.secrets import SecretManager
from infra.gcp.settings import GcpSettings
from infra.gcp.terraform import Progress, Terraform, no_progress, stack_variables
from infra.pools import (
    block_id_by_name,
    require_prefect_api,
    save_block,
    set_variable,
    upsert_pool,
)
from infra.terraform import outputs_or_empty, terraform_status

PLACE = "gcp"
BUCKET = "google_storage_bucket.cache"  # the Terraform address of the results bucket
_API_KEY_SECRET = "google_secret_manager_secret.prefect_api_key"  # the worker's PREFECT_API_KEY
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
    pool_type: str = POOL_TYPE
    push_block: str | None = None  # the GcpCredentials block of a cloud-run-v2:push pool
    worker_service: str = ""  # the Cloud Run service running the worker, if any
    notes: tuple[str, ...] = ()  # what the user should know: push is available, a bad URL

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def up(
    settings: GcpSettings,
    keys: NumeraiKeys | None,
    progress: Progress = no_progress,
    *,
    secrets: SecretManager | None = None,
    push: bool | None = None,
    worker_image: str | None = None,
) -> UpResult:
    """Apply the Terraform stack, store any keys given, save the result block, upsert the pool.

    Without `keys` the secrets keep their versions. `push` makes a cloud-run-v2:push pool
    (Prefect Cloud only) and False a hybrid one; `worker_image` runs the worker as a Cloud Run
    service ("" for none). None keeps what the stack was applied with.
    """
    api_url = require_prefect_api()  # before the stack is applied, not after
    terraform = Terraform(settings, progress)
    terraform.init()
    previous = outputs_or_empty(terraform)
    project = resolve_project(settings, previous)
    push = CLOUD_RUN_PUSH.choose(push, previous.get("push_pool") == "true", api_url)
    if worker_image is None:
        worker_image = previous.get("worker_image", "")
    if push and worker_image:
        raise GcpSettingsError(
            "A push pool needs no worker, and the stack runs a worker service "
            f"({worker_image}). Run `{UP_COMMAND} --push --worker-image ''` to drop the service."
        )
    CLOUD_RUN_PUSH.require_type(settings.pool_name, push)
    api_key = PREFECT_API_KEY.value() if worker_image else None
    variables = {
        "push_pool": str(push).lower(),
        "worker_image": worker_image,
        "work_pool_name": settings.pool_name,
        "prefect_api_url": api_url if worker_image else "",
        "worker_api_key": str(bool(api_key)).lower(),
    }
    secrets = secrets or SecretManager(settings.secret_manager_url)
    _adopt_kept_bucket(terraform, project, settings.region)
    if api_key:
        # The service reads the key at start: its secret needs a version before the service.
        terraform.apply(
            stack_variables(project, settings.region, extra=variables), f"-target={_API_KEY_SECRET}"
        )
        progress(f"Adding a version of secret {PREFECT_API_KEY_SECRET} (PREFECT_API_KEY)")
        secrets.add_version(project, PREFECT_API_KEY_SECRET, api_key)
    terraform.apply(stack_variables(project, settings.region, extra=variables))
    (terraform.work_dir / _KEPT_BUCKET).unlink(missing_ok=True)
    outputs = terraform.outputs()
    if keys is not None:
        values = keys.by_env_name()
        for env, output in SECRET_OUTPUTS.items():
            progress(f"Adding a version of secret {outputs[output]} ({env})")
            secrets.add_version(outputs["project"], outputs[output], values[env].get_secret_value())
    image = image_uri(outputs, settings.image_tag)
    push_id = _push_credentials(settings, outputs) if push else None
    template = stack_pool_template(outputs, settings, push_id)
    progress(f"Saving the GcsBucket block {settings.results_block}")
    _save_results_block(outputs, settings.results_block)
    pool_type = CLOUD_RUN_PUSH.type if push else POOL_TYPE
    progress(f"Creating or updating the work pool {settings.pool_name} ({pool_type})")
    created = upsert_pool(settings.pool_name, pool_type, template)
    recovery.apply()  # crashed and silent node runs run again, on any pool
    # prefect.yaml's Cloud Run node tags its image build with this repository.
    set_variable(IMAGE_VARIABLE, image.rsplit(":", 1)[0])
    notes = [CLOUD_RUN_PUSH.hint(settings.pool_name, push, api_url)]
    if worker_image and _is_loopback(api_url):
        notes.append(
            f"The worker service polls {api_url}, a loopback address it cannot reach from "
            "Cloud Run: point PREFECT_API_URL at Prefect Cloud or a public server, then run "
            f"`{UP_COMMAND}` again."
        )
    return UpResult(
        outputs,
        settings.pool_name,
        image,
        created,
        keys is not None,
        pool_type=pool_type,
        push_block=settings.push_credentials_block if push else None,
        worker_service=outputs.get("worker_service_name", ""),
        notes=tuple(note for note in notes if note),
    )


def _push_credentials(settings: GcpSettings, outputs: dict[str, str]) -> str:
    """The id of the push pool's GcpCredentials block: saved from the key file given (checked to
    be the worker service account's), else the one saved before."""
    name = settings.push_credentials_block
    path = settings.push_key_file
    if path is None:
        existing = block_id_by_name(name, CLOUD_RUN_PUSH.block_type)
        if existing is None:
            raise CLOUD_RUN_PUSH.credentials_missing(name)
        return existing
    worker = outputs.get("worker_service_account_email", "")
    if not worker:
        raise GcpSettingsError(
            "A push pool starts jobs as the worker service account, and the stack has none "
            "(create_worker_service_account = false). Set it to true in your Terraform "
            f"configuration, then run `{UP_COMMAND} --push` again."
        )
    try:
        info = json.loads(Path(path).expanduser().read_text())
    except (OSError, ValueError) as exc:
        # The file's text is a private key: only its path and the kind of failure are shown.
        raise GcpSettingsError(
            f"Could not read the service account key file {path} ({type(exc).__name__}). "
            f"Give the JSON file `gcloud iam service-accounts keys create` wrote, then run "
            f"`{UP_COMMAND} --push` again."
        ) from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise GcpSettingsError(
            f'{path} is not a service account key (its "type" is not service_account). Make '
            f"one: {CLOUD_RUN_PUSH.credentials_how}."
        )
    if info.get("client_email") != worker:
        raise GcpSettingsError(
            f"{path} is a key of {info.get('client_email')}, not of the worker service account "
            f"{worker}, which alone may start the jobs. Make one: `gcloud iam service-accounts "
            f"keys create key.json --iam-account {worker}`."
        )
    block = GcpCredentials(service_account_info=info, project=outputs["project"])
    return save_block(block, name)


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


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
            terraform.apply(
                stack_variables(project, region, force_destroy=True), f"-target={BUCKET}"
            )
            terraform.destroy(stack_variables(project, region, force_destroy=True))
            done.append(f"deleted bucket {bucket} and the models in it")
        else:
            terraform.forget(BUCKET)
            terraform.destroy(stack_variables(project, region))
            (terraform.work_dir / _KEPT_BUCKET).write_text(
                json.dumps({"project": project, "bucket": bucket})
            )
            done.append(f"kept bucket {bucket} (trained models); `down --delete-bucket` deletes it")
        done.append(f"destroyed the GCP stack in project {project}")
    done += remove_pool_and_block(
        settings.pool_name, POOL_TYPE, settings.results_block, _BLOCK_TYPE
    )
    done += CLOUD_RUN_PUSH.remove(settings.pool_name, settings.push_credentials_block)
    return done


def status(settings: GcpSettings) -> PlaceStatus:
    """The stack's outputs, and whether the pool matches them."""
    return terraform_status(
        Terraform(settings),
        "GCP",
        settings.pool_name,
        missing_outputs,
        lambda template, outputs: pool_mismatches(template, outputs, settings),
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
        terraform.adopt(BUCKET, kept["bucket"], stack_variables(project, region))
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
