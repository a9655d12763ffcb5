"""What alerts say: the subject and body templates of each alert automation.

They are Jinja templates that Prefect renders when an automation fires, over the triggering
event (`event`: a node's failure or stale-model event, the webhook event of a round at risk,
Prefect's Crashed event) and the objects it names (`flow_run`); a missing field renders empty,
never an error. Each names the node, the round, the cause and what to do, and nothing secret: the
events they read carry no API key (a model key is a digest, not a secret), and the webhook token
stays in the gateway.
"""

from __future__ import annotations

from flows import events

TEST_SUBJECT = "numerai-nodes: test alert"
TEST_BODY = (
    "This is a test of a numerai-nodes alert channel: alerts about your prediction nodes "
    "reach you here. Nothing is wrong."
)

_PAYLOAD = "{% set p = event.payload %}"
_NODE_OF_EVENT = f"{{{{ event.resource.id | replace('{events.RESOURCE_PREFIX}', '') }}}}"
_RUN_LINK = "{% set url = flow_run | ui_url %}{% if url %}\n{{ url }}{% endif %}"

FAILED_SUBJECT = (
    _PAYLOAD + "numerai-nodes: {{ p.node }} failed in round {{ p.round or '?' }} at {{ p.step }}"
)
FAILED_BODY = _PAYLOAD + (
    "Node {{ p.node }} (Numerai model {{ p.model }}) failed at step {{ p.step }} in round "
    "{{ p.round or '? (not known yet)' }}.\n"
    "Cause: {{ p.message }}\n"
    "{{ p.uploaded }}\n"
    "Next: {{ p.next_action }}\n"
    "Trigger {{ p.trigger_id or 'none (a manual or scheduled run)' }}, flow run "
    "{{ p.flow_run or '?' }}." + _RUN_LINK
)
ROUND_CLOSED_SUBJECT = (
    _PAYLOAD + "numerai-nodes: round {{ p.round or '?' }} closed before {{ p.node }} submitted"
)
ROUND_CLOSED_BODY = _PAYLOAD + (
    "Node {{ p.node }} (Numerai model {{ p.model }}) could not submit for round "
    "{{ p.round or '?' }}: the round closed (step {{ p.step }}).\n"
    "Cause: {{ p.message }}\n"
    "Next: {{ p.next_action }}\n"
    "Trigger {{ p.trigger_id or 'none (a manual or scheduled run)' }}, flow run "
    "{{ p.flow_run or '?' }}." + _RUN_LINK
)
CRASHED_SUBJECT = "numerai-nodes: node run {{ flow_run.name }} crashed"
CRASHED_BODY = (
    "Flow run {{ flow_run.name }} of a prediction node crashed: its process died (out of "
    "memory, killed, or its machine was lost). {{ event.resource['prefect.state-message'] }}\n"
    "Crash recovery runs it again while its round is open; if it keeps crashing, give the node "
    "a bigger size preset or fewer features." + _RUN_LINK
)


def at_risk_subject(window_minutes: float) -> str:
    """The round-at-risk subject, for a window of `window_minutes`."""
    window = minutes_text(window_minutes)
    return (
        f"numerai-nodes: {_NODE_OF_EVENT} has not submitted {window} after its webhook "
        "(round {{ event.payload.roundNumber or '?' }})"
    )


def at_risk_body(window_minutes: float) -> str:
    """The round-at-risk body, for a window of `window_minutes`."""
    window = minutes_text(window_minutes)
    return (
        f"Numerai called the webhook of node {_NODE_OF_EVENT} at "
        "{{ event.occurred.strftime('%Y-%m-%d %H:%M:%S UTC') }} "
        "(trigger {{ event.payload.triggerId or '?' }}, round "
        "{{ event.payload.roundNumber or '?' }}), and in "
        f"{window} no submission and no failure followed. The run may be waiting for a worker, "
        "stuck, or retrying a failing step until the round closes.\n"
        "Next: look at the node's flow runs in the Prefect UI; `numerai-nodes doctor` checks "
        "the set-up, and `numerai-nodes node test NODE` runs the node now."
    )


STALE_SUBJECT = (
    _PAYLOAD + "numerai-nodes: {{ p.node }} submitted round {{ p.round or '?' }} with a stale "
    "model of {{ p.spec }}"
)
STALE_BODY = _PAYLOAD + (
    "Node {{ p.node }} (Numerai model {{ p.model }}) submitted for round {{ p.round or '?' }} "
    "with a stale model: spec {{ p.spec }}'s own model ({{ p.wanted_key }}) is not trained yet, "
    "so it predicted with the family's last good model {{ p.used_key }} (data "
    "{{ p.used_data_version }}; an older data version or code).\n"
    "Next: `numerai-nodes train {{ p.spec }}` (or run the deployment train-{{ p.spec }}); the "
    "node's next run uses the new model.\n"
    "Trigger {{ p.trigger_id or 'none (a manual or scheduled run)' }}, flow run "
    "{{ p.flow_run or '?' }}." + _RUN_LINK
)
WATCHDOG_SUBJECT = (
    _PAYLOAD + "numerai-nodes: round {{ p.round }} closes in {{ p.minutes_left }} min and "
    "{{ p.node }} has not submitted"
)
WATCHDOG_BODY = _PAYLOAD + (
    "Round {{ p.round }} closes at {{ p.closes_at }} and Numerai lists no submission of model "
    "{{ p.model }} (node {{ p.node }}) for it. {{ p.detail }}\n"
    "Next: `numerai-nodes node test {{ p.node }}` runs the node now."
)


def minutes_text(count: float) -> str:
    """`30 minutes`, `1 minute`, `0.5 minutes`."""
    return f"{count:g} minute{'' if count == 1 else 's'}"
