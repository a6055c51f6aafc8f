"""What every route module needs: services, auth, body reading, blocking calls."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from symvault import jsontext
from symvault.app import Services
from symvault.errors import BadRequest, PayloadTooLarge
from symvault.store.accounts import Principal, ProjectRef
from symvault.store.multipart import MultipartReceiver

__all__ = [
    "authenticate",
    "authorize_project",
    "check_credentials",
    "feed_body",
    "read_json",
    "run_blocking",
    "services_of",
]

P = ParamSpec("P")
T = TypeVar("T")

#: Body bytes handed to a worker thread at once when streaming uploads.
FEED_BLOCK = 1024 * 1024


def services_of(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def run_blocking(func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Runs blocking work (database, files, parsing) in a worker thread."""
    return await run_in_threadpool(func, *args, **kwargs)


async def authenticate(request: Request) -> Principal:
    accounts = services_of(request).accounts
    header = request.headers.get("authorization")
    # A token seen moments ago is known without a database query or a thread hop.
    principal = accounts.remembered_principal(header)
    if principal is not None:
        return principal
    return await run_blocking(accounts.authenticate, header)


async def check_credentials(request: Request) -> None:
    """For endpoints open to anonymous clients: credentials that are sent must be valid,
    so that a client with a mistyped or revoked token hears of it (401)."""
    if "authorization" in request.headers:
        await authenticate(request)


async def authorize_project(
    request: Request,
    principal: Principal,
    organization: str,
    project: str,
    scopes: Iterable[str],
) -> ProjectRef:
    """`Accounts.authorize_project` (never creating), from memory when it can be."""
    accounts = services_of(request).accounts
    ref = accounts.remembered_project(principal, organization, project, scopes)
    if ref is not None:
        return ref
    return await run_blocking(accounts.authorize_project, principal, organization, project, scopes)


async def read_json(request: Request, limit: int) -> Any:
    """Reads and parses a JSON body of at most `limit` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes")
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes")
    if not body:
        raise BadRequest("The request body is empty; a JSON document was expected")
    try:
        if len(body) > 64 * 1024:
            return await run_blocking(jsontext.loads, bytes(body))
        return jsontext.loads(body)
    except jsontext.TooDeep as exc:
        raise BadRequest("The request body is nested too deeply") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from exc


async def feed_body(request: Request, receiver: MultipartReceiver) -> None:
    """Streams the request body into `receiver`, in blocks, from worker threads."""
    pending = bytearray()
    async for piece in request.stream():
        pending += piece
        if len(pending) >= FEED_BLOCK:
            await run_blocking(receiver.feed, bytes(pending))
            pending.clear()
    await run_blocking(receiver.feed, bytes(pending))
