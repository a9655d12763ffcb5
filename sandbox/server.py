"""The Starlette app: GraphQL on `/`, dataset files, upload PUTs, admin under `/_sandbox/`."""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from graphql import FieldNode, GraphQLError, OperationDefinitionNode, parse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from flows.tournaments import CLASSIC, Tournament
from sandbox.backend import Backend
from sandbox.chaos import Chaos
from sandbox.chaos_asgi import ChaosMiddleware
from sandbox.errors import SandboxError
from sandbox.schema import RequestContext, execute, round_json
from sandbox.state import Faults
from sandbox.webhooks import WebhookDelivery

logger = logging.getLogger(__name__)


def _errors(message: str) -> JSONResponse:
    """A GraphQL error the way Numerai sends it: HTTP 200, so numerapi does not retry."""
    return JSONResponse({"data": None, "errors": [{"message": message}]})


def _tournament(request: Request, body: dict[str, Any] | None = None) -> Tournament:
    """The `tournament` of a JSON body or query, by id or label; Classic without one."""
    raw = (body or {}).get("tournament", request.query_params.get("tournament", CLASSIC))
    try:
        return Tournament.parse(raw)
    except ValueError as exc:  # Tournament.parse raises a plain ValueError naming the valid ones
        raise SandboxError(str(exc)) from None


def _round(request: Request) -> int | None:
    """The `round` query parameter; None (the current round) without one."""
    raw = request.query_params.get("round")
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:  # int() of text that is not a number
        raise SandboxError(f"round must be a round number, not {raw!r}") from None


def _window(body: dict[str, Any]) -> timedelta | None:
    """The `window_seconds` a round stays open for; None (the sandbox's default) without one."""
    raw = body.get("window_seconds")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float) or raw <= 0:
        raise SandboxError(f"window_seconds must be a positive number of seconds, not {raw!r}")
    return timedelta(seconds=raw)


def _fields(query: str, operation_name: object) -> list[str]:
    """The top-level fields a GraphQL request asks for (its operation's); none if it does not
    parse (execution then answers the error)."""
    try:
        document = parse(query)
    except GraphQLError:
        return []
    operations = [
        node
        for node in document.definitions
        if isinstance(node, OperationDefinitionNode)
        and (operation_name is None or (node.name and node.name.value == operation_name))
    ]
    if not operations:
        return []
    return [
        field.name.value
        for field in operations[0].selection_set.selections
        if isinstance(field, FieldNode)
    ]


