"""The nodes on AWS: `up`, `down` and `status` of the stack, its secrets, the block and the pool."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from boto3.session import Session
from botocore.exceptions import ClientError
from prefect_aws import AwsCredentials, S3Bucket
from pydantic import SecretStr

from deployments import recovery
from deployments.presets import ECS
from infra.aws.cloudformation import (
    Action,
    Progress,
    aws_message,
    delete_stack,
    deploy_stack,
    describe_stack,
    no_progress,
    session,
    stack_outputs,
)
from infra.aws.errors import UP_COMMAND, AwsError
from infra.aws.pool import (
    ECS_PUSH,
    IMAGE_VARIABLE,
    ecs_pool_template,
    image_reference,
    pool_mismatches,
)
from infra.aws.secrets import delete_secrets, put_keys, secret_arns
from infra.aws.settings import AwsSettings
from infra.cloud import (
    NumeraiKeys,
    PlaceStatus,
    missing_stack_status,
    remove_pool_and_block,
    stack_status,
)
from infra.pools import (
    block_id_by_name,
    read_pool_template,
    require_prefect_api,
    save_block,
    set_variable,
    upsert_pool,
)

PLACE = "aws"
_BLOCK_TYPE = "s3-bucket"


@dataclass(frozen=True)
class UpResult:
    """What `up` did: the stack action and status, its outputs, the pool and the block."""

    stack_name: str
    region: str
    action: Action
    stack_status: str
    outputs: dict[str, str]
    image: str
    pool_name: str
    pool_created: bool
    block_name: str
    keys_stored: bool
    pool_type: str = ECS
    push_block: str | None = None  # the AwsCredentials block of an ecs:push pool
    hint: str | None = None  # on Prefect Cloud with a hybrid pool: how to choose push

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def up(
    settings: AwsSettings,
    keys: NumeraiKeys | None,
    progress: Progress = no_progress,
    *,
    subnets: list[str] | None = None,
    vpc_id: str | None = None,
    security_groups: list[str] | None = None,
    push: bool | None = None,
    ask: Callable[[str], str] | None = None,
) -> UpResult:
    """Create or update the stack, put the keys, save the result block, create the ecs pool.

    Without `keys` the secrets keep their values (doctor reports a placeholder). `push` makes an
    ecs:push pool (Prefect Cloud only) and False a hybrid one; None keeps what the stack recorded.
    A push pool's access key comes from the settings, else from `ask(label)` (hidden prompts).
    """
    aws = session(settings.region)
    api_url = require_prefect_api()  # before minutes of stack deployment, not after
    existing = describe_stack(aws, settings.stack_name)
    recorded = recorded_push(existing)
    push = ECS_PUSH.choose(push, recorded, api_url)
    ECS_PUSH.require_type(settings.pool_name, push)
    parameters: dict[str, str] = {}
    if push != recorded:
        parameters["PushPool"] = "true" if push else "false"
    if existing is not None and recorded and not push:
        # CloudFormation cannot delete a user that still has access keys.
        _delete_push_keys(aws, stack_outputs(existing))
    if vpc_id:
        parameters["VpcId"] = vpc_id
    if subnets:
        parameters["SubnetIds"] = ",".join(subnets)
    action = deploy_stack(aws, settings, parameters, progress)
    stack = describe_stack(aws, settings.stack_name)
    assert stack is not None  # deploy_stack waited until it was complete
    outputs = stack_outputs(stack)
    arns = put_keys(aws, stack, keys)
    _save_result_block(settings.result_block, outputs["BucketName"], aws.region_name)
    image = image_reference(outputs, settings.image_tag)
    template = ecs_pool_template(
        outputs,
        image,
        subnets,
        secrets=arns,
        security_groups=security_groups,
        vpc_id=vpc_id,
        block_name=settings.result_block,
        preset=settings.preset,
    )
    push_block = None
    if push:
        push_block = settings.push_credentials_block
        ECS_PUSH.reference(template, _push_credentials(settings, outputs, aws.region_name, ask))
    pool_type = ECS_PUSH.type if push else ECS
    created = upsert_pool(settings.pool_name, pool_type, template)
    recovery.apply()  # crashed and silent node runs run again, on any pool
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
        block_name=settings.result_block,
        keys_stored=keys is not None,
        pool_type=pool_type,
        push_block=push_block,
        hint=ECS_PUSH.hint(settings.pool_name, push, api_url),
    )


def recorded_push(stack: dict[str, Any] | None) -> bool:
    """Whether the stack was set up for an ecs:push pool (its PushPool parameter)."""
    for parameter in (stack or {}).get("Parameters", []):
        if parameter["ParameterKey"] == "PushPool":
            return bool(parameter["ParameterValue"] == "true")
    return False


def _push_credentials(
    settings: AwsSettings, outputs: dict[str, str], region: str, ask: Callable[[str], str] | None
) -> str:
    """The id of the push pool's AwsCredentials block: saved from the key given, else the one
    saved before. The key goes from the settings or prompt into the block only."""
    name = settings.push_credentials_block
    key_id, secret = settings.push_access_key_id, settings.push_secret_access_key
    existing = block_id_by_name(name, ECS_PUSH.block_type)
    if not (key_id and secret) and existing is None and ask is not None:
        user = outputs.get("PushUserName", "the stack's push user")
        hint = f"`aws iam create-access-key --user-name {user}` makes one"
        key_id = key_id or SecretStr(ask(f"Access key id of IAM user {user} ({hint})").strip())
        secret = secret or SecretStr(ask(f"Secret access key of IAM user {user}").strip())
    if key_id and key_id.get_secret_value() and secret and secret.get_secret_value():
        block = AwsCredentials(
            aws_access_key_id=key_id.get_secret_value(),
            aws_secret_access_key=secret,
            region_name=region,
        )
        return save_block(block, name)
    if existing is None:
        raise ECS_PUSH.credentials_missing(name)
    return existing


def _delete_push_keys(aws: Session, outputs: dict[str, str]) -> list[str]:
    """Delete the access keys of the stack's push user, so the stack can delete the user."""
    user = outputs.get("PushUserName")
    if not user:
        return []
    iam = aws.client("iam")
    try:
        keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        for key in keys:
            iam.delete_access_key(UserName=user, AccessKeyId=key["AccessKeyId"])
    except ClientError as exc:
        if "NoSuchEntity" in str(exc):
            return []
        raise AwsError(
            f"Could not delete the access keys of IAM user {user}: {aws_message(exc)}. Delete "
            f"them (`aws iam list-access-keys --user-name {user}`), then run this again."
        ) from None
    return [f"deleted {len(keys)} access key(s) of IAM user {user}"] if keys else []


