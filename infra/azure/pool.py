"""The Azure Container Instances work pool: prefect-azure's job template filled from Terraform."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from prefect import get_client
from prefect.exceptions import ObjectNotFound

from deployments.presets import ACI, job_variables
from deployments.recovery import heartbeat_env
from flows.key_vault import PUBLIC_ID_SECRET, SECRET_KEY_SECRET
from flows.settings import KEY_VAULT_URL_ENV
from infra.azure.errors import UP_COMMAND, CredentialsBlockMissing, StackOutputsMissing
from infra.azure.settings import PUSH_ENV, RESULTS_BLOCK
from infra.pools import RESULT_STORAGE_ENV, PushPool, default_template, set_default

POOL_TYPE = ACI
IMAGE_NAME = "numerai-nodes"
# The Prefect variable prefect.yaml names as the ACI node's image repository.
IMAGE_VARIABLE = "numerai_nodes_aci_image"
RESULTS_BLOCK_TYPE = "azure-blob-storage-container"
CREDENTIALS_BLOCK_TYPE = "azure-container-instance-credentials"
DEFAULT_PRESET = "gen-m"
# The Prefect Cloud push pool of the stack: the ACI template plus an
# AzureContainerInstanceCredentials block of a service principal the stack grants the worker role.
ACI_PUSH = PushPool(
    hybrid_type=POOL_TYPE,
    credentials_variable="aci_credentials",
    block_type=CREDENTIALS_BLOCK_TYPE,
    up_command=UP_COMMAND,
    credentials_how=(
        "create a service principal with no role (`az ad sp create-for-rbac --name "
        f"numerai-nodes-push`) and set {PUSH_ENV[0]}, {PUSH_ENV[1]} and {PUSH_ENV[2]} to the "
        "appId, tenant and password it prints, or answer the hidden prompts"
    ),
)
# azure-identity's DefaultAzureCredential uses the user-assigned identity this names.
CLIENT_ID_ENV = "AZURE_CLIENT_ID"
# Terraform output -> the Key Vault secret name the node reads (flows/keys.py).
SECRET_OUTPUTS = {
    "public_id_secret": PUBLIC_ID_SECRET,
    "secret_key_secret": SECRET_KEY_SECRET,
}
# Every Terraform output the pool needs.
REQUIRED_OUTPUTS = (
    "subscription_id",
    "resource_group",
    "registry_login_server",
    "key_vault_uri",
    "job_identity_id",
    "job_identity_client_id",
    *SECRET_OUTPUTS,
)
# The job variables a pool must hold as the stack would set them.
_CHECKED_VARIABLES = (
    "subscription_id",
    "resource_group_name",
    "image",
    "identities",
    "image_registry",
    "entrypoint",
    "env",
    "cpu",
    "memory",
)


class AciPoolSettings(Protocol):
    """What `stack_pool_template` and `pool_mismatches` read of the Azure settings."""

    @property
    def image_tag(self) -> str:
        """The node image's tag in the stack's registry."""
        ...

    @property
    def preset(self) -> str:
        """The size preset of the pool's default CPU and memory."""
        ...

    @property
    def results_block(self) -> str:
        """The AzureBlobStorageContainer block holding flow results and trained models."""
        ...

    @property
    def credentials_block(self) -> str | None:
        """The worker's AzureContainerInstanceCredentials block; None: DefaultAzureCredential."""
        ...


def image_uri(outputs: dict[str, str], tag: str = "latest") -> str:
    """The node image in the stack's Azure Container Registry."""
    return f"{outputs['registry_login_server']}/{IMAGE_NAME}:{tag}"


def missing_outputs(outputs: dict[str, str]) -> list[str]:
    """The outputs the pool needs that the stack lacks."""
    return [name for name in REQUIRED_OUTPUTS if not outputs.get(name)]


