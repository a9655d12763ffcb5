"""Doctor checks of the GCP stack: credentials, Terraform outputs, the pool, the keys, the image."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx

from deployments.checks import Check
from deployments.doctor import live_workers
from flows.settings import PUBLIC_ID_ENV, SECRET_KEY_ENV
from infra.gcp.errors import UP_COMMAND, GcpStackError
from infra.gcp.pool import (
    CLOUD_RUN_PUSH,
    IMAGE_NAME,
    SECRET_OUTPUTS,
    image_uri,
    missing_outputs,
    pool_mismatches,
)
from infra.gcp.secrets import SecretManager, adc_token, send
from infra.gcp.settings import GcpSettings
from infra.gcp.terraform import Terraform
from infra.pools import pool_checks


def doctor_checks(
    pool_name: str,
    *,
    settings: GcpSettings | None = None,
    token: Callable[[], str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> list[Check]:
    """Every check of the GCP stack, in order; the API checks run only when credentials work."""
    settings = settings or GcpSettings()
    checks = [_credentials()]
    outputs_check, outputs = _outputs(settings)
    checks.append(outputs_check)
    if not outputs:
        return checks
    checks += pool_checks(
        pool_name,
        outputs,
        CLOUD_RUN_PUSH,
        lambda template: pool_mismatches(template, outputs, settings),
        GcpStackError,
    )
    if outputs.get("worker_service_name"):
        checks.append(_hosted_worker(pool_name, outputs))
    if token is None and checks[0].status != "ok":
        checks += _unchecked(outputs, settings)
        return checks
    token = token or adc_token
    checks += _secrets(outputs, SecretManager(settings.secret_manager_url, token, transport))
    checks.append(_image(outputs, settings, token, transport))
    return checks


def _credentials() -> Check:
    name = "GCP credentials"
    path = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path:
        if Path(path).is_file():
            return Check(name, "ok", f"GOOGLE_APPLICATION_CREDENTIALS names {path}")
        return Check(
            name,
            "fail",
            f"GOOGLE_APPLICATION_CREDENTIALS names {path}, which does not exist",
            f"Point it at a service account key file (or unset it and run `gcloud auth "
            f"application-default login`), then run `{UP_COMMAND}`.",
        )
    config = Path(os.environ.get("CLOUDSDK_CONFIG") or Path.home() / ".config" / "gcloud")
    if (config / "application_default_credentials.json").is_file():
        return Check(name, "ok", "gcloud Application Default Credentials")
    return Check(
        name,
        "fail",
        "no GOOGLE_APPLICATION_CREDENTIALS and no gcloud Application Default Credentials",
        f"Run `gcloud auth application-default login` (or set GOOGLE_APPLICATION_CREDENTIALS), "
        f"then run `{UP_COMMAND}`.",
    )


def _outputs(settings: GcpSettings) -> tuple[Check, dict[str, str]]:
    name = "Terraform state"
    terraform = Terraform(settings)
    try:
        outputs = terraform.outputs()
    except GcpStackError as exc:
        return Check(name, "fail", str(exc), f"Create the stack with `{UP_COMMAND}`."), {}
    missing = missing_outputs(outputs)
    if missing:
        detail = (
            f"outputs lack {', '.join(missing)}"
            if outputs
            else f"no stack applied (no Terraform state in {terraform.work_dir})"
        )
        return Check(name, "fail", detail, f"Create or update the stack with `{UP_COMMAND}`."), {}
    return Check(name, "ok", f"project {outputs['project']}, region {outputs['region']}"), outputs


def _hosted_worker(pool_name: str, outputs: dict[str, str]) -> Check:
    """The stack's worker service heartbeats on the pool, else where to read its logs."""
    service = outputs["worker_service_name"]
    name = f"Worker service {service}"
    logs = (
        f"`gcloud run services logs read {service} --project {outputs['project']} "
        f"--region {outputs['region']}`"
    )
    try:
        alive = live_workers(pool_name)
    except (httpx.HTTPError, RuntimeError) as exc:
        return Check(name, "warn", f"could not read the pool's workers ({type(exc).__name__})")
    if alive:
        return Check(name, "ok", f"live worker(s) on {pool_name}: {', '.join(alive)}")
    return Check(
        name,
        "fail",
        f"no live worker on {pool_name}: the service's worker does not reach this Prefect API "
        "(or does not start), so flow runs stay Scheduled",
        f"Read its logs: {logs}. A wrong PREFECT_API_URL or key: run `{UP_COMMAND}` with the "
        "Prefect profile the worker should use (it stores PREFECT_API_KEY in the secret "
        f"{outputs.get('prefect_api_key_secret') or 'prefect-api-key'}).",
    )


