"""What every GraphQL resolver shares: the request's context and the round as Numerai sends it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from graphql import GraphQLResolveInfo

from sandbox.backend import Backend
from sandbox.errors import SandboxError
from sandbox.state import ModelRecord, RoundRecord, iso


@dataclass(frozen=True)
class RequestContext:
    """What a resolver knows about the request: the backend, where it lives, the caller's key."""

    backend: Backend
    base_url: str
    authorization: str | None

    def authenticate(self) -> None:
        self.backend.state.authenticate(self.authorization)

    def url(self, path: str, **query: object) -> str:
        params = {k: v for k, v in query.items() if v is not None}
        suffix = f"?{urlencode(params)}" if params else ""
        return f"{self.base_url.rstrip('/')}/{quote(path, safe='/')}{suffix}"

    def owned_model(self, model_id: str | None) -> ModelRecord:
        """The caller's model by id, or the error Numerai gives for someone else's."""
        model = self.backend.state.model(model_id or "")
        if model is None:
            raise SandboxError(f"model {model_id} does not exist or is not yours")
        return model


def request_context(info: GraphQLResolveInfo) -> RequestContext:
    return info.context


def round_id(rnd: RoundRecord) -> str:
    """A round's stable id (Numerai's rounds have UUIDs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_OID, f"round/{rnd.tournament}/{rnd.number}"))


def round_json(rnd: RoundRecord, now_resolved: bool = False) -> dict[str, Any]:
    return {
        "id": round_id(rnd),
        "tournament": rnd.tournament,
        "number": rnd.number,
        "target": None,
        "openTime": iso(rnd.open_time),
        "closeStakingTime": iso(rnd.close_staking_time),
        "closeTime": iso(rnd.close_time),
        "scoreTime": None,
        "resolveTime": iso(rnd.resolve_time),
        "resolvedGeneral": now_resolved,
        "resolvedStaking": now_resolved,
        "payoutFactor": None,
        "stakeThreshold": None,
        "dataDatestamp": int(rnd.open_time.strftime("%Y%m%d")),
        "roundScoreConfigs": [],
    }
