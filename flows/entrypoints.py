"""The node flows this project ships, declared once: entrypoint, flow name and tournament.

The flows take their name and tournament from here, and the node catalogue reads them from here,
so neither is guessed from a file name. It imports nothing heavy: the CLI reads it for `--help`.
"""

from __future__ import annotations

from dataclasses import dataclass

from flows.tournaments import CLASSIC, CRYPTO, SIGNALS, Tournament


@dataclass(frozen=True)
class NodeFlow:
    """One node flow: where prefect.yaml finds it, its Prefect flow name, its tournament."""

    entrypoint: str
    flow_name: str
    tournament: Tournament


TOURNAMENT_FLOW = NodeFlow("flows/tournament.py:tournament_node", "tournament-node", CLASSIC)
SIGNALS_FLOW = NodeFlow("flows/signals.py:signals_node", "signals-node", SIGNALS)
CRYPTO_FLOW = NodeFlow("flows/crypto.py:crypto_node", "crypto-node", CRYPTO)
# Not a node: trains a Classic model spec into the model store ahead of round day. Its name is
# its function's, as `prefect deploy --name <flow>/<deployment>` matches the function's name.
TRAINING_FLOW = NodeFlow("flows/training.py:train_spec", "train-spec", CLASSIC)
NODE_FLOWS: dict[str, NodeFlow] = {
    flow.entrypoint: flow for flow in (TOURNAMENT_FLOW, SIGNALS_FLOW, CRYPTO_FLOW)
}
