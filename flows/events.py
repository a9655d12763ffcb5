"""The event contract: the names, resource ids and labels of the events webhooks and nodes send.

One home for every spelling, imported by the flows (which emit the node events), the gateway and
the Cloud webhook template (which emit the webhook event) and the alert automations (which
listen). It imports nothing heavy: the CLI reads it for `--help`.

    numerai.webhook.received        Numerai called a node's webhook (deployments/events.py)
    numerai.submission.created      a node run created the round's submission
    numerai.submission.exists       a node run found the round already submitted (no upload)
    numerai.submission.failed       a node run failed for an expected reason (or a bug)
    numerai.round.at-risk           a round closes soon and a node's model has no submission
    numerai.model.stale             a node submitted with its spec family's last good model,
                                    its own spec's model not being trained yet
    numerai.model.trained           a model spec was trained into the model store (its resource
                                    is the spec, `numerai.spec.<name>`)

Every node event's resource is the node, `numerai.node.<node>`, so one automation can follow a
node from its webhook to its submission.
"""

from __future__ import annotations

import re

WEBHOOK_RECEIVED = "numerai.webhook.received"
EVENT_NAME = WEBHOOK_RECEIVED  # the webhook event's name, as the gateway and templates call it
SUBMISSION_CREATED = "numerai.submission.created"
SUBMISSION_EXISTS = "numerai.submission.exists"
SUBMISSION_FAILED = "numerai.submission.failed"
ROUND_AT_RISK = "numerai.round.at-risk"
MODEL_STALE = "numerai.model.stale"
MODEL_TRAINED = "numerai.model.trained"
SPEC_PREFIX = "numerai.spec."
# The events after a webhook that show a node run got to an end, good or bad.
RUN_OUTCOMES = (SUBMISSION_CREATED, SUBMISSION_EXISTS, SUBMISSION_FAILED)

RESOURCE_PREFIX = "numerai.node."
# The tag every node deployment gives its runs (prefect*.yaml): automations and the watchdog
# find node runs and node deployments by it.
NODE_TAG = "numerai-node"
TRIGGER_ID_LABEL = "numerai.trigger-id"
ROUND_LABEL = "numerai.round"
MODEL_LABEL = "numerai.model"
SUBMISSION_ID_LABEL = "numerai.submission-id"
STEP_LABEL = "numerai.step"
# Why a node run failed: one of FAILURE_REASONS; always set on a failure event, so automations
# can match it (or its negation).
FAILURE_LABEL = "numerai.failure"
ROUND_CLOSED = "round-closed"
EXPECTED = "expected"
UNEXPECTED = "unexpected"
FAILURE_REASONS = (ROUND_CLOSED, EXPECTED, UNEXPECTED)

# Node names end up in URLs, resource ids, env var names and Secret block names: keep them plain.
NODE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def check_node_name(node: str) -> str:
    """Return `node` if it is a valid node name, else raise ValueError naming the rule."""
    if not isinstance(node, str) or not NODE_NAME_PATTERN.fullmatch(node):
        raise ValueError(
            f"Invalid node name {node!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit."
        )
    return node


def node_resource_id(node: str) -> str:
    """The Prefect resource id of a node, e.g. `numerai.node.tournament-lgbm`."""
    return RESOURCE_PREFIX + check_node_name(node)


def node_resource(node: str, **labels: object) -> dict[str, str]:
    """A node event's resource: the node's id and name, and each label that has a value.

    Keyword names become `numerai.<name with dashes>` labels, e.g. `trigger_id=` becomes
    `numerai.trigger-id`; Prefect's resource labels are strings.
    """
    resource = {"prefect.resource.id": node_resource_id(node), "prefect.resource.name": node}
    for key, value in labels.items():
        if value is not None and value != "":
            resource[f"numerai.{key.replace('_', '-')}"] = str(value)
    return resource
