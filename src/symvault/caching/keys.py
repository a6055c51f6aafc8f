"""Turning scopes and keys into paths inside a cache kind's directory."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = ["GLOBAL_SCOPE", "CacheKey", "scope_directory"]

GLOBAL_SCOPE = "global"
# Matched with `fullmatch`: `$` would also accept a trailing newline.
_SIMPLE_SCOPE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")


def scope_directory(scope: str) -> str:
    """The directory name of a scope: the scope itself if simple, else a hash of it."""
    if _SIMPLE_SCOPE.fullmatch(scope):
        return scope
    return "h-" + hashlib.sha256(scope.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CacheKey:
    """Where one entry lives within a kind: a scope and relative path segments."""

    scope: str
    segments: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError("a cache key needs at least one segment")
        for segment in self.segments:
            if not _SEGMENT.fullmatch(segment):
                raise ValueError(f"unsafe cache key segment {segment!r}")

    @property
    def relative_path(self) -> str:
        return "/".join((scope_directory(self.scope), *self.segments))

    def __str__(self) -> str:
        return self.relative_path
