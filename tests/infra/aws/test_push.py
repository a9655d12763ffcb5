"""`infra aws up --push`: an ecs:push pool on a Prefect Cloud-shaped API, its block, doctor."""

from __future__ import annotations

import asyncio
import json
import uuid

import boto3
import pytest
from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect_aws import AwsCredentials
from prefect_aws.workers.ecs_worker import ECSWorker
from typer.testing import CliRunner

from deployments.cli.infra_aws import app
from infra.aws.cloudformation import describe_stack, session, stack_outputs
from infra.aws.doctor import doctor_checks
from infra.aws.place import recorded_push
from infra.aws.pool import ECS_PUSH, PUSH_KEY_ENV
from infra.aws.settings import AwsSettings
from infra.pools import (
    PoolTypeConflict,
    PushCredentialsMissing,
    PushNeedsPrefectCloud,
    default_template,
    read_pool_template,
    read_pool_type,
    upsert_pool,
)
from tests.infra.aws.prefect_cloud import cloud_shaped_api

pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")

PUBLIC_ID = "fake-public-id-P8W3"  # sentinels: must never reach a block, template or output
SECRET_KEY = "fake-secret-key-M4T7Q"
KEYS = {"NUMERAI_PUBLIC_ID": PUBLIC_ID, "NUMERAI_SECRET_KEY": SECRET_KEY}
STACK = "numerai-nodes"
POOL = "ecs-push-test"
BLOCK = "numerai-nodes-ecs-push"


@pytest.fixture(scope="module")
def cloud(moto_env, prefect_server):
    """PREFECT_API_URL at a Prefect Cloud workspace path, in front of the test server."""
    with cloud_shaped_api(prefect_server) as url:
        yield url


def _settings() -> AwsSettings:
    return AwsSettings(stack_name=STACK, pool_name=POOL, _env_file=None)


def _up(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, ["up", "--pool", POOL, *args], env={**KEYS, **(env or {})})


def _text(result) -> str:
    """The CLI's output with the terminal's line wrapping undone."""
    return " ".join(result.output.split())


def _defaults(template: dict) -> dict:
    return {k: v.get("default") for k, v in template["variables"]["properties"].items()}


def _delete_pool(name: str) -> None:
    with get_client(sync_client=True) as client:
        client.delete_work_pool(name)


def test_push_is_refused_off_prefect_cloud_before_anything_is_built(moto_env, prefect_server):
    result = _up("--push", "--stack", "never-built")
    assert result.exit_code == 1
    assert isinstance(result.exception, PushNeedsPrefectCloud)
    message = str(result.exception)
    assert "only on Prefect Cloud" in message and "prefect cloud login" in message
    assert describe_stack(session(None), "never-built") is None


def test_push_without_credentials_builds_the_push_user_and_names_the_key(cloud, monkeypatch):
    for name in PUSH_KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    result = _up("--push")
    assert result.exit_code == 1
    assert isinstance(result.exception, PushCredentialsMissing)
    message = str(result.exception)
    assert all(name in message for name in PUSH_KEY_ENV)
    assert "aws iam create-access-key" in message and "infra aws up --push" in message
    stack = describe_stack(session(None), STACK)
    assert recorded_push(stack) is True
    user = stack_outputs(stack)["PushUserName"]
    # moto's CloudFormation makes the user but not its group (test_template checks the group).
    assert boto3.client("iam").get_user(UserName=user)["User"]["UserName"] == user
    assert read_pool_type(POOL) is None


@pytest.fixture(scope="module")
def push_key(cloud):
    """An access key of the stack's push user, as `aws iam create-access-key` makes it."""
    user = stack_outputs(describe_stack(session(None), STACK))["PushUserName"]
    key = boto3.client("iam").create_access_key(UserName=user)["AccessKey"]
    return {PUSH_KEY_ENV[0]: key["AccessKeyId"], PUSH_KEY_ENV[1]: key["SecretAccessKey"]}


@pytest.fixture(scope="module")
def pushed(cloud, push_key):
    """`up` again with the key: the stack recorded --push, so no flag is needed."""
    result = _up(env=push_key)
    assert result.exit_code == 0, result.output
    return result


