"""The nodes on AWS: the CloudFormation stack, the key secrets, the result block, the ecs pool."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from flows.errors import NodeError
from infra.pools import (
    RESULT_STORAGE_ENV,
    default_template,
    read_pool_template,
    require_prefect_api,
    set_default,
    set_variable,
    upsert_pool,
)
from infra.presets import ECS, Preset, job_variables

if TYPE_CHECKING:
    from boto3.session import Session

# Package data: an installed numerai-nodes finds its template too.
TEMPLATE = Path(__file__).with_name("stack.yaml")
# The value the stack creates the key secrets with; `up` replaces it with the real keys.
PLACEHOLDER = "numerai-nodes-placeholder"
# Stack output of each key secret's ARN -> the environment variable (and secret name suffix).
_SECRET_OUTPUTS = {
    "NumeraiPublicIdSecretArn": "NUMERAI_PUBLIC_ID",
    "NumeraiSecretKeySecretArn": "NUMERAI_SECRET_KEY",
}
KEY_SECRETS = {env_name: output for output, env_name in _SECRET_OUTPUTS.items()}
DEFAULT_SECRETS_PREFIX = "numerai-nodes/"
UP_COMMAND = "numerai-nodes infra aws up"
# The Prefect variable prefect.yaml names as the ECS node's image repository.
IMAGE_VARIABLE = "numerai_nodes_ecs_image"
_DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE")
_NO_UPDATES = "No updates are to be performed"


class AwsSettings(BaseSettings):
    """Where the nodes live on AWS; every field also reads env NUMERAI_NODES_AWS_<FIELD>."""

    model_config = SettingsConfigDict(
        env_prefix="NUMERAI_NODES_AWS_", env_file=".env", extra="ignore"
    )

    stack_name: str = Field("numerai-nodes", description="CloudFormation stack name.")
    region: str | None = Field(
        None, description="AWS region; unset means the AWS CLI's (AWS_REGION, AWS_PROFILE)."
    )
    pool_name: str = Field("ecs", description="Prefect work pool of type ecs the stack feeds.")
    image_tag: str = Field(
        "latest", description="Tag of the node image in the stack's ECR repository."
    )
    result_block: str = Field(
        "numerai-nodes-results",
        description="Name of the S3Bucket block that flow runs store results (the model) in.",
    )
    preset: Preset = Field("gen-m", description="Size preset of a flow run's ECS task by default.")
    poll_seconds: float = Field(
        5.0, description="How often to poll CloudFormation while a stack changes."
    )
    timeout_seconds: float = Field(
        1800.0, description="How long to wait for the stack to be created, updated or deleted."
    )


class AwsError(NodeError):
    """An expected failure on AWS; the message names the cause and the fix."""


class NoAwsCredentials(AwsError, PermissionError):
    """boto3 finds no usable AWS credentials (or no region)."""


class StackMissing(AwsError, LookupError):
    """The stack does not exist in this region."""


class StackFailed(AwsError):
    """The stack is, or ended, in a failed or rolled-back state."""


@dataclass(frozen=True)
class NumeraiKeys:
    """The Numerai API keys, kept as SecretStr so no repr or log shows them."""

    public_id: SecretStr
    secret_key: SecretStr

    def by_env_name(self) -> dict[str, SecretStr]:
        return {"NUMERAI_PUBLIC_ID": self.public_id, "NUMERAI_SECRET_KEY": self.secret_key}


@dataclass(frozen=True)
class StackEvent:
    """One CloudFormation stack event, as the CLI shows it."""

    timestamp: datetime
    logical_id: str
    resource_type: str
    status: str
    reason: str = ""


Progress = Callable[[StackEvent], None]


@dataclass
class UpResult:
    """What `up` did: the stack action and status, its outputs, the pool and the block."""

    stack_name: str
    region: str
    action: Literal["created", "updated", "unchanged"]
    stack_status: str
    outputs: dict[str, str]
    image: str
    pool_name: str
    pool_created: bool
    block_name: str
    keys_put: bool


@dataclass
class AwsStatus:
    """The stack, its outputs and whether the work pool still matches them."""

    stack_name: str
    region: str
    stack_status: str | None
    outputs: dict[str, str] = field(default_factory=dict)
    pool_name: str = "ecs"
    pool_present: bool = False
    pool_mismatches: list[str] = field(default_factory=list)

    @property
    def pool_matches(self) -> bool:
        return self.pool_present and not self.pool_mismatches

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "pool_matches": self.pool_matches}


# --- AWS access -------------------------------------------------------------------------------


def session(region: str | None) -> Session:
    """A boto3 session in `region`, with a clear error when credentials or region are missing."""
    import boto3
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    # boto3 reads AWS_DEFAULT_REGION and the profile; the AWS CLI and SDKs also honour AWS_REGION.
    aws = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
    if not aws.region_name:
        raise NoAwsCredentials(
            "No AWS region is set. Pass --region, or set AWS_REGION (or a region in your "
            f"AWS profile), then run `{UP_COMMAND}` again."
        )
    try:
        aws.client("sts").get_caller_identity()
    except NoCredentialsError:
        raise NoAwsCredentials(
            "No AWS credentials found. Run `aws configure` (or `aws sso login` and set "
            f"AWS_PROFILE), then run `{UP_COMMAND}` again."
        ) from None
    except EndpointConnectionError as exc:
        raise AwsError(
            f"AWS does not answer in {aws.region_name} ({_aws_message(exc)}). Check the network, "
            f"the region and AWS_ENDPOINT_URL if set, then run `{UP_COMMAND}` again."
        ) from None
    except (ClientError, BotoCoreError) as exc:
        raise NoAwsCredentials(
            f"AWS refused the credentials: {_aws_message(exc)}. Refresh them (`aws sso login`, "
            f"or new access keys), then run `{UP_COMMAND}` again."
        ) from None
    return aws


def caller_identity(aws: Session) -> dict[str, str]:
    """Account and ARN of the credentials in use."""
    identity = aws.client("sts").get_caller_identity()
    return {"account": identity["Account"], "arn": identity["Arn"]}


def describe_stack(aws: Session, stack_name: str) -> dict[str, Any] | None:
    """The stack's description, or None when it does not exist (or was deleted)."""
    from botocore.exceptions import ClientError

    try:
        stacks = aws.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in _aws_message(exc):
            return None
        raise AwsError(f"Could not read stack '{stack_name}': {_aws_message(exc)}") from None
    if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
        return None
    return stacks[0]


