"""The ASGI application: routes, error handling, request metrics, lifecycle."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from symvault.api import assemble, chunk_upload, debug_files, health, mozilla, symbolicate
from symvault.api.common import run_blocking
from symvault.app import Services
from symvault.errors import ChunkRejected, ClientError
from symvault.metrics import Metrics

__all__ = ["create_api"]

logger = logging.getLogger(__name__)

_PROJECT = "/api/0/projects/{org}/{project}"

_Endpoint = Callable[[Request], Awaitable[Response]]


def _routes() -> list[BaseRoute]:
    table = [
        ("/healthcheck", health.healthcheck, ["GET"]),
        ("/metrics", health.metrics, ["GET"]),
        ("/api/0/organizations/{org}/chunk-upload/", chunk_upload.get_options, ["GET"]),
        ("/api/0/organizations/{org}/chunk-upload/", chunk_upload.upload_chunks, ["POST"]),
        (f"{_PROJECT}/files/difs/assemble/", assemble.assemble, ["POST"]),
        (f"{_PROJECT}/files/dsyms/", debug_files.list_debug_files, ["GET"]),
        (f"{_PROJECT}/files/dsyms/", debug_files.delete_debug_file, ["DELETE"]),
        (f"{_PROJECT}/files/dsyms/", debug_files.upload_debug_file, ["POST"]),
        (f"{_PROJECT}/files/dsyms/unknown/", debug_files.missing_debug_files, ["GET"]),
        ("/symbolicate", symbolicate.symbolicate, ["POST"]),
        ("/requests/{request_id}", symbolicate.poll_request, ["GET"]),
        ("/symbolicate/v5", mozilla.symbolicate_v5, ["POST"]),
    ]
    by_path: dict[str, dict[str, _Endpoint]] = {}
    for path, endpoint, methods in table:
        for method in methods:
            by_path.setdefault(path, {})[method] = endpoint
    routes: list[BaseRoute] = []
    for path, endpoints in by_path.items():
        # One route per path, so that a 405 answer lists every method of the path.
        handler = _dispatch_by_method(endpoints)
        routes.append(Route(path, handler, methods=list(endpoints)))
        if path.endswith("/"):
            # Clients that drop the trailing slash get the same answer, not a redirect.
            routes.append(Route(path.rstrip("/"), handler, methods=list(endpoints)))
    return routes


def _dispatch_by_method(endpoints: dict[str, _Endpoint]) -> _Endpoint:
    if len(endpoints) == 1:
        return next(iter(endpoints.values()))

    async def dispatch(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await endpoints[method](request)

    return dispatch


async def _client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    key = "error" if isinstance(exc, ChunkRejected) else "detail"
    return JSONResponse({key: exc.detail}, status_code=exc.status_code)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, exc.detail)
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    logger.error("http.unhandled_error path=%s", request.url.path, exc_info=exc)
    return JSONResponse({"detail": "Internal server error"}, status_code=500)


class _RequestMetrics:
    """Counts requests and their duration by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    @staticmethod
    def _template(scope: Scope) -> str:
        # The router records the matched route in the (shared) scope.
        route = scope.get("route")
        return route.path if isinstance(route, Route) else "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_with_status)
        finally:
            route = self._template(scope)
            self._metrics.http_requests.labels(route, scope["method"], str(status)).inc()
            self._metrics.http_duration.labels(route).observe(time.perf_counter() - started)


def create_api(services: Services) -> ASGIApp:
    """The ASGI app serving `services`; starting it starts their background work."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_blocking(services.start)
        # What exists now lives as long as the process: the cyclic garbage collector
        # need not walk it again, which would stall every request in flight each time.
        gc.freeze()
        try:
            yield
        finally:
            await run_blocking(services.stop)

    app = Starlette(
        routes=_routes(),
        exception_handlers={
            ClientError: _client_error,
            HTTPException: _http_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.state.services = services
    return _RequestMetrics(app, services.metrics)