def test_up_makes_an_ecs_push_pool_with_the_credentials_block(pushed, push_key):
    assert read_pool_type(POOL) == "ecs:push"
    block = AwsCredentials.load(BLOCK)
    assert block.aws_access_key_id == push_key[PUSH_KEY_ENV[0]]
    assert block.aws_secret_access_key.get_secret_value() == push_key[PUSH_KEY_ENV[1]]
    assert block.region_name == session(None).region_name
    template = read_pool_template(POOL)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(BLOCK, "aws-credentials")
    assert _defaults(template)["aws_credentials"] == {
        "$ref": {"block_document_id": str(document.id)}
    }
    assert "no worker" in _text(pushed) and "ecs:push" in _text(pushed)


def test_no_key_reaches_the_pool_the_block_or_the_output(pushed, push_key):
    template = json.dumps(read_pool_template(POOL))
    block = json.dumps(AwsCredentials.load(BLOCK).model_dump(mode="json"))
    secret = push_key[PUSH_KEY_ENV[1]]
    for value in (PUBLIC_ID, SECRET_KEY):
        assert value not in template and value not in block
    assert secret not in template and secret not in pushed.output
    assert push_key[PUSH_KEY_ENV[0]] not in pushed.output
    outputs = json.dumps(stack_outputs(describe_stack(session(None), STACK)))
    assert secret not in outputs and push_key[PUSH_KEY_ENV[0]] not in outputs


def test_the_push_template_is_one_the_ecs_worker_accepts(pushed, push_key):
    template = read_pool_template(POOL)
    # Every variable of prefect-aws's own template is still there, with its schema.
    assert set(default_template("ecs")["variables"]["properties"]) <= set(_defaults(template))

    async def configuration():
        async with get_client() as client:
            return await ECSWorker.job_configuration.from_template_and_values(
                template, {}, client=client
            )

    # As the worker builds it: defaults rendered, the block reference resolved.
    config = asyncio.run(configuration())
    assert config.aws_credentials.aws_access_key_id == push_key[PUSH_KEY_ENV[0]]
    outputs = stack_outputs(describe_stack(session(None), STACK))
    assert config.cluster == outputs["ClusterName"]
    assert config.task_run_request["overrides"]["taskRoleArn"] == outputs["TaskRoleArn"]
    assert config.task_definition["executionRoleArn"] == outputs["ExecutionRoleArn"]
    assert _defaults(template)["image"] == f"{outputs['RepositoryUri']}:latest"
    (container,) = config.task_definition["containerDefinitions"]
    assert {s["name"] for s in container["secrets"]} == set(KEYS)


def test_a_second_up_without_a_key_keeps_the_block(pushed, monkeypatch):
    for name in PUSH_KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    before = read_pool_template(POOL)
    result = _up()
    assert result.exit_code == 0, result.output
    assert read_pool_template(POOL) == before


def _checks(api_url: str | None = None) -> dict:
    return {c.name: c for c in doctor_checks(POOL, settings=_settings())}


def test_doctor_is_green_for_the_push_pool(pushed):
    checks = _checks()
    assert checks["ecs pool kind"].status == "ok"
    assert checks["ecs push credentials"].status == "ok"
    assert BLOCK in checks["ecs push credentials"].detail
    assert checks["ecs pool"].status == "ok", checks["ecs pool"]


def test_doctor_names_the_fix_for_a_push_pool_without_its_block(pushed):
    template = read_pool_template(POOL)
    good = json.loads(json.dumps(template))
    try:
        template["variables"]["properties"]["aws_credentials"].pop("default")
        upsert_pool(POOL, "ecs:push", template)
        check = _checks()["ecs push credentials"]
        assert check.status == "fail" and "references no aws-credentials block" in check.detail
        assert PUSH_KEY_ENV[0] in check.fix and "infra aws up --push" in check.fix

        # A block of another type (the S3 result block) in its place.
        with get_client(sync_client=True) as client:
            other = client.read_block_document_by_name("numerai-nodes-results", "s3-bucket")
        ECS_PUSH.reference(template, str(other.id))
        upsert_pool(POOL, "ecs:push", template)
        check = _checks()["ecs push credentials"]
        assert check.status == "fail" and "s3-bucket block" in check.detail
        assert "infra aws up --push" in check.fix

        # A block deleted since.
        gone = str(AwsCredentials(region_name="us-east-1").save("push-gone", overwrite=True))
        ECS_PUSH.reference(template, gone)
        upsert_pool(POOL, "ecs:push", template)
        with get_client(sync_client=True) as client:
            client.delete_block_document(uuid.UUID(gone))
        check = _checks()["ecs push credentials"]
        assert check.status == "fail" and "does not exist" in check.detail
    finally:
        upsert_pool(POOL, "ecs:push", good)