def stack_outputs(stack: dict[str, Any]) -> dict[str, str]:
    """The stack's outputs as a dict."""
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def region_of(outputs: dict[str, str]) -> str:
    """The region of the stack, read from its cluster ARN."""
    return outputs["ClusterArn"].split(":")[3]


def image_reference(outputs: dict[str, str], tag: str) -> str:
    """The node image in the stack's repository: `<RepositoryUri>:<tag>`."""
    return f"{outputs['RepositoryUri']}:{tag}"


def secret_names(stack: dict[str, Any]) -> dict[str, str]:
    """The key secrets' names, from the stack's SecretsPrefix parameter."""
    prefix = next(
        (
            parameter["ParameterValue"]
            for parameter in stack.get("Parameters", [])
            if parameter["ParameterKey"] == "SecretsPrefix"
        ),
        DEFAULT_SECRETS_PREFIX,
    )
    return {env_name: f"{prefix}{env_name}" for env_name in KEY_SECRETS}


def secret_arns(aws: Session, stack: dict[str, Any]) -> dict[str, str | None]:
    """Each key secret's ARN (from the outputs, else looked up by name); None when missing."""
    from botocore.exceptions import ClientError

    outputs = stack_outputs(stack)
    client = aws.client("secretsmanager")
    found: dict[str, str | None] = {}
    for env_name, name in secret_names(stack).items():
        arn = outputs.get(KEY_SECRETS[env_name])
        if arn is None:
            try:
                arn = client.describe_secret(SecretId=name)["ARN"]
            except ClientError:
                arn = None
        found[env_name] = arn
    return found


