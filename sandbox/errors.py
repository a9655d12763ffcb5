"""The sandbox's expected failures, under the project's root for them (`NodeError`)."""

from __future__ import annotations

from flows.errors import NodeError


class SandboxError(NodeError, ValueError):
    """A request the sandbox refuses; its message goes back to the client as a GraphQL error."""


class AuthError(SandboxError):
    """Missing or wrong API keys."""


class SubmissionRejected(SandboxError):
    """The uploaded predictions are not acceptable."""


class SandboxConfigError(NodeError, ValueError):
    """The sandbox cannot start with these settings (size, models, data directory)."""
