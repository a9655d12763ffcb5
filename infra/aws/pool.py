"""The ecs work pool: prefect-aws's job template filled from the stack, and how a pool drifted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deployments.presets import ECS, job_variables
from deployments.recovery import heartbeat_env
from infra.aws.cloudformation import region_of
from infra.aws.errors import UP_COMMAND, AwsSettingsError
from infra.pools import RESULT_STORAGE_ENV, PushPool, default_template, set_default

# The Prefect variable prefect.yaml names as the ECS node's image repository.
IMAGE_VARIABLE = "numerai_nodes_ecs_image"
# The environment variables `up --push` reads the push user's access key from.
PUSH_KEY_ENV = ("NUMERAI_NODES_AWS_PUSH_ACCESS_KEY_ID", "NUMERAI_NODES_AWS_PUSH_SECRET_ACCESS_KEY")
# The Prefect Cloud push pool of the stack: the ecs template, plus an AwsCredentials block.
ECS_PUSH = PushPool(
    hybrid_type=ECS,
    credentials_variable="aws_credentials",
    block_type="aws-credentials",
    up_command=UP_COMMAND,
    credentials_how=(
        "make an access key of the stack's push user (`aws iam create-access-key --user-name "
        f"<PushUserName output>`) and set {PUSH_KEY_ENV[0]} and {PUSH_KEY_ENV[1]}, or answer "
        "the hidden prompts"
    ),
)


def image_reference(outputs: dict[str, str], tag: str) -> str:
    """The node image in the stack's repository: `<RepositoryUri>:<tag>`."""
    return f"{outputs['RepositoryUri']}:{tag}"


def ecs_pool_template(
    outputs: dict[str, str],
    image: str,
    subnets: Iterable[str] | None = None,
    *,
    secrets: dict[str, str] | None = None,
    security_groups: Iterable[str] | None = None,
    vpc_id: str | None = None,
    block_name: str = "numerai-nodes-results",
    preset: str = "gen-m",
) -> dict[str, Any]:
    """prefect-aws's ECS job template with defaults from the stack's outputs.

    `secrets` maps an environment variable to a Secrets Manager ARN; the keys reach the container
    through the task definition's `secrets`, never as values. Subnets default to the stack's
    NetworkSubnetIds output; without any, the worker uses the default VPC.
    """
    template = default_template(ECS)
    result_env = {RESULT_STORAGE_ENV: f"s3-bucket/{block_name}", **heartbeat_env()}
    set_default(template, "cluster", outputs["ClusterName"])
    set_default(template, "execution_role_arn", outputs["ExecutionRoleArn"])
    set_default(template, "task_role_arn", outputs["TaskRoleArn"])
    set_default(template, "image", image)
    set_default(template, "env", result_env)
    set_default(template, "configure_cloudwatch_logs", True)
    set_default(
        template,
        "cloudwatch_logs_options",
        {
            "awslogs-group": outputs["LogGroupName"],
            "awslogs-region": region_of(outputs),
            # The stack owns the group; the execution role may not create groups.
            "awslogs-create-group": "false",
        },
    )
    for variable, value in job_variables(preset, ECS).items():
        set_default(template, variable, value)
    _set_network(template, outputs, list(subnets or []), security_groups, vpc_id)

    (container,) = template["job_configuration"]["task_definition"]["containerDefinitions"]
    # Container-level memory equals the task's, which Fargate accepts (and emulators require).
    container["memory"] = "{{ memory }}"
    # Also on the task definition, so a deployment that sets its own `env` keeps the S3 model cache.
    container["environment"] = [{"name": k, "value": v} for k, v in result_env.items()]
    if secrets:
        container["secrets"] = [
            {"name": env_name, "valueFrom": arn} for env_name, arn in sorted(secrets.items())
        ]
    return template


def _set_network(
    template: dict[str, Any],
    outputs: dict[str, str],
    subnets: list[str],
    security_groups: Iterable[str] | None,
    vpc_id: str | None,
) -> None:
    if not subnets and outputs.get("NetworkSubnetIds"):
        subnets = outputs["NetworkSubnetIds"].split(",")
    vpc_id = vpc_id or outputs.get("NetworkVpcId")
    if not subnets:
        return
    if not vpc_id:
        raise AwsSettingsError(
            "Subnets need their VPC: pass --vpc-id with --subnets (the worker checks that "
            "the subnets belong to it)."
        )
    set_default(template, "vpc_id", vpc_id)
    set_default(
        template,
        "network_configuration",
        {
            "subnets": subnets,
            "securityGroups": list(security_groups or []),
            "assignPublicIp": "ENABLED",
        },
    )


def template_defaults(template: dict[str, Any]) -> dict[str, Any]:
    """Each job variable's default value."""
    return {name: spec.get("default") for name, spec in template["variables"]["properties"].items()}


def template_secrets(template: dict[str, Any]) -> dict[str, str]:
    """The container `secrets` of the template's task definition: env name -> valueFrom."""
    containers = template["job_configuration"]["task_definition"].get("containerDefinitions", [])
    return {
        secret["name"]: secret["valueFrom"]
        for container in containers
        for secret in container.get("secrets", [])
    }


def pool_mismatches(
    template: dict[str, Any], outputs: dict[str, str], secrets: dict[str, str | None]
) -> list[str]:
    """How the pool's template differs from the stack: one line per mismatch."""
    defaults = template_defaults(template)
    expected = {
        "cluster": outputs.get("ClusterName"),
        "execution_role_arn": outputs.get("ExecutionRoleArn"),
        "task_role_arn": outputs.get("TaskRoleArn"),
    }
    problems = [
        f"{name} is {defaults.get(name)!r}, the stack has {value!r}"
        for name, value in expected.items()
        if defaults.get(name) != value
    ]
    image = defaults.get("image") or ""
    repository = outputs.get("RepositoryUri", "")
    if not image.startswith(f"{repository}:"):
        problems.append(f"image is {image!r}, not from the stack's repository {repository}")
    in_template = template_secrets(template)
    for env_name, arn in secrets.items():
        if arn is None:
            problems.append(f"secret {env_name} does not exist")
        elif in_template.get(env_name) != arn:
            problems.append(f"secret {env_name} does not point at the stack's secret")
    return problems
