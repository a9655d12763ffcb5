"""The CloudFormation stack lints clean and grants least privilege."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cfnlint.api import lint_file
from cfnlint.decode import decode

from infra.aws import cloudformation
from infra.aws.cloudformation import TEMPLATE

_READ_PREFIXES = ("Get", "List", "Describe", "BatchGet", "BatchCheck")
# ECS accepts no resource ARN for these two; the worker needs them to run flows.
_NO_RESOURCE_LEVEL = {"ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition"}


@pytest.fixture(scope="module")
def template() -> dict:
    document, problems = decode(TEMPLATE)
    assert not problems, problems
    return document


def _statements(resource: dict) -> list[dict]:
    """Inline role policies, or a managed policy's own document."""
    properties = resource.get("Properties", {})
    documents = [policy["PolicyDocument"] for policy in properties.get("Policies") or []]
    if resource["Type"] == "AWS::IAM::ManagedPolicy":
        documents.append(properties["PolicyDocument"])
    return [statement for document in documents for statement in document["Statement"]]


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def test_the_template_is_package_data_beside_the_code_that_deploys_it():
    assert Path(cloudformation.__file__).with_name("stack.yaml") == TEMPLATE
    assert TEMPLATE.is_file()


def test_cfn_lint_finds_no_errors():
    errors = [match for match in lint_file(TEMPLATE) if match.rule.id.startswith("E")]
    assert not errors, "\n".join(str(match) for match in errors)


def test_expected_resources(template):
    types = {resource["Type"] for resource in template["Resources"].values()}
    assert {
        "AWS::ECR::Repository",
        "AWS::ECS::Cluster",
        "AWS::IAM::Role",
        "AWS::Logs::LogGroup",
        "AWS::S3::Bucket",
        "AWS::SQS::Queue",
        "AWS::SQS::QueuePolicy",
        "AWS::Events::Rule",
    } <= types


def test_every_parameter_has_a_type_and_description(template):
    for name, parameter in template["Parameters"].items():
        assert parameter.get("Type"), name
        assert parameter.get("Description"), name


