"""Symbolicating without a server: `symvault symbolicate`.

With a debug file, addresses are looked up in a symcache built in memory from
it. With a request file, the request runs through the same `Symbolicator` the
server uses, with the configured sources and caches.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import symbolic

from symvault import jsontext
from symvault.errors import UnprocessableEntity
from symvault.model.sources import SourceConfig
from symvault.model.symbolication import parse_hex, parse_request
from symvault.symbolication.demangle import Demangler

if TYPE_CHECKING:
    # Only for annotations: importing the service pulls in the caches, sources and
    # store, which a lookup in one debug file never needs (seconds of start-up).
    from symvault.symbolication.service import Symbolicator

__all__ = ["lookup_file", "run_request"]


def lookup_file(
    path: Path, addresses: list[str], image_addr: str, arch: str | None
) -> list[dict[str, Any]]:
    """Looks addresses up in a debug file; each result has `frames` or an `error`."""
    base = parse_hex(image_addr)
    try:
        objects = list(symbolic.Archive.open(str(path)).iter_objects())
    except symbolic.SymbolicError as exc:
        return [
            {"address": address, "error": f"cannot read {path}: {exc}"} for address in addresses
        ]
    if arch is None and len(objects) > 1:
        # Guessing would look every address up in the wrong architecture's code.
        archs = ", ".join(str(obj.arch) for obj in objects)
        problem = f"the file holds several objects ({archs}): choose one with --arch"
        return [{"address": address, "error": problem} for address in addresses]
    chosen = next((obj for obj in objects if arch is None or obj.arch == arch), None)
    if chosen is None:
        return [{"address": a, "error": f"no object for arch {arch}"} for a in addresses]
    symcache = chosen.make_symcache()
    demangler = Demangler()
    results: list[dict[str, Any]] = []
    for address in addresses:
        try:
            relative = parse_hex(address) - base
        except ValueError as exc:
            results.append({"address": address, "error": str(exc)})
            continue
        if relative < 0:
            results.append({"address": address, "error": "the address is below --image-addr"})
            continue
        frames = [
            {
                "function": demangler.demangle(location.symbol, location.lang) or location.symbol,
                "symbol": location.symbol,
                "sym_addr": hex(location.sym_addr + base),
                "abs_path": location.full_path,
                "lineno": location.line,
            }
            for location in symcache.lookup(relative)
        ]
        if frames:
            results.append({"address": address, "frames": frames})
        else:
            results.append({"address": address, "error": "no symbol at this address"})
    return results


def run_request(
    symbolicator: Symbolicator, sources: tuple[SourceConfig, ...], path: Path
) -> dict[str, Any]:
    """Runs a `/symbolicate` request body read from `path`."""
    try:
        request = parse_request(jsontext.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise UnprocessableEntity(f"{path}: {exc}") from exc
    chosen = request.sources if request.sources is not None else sources
    return symbolicator.symbolicate(request, chosen, "global")
