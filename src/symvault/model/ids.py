"""Debug identifiers, code identifiers and checksums, parsed strictly.

A debug id is a UUID plus an optional age (PDBs count rebuilds in the age).
Its canonical form is the one Sentry and symbolic print: the lowercase dashed
UUID, followed by `-<age in hex>` when the age is not zero. Clients also send
the compact Breakpad form (32 hex digits of UUID, then the age in hex).
"""

from __future__ import annotations

import re

__all__ = [
    "is_sha1",
    "parse_code_id",
    "parse_debug_id",
    "parse_sha1",
]

_DASHED = re.compile(
    r"^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})(?:-([0-9a-f]{1,8}))?$"
)
_COMPACT = re.compile(r"^([0-9a-f]{32})([0-9a-f]{1,8})?$")
_HEX = re.compile(r"^[0-9a-f]+$")
_SHA1 = re.compile(r"^[0-9a-f]{40}$")


def parse_debug_id(value: str) -> str:
    """Returns the canonical form of a debug id; raises `ValueError` if it is not one."""
    text = value.strip().lower()
    dashed = _DASHED.match(text)
    if dashed:
        uuid = "-".join(dashed.groups()[:5])
        age = dashed.group(6)
    else:
        compact = _COMPACT.match(text)
        if not compact:
            raise ValueError(f"invalid debug id: {value!r}")
        raw, age = compact.groups()
        uuid = f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
    age_value = int(age, 16) if age else 0
    return f"{uuid}-{age_value:x}" if age_value else uuid


def parse_code_id(value: str) -> str:
    """Returns a code id (ELF build id, PE timestamp+size, Mach-O UUID) in lowercase hex."""
    text = value.strip().lower().replace("-", "")
    if not text or len(text) > 128 or not _HEX.match(text):
        raise ValueError(f"invalid code id: {value!r}")
    return text


def is_sha1(value: str) -> bool:
    """True for 40 lowercase hex digits, the form checksums take on the wire."""
    return bool(_SHA1.match(value))


def parse_sha1(value: str) -> str:
    """Returns a SHA-1 hex digest in lowercase; raises `ValueError` otherwise."""
    text = value.strip().lower()
    if not _SHA1.match(text):
        raise ValueError(f"invalid SHA-1 checksum: {value!r}")
    return text