def test_cluster_offers_fargate_and_spot(template):
    cluster = template["Resources"]["Cluster"]["Properties"]
    assert set(cluster["CapacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}


def test_bucket_is_private_encrypted_and_versioned(template):
    bucket = template["Resources"]["Bucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert bucket["VersioningConfiguration"]["Status"] == "Enabled"


def test_log_retention_is_a_parameter(template):
    group = template["Resources"]["LogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def _arn_of(resource) -> str:
    """The logical id whose ARN a policy Resource names (`!GetAtt X.Arn` or `!Sub ${X.Arn}/*`)."""
    if "Fn::GetAtt" in resource:
        return resource["Fn::GetAtt"][0]
    match = re.fullmatch(r"\$\{(\w+)\.Arn\}(/\*)?", resource.get("Fn::Sub", ""))
    assert match, resource
    return match[1]


def test_task_role_touches_only_the_bucket_and_logs(template):
    for statement in _statements(template["Resources"]["TaskRole"]):
        targets = {_arn_of(resource) for resource in _listed(statement["Resource"])}
        if any(action.startswith("s3:") for action in _listed(statement["Action"])):
            assert targets == {"Bucket"}, statement
        else:
            assert targets == {"LogGroup"}, statement


def test_execution_role_reads_only_prefixed_secrets(template):
    statements = _statements(template["Resources"]["ExecutionRole"])
    secrets = [s for s in statements if "secretsmanager:GetSecretValue" in _listed(s["Action"])]
    assert len(secrets) == 1
    assert "${SecretsPrefix}*" in json.dumps(secrets[0]["Resource"])


def test_no_wildcard_resource_with_write_actions(template):
    for name, resource in template["Resources"].items():
        for statement in _statements(resource):
            if statement["Effect"] != "Allow" or "*" not in _listed(statement["Resource"]):
                continue
            for action in _listed(statement["Action"]):
                verb = action.split(":", 1)[-1]
                if action in _NO_RESOURCE_LEVEL:
                    continue
                assert verb.startswith(_READ_PREFIXES), f"{name}: {action} on Resource '*'"


def test_task_events_reach_the_queue(template):
    resources = template["Resources"]
    assert resources["TaskEventsQueue"]["Properties"]["QueueName"] == "prefect-ecs-tasks-events"
    rule = resources["TaskEventsRule"]["Properties"]
    assert rule["EventPattern"]["detail-type"] == ["ECS Task State Change"]
    assert rule["EventPattern"]["detail"]["clusterArn"] == [{"Fn::GetAtt": ["Cluster", "Arn"]}]
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["TaskEventsQueue", "Arn"]}
    policy = resources["TaskEventsQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert policy["Principal"] == {"Service": "events.amazonaws.com"}


def test_outputs_cover_the_work_pool(template):
    assert {
        "ClusterName",
        "RepositoryUri",
        "ExecutionRoleArn",
        "TaskRoleArn",
        "LogGroupName",
        "BucketName",
        "TaskEventsQueueName",
    } <= set(template["Outputs"])


def test_key_secrets_are_named_under_the_prefix_and_hold_no_real_value(template):
    secrets = {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::SecretsManager::Secret"
    }
    names = sorted(json.dumps(p["Name"]) for p in secrets.values())
    assert names == [
        json.dumps({"Fn::Sub": "${SecretsPrefix}NUMERAI_PUBLIC_ID"}),
        json.dumps({"Fn::Sub": "${SecretsPrefix}NUMERAI_SECRET_KEY"}),
    ]
    assert {p["SecretString"] for p in secrets.values()} == {"numerai-nodes-placeholder"}
    assert not any("Numerai" in name and "Key" in name for name in template["Parameters"])
    assert {"NumeraiPublicIdSecretArn", "NumeraiSecretKeySecretArn"} <= set(template["Outputs"])


def test_worker_passes_only_the_two_task_roles_and_runs_only_in_the_cluster(template):
    statements = _statements(template["Resources"]["WorkerPolicy"])
    (passing,) = [s for s in statements if "iam:PassRole" in _listed(s["Action"])]
    assert {_arn_of(r) for r in _listed(passing["Resource"])} == {"ExecutionRole", "TaskRole"}
    (running,) = [s for s in statements if "ecs:RunTask" in _listed(s["Action"])]
    assert running["Condition"]["ArnEquals"]["ecs:cluster"] == {"Fn::GetAtt": ["Cluster", "Arn"]}
    (queue,) = [s for s in statements if "sqs:ReceiveMessage" in _listed(s["Action"])]
    assert _arn_of(queue["Resource"]) == "TaskEventsQueue"


def test_worker_role_carries_the_worker_policy(template):
    role = template["Resources"]["WorkerRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [{"Ref": "WorkerPolicy"}]


def test_worker_service_is_optional(template):
    resources = template["Resources"]
    assert resources["WorkerService"]["Condition"] == "CreateWorkerService"
    assert resources["WorkerTaskDefinition"]["Condition"] == "CreateWorkerService"
    assert template["Parameters"]["WorkerImage"]["Default"] == ""


def test_the_push_user_is_optional_and_may_do_what_the_worker_may_only(template):
    resources = template["Resources"]
    assert template["Parameters"]["PushPool"]["Default"] == "false"
    for name in ("PushUser", "PushGroup"):
        assert resources[name]["Condition"] == "IsPushPool"
    user = resources["PushUser"]["Properties"]
    assert user["Groups"] == [{"Ref": "PushGroup"}]
    assert "Policies" not in user and "ManagedPolicyArns" not in user
    group = resources["PushGroup"]["Properties"]
    assert group["ManagedPolicyArns"] == [{"Ref": "WorkerPolicy"}]
    # The key is the user's to make: none in the stack, its state or its outputs.
    assert not [r for r in resources.values() if r["Type"] == "AWS::IAM::AccessKey"]
    assert template["Outputs"]["PushUserName"]["Condition"] == "IsPushPool"