def aci_pool_template(
    outputs: dict[str, str],
    image: str,
    credentials_block: str | None = None,
    *,
    preset: str = DEFAULT_PRESET,
    results_block: str = RESULTS_BLOCK,
) -> dict[str, Any]:
    """prefect-azure's ACI job template, its defaults filled from the Terraform outputs.

    Each container group runs as the stack's job identity: it pulls the image from the registry
    with it, and the node reads the Numerai keys from Key Vault with it (`AZURE_CLIENT_ID` makes
    DefaultAzureCredential choose it). No key is ever in the template. The result storage block
    lets a fresh container load the cached model instead of training.

    `credentials_block` is an AzureContainerInstanceCredentials block, by name or document id
    (a pool default references a block by id, so a name is looked up on the Prefect API).
    Without it the worker signs in with DefaultAzureCredential (e.g. its managed identity).
    """
    missing = missing_outputs(outputs)
    if missing:
        raise StackOutputsMissing(
            f"The Azure stack outputs lack {', '.join(missing)}. "
            f"Create or update the stack with `{UP_COMMAND}`."
        )
    for output, name in SECRET_OUTPUTS.items():
        if outputs[output] != name:
            raise StackOutputsMissing(
                f"The Azure stack keeps a Numerai key in Key Vault secret "
                f"{outputs[output]!r} (output {output}), but nodes read {name!r}. Update the "
                f"stack's Terraform to name it {name!r}, then run `{UP_COMMAND}`."
            )
    template = default_template(POOL_TYPE)
    identity = outputs["job_identity_id"]
    set_default(template, "subscription_id", outputs["subscription_id"])
    set_default(template, "resource_group_name", outputs["resource_group"])
    set_default(template, "image", image)
    set_default(template, "identities", [identity])
    set_default(
        template,
        "image_registry",
        {"registry_url": outputs["registry_login_server"], "identity": identity},
    )
    # The node image has no /opt/prefect/entrypoint.sh (prefect-azure's default): it runs the
    # worker's command as is.
    set_default(template, "entrypoint", "")
    for variable, value in job_variables(preset, POOL_TYPE).items():
        set_default(template, variable, value)
    env = {
        RESULT_STORAGE_ENV: f"{RESULTS_BLOCK_TYPE}/{results_block}",
        KEY_VAULT_URL_ENV: outputs["key_vault_uri"],
        CLIENT_ID_ENV: outputs["job_identity_client_id"],
        **heartbeat_env(),
    }
    set_default(template, "env", env)
    if credentials_block:
        block_id = credentials_block_id(credentials_block)
        set_default(template, "aci_credentials", {"$ref": {"block_document_id": block_id}})
    return template


def stack_pool_template(
    outputs: dict[str, str], settings: AciPoolSettings, push_block_id: str | None = None
) -> dict[str, Any]:
    """The template `up` gives the pool, from the outputs and the settings; a push pool's
    credentials are the AzureContainerInstanceCredentials block `push_block_id`."""
    return aci_pool_template(
        outputs,
        image=image_uri(outputs, settings.image_tag),
        credentials_block=push_block_id or settings.credentials_block,
        preset=settings.preset,
        results_block=settings.results_block,
    )


def credentials_block_id(name_or_id: str) -> str:
    """The document id of AzureContainerInstanceCredentials block `name_or_id` (an id is
    returned as is); an error says how to create the block."""
    try:
        return str(uuid.UUID(name_or_id))
    except ValueError:
        pass
    with get_client(sync_client=True) as client:
        try:
            document = client.read_block_document_by_name(name_or_id, CREDENTIALS_BLOCK_TYPE)
        except ObjectNotFound:
            raise CredentialsBlockMissing(
                f"No AzureContainerInstanceCredentials block named {name_or_id!r} on this "
                f"Prefect API. Create it (`prefect block create {CREDENTIALS_BLOCK_TYPE}`) or "
                "unset NUMERAI_NODES_AZURE_CREDENTIALS_BLOCK to let the worker use "
                "DefaultAzureCredential."
            ) from None
    return str(document.id)


def pool_mismatches(
    template: dict[str, Any], outputs: dict[str, str], settings: AciPoolSettings
) -> list[str]:
    """How the pool's template differs from what `up` would write: one line per variable."""
    expected = stack_pool_template(outputs, settings)
    problems = []
    for variable in _CHECKED_VARIABLES:
        actual, wanted = _default(template, variable), _default(expected, variable)
        if actual == wanted:
            continue
        # A deployment may pin another tag; the image must still come from the stack's registry.
        if variable == "image" and str(actual).startswith(f"{outputs['registry_login_server']}/"):
            continue
        if isinstance(wanted, str | int | float) and isinstance(actual, str | int | float | None):
            problems.append(f"{variable} is {actual!r}, the stack has {wanted!r}")
        else:
            problems.append(f"{variable} differs from the stack")
    return problems


def _default(template: dict[str, Any], variable: str) -> Any:
    return template.get("variables", {}).get("properties", {}).get(variable, {}).get("default")
