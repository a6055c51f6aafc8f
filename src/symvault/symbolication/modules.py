"""The modules of a request and which one an address falls into.

Modules are looked up by address range. A module without `image_size` (or
with 0) extends to the next module's start; the last one extends without
bound. The filled-in size is reported back. `rel:N` addresses are relative to
the N-th module of the request.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass, field
from typing import Any

from symvault.caches.derived import DerivedResult
from symvault.caches.symcaches import Symcache
from symvault.model.ids import parse_debug_id
from symvault.model.objects import ObjectId, ObjectType
from symvault.model.symbolication import RawModule

__all__ = ["Module", "ModuleTable", "normalize_code_id"]


@functools.lru_cache(maxsize=4096)
def normalize_code_id(value: str | None) -> str | None:
    """Code ids keep their hex digits only, in lower case (as Symbolicator does)."""
    if not value:
        return None
    digits = "".join(ch for ch in value.lower() if ch in "0123456789abcdef")
    return digits or None


@functools.lru_cache(maxsize=4096)
def _normalize_debug_id(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return parse_debug_id(value)
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def _object_id(
    object_type: ObjectType,
    debug_id: str | None,
    code_id: str | None,
    debug_file: str | None,
    code_file: str | None,
    debug_checksum: str | None,
) -> ObjectId:
    # Modules repeat from request to request: their ids are built once.
    return ObjectId(debug_id, code_id, debug_file, code_file, debug_checksum, object_type)


@dataclass
class Module:
    """One module of the request, and what was found for it."""

    index: int
    raw: RawModule
    object_type: ObjectType
    debug_id: str | None
    code_id: str | None
    image_addr: int
    image_size: int | None
    referenced: bool = False
    symcache: DerivedResult | None = None
    sources: DerivedResult | None = None
    handle: Symcache | None = None
    """The mapped symcache, when one was found."""
    extra_candidates: list[Any] = field(default_factory=list)

    @property
    def object_id(self) -> ObjectId:
        return _object_id(
            self.object_type,
            self.debug_id,
            self.code_id,
            self.raw.debug_file,
            self.raw.code_file,
            self.raw.debug_checksum,
        )

    @property
    def supports_absolute_addresses(self) -> bool:
        return self.image_addr != 0


class ModuleTable:
    """Finds the module of an address, by range or by `rel:N` index."""

    def __init__(self, raw_modules: tuple[RawModule, ...]) -> None:
        self.modules = [
            Module(
                index=index,
                raw=raw,
                object_type=ObjectType.parse(raw.type),
                debug_id=_normalize_debug_id(raw.debug_id),
                code_id=normalize_code_id(raw.code_id),
                image_addr=raw.image_addr,
                image_size=raw.image_size or None,
            )
            for index, raw in enumerate(raw_modules)
        ]
        self._by_address = sorted(self.modules, key=lambda module: module.image_addr)
        for current, following in zip(self._by_address, self._by_address[1:], strict=False):
            if current.image_size is None and following.image_addr > current.image_addr:
                current.image_size = following.image_addr - current.image_addr
        self._starts = [module.image_addr for module in self._by_address]

    def find(self, address: int, relative_to: int | None) -> Module | None:
        """The module an instruction address belongs to, if any."""
        if relative_to is not None:
            return self.modules[relative_to] if relative_to < len(self.modules) else None
        position = bisect.bisect_right(self._starts, address) - 1
        if position < 0:
            return None
        module = self._by_address[position]
        if module.image_size is not None and address > module.image_addr + module.image_size:
            return None
        return module

    def absolute(self, module: Module, address: int, relative_to: int | None) -> int:
        """The absolute address of an instruction address of this module."""
        return module.image_addr + address if relative_to is not None else address
