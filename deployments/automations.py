"""Prefect automations that the project owns, kept by name: applying twice leaves one of each."""

from __future__ import annotations

from collections.abc import Iterable

from prefect.client.orchestration import SyncPrefectClient
from prefect.events.schemas.automations import AutomationCore


def upsert(client: SyncPrefectClient, wanted: Iterable[AutomationCore]) -> None:
    """Create each automation, or update the one of its name in place (and drop duplicates)."""
    for automation in wanted:
        existing = client.read_automations_by_name(automation.name)
        if existing:
            client.update_automation(existing[0].id, automation)
            for duplicate in existing[1:]:
                client.delete_automation(duplicate.id)
        else:
            client.create_automation(automation)
