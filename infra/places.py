"""The places a node runs: each is one folder of infra/ and answers the same few calls.

A place owns a kind of work pool. The CLI and doctor treat places alike through this table;
adding a place (Azure, say) means adding its folder and one row here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from deployments.checks import Check


@dataclass(frozen=True)
class Place:
    """One place: its name, the worker types of its pools, its default pool, and its package."""

    name: str
    pool_types: tuple[str, ...]
    default_pool: str
    package: str
    setup: str

    def owns(self, pool_type: str) -> bool:
        """Whether a pool of `pool_type` runs here (`ecs` and `ecs:push` both run on AWS)."""
        return pool_type.split(":", 1)[0] in self.pool_types

    def doctor_checks(self, pool_name: str) -> list[Check]:
        """The place's checks of pool `pool_name`; a place without any has none."""
        try:
            doctor = importlib.import_module(f"{self.package}.doctor")
        except ModuleNotFoundError:
            return []
        return doctor.doctor_checks(pool_name)


PLACES = (
    Place("local", ("process",), "local", "infra.local", "numerai-nodes up"),
    Place("aws", ("ecs",), "ecs", "infra.aws", "numerai-nodes infra aws up"),
    Place(
        "gcp", ("cloud-run-v2", "cloud-run"), "cloud-run", "infra.gcp", "numerai-nodes infra gcp up"
    ),
    Place(
        "azure",
        ("azure-container-instance",),
        "azure",
        "infra.azure",
        "numerai-nodes infra azure up",
    ),
)


class _PlaceChecks:
    """Doctor's view of the places (deployments.doctor.PlaceChecks)."""

    def setup_command(self, pool_name: str) -> str | None:
        return next((p.setup for p in PLACES if p.default_pool == pool_name), None)

    def checks(self, pool_name: str, pool_type: str) -> list[Check]:
        place = next((p for p in PLACES if p.owns(pool_type)), None)
        return place.doctor_checks(pool_name) if place is not None else []


place_checks = _PlaceChecks()
