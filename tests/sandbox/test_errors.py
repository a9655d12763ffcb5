"""The sandbox's errors sit under the project's root for expected failures."""

from __future__ import annotations

import pytest

from flows.errors import NodeError
from sandbox.errors import AuthError, SandboxConfigError, SandboxError, SubmissionRejected


@pytest.mark.parametrize("error", [SandboxError, AuthError, SubmissionRejected, SandboxConfigError])
def test_every_sandbox_error_is_an_expected_failure_and_a_value_error(error: type[NodeError]):
    raised = error("the message names the cause")
    assert isinstance(raised, NodeError) and isinstance(raised, ValueError)
    assert not raised.transient
