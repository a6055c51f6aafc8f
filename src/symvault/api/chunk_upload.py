"""`/api/0/organizations/{org}/chunk-upload/`: upload options and chunk uploads."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from symvault.api.common import authenticate, feed_body, run_blocking, services_of
from symvault.errors import ChunkRejected
from symvault.store.accounts import READ_SCOPES, WRITE_SCOPES
from symvault.store.chunks import CHUNK_FIELDS, CHUNK_GZIP_FIELDS, verify_chunks
from symvault.store.multipart import MultipartLimits, MultipartReceiver

__all__ = ["get_options", "upload_chunks"]

#: Bytes of multipart headers and gzip overhead allowed per chunk beyond its data.
_FRAMING_SLACK = 64 * 1024

#: What this server accepts, for clients older than sentry-cli 3.1 that check.
_ACCEPT = ["debug_files", "pdbs", "portablepdbs", "sources", "bcsymbolmaps", "il2cpp", "proguard"]


async def get_options(request: Request) -> Response:
    services = services_of(request)
    organization = request.path_params["org"]
    principal = await authenticate(request)
    services.accounts.authorize_organization(principal, organization, READ_SCOPES)
    upload = services.config.upload
    base = services.config.server.public_url or str(request.base_url)
    return JSONResponse(
        {
            "url": f"{base.rstrip('/')}/api/0/organizations/{organization}/chunk-upload/",
            "chunkSize": upload.chunk_size,
            "chunksPerRequest": upload.chunks_per_request,
            "maxRequestSize": upload.max_request_size,
            "maxFileSize": upload.max_file_size,
            "maxWait": int(upload.max_wait.total_seconds()),
            "concurrency": upload.concurrency,
            "hashAlgorithm": "sha1",
            "compression": ["gzip"],
            "accept": _ACCEPT,
        }
    )


async def upload_chunks(request: Request) -> Response:
    services = services_of(request)
    principal = await authenticate(request)
    services.accounts.authorize_organization(principal, request.path_params["org"], WRITE_SCOPES)
    upload = services.config.upload
    # The request size limit applies to the chunks' data, as in Sentry: sentry-cli fills
    # requests up to it with uncompressed data, and gzip and multipart framing may add a
    # little on the wire. The body itself gets that much slack on top.
    max_body = upload.max_request_size + upload.chunks_per_request * _FRAMING_SLACK
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_body:
        raise ChunkRejected(f"Request is larger than the maximum request size of {max_body} bytes")
    receiver = MultipartReceiver(
        request.headers.get("content-type"),
        MultipartLimits(
            max_body=max_body,
            max_parts=upload.chunks_per_request,
            max_part_size=upload.chunk_size,
            max_total=upload.max_request_size,
        ),
        services.storage.staging_dir(),
        fields=CHUNK_FIELDS,
        gzip_fields=CHUNK_GZIP_FIELDS,
        error=ChunkRejected,
    )
    try:
        await feed_body(request, receiver)
        parts = await run_blocking(receiver.finish)
        verify_chunks(parts)
        await run_blocking(services.chunks.save, principal.organization_id, parts)
    finally:
        await run_blocking(receiver.discard)
    services.metrics.chunks_uploaded.inc(len(parts))
    services.metrics.chunk_bytes.inc(sum(part.size for part in parts))
    return JSONResponse({})
