"""Where the nodes live on AWS: the settings of `infra aws` (env NUMERAI_NODES_AWS_<FIELD>)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from deployments.presets import Preset


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
    push_credentials_block: str = Field(
        "numerai-nodes-ecs-push",
        description="Name of the AwsCredentials block an ecs:push pool starts flow runs with.",
    )
    push_access_key_id: SecretStr | None = Field(
        None,
        description="Access key id of the stack's push user, for `up --push` (never printed).",
    )
    push_secret_access_key: SecretStr | None = Field(
        None,
        description="Secret access key of the stack's push user, for `up --push` (never printed).",
    )
    poll_seconds: float = Field(
        5.0, description="How often to poll CloudFormation while a stack changes."
    )
    timeout_seconds: float = Field(
        1800.0, description="How long to wait for the stack to be created, updated or deleted."
    )
