"""Mozilla's symbolication API (`POST /symbolicate/v5`), as Tecken/Eliot serve it.

A request holds up to 10 jobs, each a `memoryMap` of `[debug_filename,
debug_id]` modules and `stacks` of `[module_index, module_offset]` frames. Offsets
are looked up as given (Firefox tools adjust return addresses themselves).
Symbols come from the configured sources through the same caches as
`/symbolicate`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from symvault.caches.derived import DerivedCache
from symvault.caches.symcaches import SymcacheHandles
from symvault.errors import BadRequest
from symvault.model.ids import parse_debug_id
from symvault.model.objects import ObjectId
from symvault.model.sources import SourceConfig
from symvault.symbolication.demangle import Demangler

__all__ = ["MAX_JOBS", "MozillaSymbolicator", "parse_jobs"]

MAX_JOBS = 10
_DEBUG_FILENAME = re.compile(r"^[A-Za-z0-9_.+{}@<> ~-]*$")
_DEBUG_ID = re.compile(r"^[A-Fa-f0-9]*$")

Module = tuple[str, str]


def parse_jobs(payload: Any) -> list[dict[str, Any]]:
    """Validates a v5 payload; raises `BadRequest` naming the problem, as Eliot does."""
    if not isinstance(payload, dict):
        raise BadRequest("Payload must be a JSON object")
    jobs = payload.get("jobs", [payload])
    if not isinstance(jobs, list):
        raise BadRequest("jobs must be a list")
    if len(jobs) > MAX_JOBS:
        raise BadRequest(f"please limit number of jobs in a single request to <= {MAX_JOBS}")
    for index, job in enumerate(jobs):
        if not isinstance(job, dict):
            raise BadRequest(f"job {index} is invalid")
        for key in ("stacks", "memoryMap"):
            if key not in job:
                raise BadRequest(f"job {index} is invalid: no {key} specified")
        _check_modules(index, job["memoryMap"])
        _check_stacks(index, job["stacks"], len(job["memoryMap"]))
    return jobs


def _check_modules(job: int, modules: Any) -> None:
    if not isinstance(modules, list):
        raise BadRequest(f"job {job} has invalid modules: modules must be a list")
    for index, item in enumerate(modules):
        if not isinstance(item, list) or len(item) != 2:
            raise BadRequest(
                f"job {job} has invalid modules: module index {index} does not have a "
                "debug_filename and debug_id"
            )
        filename, debug_id = item
        if not isinstance(filename, str) or not _DEBUG_FILENAME.match(filename):
            raise BadRequest(
                f"job {job} has invalid modules: module index {index} has an invalid debug_filename"
            )
        if not isinstance(debug_id, str) or not _DEBUG_ID.match(debug_id):
            raise BadRequest(
                f"job {job} has invalid modules: module index {index} has an invalid debug_id"
            )


def _check_stacks(job: int, stacks: Any, module_count: int) -> None:
    if not isinstance(stacks, list) or not stacks:
        raise BadRequest(f"job {job} has invalid stacks: stacks must be a non-empty list")
    for stack_index, stack in enumerate(stacks):
        if not isinstance(stack, list):
            raise BadRequest(f"job {job} has invalid stacks: stack {stack_index} is not a list")
        for frame_index, frame in enumerate(stack):
            where = f"job {job} has invalid stacks: stack {stack_index} frame {frame_index}"
            if not isinstance(frame, list) or len(frame) != 2:
                raise BadRequest(f"{where} is not a list of two items")
            module_index, offset = frame
            if not isinstance(module_index, int) or not -1 <= module_index < module_count:
                raise BadRequest(f"{where} has an invalid module_index")
            if not isinstance(offset, int) or isinstance(offset, bool) or offset < -1:
                raise BadRequest(f"{where} has an invalid module_offset")


class MozillaSymbolicator:
    """Answers v5 jobs with symcaches from the configured sources."""

    def __init__(self, symcaches: DerivedCache, demangler: Demangler | None = None) -> None:
        self._symcaches = symcaches
        self._handles = SymcacheHandles()
        self._demangler = demangler or Demangler()

    def symbolicate(
        self, jobs: list[dict[str, Any]], sources: Sequence[SourceConfig]
    ) -> dict[str, Any]:
        results = []
        for job in jobs:
            # Per job, as Eliot reports it: a module another job looked up is still
            # `null` (never looked for) here.
            found: dict[Module, bool] = {}
            memory_map: list[Module] = [
                (str(name), str(debug_id)) for name, debug_id in job["memoryMap"]
            ]
            stacks = []
            for stack in job["stacks"]:
                frames = []
                for frame_index, (module_index, offset) in enumerate(stack):
                    module = memory_map[module_index] if module_index >= 0 else ("", "")
                    frames.append(self._frame(frame_index, module, offset, sources, found))
                stacks.append(frames)
            results.append(
                {
                    "stacks": stacks,
                    "found_modules": {
                        f"{name}/{debug_id}": found.get((name, debug_id))
                        for name, debug_id in memory_map
                    },
                }
            )
        return {"results": results}

    def _frame(
        self,
        index: int,
        module: Module,
        offset: int,
        sources: Sequence[SourceConfig],
        found: dict[Module, bool],
    ) -> dict[str, Any]:
        name = module[0]
        frame: dict[str, Any] = {
            "frame": index,
            "module": name or "<unknown>",
            "module_offset": hex(offset),
        }
        symcache = self._symcache(module, sources, found)
        if symcache is None or offset < 0:
            return frame
        locations = symcache.lookup(offset)
        if not locations:
            return frame
        outer = locations[-1]
        frame["function"] = self._demangler.demangle(outer.symbol, outer.language) or outer.symbol
        frame["function_offset"] = hex(offset - outer.sym_addr)
        if outer.path:
            frame["file"] = outer.path
            if outer.line:
                frame["line"] = outer.line
        if len(locations) > 1:
            inlines = []
            for inline in locations[:-1]:
                entry: dict[str, Any] = {
                    "function": self._demangler.demangle(inline.symbol, inline.language)
                    or inline.symbol
                }
                if inline.path:
                    entry["file"] = inline.path
                    if inline.line:
                        entry["line"] = inline.line
                inlines.append(entry)
            frame["inlines"] = inlines
        return frame

    def _symcache(
        self, module: Module, sources: Sequence[SourceConfig], found: dict[Module, bool]
    ) -> Any:
        name, raw_id = module
        if not name or not raw_id:
            return None
        try:
            debug_id = parse_debug_id(raw_id)
        except ValueError:
            found[module] = False
            return None
        result = self._symcaches.fetch(
            ObjectId(debug_id=debug_id, debug_file=name), sources, "global"
        )
        if not result.ok or result.entry is None:
            found[module] = False
            return None
        found[module] = True
        return self._handles.get(result.entry)
