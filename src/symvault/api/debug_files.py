"""`/api/0/projects/{org}/{project}/files/dsyms/`: list, download, delete, legacy upload."""

from __future__ import annotations

import contextlib
import re

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse

from symvault.api.common import authenticate, feed_body, run_blocking, services_of
from symvault.api.shapes import dif_json
from symvault.app import Services
from symvault.errors import BadRequest, NotFound
from symvault.model.difs import DebugFile
from symvault.model.ids import parse_code_id, parse_debug_id, parse_sha1
from symvault.store.accounts import READ_SCOPES, WRITE_SCOPES, ProjectRef
from symvault.store.debug_files import DebugFileQuery
from symvault.store.multipart import MultipartLimits, MultipartReceiver

__all__ = ["delete_debug_file", "list_debug_files", "missing_debug_files", "upload_debug_file"]

_PAGE_SIZE = 20
_MAX_PAGE_SIZE = 100
_STREAM_BLOCK = 1024 * 1024


async def _project(request: Request, scopes: frozenset[str], create: bool = False) -> ProjectRef:
    services = services_of(request)
    principal = await authenticate(request)
    return await run_blocking(
        services.accounts.authorize_project,
        principal,
        request.path_params["org"],
        request.path_params["project"],
        scopes,
        create=create,
    )


#: Ids and offsets are 64-bit signed integers in the database.
_MAX_INTEGER = 2**63 - 1
_INTEGER = re.compile(r"-?[0-9]+")


def _int_param(params: QueryParams, name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw):
        raise BadRequest(f"Query parameter {name!r} must be an integer, not {raw[:40]!r}")
    value = int(raw)
    if value < 0:
        raise BadRequest(f"Query parameter {name!r} must not be negative")
    if value > _MAX_INTEGER:
        raise BadRequest(f"Query parameter {name!r} must be at most {_MAX_INTEGER}")
    return value


def _parse_cursor(raw: str | None) -> int:
    """Sentry cursors look like `0:40:0` (value, offset, is_prev); the offset is used."""
    if not raw:
        return 0
    parts = raw.split(":")
    if len(parts) != 3 or not all(_INTEGER.fullmatch(part) for part in parts):
        raise BadRequest(f"Invalid cursor {raw[:40]!r}")
    offset = int(parts[1])
    if offset > _MAX_INTEGER:
        raise BadRequest(f"Invalid cursor {raw[:40]!r}: the offset is too large")
    return max(offset, 0)


def _query_of(params: QueryParams) -> DebugFileQuery:
    debug_id = params.get("debug_id")
    code_id = params.get("code_id")
    try:
        return DebugFileQuery(
            debug_id=parse_debug_id(debug_id) if debug_id else None,
            code_id=parse_code_id(code_id) if code_id else None,
            query=params.get("query") or None,
            file_formats=tuple(params.getlist("file_formats")),
        )
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


def _link_header(request: Request, offset: int, limit: int, has_more: bool) -> str:
    def link(cursor_offset: int, rel: str, results: bool, is_prev: int) -> str:
        cursor = f"0:{cursor_offset}:{is_prev}"
        url = request.url.include_query_params(cursor=cursor)
        return f'<{url}>; rel="{rel}"; results="{str(results).lower()}"; cursor="{cursor}"'

    previous = link(max(offset - limit, 0), "previous", offset > 0, 1)
    following = link(offset + limit, "next", has_more, 0)
    return f"{previous}, {following}"


async def list_debug_files(request: Request) -> Response:
    """Lists a project's debug files, or downloads one with `?id=N`."""
    services = services_of(request)
    project = await _project(request, READ_SCOPES)
    params = request.query_params
    file_id = _int_param(params, "id")
    if file_id is not None:
        return await _download(services, project, file_id)
    limit = min(_int_param(params, "per_page", _PAGE_SIZE) or _PAGE_SIZE, _MAX_PAGE_SIZE)
    offset = _parse_cursor(params.get("cursor"))
    records, has_more = await run_blocking(
        services.debug_files.list, project.id, _query_of(params), offset, limit
    )
    return JSONResponse(
        [dif_json(record) for record in records],
        headers={"Link": _link_header(request, offset, limit, has_more)},
    )


