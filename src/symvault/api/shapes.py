"""JSON shapes of the Sentry-compatible store API, as `sentry-cli` parses them."""

from __future__ import annotations

from typing import Any

from symvault.model.difs import DebugFile

__all__ = ["dif_json"]


def dif_json(record: DebugFile) -> dict[str, Any]:
    """A debug file as Sentry serializes a `ProjectDebugFile`."""
    data: dict[str, Any] = {"features": sorted(record.features)}
    if record.kind is not None:
        data["type"] = record.kind
    return {
        "id": str(record.id),
        "uuid": record.debug_id[:36],
        "debugId": record.debug_id,
        "codeId": record.code_id,
        "cpuName": record.arch,
        "objectName": record.object_name,
        "symbolType": record.file_format,
        "headers": {"Content-Type": record.content_type},
        "size": record.size,
        "sha1": record.checksum,
        "dateCreated": record.created_at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }
