"""A moto server on loopback that boto3 reaches through the environment, like a real AWS account."""

from __future__ import annotations

import pytest

from tests.integration.ecs_runner import moto_aws


@pytest.fixture(scope="module")
def moto_env(tmp_path_factory):
    """Start moto; yield the environment (endpoint, dummy keys, region) every AWS client uses."""
    with moto_aws(tmp_path_factory.mktemp("aws-config")) as env:
        yield env
