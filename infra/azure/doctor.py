"""Doctor checks of the Azure stack: credentials, Terraform outputs, the pool, the keys."""

from __future__ import annotations

from azure.core.credentials import TokenCredential

from deployments.checks import Check
from flows.settings import PUBLIC_ID_ENV, SECRET_KEY_ENV
from infra.azure.credentials import credential_source
from infra.azure.errors import UP_COMMAND, AzureStackError, NoAzureCredentials
from infra.azure.pool import ACI_PUSH, missing_outputs, pool_mismatches
from infra.azure.secrets import KEY_OUTPUTS, KeyVault
from infra.azure.settings import AzureSettings
from infra.azure.terraform import Terraform
from infra.pools import pool_checks

_LOGIN_FIX = (
    "Run `az login` (or set AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET for a "
    f"service principal), then run `{UP_COMMAND}`."
)


def doctor_checks(
    pool_name: str,
    *,
    settings: AzureSettings | None = None,
    credential: TokenCredential | None = None,
) -> list[Check]:
    """Every check of the Azure stack, in order; Key Vault is asked only when credentials exist."""
    settings = settings or AzureSettings()
    checks = [_credentials()]
    outputs_check, outputs = _outputs(settings)
    checks.append(outputs_check)
    if not outputs:
        return checks
    checks += pool_checks(
        pool_name,
        outputs,
        ACI_PUSH,
        lambda template: pool_mismatches(template, outputs, settings),
        AzureStackError,
    )
    if credential is None and checks[0].status != "ok":
        return checks + _unchecked(outputs)
    try:
        with KeyVault(outputs["key_vault_uri"], credential) as vault:
            secrets = [_secret(vault, outputs, env, output) for env, output in KEY_OUTPUTS.items()]
        return checks + secrets
    except NoAzureCredentials as exc:
        # Found, but unusable: an expired `az login`, a wrong secret, a missing identity.
        checks[0] = Check(checks[0].name, "fail", f"{checks[0].detail}: {exc}", _LOGIN_FIX)
        return checks + _unchecked(outputs)


def _unchecked(outputs: dict[str, str]) -> list[Check]:
    return [
        Check(
            f"Secret {outputs[output]}",
            "warn",
            "not checked: no usable Azure credentials",
            _secret_fix(outputs, outputs[output]),
        )
        for output in KEY_OUTPUTS.values()
    ]


def _credentials() -> Check:
    name = "Azure credentials"
    source = credential_source()
    if source is None:
        return Check(
            name,
            "fail",
            "no Azure CLI login, no service principal in the environment, no managed identity",
            _LOGIN_FIX,
        )
    return Check(name, "ok", source)


def _outputs(settings: AzureSettings) -> tuple[Check, dict[str, str]]:
    name = "Terraform state"
    terraform = Terraform(settings)
    try:
        outputs = terraform.outputs()
    except AzureStackError as exc:
        return Check(name, "fail", str(exc), f"Create the stack with `{UP_COMMAND}`."), {}
    missing = missing_outputs(outputs)
    if missing:
        detail = (
            f"outputs lack {', '.join(missing)}"
            if outputs
            else f"no stack applied (no Terraform state in {terraform.work_dir})"
        )
        return Check(name, "fail", detail, f"Create or update the stack with `{UP_COMMAND}`."), {}
    detail = (
        f"subscription {outputs['subscription_id']}, resource group {outputs['resource_group']}, "
        f"location {outputs['location']}"
    )
    return Check(name, "ok", detail), outputs


def _secret(vault: KeyVault, outputs: dict[str, str], env: str, output: str) -> Check:
    secret = outputs[output]
    name = f"Secret {secret}"
    try:
        state = vault.state(secret)
    except NoAzureCredentials:
        raise
    except AzureStackError as exc:
        return Check(name, "warn", str(exc), _secret_fix(outputs, secret))
    if state == "set":
        return Check(name, "ok", f"set in Key Vault {outputs['key_vault_name']} ({env})")
    seen = {
        "missing": "does not exist",
        "disabled": "is disabled",
        "empty": "holds an empty value (a placeholder)",
    }[state]
    return Check(
        name,
        "fail",
        f"{seen}: the node containers cannot read {env}",
        f"Set {PUBLIC_ID_ENV} and {SECRET_KEY_ENV} and run `{UP_COMMAND}`.",
    )


def _secret_fix(outputs: dict[str, str], secret: str) -> str:
    return (
        f"Check with `az keyvault secret show --vault-name {outputs['key_vault_name']} --name "
        f"{secret} --query attributes`; store the keys with `{UP_COMMAND}`."
    )