async def _download(services: Services, project: ProjectRef, file_id: int) -> Response:
    record: DebugFile | None = await run_blocking(services.debug_files.get, project.id, file_id)
    if record is None:
        raise NotFound(f"debug file {file_id} does not exist in this project")
    headers = {"Content-Disposition": f'attachment; filename="{_safe_filename(record)}"'}
    local = services.storage.local_path(record.storage_key)
    if local is not None:
        if not await run_blocking(local.is_file):
            raise NotFound(f"the contents of debug file {file_id} are missing")
        return FileResponse(local, media_type="application/octet-stream", headers=headers)
    handle = await run_blocking(services.storage.open, record.storage_key)

    async def stream() -> object:
        try:
            while block := await run_blocking(handle.read, _STREAM_BLOCK):
                yield block
        finally:
            await run_blocking(handle.close)

    return StreamingResponse(stream(), media_type="application/octet-stream", headers=headers)  # type: ignore[arg-type]


def _safe_filename(record: DebugFile) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in record.download_name)


async def delete_debug_file(request: Request) -> Response:
    services = services_of(request)
    project = await _project(request, WRITE_SCOPES)
    file_id = _int_param(request.query_params, "id")
    if file_id is None:
        raise BadRequest("Query parameter 'id' is required")
    record = await run_blocking(services.debug_files.get, project.id, file_id)
    if record is None or not await run_blocking(services.debug_files.delete, project.id, file_id):
        raise NotFound(f"debug file {file_id} does not exist in this project")
    if (
        await run_blocking(services.debug_files.find_by_checksum, project.id, record.checksum)
        is None
    ):
        # Deleted on purpose: uploading the same file again must store it again.
        await run_blocking(services.assembler.forget, project.id, record.checksum)
    return Response(status_code=204)


async def missing_debug_files(request: Request) -> Response:
    """`files/dsyms/unknown/?checksums=...`: which of these files the project lacks."""
    services = services_of(request)
    project = await _project(request, READ_SCOPES)
    try:
        checksums = [parse_sha1(value) for value in request.query_params.getlist("checksums")]
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    missing = await run_blocking(services.debug_files.missing_checksums, project.id, checksums)
    return JSONResponse({"missing": missing})


async def upload_debug_file(request: Request) -> Response:
    """The legacy upload: a multipart `file` holding one debug file or a zip of them."""
    services = services_of(request)
    principal = await authenticate(request)
    organization, slug = request.path_params["org"], request.path_params["project"]
    # Refuses other organizations' and projects' tokens before reading the body; a
    # project that does not exist yet is created once the upload has been checked.
    with contextlib.suppress(NotFound):
        await run_blocking(
            services.accounts.authorize_project, principal, organization, slug, WRITE_SCOPES
        )

    def project_id() -> int:
        ref = services.accounts.authorize_project(
            principal, organization, slug, WRITE_SCOPES, create=True
        )
        return ref.id

    upload = services.config.upload
    receiver = MultipartReceiver(
        request.headers.get("content-type"),
        MultipartLimits(
            max_body=upload.max_file_size + 64 * 1024,
            max_parts=1,
            max_part_size=upload.max_file_size,
        ),
        services.storage.staging_dir(),
        fields=("file",),
    )
    try:
        await feed_body(request, receiver)
        parts = await run_blocking(receiver.finish)
        if not parts:
            raise BadRequest("The request has no 'file' part")
        part = parts[0]
        created = await run_blocking(
            services.legacy_uploads.ingest,
            project_id,
            part.path,
            part.filename or "upload",
            part.sha1,
            part.size,
        )
    finally:
        await run_blocking(receiver.discard)
    return JSONResponse([dif_json(record) for record in created], status_code=201)