def test_doctor_names_a_hybrid_pool_where_the_stack_records_push(pushed):
    template = read_pool_template(POOL)
    _delete_pool(POOL)
    try:
        with get_client(sync_client=True) as client:
            client.create_work_pool(
                WorkPoolCreate(name=POOL, type="ecs", base_job_template=template)
            )
        check = _checks()["ecs pool kind"]
        assert check.status == "fail" and "set up with --push" in check.detail
        assert f"prefect work-pool delete {POOL}" in check.fix
        assert "infra aws up --push" in check.fix and "--no-push" in check.fix
    finally:
        _delete_pool(POOL)
        upsert_pool(POOL, "ecs:push", template)


def test_doctor_names_a_push_pool_the_stack_did_not_record_or_off_cloud(pushed, prefect_server):
    template = read_pool_template(POOL)
    (check,) = ECS_PUSH.checks(POOL, "ecs:push", template, recorded=False)
    assert check.status == "fail" and "without --push" in check.detail
    assert "infra aws up --push" in check.fix
    (check,) = ECS_PUSH.checks(POOL, "ecs:push", template, True, api_url=prefect_server)
    assert check.status == "fail" and "only Prefect Cloud runs" in check.detail
    assert "prefect cloud login" in check.fix


def test_down_deletes_the_push_user_keys_the_stack_the_pool_and_the_block(pushed):
    user = stack_outputs(describe_stack(session(None), STACK))["PushUserName"]
    result = CliRunner().invoke(app, ["down", "--yes", "--pool", POOL])
    assert result.exit_code == 0, result.output
    assert f"access key(s) of IAM user {user}" in _text(result)
    assert describe_stack(session(None), STACK) is None
    assert read_pool_type(POOL) is None
    assert f"deleted block aws-credentials/{BLOCK}" in _text(result)


# moto cannot update a stack whose conditional resources change (the push user), so the hybrid
# case runs on a fresh stack, after `down`.
def _forget_moto_leftovers() -> None:
    """moto's stack deletion leaves the stack's managed policy behind (AWS deletes it)."""
    iam = boto3.client("iam")
    for policy in iam.list_policies(Scope="Local")["Policies"]:
        entities = iam.list_entities_for_policy(PolicyArn=policy["Arn"])
        for role in entities["PolicyRoles"]:
            iam.detach_role_policy(RoleName=role["RoleName"], PolicyArn=policy["Arn"])
        iam.delete_policy(PolicyArn=policy["Arn"])


def test_on_prefect_cloud_up_stays_hybrid_and_says_how_to_choose_push(cloud):
    assert describe_stack(session(None), STACK) is None
    _forget_moto_leftovers()
    result = _up()
    assert result.exit_code == 0, result.output
    assert read_pool_type(POOL) == "ecs"
    assert "ecs:push" in _text(result) and "--push" in _text(result)
    assert f"prefect work-pool delete {POOL}" in _text(result)
    assert recorded_push(describe_stack(session(None), STACK)) is False
    assert "PushUserName" not in stack_outputs(describe_stack(session(None), STACK))


def test_push_onto_a_hybrid_pool_is_refused_before_the_stack_changes(cloud):
    result = _up("--push")
    assert result.exit_code == 1
    assert isinstance(result.exception, PoolTypeConflict)
    assert f"prefect work-pool delete {POOL}" in str(result.exception)
    assert recorded_push(describe_stack(session(None), STACK)) is False
    result = CliRunner().invoke(app, ["down", "--yes", "--pool", POOL])
    assert result.exit_code == 0, result.output
