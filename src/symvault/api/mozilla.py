"""`POST /symbolicate/v5`: Mozilla's symbolication API (Tecken/Eliot)."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from symvault.api.common import read_json, services_of
from symvault.api.responses import JsonResponse
from symvault.symbolication.mozilla import parse_jobs

__all__ = ["symbolicate_v5"]


async def symbolicate_v5(request: Request) -> Response:
    services = services_of(request)
    jobs = parse_jobs(await read_json(request, services.config.server.max_json_body))
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(
        services.symbolication_executor,
        services.mozilla.symbolicate,
        jobs,
        services.config.sources,
    )
    return JsonResponse(result)
