"""`/api/0/projects/{org}/{project}/files/difs/assemble/`: the assemble endpoint."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from symvault.api.common import authenticate, read_json, run_blocking, services_of
from symvault.api.shapes import dif_json
from symvault.errors import BadRequest
from symvault.model.ids import is_sha1
from symvault.store.accounts import WRITE_SCOPES
from symvault.store.assembly import AssembleRequest, AssembleResult

__all__ = ["assemble", "parse_assemble_body"]

#: Most files in one assemble request.
MAX_FILES = 5000
#: Most chunks of one file (a 2 GiB file has 256 chunks of 8 MiB).
MAX_CHUNKS = 100_000


def parse_assemble_body(body: Any) -> list[AssembleRequest]:
    """Validates `{"<sha1>": {"name": str, "chunks": [sha1...], "debug_id": str?}}`."""
    if not isinstance(body, dict):
        raise BadRequest("Invalid assemble request: the body must be a JSON object")
    if len(body) > MAX_FILES:
        raise BadRequest(f"Invalid assemble request: more than {MAX_FILES} files")
    requests = []
    for checksum, entry in body.items():
        where = f"Invalid assemble request: {checksum[:60]!r}"
        if not is_sha1(checksum):
            raise BadRequest(f"{where}: keys must be SHA-1 checksums (40 lowercase hex digits)")
        if not isinstance(entry, dict):
            raise BadRequest(f"{where}: the value must be an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{where}: 'name' must be a non-empty string")
        chunks = entry.get("chunks", [])
        if not isinstance(chunks, list) or len(chunks) > MAX_CHUNKS:
            raise BadRequest(f"{where}: 'chunks' must be a list of SHA-1 checksums")
        for index, chunk in enumerate(chunks):
            if not isinstance(chunk, str) or not is_sha1(chunk):
                raise BadRequest(f"{where}: 'chunks[{index}]' is not a SHA-1 checksum")
        debug_id = entry.get("debug_id")
        if debug_id is not None and not isinstance(debug_id, str):
            raise BadRequest(f"{where}: 'debug_id' must be a string")
        requests.append(AssembleRequest(checksum, name[:1024], tuple(chunks), debug_id))
    return requests


def _result_json(result: AssembleResult) -> dict[str, Any]:
    return {
        "state": result.state.value,
        "missingChunks": list(result.missing_chunks),
        "detail": result.detail,
        "dif": dif_json(result.debug_file) if result.debug_file is not None else None,
    }


async def assemble(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request)
    services.accounts.authorize_organization(principal, request.path_params["org"], WRITE_SCOPES)
    body = await read_json(request, services.config.server.max_json_body)
    requests = parse_assemble_body(body)
    project = await run_blocking(
        services.accounts.authorize_project,
        principal,
        request.path_params["org"],
        request.path_params["project"],
        WRITE_SCOPES,
        create=True,
    )
    results = await run_blocking(
        services.assembler.assemble, project.id, principal.organization_id, requests
    )
    return JSONResponse({checksum: _result_json(r) for checksum, r in results.items()})
