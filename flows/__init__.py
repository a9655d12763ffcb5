"""Orchestration: the node flows and their tasks, the Numerai client, the data cache."""
