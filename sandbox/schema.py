"""The GraphQL subset of Numerai's tournament API that clients use: resolvers and the schema."""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from graphql import (
    ExecutionResult,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    build_schema,
    graphql_sync,
)

from flows.tournaments import CLASSIC, SIGNALS
from sandbox.backend import first_effective_date
from sandbox.context import RequestContext, round_json
from sandbox.context import request_context as _ctx
from sandbox.performance import resolve_round_model_performances, resolve_submission_scores
from sandbox.profiles import resolve_account_profile, resolve_tournaments, resolve_user_profile
from sandbox.sdl import SDL
from sandbox.state import ModelRecord, SubmissionRecord, iso


# --- serialisers ----------------------------------------------------------------------------
def _submission_json(ctx: RequestContext, record: SubmissionRecord) -> dict[str, Any]:
    rnd = ctx.backend.state.round(record.tournament, record.round)
    return {
        "id": record.id,
        "filename": record.filename,
        "insertedAt": iso(record.inserted_at),
        "triggerId": record.trigger_id,
        "selected": True,
        "round": round_json(rnd) if rnd is not None else None,
    }


def _model_json(ctx: RequestContext, model: ModelRecord) -> dict[str, Any]:
    submissions = ctx.backend.state.submissions_for(model.id)
    return {
        "id": model.id,
        "name": model.name,
        "tournament": model.tournament,
        "submissions": [_submission_json(ctx, s) for s in submissions],
        "v2Stake": {"status": None, "txHash": None},
        "submissionWebhook": ctx.backend.state.webhook(model.id),
    }


# --- queries --------------------------------------------------------------------------------
def resolve_list_datasets(
    _: object, info: GraphQLResolveInfo, round: int | None = None, tournament: int | None = None
) -> list[str]:
    return _ctx(info).backend.datasets(tournament or CLASSIC, round)


def resolve_dataset(
    _: object,
    info: GraphQLResolveInfo,
    filename: str,
    round: int | None = None,
    tournament: int | None = None,
) -> str:
    ctx = _ctx(info)
    tournament = tournament or CLASSIC
    rnd = ctx.backend.resolve_round(tournament, round)
    ctx.backend.dataset_path(tournament, filename, rnd.number)
    return ctx.url(f"files/{filename}", tournament=tournament, round=rnd.number)