# --- the work pool ----------------------------------------------------------------------------


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
    region = region_of(outputs)
    result_env = {RESULT_STORAGE_ENV: f"s3-bucket/{block_name}"}
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
            "awslogs-region": region,
            # The stack owns the group; the execution role may not create groups.
            "awslogs-create-group": "false",
        },
    )
    for variable, value in job_variables(preset, ECS).items():
        set_default(template, variable, value)

    subnet_list = list(subnets or [])
    if not subnet_list and outputs.get("NetworkSubnetIds"):
        subnet_list = outputs["NetworkSubnetIds"].split(",")
    vpc_id = vpc_id or outputs.get("NetworkVpcId")
    if subnet_list:
        if not vpc_id:
            raise AwsError(
                "Subnets need their VPC: pass --vpc-id with --subnets (the worker checks that "
                "the subnets belong to it)."
            )
        set_default(template, "vpc_id", vpc_id)
        set_default(
            template,
            "network_configuration",
            {
                "subnets": subnet_list,
                "securityGroups": list(security_groups or []),
                "assignPublicIp": "ENABLED",
            },
        )

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


# --- up, down, status -------------------------------------------------------------------------


def up(
    settings: AwsSettings,
    keys: NumeraiKeys | None,
    *,
    subnets: list[str] | None = None,
    vpc_id: str | None = None,
    security_groups: list[str] | None = None,
    on_event: Progress | None = None,
) -> UpResult:
    """Create or update the stack, put the keys, save the result block, create the ecs pool.

    Without `keys` the secrets keep their values (doctor reports a placeholder).
    """
    aws = session(settings.region)
    require_prefect_api()  # before minutes of stack deployment, not after
    parameters: dict[str, str] = {}
    if vpc_id:
        parameters["VpcId"] = vpc_id
    if subnets:
        parameters["SubnetIds"] = ",".join(subnets)
    action = _deploy_stack(aws, settings, parameters, on_event)
    stack = describe_stack(aws, settings.stack_name)
    assert stack is not None  # _deploy_stack waited until it was complete
    outputs = stack_outputs(stack)
    arns = _put_keys(aws, stack, keys)
    block_name = _save_result_block(settings.result_block, outputs["BucketName"], aws.region_name)
    image = image_reference(outputs, settings.image_tag)
    template = ecs_pool_template(
        outputs,
        image,
        subnets,
        secrets=arns,
        security_groups=security_groups,
        vpc_id=vpc_id,
        block_name=block_name,
        preset=settings.preset,
    )
    created = upsert_pool(settings.pool_name, ECS, template)
    # prefect.yaml's ECS node tags its image build with this repository.
    set_variable(IMAGE_VARIABLE, outputs["RepositoryUri"])
    return UpResult(
        stack_name=settings.stack_name,
        region=aws.region_name,
        action=action,
        stack_status=stack["StackStatus"],
        outputs=outputs,
        image=image,
        pool_name=settings.pool_name,
        pool_created=created,
        block_name=block_name,
        keys_put=keys is not None,
    )


def down(
    settings: AwsSettings, *, delete_bucket: bool = False, on_event: Progress | None = None
) -> list[str]:
    """Delete the stack (its images and key secrets first), then the pool and the block.

    The bucket holds trained models and outlives the stack unless `delete_bucket`. Returns what
    was done, one line each.
    """
    from botocore.exceptions import ClientError

    aws = session(settings.region)
    done: list[str] = []
    stack = describe_stack(aws, settings.stack_name)
    if stack is None:
        done.append(f"stack {settings.stack_name} does not exist in {aws.region_name}")
    else:
        outputs = stack_outputs(stack)
        if "RepositoryName" in outputs:
            deleted = _empty_repository(aws, outputs["RepositoryName"])
            if deleted:
                done.append(f"deleted {deleted} image(s) from {outputs['RepositoryName']}")
        client = aws.client("secretsmanager")
        # Without recovery: a later `up` recreates secrets of the same names at once.
        for name in secret_names(stack).values():
            try:
                client.delete_secret(SecretId=name, ForceDeleteWithoutRecovery=True)
                done.append(f"deleted secret {name}")
            except ClientError:
                pass
        if delete_bucket and "BucketName" in outputs:
            _delete_bucket(aws, outputs["BucketName"])
            done.append(f"deleted bucket {outputs['BucketName']}")
        elif "BucketName" in outputs:
            done.append(
                f"kept bucket {outputs['BucketName']} (trained models); `down --delete-bucket` "
                "deletes it"
            )
        cloudformation = aws.client("cloudformation")
        seen = _event_ids(cloudformation, stack["StackId"])
        cloudformation.delete_stack(StackName=stack["StackId"])
        status = _wait(aws, stack["StackId"], seen, settings, on_event)
        if status != "DELETE_COMPLETE":
            raise StackFailed(
                f"Deleting stack {settings.stack_name} ended in {status}. "
                f"{_failure_reason(cloudformation, stack['StackId'])} Fix the resource named "
                "there (or delete it by hand), then run `numerai-nodes infra aws down` again."
            )
        done.append(f"deleted stack {settings.stack_name}")
    if _delete_pool(settings.pool_name):
        done.append(f"deleted work pool {settings.pool_name}")
    if _delete_block(settings.result_block):
        done.append(f"deleted block s3-bucket/{settings.result_block}")
    return done