class SandboxApp:
    """Request handlers bound to one backend."""

    def __init__(self, backend: Backend, webhooks: WebhookDelivery | None = None) -> None:
        self.backend = backend
        self.webhooks = webhooks
        self.downloads: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    @property
    def faults(self) -> Faults:
        return self.backend.state.faults

    @property
    def chaos(self) -> Chaos:
        return self.backend.state.chaos

    async def _latency(self) -> None:
        if self.faults.latency_s > 0:
            await asyncio.sleep(self.faults.latency_s)

    # --- the Numerai API ----------------------------------------------------------------
    async def graphql(self, request: Request) -> Response:
        await self._latency()
        try:
            body = json.loads(await request.body() or b"null")
        except json.JSONDecodeError as exc:
            return _errors(f"the request body is not JSON: {exc}")
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return _errors('send a JSON body {"query": "...", "variables": {...}}')
        self.calls.update(_fields(body["query"], body.get("operationName")))
        if self.faults.graphql_error:
            return _errors(self.faults.graphql_error)
        ctx = RequestContext(
            backend=self.backend,
            base_url=str(request.base_url),
            authorization=request.headers.get("authorization"),
        )
        variables = body.get("variables") if isinstance(body.get("variables"), dict) else None
        try:
            result = await run_in_threadpool(
                execute, ctx, body["query"], variables, body.get("operationName")
            )
        except Exception as exc:  # a bug must still reach numerapi as an error, never a 5xx
            logger.exception("GraphQL execution failed")
            return _errors(f"internal sandbox error: {exc}")
        for error in result.errors or []:
            if error.original_error is not None and not isinstance(
                error.original_error, SandboxError
            ):
                logger.error("resolver failed", exc_info=error.original_error)
        return JSONResponse(result.formatted)

    async def index(self, request: Request) -> Response:
        return PlainTextResponse("Numerai sandbox: POST GraphQL here.\n")

    async def files(self, request: Request) -> Response:
        await self._latency()
        filename = request.path_params["path"]
        try:
            path = await run_in_threadpool(
                self.backend.dataset_path, _tournament(request), filename, _round(request)
            )
        except SandboxError as exc:
            return PlainTextResponse(str(exc), status_code=404)
        self.downloads[filename] += 1  # whole or resumed: each GET of a file counts
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return FileResponse(path, media_type=media_type, filename=None)

    async def upload(self, request: Request) -> Response:
        await self._latency()
        if self.faults.reject_uploads:
            return PlainTextResponse(
                "AccessDenied: the sandbox fault `reject_uploads` refuses every upload",
                status_code=403,
            )
        data = await request.body()
        key = request.path_params["key"]
        if not self.backend.state.store_upload(key, data, request.headers.get("x_compute_id")):
            return PlainTextResponse(f"NoSuchUpload: upload key {key} was never issued", 404)
        return Response(status_code=200)

    # --- admin --------------------------------------------------------------------------
    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def admin_state(self, request: Request) -> Response:
        state = self.backend.state
        now = state.clock()
        rounds = {str(t.value): state.current_round(t).to_json(now) for t in Tournament}
        return JSONResponse(
            {
                "username": state.username,
                "models": [
                    {
                        "id": m.id,
                        "name": m.name,
                        "tournament": m.tournament,
                        "webhook": state.webhook(m.id),
                    }
                    for m in state.models()
                ],
                "rounds": rounds,
                "faults": state.faults.to_json(),
                "submissions": len(state.submissions),
                "triggers": [
                    {"id": t.id, "model_id": t.model_id, "round": t.round, "webhook": t.webhook}
                    for t in state.triggers
                ],
            }
        )

    async def admin_downloads(self, request: Request) -> Response:
        """How many times each dataset file was fetched (GET or HEAD), by file name."""
        return JSONResponse(dict(self.downloads))

    async def admin_calls(self, request: Request) -> Response:
        """How many GraphQL requests asked for each top-level field (e.g. `account`)."""
        return JSONResponse(dict(self.calls))

    async def admin_webhooks(self, request: Request) -> Response:
        """Every webhook delivery: when it fired, how it was answered."""
        deliveries = self.webhooks.deliveries if self.webhooks else []
        return JSONResponse([d.to_json() for d in deliveries])

    async def admin_submissions(self, request: Request) -> Response:
        state = self.backend.state
        name = request.query_params.get("model")
        with_ids = request.query_params.get("ids") in ("1", "true")
        records = [
            s.to_json(with_ids=with_ids)
            for s in state.submissions
            if name is None or s.model_name == name
        ]
        return JSONResponse(records)

    async def _json_body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SandboxError(f"the request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise SandboxError("send a JSON object")
        return body

    async def admin_open_round(self, request: Request) -> Response:
        try:
            body = await self._json_body(request)
            tournament, window = _tournament(request, body), _window(body)
            rnd = await run_in_threadpool(self.backend.open_round, tournament, window)
        except SandboxError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        called = [model.name for model in self.backend.webhook_models(tournament)]
        return JSONResponse({**round_json(rnd), "webhooks_called": called})

    async def admin_models(self, request: Request) -> Response:
        """GET: the account's models; POST {name, tournament}: add one (as numer.ai's site does;
        Numerai's API has no call for it)."""
        if request.method == "POST":
            try:
                body = await self._json_body(request)
                name = str(body.get("name") or "")
                if not name:
                    raise SandboxError('send the model\'s name: {"name": "my_model"}')
                self.backend.state.add_model(name, _tournament(request, body))
            except SandboxError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        models = self.backend.state.models()
        return JSONResponse(
            [{"name": m.name, "id": m.id, "tournament": m.tournament} for m in models]
        )

    async def admin_close_round(self, request: Request) -> Response:
        try:
            tournament = _tournament(request, await self._json_body(request))
            rnd = self.backend.state.close_round(tournament)
        except SandboxError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(round_json(rnd))

    async def admin_faults(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                self.faults.update(await self._json_body(request))
            except SandboxError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self.faults.to_json())

    async def admin_chaos(self, request: Request) -> Response:
        """Seeded chaos: its settings and how many faults of each kind it injected."""
        if request.method == "POST":
            try:
                self.chaos.configure(await self._json_body(request))
            except SandboxError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(self.chaos.to_json())


def create_app(
    backend: Backend, routes: Sequence[BaseRoute] = (), webhooks: WebhookDelivery | None = None
) -> ASGIApp:
    """The sandbox's ASGI app, chaos outermost; `routes` are mounted too (e.g. a price source)."""
    handlers = SandboxApp(backend, webhooks)
    app = Starlette(
        routes=[
            Route("/", handlers.graphql, methods=["POST"]),
            Route("/", handlers.index, methods=["GET"]),
            Route("/files/{path:path}", handlers.files, methods=["GET", "HEAD"]),
            Route("/uploads/{key}", handlers.upload, methods=["PUT"]),
            Route("/healthz", handlers.healthz, methods=["GET"]),
            Route("/_sandbox/state", handlers.admin_state, methods=["GET"]),
            Route("/_sandbox/submissions", handlers.admin_submissions, methods=["GET"]),
            Route("/_sandbox/rounds/open", handlers.admin_open_round, methods=["POST"]),
            Route("/_sandbox/rounds/close", handlers.admin_close_round, methods=["POST"]),
            Route("/_sandbox/models", handlers.admin_models, methods=["GET", "POST"]),
            Route("/_sandbox/faults", handlers.admin_faults, methods=["GET", "POST"]),
            Route("/_sandbox/chaos", handlers.admin_chaos, methods=["GET", "POST"]),
            Route("/_sandbox/webhooks", handlers.admin_webhooks, methods=["GET"]),
            Route("/_sandbox/downloads", handlers.admin_downloads, methods=["GET"]),
            Route("/_sandbox/calls", handlers.admin_calls, methods=["GET"]),
            *routes,
        ]
    )
    return ChaosMiddleware(app, backend.state.chaos)
