"""Round history for the CLI: each node's rounds from the Prefect API, with Numerai's live
scores read with the keys of the environment (the model's id needs them)."""

from __future__ import annotations

from deployments.catalogue import Node, load_nodes
from flows.errors import MissingKeys, UnknownModel
from flows.history import ROUNDS, NodeHistory, read_history, with_live_scores
from flows.keys import connect


def histories(name: str | None = None, rounds: int = ROUNDS) -> list[NodeHistory]:
    """The history of node `name` (any node that ran, catalogued or not), or of every node of
    the catalogue."""
    catalogue = {node.name: node for node in load_nodes()}
    if name is not None:
        return [node_history(name, rounds, catalogue.get(name))]
    return [node_history(node.name, rounds, node) for node in catalogue.values()]


def node_history(name: str, rounds: int = ROUNDS, node: Node | None = None) -> NodeHistory:
    """One node's last `rounds` rounds. The model and tournament are the ones its runs
    submitted as; a node that never submitted falls back on its catalogue entry."""
    history = read_history(name, rounds)
    model = history.model or (node.numerai_model if node else None)
    tournament = history.tournament or (node.tournament if node else None)
    history.model, history.tournament = model, tournament
    if not history.rows:
        return history
    if model is None or tournament is None:
        history.note = "No live scores: no run of this node submitted, so its model is unknown."
        return history
    numerai = connect(tournament)
    try:
        model_id = numerai.model_id(model)
    except (MissingKeys, UnknownModel) as exc:
        history.note = f"No live scores: {exc}"
        return history
    return with_live_scores(history, numerai.round_performances(model_id))
