"""`POST /symbolicate` and `GET /requests/{id}`: Symbolicator's API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from symvault.api.common import (
    authenticate,
    authorize_project,
    check_credentials,
    read_json,
    services_of,
)
from symvault.api.responses import JsonResponse
from symvault.app import Services
from symvault.errors import BadRequest, Forbidden, NotFound, UnprocessableEntity
from symvault.model.sources import FilesystemSourceConfig, SourceConfig, StoreSourceConfig
from symvault.model.symbolication import RequestError, SymbolicateRequest, parse_request
from symvault.store.accounts import READ_SCOPES

__all__ = ["poll_request", "symbolicate"]


def _timeout(request: Request) -> float | None:
    raw = request.query_params.get("timeout")
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise BadRequest(
            f"Query parameter 'timeout' must be a whole number of seconds, not {raw[:40]!r}"
        )
    return float(raw)


def _parse(body: Any) -> SymbolicateRequest:
    try:
        return parse_request(body)
    except RequestError as exc:
        raise UnprocessableEntity(str(exc)) from exc


async def _authorize_sources(
    request: Request, services: Services, sources: Sequence[SourceConfig], from_request: bool
) -> None:
    """Store sources need a token that may read the project; filesystem ones need the config."""
    if from_request and not services.config.symbolication.allow_filesystem_sources:
        for source in sources:
            if isinstance(source, FilesystemSourceConfig):
                raise Forbidden(
                    f"source {source.id!r}: requests may not name filesystem sources "
                    "(symbolication.allow_filesystem_sources is off)"
                )
    # Sources of the configuration are the operator's choice; those of a request need
    # a token that may read each store they name.
    stores = [source for source in sources if isinstance(source, StoreSourceConfig)]
    if not stores or not from_request:
        await check_credentials(request)
        return
    principal = await authenticate(request)
    for store in stores:
        try:
            await authorize_project(
                request, principal, store.organization, store.project, READ_SCOPES
            )
        except NotFound:
            continue  # a project without uploads: its modules are simply missing


async def symbolicate(request: Request) -> Response:
    services = services_of(request)
    timeout = _timeout(request)
    scope = request.query_params.get("scope") or "global"
    body = await read_json(request, services.config.server.max_json_body)
    parsed = _parse(body)
    from_request = parsed.sources is not None
    sources = parsed.sources if parsed.sources is not None else services.config.sources
    await _authorize_sources(request, services, sources, from_request)

    symbolicator = services.symbolicator
    executor = services.symbolication_executor

    async def work() -> dict[str, Any]:
        return await symbolicator.symbolicate_async(parsed, sources, scope, executor)

    request_id = services.requests.start(work)
    return JsonResponse(await services.requests.respond(request_id, timeout))


async def poll_request(request: Request) -> Response:
    services = services_of(request)
    timeout = _timeout(request)
    result = await services.requests.respond(request.path_params["request_id"], timeout)
    return JsonResponse(result)
