"""`numerai-nodes infra aws` against moto and a real Prefect API: stack, secrets, pool, doctor."""

from __future__ import annotations

import json
from dataclasses import fields, replace
from pathlib import Path

import boto3
import pytest
from typer.testing import CliRunner

from deployments.cli.infra_aws import app
from infra.aws.cloudformation import describe_stack, session, stack_outputs
from infra.aws.doctor import doctor_checks
from infra.aws.errors import AwsError, NoAwsCredentials
from infra.aws.pool import IMAGE_VARIABLE
from infra.aws.secrets import PLACEHOLDER
from infra.aws.settings import AwsSettings
from infra.cloud import CloudError, KeysMissing, PlaceStatus
from infra.pools import PrefectApiUnreachable, read_pool_template

# moto's CloudFormation skips the resource types it lacks (bucket and queue policies, secrets).
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")

ROOT = Path(__file__).parents[3]
PUBLIC_ID = "fake-public-id-7Q2X9"  # sentinels: must never reach a template or output
SECRET_KEY = "fake-secret-key-4W8Z1K"
KEYS = {"NUMERAI_PUBLIC_ID": PUBLIC_ID, "NUMERAI_SECRET_KEY": SECRET_KEY}
STACK = "numerai-nodes"
POOL = "ecs"


@pytest.fixture(scope="module")
def aws(moto_env, prefect_server):
    """The stack after one `infra aws up`, and that command's output."""
    result = CliRunner().invoke(app, ["up", "--image-tag", "v1"], env=KEYS)
    assert result.exit_code == 0, result.output
    return result


def _client(service: str):
    return boto3.client(service)


def _outputs() -> dict[str, str]:
    stack = describe_stack(session(None), STACK)
    assert stack is not None
    return stack_outputs(stack)


def _secret_arns() -> dict[str, str]:
    secrets = _client("secretsmanager").list_secrets()["SecretList"]
    return {s["Name"].rsplit("/", 1)[-1]: s["ARN"] for s in secrets}


def _push_image(tag: str) -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    }
    _client("ecr").put_image(
        repositoryName=_outputs()["RepositoryName"],
        imageManifest=json.dumps({**manifest, "config": {"digest": f"sha256:{tag * 64}"[:71]}}),
        imageTag=tag,
    )


def test_up_creates_the_stack_the_key_secrets_and_the_pool(aws):
    outputs = _outputs()
    assert _client("ecs").describe_clusters(clusters=[outputs["ClusterName"]])["clusters"]
    assert _client("s3").head_bucket(Bucket=outputs["BucketName"])
    arns = _secret_arns()
    secrets = _client("secretsmanager")
    for name, value in KEYS.items():
        assert secrets.get_secret_value(SecretId=arns[name])["SecretString"] == value

    template = read_pool_template(POOL)
    assert template is not None
    defaults = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    assert defaults["cluster"] == outputs["ClusterName"]
    assert defaults["execution_role_arn"] == outputs["ExecutionRoleArn"]
    assert defaults["task_role_arn"] == outputs["TaskRoleArn"]
    assert defaults["image"] == f"{outputs['RepositoryUri']}:v1"
    from prefect.variables import Variable

    # prefect.yaml's ECS node builds its image into the stack's repository.
    assert Variable.get(IMAGE_VARIABLE) == outputs["RepositoryUri"]
    assert defaults["cpu"] == 2048 and defaults["memory"] == 8192
    assert (
        defaults["env"]["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"]
        == "s3-bucket/numerai-nodes-results"
    )
    assert defaults["cloudwatch_logs_options"]["awslogs-group"] == outputs["LogGroupName"]
    (container,) = template["job_configuration"]["task_definition"]["containerDefinitions"]
    assert sorted(container["secrets"], key=lambda s: s["name"]) == [
        {"name": "NUMERAI_PUBLIC_ID", "valueFrom": arns["NUMERAI_PUBLIC_ID"]},
        {"name": "NUMERAI_SECRET_KEY", "valueFrom": arns["NUMERAI_SECRET_KEY"]},
    ]