def _secrets(outputs: dict[str, str], secrets: SecretManager) -> list[Check]:
    checks = []
    for env, output in SECRET_OUTPUTS.items():
        secret = outputs[output]
        name = f"Secret {secret}"
        try:
            present = secrets.has_version(outputs["project"], secret)
        except GcpStackError as exc:
            checks.append(Check(name, "warn", str(exc), _secret_fix(outputs, secret)))
            continue
        if present:
            checks.append(Check(name, "ok", f"has an enabled version ({env})"))
        else:
            checks.append(
                Check(
                    name,
                    "fail",
                    f"no enabled version: Cloud Run jobs cannot read {env}",
                    f"Set {PUBLIC_ID_ENV} and {SECRET_KEY_ENV} and run `{UP_COMMAND}`.",
                )
            )
    return checks


def _secret_fix(outputs: dict[str, str], secret: str) -> str:
    return (
        f"Check with `gcloud secrets versions list {secret} --project {outputs['project']}`; "
        f"store the keys with `{UP_COMMAND}`."
    )


def _image(
    outputs: dict[str, str],
    settings: GcpSettings,
    token: Callable[[], str],
    transport: httpx.BaseTransport | None,
) -> Check:
    image = image_uri(outputs, settings.image_tag)
    name = "Node image"
    push = (
        f"Push it: `gcloud auth configure-docker {image.split('/')[0]}`, then "
        f"`docker build -t {image} . && docker push {image}` (the repository comes from "
        f"`{UP_COMMAND}`)."
    )
    repository = outputs.get("repository_id") or outputs["repository_url"].rsplit("/", 1)[-1]
    path = (
        f"/v1/projects/{outputs['project']}/locations/{outputs['region']}/repositories/"
        f"{repository}/packages/{IMAGE_NAME}/tags/{settings.image_tag}"
    )
    try:
        with httpx.Client(
            base_url=settings.artifact_registry_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token()}"},
            transport=transport,
            timeout=30,
        ) as client:
            response = send(client, "GET", path)
    except GcpStackError as exc:
        return Check(name, "warn", f"could not check {image} ({type(exc).__name__})", push)
    if response.status_code == 200:
        return Check(name, "ok", image)
    if response.status_code == 404:
        return Check(name, "fail", f"{image} is not in the registry", push)
    return Check(name, "warn", f"could not check {image} (HTTP {response.status_code})", push)


def _unchecked(outputs: dict[str, str], settings: GcpSettings) -> list[Check]:
    image = image_uri(outputs, settings.image_tag)
    checks = [
        Check(
            f"Secret {outputs[output]}",
            "warn",
            "not checked: no GCP credentials",
            _secret_fix(outputs, outputs[output]),
        )
        for output in SECRET_OUTPUTS.values()
    ]
    checks.append(
        Check(
            "Node image",
            "warn",
            "not checked: no GCP credentials",
            f"Check with `gcloud artifacts docker images list {image.rsplit(':', 1)[0]}`; the "
            f"repository comes from `{UP_COMMAND}`.",
        )
    )
    return checks
