"""The CloudFormation stack deploys on a local moto server and creates what a work pool needs."""

from __future__ import annotations

import socket

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from infra.aws.cloudformation import TEMPLATE  # package data, as `up` finds it

STACK = "numerai-nodes"

# moto's CloudFormation skips the bucket and queue policies and the key secrets (`up` creates
# secrets the stack lacks); the template test covers them.
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def aws():
    """A boto3 client factory bound to a moto server on loopback, with the stack created."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    # moto keeps its accounts in process memory, shared by every server in this test process.
    httpx.post(f"http://127.0.0.1:{port}/moto-api/reset").raise_for_status()
    settings = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }

    def client(service: str):
        return boto3.client(service, **settings)

    try:
        client("cloudformation").create_stack(
            StackName=STACK,
            TemplateBody=TEMPLATE.read_text(),
            Parameters=[{"ParameterKey": "LogRetentionDays", "ParameterValue": "14"}],
            Capabilities=["CAPABILITY_NAMED_IAM"],
        )
        yield client
    finally:
        server.stop()


@pytest.fixture(scope="module")
def outputs(aws) -> dict[str, str]:
    stack = aws("cloudformation").describe_stacks(StackName=STACK)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return {output["OutputKey"]: output["OutputValue"] for output in stack["Outputs"]}


def test_cluster_and_repository(aws, outputs):
    clusters = aws("ecs").describe_clusters(clusters=[outputs["ClusterName"]])["clusters"]
    assert clusters[0]["clusterArn"] == outputs["ClusterArn"]
    repositories = aws("ecr").describe_repositories(repositoryNames=[outputs["RepositoryName"]])
    assert repositories["repositories"][0]["repositoryUri"] == outputs["RepositoryUri"]


def test_roles(aws, outputs):
    iam = aws("iam")
    for key in ("ExecutionRoleArn", "TaskRoleArn"):
        name = outputs[key].rsplit("/", 1)[-1]
        assert iam.get_role(RoleName=name)["Role"]["Arn"] == outputs[key]
        assert iam.list_role_policies(RoleName=name)["PolicyNames"]


def test_log_group_keeps_logs_for_the_parameter_days(aws, outputs):
    groups = aws("logs").describe_log_groups(logGroupNamePrefix=outputs["LogGroupName"])
    assert groups["logGroups"][0]["retentionInDays"] == 14


def test_bucket_is_encrypted(aws, outputs):
    # moto's CloudFormation applies the bucket's encryption but not its versioning or
    # public-access block; the template test checks those.
    encryption = aws("s3").get_bucket_encryption(Bucket=outputs["BucketName"])
    (rule,) = encryption["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_task_events_rule_targets_the_queue(aws, outputs):
    url = aws("sqs").get_queue_url(QueueName="prefect-ecs-tasks-events")["QueueUrl"]
    assert url.endswith("/prefect-ecs-tasks-events")
    events = aws("events")
    (rule,) = events.list_rules()["Rules"]
    assert outputs["ClusterArn"] in rule["EventPattern"]
    targets = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert [target["Arn"] for target in targets] == [outputs["TaskEventsQueueArn"]]


def test_worker_policy_and_role(aws, outputs):
    iam = aws("iam")
    policy = iam.get_policy(PolicyArn=outputs["WorkerPolicyArn"])["Policy"]
    assert policy["PolicyName"] == "numerai-nodes-worker"
    # moto's CloudFormation does not attach ManagedPolicyArns; the template test checks the link.
    role = outputs["WorkerRoleArn"].rsplit("/", 1)[-1]
    assert iam.get_role(RoleName=role)["Role"]["Arn"] == outputs["WorkerRoleArn"]


def test_no_worker_service_without_an_image(aws, outputs):
    assert "WorkerServiceName" not in outputs
    assert aws("ecs").list_services(cluster=outputs["ClusterName"])["serviceArns"] == []
