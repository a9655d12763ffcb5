"""Public, unauthenticated reads: the tournaments, an account's profile and a model's profile."""

from __future__ import annotations

import uuid
from typing import Any

from graphql import GraphQLResolveInfo

from flows.tournaments import CLASSIC, Tournament
from sandbox.context import request_context
from sandbox.errors import SandboxError
from sandbox.state import iso


def resolve_tournaments(_: object, info: GraphQLResolveInfo) -> list[dict[str, Any]]:
    """`tournaments { name tournament }`: what numerai-cli asks for when its `node` module loads."""
    return [
        {
            "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"tournament/{t.value}")),
            "name": t.label,
            "tournament": t.value,
            "active": True,
        }
        for t in Tournament
    ]


def resolve_account_profile(
    _: object, info: GraphQLResolveInfo, username: str, tournament: int | None = None
) -> dict[str, Any]:
    """`accountProfile(username)`: the account's public models (numerapi's models_of_account)."""
    state = request_context(info).backend.state
    if username != state.username:
        raise SandboxError(f"no account named {username!r}")
    return {
        "username": state.username,
        "models": [
            {"id": m.id, "displayName": m.name, "tournament": m.tournament}
            for m in state.models(tournament)
        ],
    }


def resolve_user_profile(
    _: object,
    info: GraphQLResolveInfo,
    model_name: str | None = None,
    modelName: str | None = None,
    tournament: int | None = None,
) -> dict[str, Any]:
    """`v3UserProfile(model_name)`: a model's public profile; the sandbox has no stakes."""
    state = request_context(info).backend.state
    name = model_name or modelName or ""
    tournament = tournament or CLASSIC
    model = state.model_by_name(name, tournament)
    if model is None:
        raise SandboxError(f"no model named {name!r} in tournament {tournament}")
    first = state.rounds(tournament)[-1]  # newest first: the last is the oldest
    return {
        "id": model.id,
        "username": model.name,
        "startDate": iso(first.open_time),
        "bio": None,
        "nmrStaked": None,
        "stakeValue": None,
    }
