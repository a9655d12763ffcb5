"""The Cloud Run v2 work pool: prefect-gcp's job template filled from the Terraform outputs."""

from __future__ import annotations

from typing import Any

from prefect import get_client
from prefect.exceptions import ObjectNotFound

from deployments.presets import CLOUD_RUN_V2, job_variables
from deployments.recovery import heartbeat_env
from flows.settings import PUBLIC_ID_ENV, SECRET_KEY_ENV
from infra.gcp.errors import UP_COMMAND, CredentialsBlockMissing, StackOutputsMissing
from infra.gcp.settings import RESULTS_BLOCK, GcpSettings
from infra.pools import RESULT_STORAGE_ENV, PushPool, default_template, set_default

POOL_TYPE = CLOUD_RUN_V2
IMAGE_NAME = "numerai-nodes"
# The Prefect variable prefect.yaml names as the Cloud Run node's image repository.
IMAGE_VARIABLE = "numerai_nodes_cloud_run_image"
# Environment variable -> the Terraform output naming its Secret Manager secret.
SECRET_OUTPUTS = {
    PUBLIC_ID_ENV: "public_id_secret",
    SECRET_KEY_ENV: "secret_key_secret",
}
# The secret the hosted worker reads PREFECT_API_KEY from (the Terraform variable's default).
PREFECT_API_KEY_SECRET = "prefect-api-key"
# The Prefect Cloud push pool of the stack: the cloud-run-v2 template plus a GcpCredentials block.
CLOUD_RUN_PUSH = PushPool(
    hybrid_type=POOL_TYPE,
    credentials_variable="credentials",
    block_type="gcp-credentials",
    up_command=UP_COMMAND,
    credentials_how=(
        "make a key of the worker service account (`gcloud iam service-accounts keys create "
        "key.json --iam-account <worker_service_account_email output>`) and pass "
        "--push-key-file key.json (or set NUMERAI_NODES_GCP_PUSH_KEY_FILE)"
    ),
)
# Every Terraform output the pool needs.
REQUIRED_OUTPUTS = (
    "project",
    "region",
    "repository_url",
    "bucket_name",
    "service_account_email",
    *SECRET_OUTPUTS.values(),
)
# The job variables a pool must hold as the stack would set them.
_CHECKED_VARIABLES = (
    "region",
    "image",
    "service_account_name",
    "env_from_secrets",
    "env",
    "timeout",
    "cpu",
    "memory",
)


def image_uri(outputs: dict[str, str], tag: str = "latest") -> str:
    """The node image in the stack's Artifact Registry repository."""
    return f"{outputs['repository_url']}/{IMAGE_NAME}:{tag}"


def missing_outputs(outputs: dict[str, str]) -> list[str]:
    """The outputs the pool needs that the stack lacks."""
    return [name for name in REQUIRED_OUTPUTS if not outputs.get(name)]


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
    missing = missing_outputs(outputs)
    if missing:
        raise StackOutputsMissing(
            f"The GCP stack outputs lack {', '.join(missing)}. "
            f"Create or update the stack with `{UP_COMMAND}`."
        )
    template = default_template(POOL_TYPE)
    set_default(template, "region", outputs["region"])
    set_default(template, "image", image)
    set_default(template, "service_account_name", outputs["service_account_email"])
    for variable, value in job_variables(preset, POOL_TYPE).items():
        set_default(template, variable, value)
    env = {RESULT_STORAGE_ENV: f"gcs-bucket/{results_block}", **heartbeat_env()}
    set_default(template, "env", env)
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


def stack_pool_template(
    outputs: dict[str, str], settings: GcpSettings, push_block_id: str | None = None
) -> dict[str, Any]:
    """The template `up` gives the pool, from the outputs and the settings; a push pool's
    credentials are the GcpCredentials block `push_block_id`."""
    return cloud_run_pool_template(
        outputs,
        image=image_uri(outputs, settings.image_tag),
        preset=settings.preset,
        credentials_block_id=push_block_id or credentials_block_id(settings.credentials_block),
        results_block=settings.results_block,
    )


def credentials_block_id(name: str | None) -> str | None:
    """The id of GcpCredentials block `name` (None for None); an error says how to create it."""
    if not name:
        return None
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name, "gcp-credentials")
        except ObjectNotFound:
            raise CredentialsBlockMissing(
                f"No GcpCredentials block named {name!r} on this Prefect API. Create it "
                "(`prefect block create gcp-credentials`) or unset "
                "NUMERAI_NODES_GCP_CREDENTIALS_BLOCK to use Application Default Credentials."
            ) from None
    return str(document.id)


def pool_mismatches(
    template: dict[str, Any], outputs: dict[str, str], settings: GcpSettings
) -> list[str]:
    """How the pool's template differs from what `up` would write: one line per variable."""
    expected = stack_pool_template(outputs, settings)
    problems = []
    for variable in _CHECKED_VARIABLES:
        actual, wanted = _default(template, variable), _default(expected, variable)
        if actual == wanted:
            continue
        # A deployment may pin another tag; the image must still come from the stack's registry.
        if variable == "image" and str(actual).startswith(outputs["repository_url"]):
            continue
        if isinstance(wanted, str | int) and isinstance(actual, str | int | None):
            problems.append(f"{variable} is {actual!r}, the stack has {wanted!r}")
        else:
            problems.append(f"{variable} differs from the stack")
    return problems


def _default(template: dict[str, Any], variable: str) -> Any:
    return template.get("variables", {}).get("properties", {}).get(variable, {}).get("default")
