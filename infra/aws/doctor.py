"""Doctor checks for AWS: credentials, the stack, the ecs pool, the node image, the key secrets."""

from __future__ import annotations

from typing import Any

from boto3.session import Session
from botocore.exceptions import ClientError

from deployments.checks import Check
from flows.settings import PUBLIC_ID_ENV, SECRET_KEY_ENV
from infra.aws.cloudformation import caller_identity, describe_stack, session, stack_outputs
from infra.aws.errors import DOWN_COMMAND, UP_COMMAND, AwsError
from infra.aws.place import recorded_push
from infra.aws.pool import ECS_PUSH, pool_mismatches, template_defaults
from infra.aws.secrets import PLACEHOLDER, secret_arns, secret_names
from infra.aws.settings import AwsSettings
from infra.pools import read_pool_template, read_pool_type


def doctor_checks(pool_name: str, *, settings: AwsSettings | None = None) -> list[Check]:
    """Every AWS check in order; a check that cannot run without an earlier one is left out."""
    settings = settings or AwsSettings()
    try:
        aws = session(settings.region)
        identity = caller_identity(aws)
    except AwsError as exc:
        return [Check("aws credentials", "fail", str(exc), f"Fix that, then run `{UP_COMMAND}`.")]
    checks = [
        Check(
            "aws credentials",
            "ok",
            f"account {identity['account']} as {identity['arn']} in {aws.region_name}",
        )
    ]
    stack = describe_stack(aws, settings.stack_name)
    checks.append(_stack(stack, settings.stack_name, aws.region_name))
    if stack is None or "ClusterName" not in stack_outputs(stack):
        return checks
    outputs = stack_outputs(stack)
    arns = secret_arns(aws, stack)
    template = read_pool_template(pool_name)
    checks.append(_pool(template, pool_name, outputs, arns))
    checks += ECS_PUSH.checks(pool_name, read_pool_type(pool_name), template, recorded_push(stack))
    if template is not None:
        checks.append(_image(aws, template, outputs))
    checks += _secrets(aws, stack, arns)
    return checks


def _stack(stack: dict[str, Any] | None, name: str, region: str) -> Check:
    if stack is None:
        return Check(
            "aws stack",
            "fail",
            f"stack {name} does not exist in {region}",
            f"Run `{UP_COMMAND}` (add --region if the stack lives in another region).",
        )
    state = stack["StackStatus"]
    if state.endswith("_COMPLETE") and "ROLLBACK" not in state and "DELETE" not in state:
        return Check("aws stack", "ok", f"stack {name} is {state}")
    reason = stack.get("StackStatusReason") or ""
    fix = (
        "Wait for it to settle, then check again."
        if state.endswith("_IN_PROGRESS")
        else f"Delete it with `{DOWN_COMMAND}`, then run `{UP_COMMAND}`."
        if state == "ROLLBACK_COMPLETE"
        else f"Run `{UP_COMMAND}` to roll it forward."
    )
    return Check("aws stack", "fail", f"stack {name} is {state} {reason}".strip(), fix)


def _pool(
    template: dict[str, Any] | None,
    pool_name: str,
    outputs: dict[str, str],
    arns: dict[str, str | None],
) -> Check:
    if template is None:
        return Check(
            "ecs pool",
            "fail",
            f"work pool {pool_name} does not exist on this Prefect API",
            f"Run `{UP_COMMAND}` with PREFECT_API_URL pointing at this API.",
        )
    problems = pool_mismatches(template, outputs, arns)
    if problems:
        return Check(
            "ecs pool",
            "fail",
            f"work pool {pool_name} does not match the stack: " + "; ".join(problems),
            f"Run `{UP_COMMAND}` to rewrite the pool's template from the stack.",
        )
    return Check("ecs pool", "ok", f"work pool {pool_name} matches the stack")


def _image(aws: Session, template: dict[str, Any], outputs: dict[str, str]) -> Check:
    image = template_defaults(template).get("image") or ""
    repository, _, tag = image.rpartition(":")
    if repository != outputs["RepositoryUri"] or not tag:
        return Check(
            "node image",
            "fail",
            f"the pool's image {image!r} is not a tag in {outputs['RepositoryUri']}",
            f"Run `{UP_COMMAND} --image-tag <tag>`.",
        )
    try:
        aws.client("ecr").describe_images(
            repositoryName=outputs["RepositoryName"], imageIds=[{"imageTag": tag}]
        )
    except ClientError:
        return Check(
            "node image",
            "fail",
            f"{image} is not in ECR",
            f"Build and push it: `aws ecr get-login-password | docker login --username AWS "
            f"--password-stdin {repository.split('/')[0]}`, `docker buildx build --platform "
            f"linux/amd64 -t {image} --push .`; or run `{UP_COMMAND} --image-tag <a pushed tag>`.",
        )
    return Check("node image", "ok", f"{image} is in ECR")


def _secrets(aws: Session, stack: dict[str, Any], arns: dict[str, str | None]) -> list[Check]:
    client = aws.client("secretsmanager")
    names = secret_names(stack)
    fix = (
        f"Set {PUBLIC_ID_ENV} and {SECRET_KEY_ENV} (or answer the prompts) and run `{UP_COMMAND}`."
    )
    checks = []
    for env_name, arn in arns.items():
        name = f"secret {env_name}"
        if arn is None:
            checks.append(Check(name, "fail", f"{names[env_name]} does not exist", fix))
            continue
        try:
            value = client.get_secret_value(SecretId=arn).get("SecretString")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "an error")
            checks.append(Check(name, "fail", f"{names[env_name]} cannot be read ({code})", fix))
            continue
        if not value or value == PLACEHOLDER:
            checks.append(Check(name, "fail", f"{names[env_name]} holds no key yet", fix))
        else:
            checks.append(Check(name, "ok", f"{names[env_name]} holds a key"))
    return checks
