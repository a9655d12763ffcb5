"""The CloudFormation stack: a boto3 session, deploying and deleting it, its events and outputs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import boto3
from boto3.session import Session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from infra.aws.errors import (
    DOWN_COMMAND,
    STATUS_COMMAND,
    UP_COMMAND,
    AwsError,
    AwsUnreachable,
    NoAwsCredentials,
    StackFailed,
)
from infra.aws.settings import AwsSettings

# Package data: an installed numerai-nodes finds its template too.
TEMPLATE = Path(__file__).with_name("stack.yaml")
_DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "IMPORT_COMPLETE")
_NO_UPDATES = "No updates are to be performed"
Action = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class StackEvent:
    """One CloudFormation stack event, as the CLI shows it."""

    timestamp: datetime
    logical_id: str
    resource_type: str
    status: str
    reason: str = ""


Progress = Callable[[StackEvent], None]


def no_progress(event: StackEvent) -> None:
    """A progress callback that drops every event."""


def session(region: str | None) -> Session:
    """A boto3 session in `region`, with a clear error when credentials or region are missing."""
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
        raise AwsUnreachable(
            f"AWS does not answer in {aws.region_name} ({aws_message(exc)}). Check the network, "
            f"the region and AWS_ENDPOINT_URL if set, then run `{UP_COMMAND}` again."
        ) from None
    except (ClientError, BotoCoreError) as exc:
        raise NoAwsCredentials(
            f"AWS refused the credentials: {aws_message(exc)}. Refresh them (`aws sso login`, "
            f"or new access keys), then run `{UP_COMMAND}` again."
        ) from None
    return aws


def caller_identity(aws: Session) -> dict[str, str]:
    """Account and ARN of the credentials in use."""
    identity = aws.client("sts").get_caller_identity()
    return {"account": identity["Account"], "arn": identity["Arn"]}


def describe_stack(aws: Session, stack_name: str) -> dict[str, Any] | None:
    """The stack's description, or None when it does not exist (or was deleted)."""
    try:
        stacks = aws.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in aws_message(exc):
            return None
        raise AwsError(f"Could not read stack '{stack_name}': {aws_message(exc)}") from None
    if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
        return None
    return stacks[0]


def stack_outputs(stack: dict[str, Any]) -> dict[str, str]:
    """The stack's outputs as a dict."""
    return {output["OutputKey"]: output["OutputValue"] for output in stack.get("Outputs", [])}


def region_of(outputs: dict[str, str]) -> str:
    """The region of the stack, read from its cluster ARN."""
    return outputs["ClusterArn"].split(":")[3]


def deploy_stack(
    aws: Session,
    settings: AwsSettings,
    parameters: dict[str, str],
    progress: Progress = no_progress,
) -> Action:
    """Create the stack, or update it (parameters not given keep their values); wait until done."""
    cloudformation = aws.client("cloudformation")
    name = settings.stack_name
    existing = describe_stack(aws, name)
    given = [{"ParameterKey": key, "ParameterValue": value} for key, value in parameters.items()]
    request: dict[str, Any] = {
        "StackName": name,
        "TemplateBody": TEMPLATE.read_text(),
        "Capabilities": ["CAPABILITY_NAMED_IAM"],
    }
    action: Action
    if existing is None:
        response = cloudformation.create_stack(**request, Parameters=given, OnFailure="ROLLBACK")
        stack_id, action = response["StackId"], "created"
        seen: set[str] = set()
    else:
        _check_updatable(existing)
        stack_id = existing["StackId"]
        previous = {p["ParameterKey"] for p in existing.get("Parameters", [])}
        kept = [
            {"ParameterKey": key, "UsePreviousValue": True}
            for key in sorted(previous - parameters.keys())
        ]
        seen = _event_ids(cloudformation, stack_id)
        try:
            cloudformation.update_stack(**request, Parameters=given + kept)
        except ClientError as exc:
            if _NO_UPDATES in aws_message(exc):
                return "unchanged"
            raise AwsError(f"Could not update stack {name}: {aws_message(exc)}") from None
        action = "updated"
    final = _wait(aws, stack_id, seen, settings, progress)
    if final not in _DONE:
        fix = (
            f"Delete it with `{DOWN_COMMAND}`, fix the cause, then run `{UP_COMMAND}` again."
            if final == "ROLLBACK_COMPLETE"
            else f"Fix the cause, then run `{UP_COMMAND}` again."
        )
        raise StackFailed(
            f"Stack {name} ended in {final}. {_failure_reason(cloudformation, stack_id)} {fix}"
        )
    return action


def delete_stack(
    aws: Session, stack: dict[str, Any], settings: AwsSettings, progress: Progress = no_progress
) -> None:
    """Delete the stack and wait until it is gone."""
    cloudformation = aws.client("cloudformation")
    seen = _event_ids(cloudformation, stack["StackId"])
    cloudformation.delete_stack(StackName=stack["StackId"])
    final = _wait(aws, stack["StackId"], seen, settings, progress)
    if final != "DELETE_COMPLETE":
        raise StackFailed(
            f"Deleting stack {settings.stack_name} ended in {final}. "
            f"{_failure_reason(cloudformation, stack['StackId'])} Fix the resource named "
            f"there (or delete it by hand), then run `{DOWN_COMMAND}` again."
        )


def aws_message(exc: Exception) -> str:
    """The message of an AWS error response, else the exception's text."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return error.get("Message") or error.get("Code") or str(exc)
    return str(exc)


def _check_updatable(stack: dict[str, Any]) -> None:
    name, state = stack["StackName"], stack["StackStatus"]
    if state == "ROLLBACK_COMPLETE" or state.endswith("_FAILED"):
        reason = stack.get("StackStatusReason") or "its last change failed"
        raise StackFailed(
            f"Stack {name} is in {state} ({reason}) and cannot be updated. Delete it with "
            f"`{DOWN_COMMAND}`, then run `{UP_COMMAND}` again."
        )
    if state.endswith("_IN_PROGRESS"):
        raise StackFailed(
            f"Stack {name} is busy ({state}). Wait until it settles (`{STATUS_COMMAND}`), then "
            f"run `{UP_COMMAND}` again."
        )


def _event_ids(cloudformation: Any, stack_id: str) -> set[str]:
    events = cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
    return {event["EventId"] for event in events}


def _wait(
    aws: Session, stack_id: str, seen: set[str], settings: AwsSettings, progress: Progress
) -> str:
    """Poll until the stack settles, passing each new event to `progress`; the final status."""
    cloudformation = aws.client("cloudformation")
    deadline = time.monotonic() + settings.timeout_seconds
    while True:
        events = cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
        for event in reversed(events):  # oldest first
            if event["EventId"] in seen:
                continue
            seen.add(event["EventId"])
            progress(
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
                f"Follow it in the CloudFormation console, then run `{STATUS_COMMAND}`."
            )
        time.sleep(settings.poll_seconds)


def _failure_reason(cloudformation: Any, stack_id: str) -> str:
    events = cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
    for event in reversed(events):
        if event["ResourceStatus"].endswith("_FAILED") and event.get("ResourceStatusReason"):
            return f"First failure: {event['LogicalResourceId']}: {event['ResourceStatusReason']}."
    return ""