def test_no_key_value_appears_in_the_pool_or_the_output(aws):
    visible = json.dumps(read_pool_template(POOL)) + aws.output
    assert PUBLIC_ID not in visible and SECRET_KEY not in visible


def test_a_second_up_leaves_everything_as_it_was(aws):
    before = read_pool_template(POOL)
    versions = {
        name: len(_client("secretsmanager").list_secret_version_ids(SecretId=arn)["Versions"])
        for name, arn in _secret_arns().items()
    }
    result = CliRunner().invoke(app, ["up", "--image-tag", "v1"], env=KEYS)
    assert result.exit_code == 0, result.output
    assert read_pool_template(POOL) == before
    after = {
        name: len(_client("secretsmanager").list_secret_version_ids(SecretId=arn)["Versions"])
        for name, arn in _secret_arns().items()
    }
    assert after == versions
    assert describe_stack(session(None), STACK)["StackStatus"].endswith("_COMPLETE")


def test_status_json_shows_the_stack_and_a_matching_pool(aws):
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    # The shape every place's `status --json` has (the GCP tests check theirs against it too).
    assert set(status) == {field.name for field in fields(PlaceStatus)}
    assert status["place"] == "aws" and status["exists"] is True
    assert status["stack_status"].endswith("_COMPLETE")
    assert STACK in status["stack"]
    assert status["outputs"]["ClusterName"] == _outputs()["ClusterName"]
    assert status["pool_name"] == POOL
    assert status["pool_exists"] and status["pool_matches"], status["problems"]
    assert status["problems"] == []


