"""Turning nodes into running deployments: the catalogue, the gateway, the CLI."""
