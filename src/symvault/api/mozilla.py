"""`POST /symbolicate/v5`: Mozilla's symbolication API (Tecken/Eliot)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from symvault.api.common import check_credentials, read_json, run_blocking, services_of
from symvault.api.responses import JsonResponse
from symvault.symbolication.mozilla import parse_jobs

__all__ = ["symbolicate_v5"]


async def symbolicate_v5(request: Request) -> Response:
    services = services_of(request)
    await check_credentials(request)
    jobs = parse_jobs(await read_json(request, services.config.server.max_json_body))
    # Downloads and look-ups interleave here: a worker thread of its own, so that
    # `/symbolicate`'s CPU threads are never held by a download.
    result = await run_blocking(services.mozilla.symbolicate, jobs, services.config.sources)
    return JsonResponse(result)