def test_status_of_a_missing_stack_has_the_same_shape(aws):
    result = CliRunner().invoke(app, ["status", "--json", "--stack", "no-such-stack"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.stdout)
    assert set(status) == {field.name for field in fields(PlaceStatus)}
    assert status["exists"] is False and status["outputs"] == {}
    region = session(None).region_name
    assert status["problems"] == [
        f"stack no-such-stack in {region} does not exist; `numerai-nodes infra aws up` creates it"
    ]


def test_doctor_is_green_with_the_image_pushed_and_keys_in_place(aws):
    _push_image("v1")
    checks = doctor_checks(POOL)
    assert [c.status for c in checks] == ["ok"] * len(checks), checks
    names = {c.name for c in checks}
    assert {"aws credentials", "aws stack", "ecs pool", "node image"} <= names
    assert PUBLIC_ID not in str(checks) and SECRET_KEY not in str(checks)


def test_numerai_nodes_doctor_runs_the_aws_checks_for_the_ecs_node(aws, monkeypatch):
    from deployments.catalogue import find_node
    from deployments.doctor import diagnose
    from infra.places import place_checks

    monkeypatch.setenv("NUMERAI_NODES_AWS_STACK_NAME", STACK)
    monkeypatch.setenv("NUMERAI_NODES_AWS_POOL_NAME", POOL)
    monkeypatch.setenv("NUMERAI_API_URL", "http://127.0.0.1:9")  # never the real Numerai
    node = find_node("tournament-aws", ROOT / "prefect.yaml")  # declared in prefect.aws.yaml
    found = diagnose([replace(node, work_pool=POOL)], None, explicit=True, places=place_checks)
    checks = {c.name: c for c in found}
    # No worker serves the pool in this test; the stack behind it is sound.
    assert checks[f"work pool {POOL}"].status == "fail"
    for name in ("aws credentials", "aws stack", "ecs pool", "node image"):
        assert checks[name].status == "ok", checks[name]


def test_doctor_reports_a_missing_image_and_a_placeholder_key(aws):
    arn = _secret_arns()["NUMERAI_SECRET_KEY"]
    secrets = _client("secretsmanager")
    secrets.put_secret_value(SecretId=arn, SecretString=PLACEHOLDER)
    _client("ecr").batch_delete_image(
        repositoryName=_outputs()["RepositoryName"], imageIds=[{"imageTag": "v1"}]
    )
    try:
        failed = {c.name: c for c in doctor_checks(POOL) if c.status == "fail"}
        assert set(failed) == {"node image", "secret NUMERAI_SECRET_KEY"}
        assert all("numerai-nodes infra aws up" in c.fix for c in failed.values())
    finally:
        secrets.put_secret_value(SecretId=arn, SecretString=SECRET_KEY)


def test_doctor_reports_a_pool_that_drifted_from_the_stack(aws):
    args = ["up", "--image-tag", "v1", "--pool", "other-ecs", "--preset", "cpu-s"]
    result = CliRunner().invoke(app, args, env=KEYS)
    assert result.exit_code == 0, result.output
    from infra.pools import upsert_pool

    template = read_pool_template("other-ecs")
    defaults = {k: v.get("default") for k, v in template["variables"]["properties"].items()}
    assert (defaults["cpu"], defaults["memory"]) == (1024, 2048)  # --preset cpu-s
    template["variables"]["properties"]["cluster"]["default"] = "somebody-elses-cluster"
    upsert_pool("other-ecs", "ecs", template)
    (pool,) = [c for c in doctor_checks("other-ecs") if c.name == "ecs pool"]
    assert pool.status == "fail" and "cluster" in pool.detail
    assert "numerai-nodes infra aws up" in pool.fix


def test_without_credentials_up_raises_the_error_the_cli_prints(aws, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    result = CliRunner().invoke(app, ["up"], env=KEYS)
    # The CLI's top level prints a NodeError's message; this command only raises it.
    assert result.exit_code == 1
    assert isinstance(result.exception, NoAwsCredentials)
    assert isinstance(result.exception, PermissionError)
    assert isinstance(result.exception, AwsError) and isinstance(result.exception, CloudError)
    assert "No AWS credentials found" in str(result.exception)
    assert "numerai-nodes infra aws up" in str(result.exception)
    checks = doctor_checks(POOL)
    assert checks[0].status == "fail" and "numerai-nodes infra aws up" in checks[0].fix


def test_without_keys_outside_a_terminal_up_names_them_and_skip_keys(aws, monkeypatch):
    for name in (*KEYS, "NUMERAI_NODES_PUBLIC_ID", "NUMERAI_NODES_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["up"])
    # The CLI's top level prints the message; the command raises it before touching AWS.
    assert result.exit_code == 1
    assert isinstance(result.exception, KeysMissing)
    message = str(result.exception)
    assert "NUMERAI_PUBLIC_ID" in message and "NUMERAI_SECRET_KEY" in message
    assert "--skip-keys" in message


def test_a_missing_stack_is_reported_with_the_command_that_creates_it(aws):
    settings = AwsSettings(stack_name="no-such-stack", _env_file=None)
    (check,) = [c for c in doctor_checks(POOL, settings=settings) if c.name == "aws stack"]
    assert check.status == "fail" and "numerai-nodes infra aws up" in check.fix


def test_down_deletes_the_stack_the_secrets_and_the_pool_and_keeps_the_bucket(aws):
    _push_image("v2")
    bucket = _outputs()["BucketName"]
    result = CliRunner().invoke(app, ["down", "--yes"])
    assert result.exit_code == 0, result.output
    assert describe_stack(session(None), STACK) is None
    assert _client("secretsmanager").list_secrets()["SecretList"] == []
    assert read_pool_template(POOL) is None
    assert f"kept bucket {bucket}" in result.output and "--delete-bucket" in result.output
    assert _client("s3").head_bucket(Bucket=bucket)  # the trained models outlive the stack
    assert AwsSettings(_env_file=None).stack_name == STACK


def test_up_with_prefect_unreachable_fails_fast_and_builds_nothing(moto_env):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        result = CliRunner().invoke(app, ["up", "--stack", "never-built"], env=KEYS)
    assert result.exit_code == 1
    assert isinstance(result.exception, PrefectApiUnreachable)
    assert "Prefect API at http://127.0.0.1:9/api does not answer" in str(result.exception)
    assert describe_stack(session(None), "never-built") is None