def status(settings: AwsSettings) -> AwsStatus:
    """The stack's status and outputs, and whether the pool matches them."""
    aws = session(settings.region)
    result = AwsStatus(
        stack_name=settings.stack_name,
        region=aws.region_name,
        stack_status=None,
        pool_name=settings.pool_name,
    )
    stack = describe_stack(aws, settings.stack_name)
    template = read_pool_template(settings.pool_name)
    result.pool_present = template is not None
    if stack is None:
        return result
    result.stack_status = stack["StackStatus"]
    result.outputs = stack_outputs(stack)
    if template is not None and "ClusterName" in result.outputs:
        result.pool_mismatches = pool_mismatches(template, result.outputs, secret_arns(aws, stack))
    return result


# --- internals --------------------------------------------------------------------------------


def _deploy_stack(
    aws: Session, settings: AwsSettings, parameters: dict[str, str], on_event: Progress | None
) -> Literal["created", "updated", "unchanged"]:
    from botocore.exceptions import ClientError

    cloudformation = aws.client("cloudformation")
    name = settings.stack_name
    existing = describe_stack(aws, name)
    request: dict[str, Any] = {
        "StackName": name,
        "TemplateBody": TEMPLATE.read_text(),
        "Capabilities": ["CAPABILITY_NAMED_IAM"],
    }
    if existing is None:
        request["Parameters"] = [
            {"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()
        ]
        response = cloudformation.create_stack(**request, OnFailure="ROLLBACK")
        stack_id, action = response["StackId"], "created"
        seen: set[str] = set()
    else:
        _check_updatable(existing)
        stack_id = existing["StackId"]
        previous = {p["ParameterKey"] for p in existing.get("Parameters", [])}
        request["Parameters"] = [
            {"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()
        ] + [
            {"ParameterKey": key, "UsePreviousValue": True}
            for key in sorted(previous - parameters.keys())
        ]
        seen = _event_ids(cloudformation, stack_id)
        try:
            cloudformation.update_stack(**request)
        except ClientError as exc:
            if _NO_UPDATES in _aws_message(exc):
                return "unchanged"
            raise AwsError(f"Could not update stack {name}: {_aws_message(exc)}") from None
        action = "updated"
    final = _wait(aws, stack_id, seen, settings, on_event)
    if final not in _DONE:
        raise StackFailed(
            f"Stack {name} ended in {final}. {_failure_reason(cloudformation, stack_id)} "
            + (
                "Delete it with `numerai-nodes infra aws down`, fix the cause, then run "
                f"`{UP_COMMAND}` again."
                if final == "ROLLBACK_COMPLETE"
                else f"Fix the cause, then run `{UP_COMMAND}` again."
            )
        )
    return action


def _check_updatable(stack: dict[str, Any]) -> None:
    name, state = stack["StackName"], stack["StackStatus"]
    if state == "ROLLBACK_COMPLETE" or state.endswith("_FAILED"):
        reason = stack.get("StackStatusReason") or "its last change failed"
        raise StackFailed(
            f"Stack {name} is in {state} ({reason}) and cannot be updated. Delete it with "
            "`numerai-nodes infra aws down`, then run "
            f"`{UP_COMMAND}` again."
        )
    if state.endswith("_IN_PROGRESS"):
        raise StackFailed(
            f"Stack {name} is busy ({state}). Wait until it settles (`numerai-nodes infra aws "
            f"status`), then run `{UP_COMMAND}` again."
        )


def _event_ids(cloudformation: Any, stack_id: str) -> set[str]:
    events = cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
    return {event["EventId"] for event in events}


def _wait(
    aws: Session,
    stack_id: str,
    seen: set[str],
    settings: AwsSettings,
    on_event: Progress | None,
) -> str:
    """Poll until the stack settles, passing each new event to `on_event`; the final status."""
    cloudformation = aws.client("cloudformation")
    deadline = time.monotonic() + settings.timeout_seconds
    while True:
        events = cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
        for event in reversed(events):  # oldest first
            if event["EventId"] in seen:
                continue
            seen.add(event["EventId"])
            if on_event is not None:
                on_event(
                    StackEvent(
                        timestamp=event["Timestamp"],
                        logical_id=event["LogicalResourceId"],
                        resource_type=event.get("ResourceType", ""),
                        status=event["ResourceStatus"],
                        reason=event.get("ResourceStatusReason", ""),
                    )
                )
        state = cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0]["StackStatus"]
        if not state.endswith("_IN_PROGRESS"):
            return state
        if time.monotonic() > deadline:
            raise StackFailed(
                f"Stack {stack_id} is still {state} after {settings.timeout_seconds:.0f} s. "
                "Follow it in the CloudFormation console, then run `numerai-nodes infra aws "
                "status`."
            )
        time.sleep(settings.poll_seconds)


def _failure_reason(cloudformation: Any, stack_id: str) -> str:
    events = cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
    for event in reversed(events):
        if event["ResourceStatus"].endswith("_FAILED") and event.get("ResourceStatusReason"):
            return f"First failure: {event['LogicalResourceId']}: {event['ResourceStatusReason']}."
    return ""


def _put_keys(aws: Session, stack: dict[str, Any], keys: NumeraiKeys | None) -> dict[str, str]:
    """Put the keys into their secrets (creating a secret the stack lacks); env name -> ARN."""
    from botocore.exceptions import ClientError

    client = aws.client("secretsmanager")
    arns = secret_arns(aws, stack)
    names = secret_names(stack)
    values = keys.by_env_name() if keys else {}
    result: dict[str, str] = {}
    for env_name, arn in arns.items():
        value = values.get(env_name)
        if arn is None:
            # A stack deployed from an older template (or an emulator) lacks the secret.
            created = client.create_secret(
                Name=names[env_name],
                Description=f"Numerai API key {env_name} of the nodes.",
                SecretString=value.get_secret_value() if value else PLACEHOLDER,
            )
            result[env_name] = created["ARN"]
            continue
        result[env_name] = arn
        if value is None:
            continue
        try:
            current = client.get_secret_value(SecretId=arn).get("SecretString")
        except ClientError:
            current = None
        if current != value.get_secret_value():
            try:
                client.put_secret_value(SecretId=arn, SecretString=value.get_secret_value())
            except ClientError as exc:
                raise AwsError(
                    f"Could not put {env_name} into secret {names[env_name]}: "
                    f"{_aws_message(exc)}. Check that your AWS identity may write it."
                ) from None
    return result


def _save_result_block(name: str, bucket: str, region: str) -> str:
    """Save the S3Bucket block flow runs keep results in; ambient credentials (the task role)."""
    from prefect_aws import AwsCredentials, S3Bucket

    S3Bucket(bucket_name=bucket, credentials=AwsCredentials(region_name=region)).save(
        name, overwrite=True
    )
    return name


def _delete_pool(name: str) -> bool:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            if client.read_work_pool(name).type != ECS:
                return False
            client.delete_work_pool(name)
        except ObjectNotFound:
            return False
    return True


def _delete_block(name: str) -> bool:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            block = client.read_block_document_by_name(name, "s3-bucket")
            client.delete_block_document(block.id)
        except ObjectNotFound:
            return False
    return True


def _empty_repository(aws: Session, repository: str) -> int:
    from botocore.exceptions import ClientError

    ecr = aws.client("ecr")
    deleted = 0
    try:
        for page in ecr.get_paginator("list_images").paginate(repositoryName=repository):
            ids = page.get("imageIds", [])
            if ids:
                ecr.batch_delete_image(repositoryName=repository, imageIds=ids)
                deleted += len(ids)
    except ClientError:
        return deleted
    return deleted


def _delete_bucket(aws: Session, bucket: str) -> None:
    from botocore.exceptions import ClientError

    s3 = aws.client("s3")
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            objects = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for item in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            if objects:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if "NoSuchBucket" not in str(exc):
            raise AwsError(f"Could not delete bucket {bucket}: {_aws_message(exc)}") from None


def _aws_message(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return error.get("Message") or error.get("Code") or str(exc)
    return str(exc)