def resolve_rounds(
    _: object,
    info: GraphQLResolveInfo,
    tournament: int | None = None,
    number: int | None = None,
    target: str | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """`number: 0` is the current round (open or closed); no number lists all, newest first."""
    state = _ctx(info).backend.state
    tournament = tournament or CLASSIC
    now = state.clock()
    if number == 0:
        rounds = [state.current_round(tournament)]
    elif number is not None:
        found = state.round(tournament, number)
        rounds = [found] if found is not None else []
    else:
        rounds = state.rounds(tournament)
    statuses = {
        "OPEN": lambda r: r.is_open(now),
        "RESOLVING": lambda r: now >= r.close_time and now < r.resolve_time,
        "RESOLVED": lambda r: now >= r.resolve_time,
        "UPCOMING": lambda r: now < r.open_time,
    }
    if status is not None:
        rounds = [r for r in rounds if statuses[status](r)]
    if limit is not None:
        rounds = rounds[:limit]
    return [round_json(r, now >= r.resolve_time) for r in rounds]


def resolve_account(_: object, info: GraphQLResolveInfo) -> dict[str, Any]:
    ctx = _ctx(info)
    ctx.authenticate()
    state = ctx.backend.state
    return {
        "id": state.account_id,
        "username": state.username,
        "email": f"{state.username}@sandbox.invalid",
        "status": "VERIFIED",
        "walletAddress": None,
        "availableNmr": "0.0",
        "mfaEnabled": False,
        "insertedAt": iso(state.current_round(CLASSIC).open_time),
        "models": [_model_json(ctx, m) for m in state.models()],
        "apiTokens": [
            {"name": "sandbox", "public_id": state.public_id, "scopes": ["upload_submission"]}
        ],
    }


def resolve_model(
    _: object, info: GraphQLResolveInfo, modelId: str | None = None
) -> dict[str, Any] | None:
    ctx = _ctx(info)
    ctx.authenticate()
    model = ctx.owned_model(modelId)
    return _model_json(ctx, model)


def resolve_submissions(
    _: object, info: GraphQLResolveInfo, modelId: str | None = None
) -> list[dict[str, Any]]:
    ctx = _ctx(info)
    ctx.authenticate()
    if modelId is not None:
        ctx.owned_model(modelId)
    return [_submission_json(ctx, s) for s in ctx.backend.state.submissions_for(modelId)]


def _upload_auth(
    info: GraphQLResolveInfo, filename: str, tournament: int, model_id: str | None
) -> dict[str, str]:
    ctx = _ctx(info)
    ctx.authenticate()
    model = ctx.backend.owned_model(model_id, tournament)
    upload = ctx.backend.state.create_upload(os.path.basename(filename), model.id, tournament)
    return {"filename": f"{upload.key}/{upload.filename}", "url": ctx.url(f"uploads/{upload.key}")}


def resolve_submission_upload_auth(
    _: object,
    info: GraphQLResolveInfo,
    filename: str,
    tournament: int | None = None,
    modelId: str | None = None,
) -> dict[str, str]:
    return _upload_auth(info, filename, tournament or CLASSIC, modelId)


def resolve_signals_upload_auth(
    _: object,
    info: GraphQLResolveInfo,
    filename: str,
    tournament: int | None = None,
    modelId: str | None = None,
) -> dict[str, str]:
    return _upload_auth(info, filename, tournament or SIGNALS, modelId)


# --- mutations ------------------------------------------------------------------------------
def resolve_create_submission(
    _: object,
    info: GraphQLResolveInfo,
    filename: str,
    tournament: int | None = None,
    modelId: str | None = None,
    triggerId: str | None = None,
    source: str | None = None,
    dataDatestamp: int | None = None,
) -> dict[str, Any]:
    ctx = _ctx(info)
    ctx.authenticate()
    record = ctx.backend.submit(
        filename=filename,
        tournament=tournament or CLASSIC,
        model_id=modelId,
        trigger_id=triggerId,
        source=source,
    )
    return _submission_json(ctx, record)


def resolve_create_signals_submission(
    _: object,
    info: GraphQLResolveInfo,
    filename: str,
    modelId: str | None = None,
    triggerId: str | None = None,
    source: str | None = None,
    dataDatestamp: int | None = None,
) -> dict[str, Any]:
    ctx = _ctx(info)
    ctx.authenticate()
    record = ctx.backend.submit(
        filename=filename,
        tournament=SIGNALS,
        model_id=modelId,
        trigger_id=triggerId,
        source=source,
    )
    return {"id": record.id, "firstEffectiveDate": first_effective_date(record)}


def resolve_set_submission_webhook(
    _: object, info: GraphQLResolveInfo, modelId: str, newSubmissionWebhook: str | None = None
) -> str:
    ctx = _ctx(info)
    ctx.authenticate()
    model = ctx.owned_model(modelId)
    ctx.backend.state.set_webhook(model.id, newSubmissionWebhook)
    return "true"


def resolve_trigger_model_webhook(
    _: object, info: GraphQLResolveInfo, modelId: str, tournament: int | None = None
) -> str:
    ctx = _ctx(info)
    ctx.authenticate()
    model = ctx.owned_model(modelId)
    return ctx.backend.state.fire_webhook(model.id)


_RESOLVERS = {
    "Query": {
        "listDatasets": resolve_list_datasets,
        "dataset": resolve_dataset,
        "rounds": resolve_rounds,
        "account": resolve_account,
        "model": resolve_model,
        "submissions": resolve_submissions,
        "submission_upload_auth": resolve_submission_upload_auth,
        "submissionUploadSignalsAuth": resolve_signals_upload_auth,
        "tournaments": resolve_tournaments,
        "accountProfile": resolve_account_profile,
        "v3UserProfile": resolve_user_profile,
        "v2RoundModelPerformances": resolve_round_model_performances,
        "submissionScores": resolve_submission_scores,
    },
    "Mutation": {
        "create_submission": resolve_create_submission,
        "createSignalsSubmission": resolve_create_signals_submission,
        "setSubmissionWebhook": resolve_set_submission_webhook,
        "triggerModelWebhook": resolve_trigger_model_webhook,
    },
}


@cache
def schema() -> GraphQLSchema:
    """The executable schema (built once, on first use)."""
    built = build_schema(SDL)
    for type_name, fields in _RESOLVERS.items():
        graphql_type = built.get_type(type_name)
        assert isinstance(graphql_type, GraphQLObjectType), f"SDL has no object type {type_name}"
        for field_name, resolver in fields.items():
            graphql_type.fields[field_name].resolve = resolver
    return built


def execute(
    ctx: RequestContext,
    query: str,
    variables: dict[str, Any] | None = None,
    operation_name: str | None = None,
) -> ExecutionResult:
    """Parse, validate and execute one GraphQL request."""
    return graphql_sync(
        schema(),
        query,
        variable_values=variables,
        operation_name=operation_name,
        context_value=ctx,
    )