def down(
    settings: AwsSettings, *, delete_bucket: bool = False, progress: Progress = no_progress
) -> list[str]:
    """Delete the stack (its images and key secrets first), then the pool and the block.

    The bucket holds trained models and outlives the stack unless `delete_bucket`. Returns what
    was done, one line each.
    """
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
        done += [f"deleted secret {name}" for name in delete_secrets(aws, stack)]
        done += _delete_push_keys(aws, outputs)
        if "BucketName" in outputs:
            done.append(_bucket(aws, outputs["BucketName"], delete_bucket))
        delete_stack(aws, stack, settings, progress)
        done.append(f"deleted stack {settings.stack_name}")
    done += remove_pool_and_block(settings.pool_name, ECS, settings.result_block, _BLOCK_TYPE)
    done += ECS_PUSH.remove(settings.pool_name, settings.push_credentials_block)
    return done


def status(settings: AwsSettings) -> PlaceStatus:
    """The stack's status and outputs, and whether the pool matches them."""
    aws = session(settings.region)
    where = f"stack {settings.stack_name} in {aws.region_name}"
    stack = describe_stack(aws, settings.stack_name)
    template = read_pool_template(settings.pool_name)
    if stack is None:
        return missing_stack_status(
            PLACE,
            where,
            pool_name=settings.pool_name,
            pool_exists=template is not None,
            problem=f"{where} does not exist; `{UP_COMMAND}` creates it",
        )
    state = stack["StackStatus"]
    outputs = stack_outputs(stack)
    broken = "ROLLBACK" in state or not state.endswith("_COMPLETE")
    return stack_status(
        PLACE,
        where,
        pool_name=settings.pool_name,
        pool_template=template,
        stack_state=state,
        outputs=outputs,
        problems=[f"{where} is {state}"] if broken else [],
        mismatches=(
            (lambda found: pool_mismatches(found, outputs, secret_arns(aws, stack)))
            if "ClusterName" in outputs
            else None
        ),
    )


def _save_result_block(name: str, bucket: str, region: str) -> None:
    """Save the S3Bucket block flow runs keep results in; ambient credentials (the task role)."""
    S3Bucket(bucket_name=bucket, credentials=AwsCredentials(region_name=region)).save(
        name, overwrite=True
    )


def _empty_repository(aws: Session, repository: str) -> int:
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


def _bucket(aws: Session, bucket: str, delete: bool) -> str:
    """Delete the bucket and every version in it, or keep it; what was done."""
    if not delete:
        return f"kept bucket {bucket} (trained models); `down --delete-bucket` deletes it"
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
            raise AwsError(f"Could not delete bucket {bucket}: {aws_message(exc)}") from None
    return f"deleted bucket {bucket}"
