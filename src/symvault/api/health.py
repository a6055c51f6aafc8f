"""`/healthcheck` and `/metrics`."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from symvault.api.common import services_of

__all__ = ["healthcheck", "metrics"]


async def healthcheck(request: Request) -> Response:
    return PlainTextResponse("ok")


async def metrics(request: Request) -> Response:
    body = services_of(request).metrics.render()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
