"""`Symbolicator`: one `/symbolicate` request, from parsed request to completed response.

1. Frames are assigned to modules; only modules with frames are fetched.
2. Symcaches of those modules are fetched from the caches, in parallel.
3. Frames are looked up; failed ones keep their input, with a status.
4. With `apply_source_context`, source bundles of the modules still referenced
   add source lines to frames that have a file and a line.
5. Modules report `debug_status`, `arch`, `features` and, with
   `dif_candidates`, every candidate file and what happened with it.

The work is a generator of steps (`steps`): CPU work between the fetches, and
the fetches the next step waits for (downloads, conversions, file reads). A
driver runs the fetches on the fetch pool: `symbolicate` waits for them in the
calling thread, `symbolicate_async` awaits them, so that the thread doing the
CPU work is never held by a download. Modules looked up moments ago are
answered from memory and need no fetch at all.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import symbolic

from symvault.caches.children import ChildComputations
from symvault.caches.derived import DerivedCache, DerivedResult
from symvault.caches.search import Candidate
from symvault.caches.sourcebundles import SourceBundle
from symvault.caches.symcaches import SymcacheHandles
from symvault.caching.entries import EntryStatus
from symvault.logs import log_event
from symvault.model.objects import ObjectType
from symvault.model.sources import SourceConfig
from symvault.model.symbolication import RawFrame, RawStacktrace, SymbolicateRequest
from symvault.sources.base import source_applies
from symvault.symbolication.demangle import Demangler
from symvault.symbolication.modules import Module, ModuleTable
from symvault.symbolication.native import (
    Adjustment,
    FrameStatus,
    LocationRenderer,
    ThreadContext,
    failed_frame,
    with_original_index,
)
from symvault.symbolication.source_context import apply_context

__all__ = ["Steps", "Symbolicator"]

#: Blocking fetches, each to run on the fetch pool before the next step.
Fetches = list[Callable[[], None]]
#: The steps of one request: yields the fetches it waits for, returns the response.
Steps = Generator[Fetches, None, dict[str, Any]]

logger = logging.getLogger(__name__)

_DEBUG_STATUS = {
    EntryStatus.OK: "found",
    EntryStatus.NOT_FOUND: "missing",
    EntryStatus.NO_PERMISSION: "fetching_failed",
    EntryStatus.ERROR: "fetching_failed",
    EntryStatus.TIMEOUT: "timeout",
    EntryStatus.MALFORMED: "malformed",
    EntryStatus.UNSUPPORTED: "unsupported",
}
#: Module types whose frames no debug file here can resolve: .NET modules need the
#: IL offsets of portable PDBs, which symbolic's Python API does not read.
_UNSUPPORTED_TYPES = frozenset({ObjectType.PE_DOTNET})
_FRAME_KEYS = (
    "status",
    "original_index",
    "platform",
    "addr_mode",
    "instruction_addr",
    "adjust_instruction_addr",
    "function_id",
    "package",
    "lang",
    "symbol",
    "sym_addr",
    "function",
    "filename",
    "abs_path",
    "lineno",
    "pre_context",
    "context_line",
    "post_context",
    "source_link",
    "trust",
)
_THREAD_ENTRY_FUNCTIONS = frozenset({"_start", "__clone", "__clone3"})
_NO_FILES_LISTED = "No object files listed on this source"


@dataclass
class _Thread:
    raw: RawStacktrace
    frames: list[RawFrame]
    """Callee first: index 0 is the crashing frame."""
    original_indexes: list[int]
    modules: list[Module | None]
    """The module of each frame."""
    output: list[tuple[dict[str, Any], Module | None]] | None = None
    """Output frames with their modules, once symbolicated."""


class Symbolicator:
    """Symbolicates requests with symcaches and source bundles from the caches."""

    def __init__(
        self,
        symcaches: DerivedCache,
        sourcebundles: DerivedCache,
        fetch_workers: int = 16,
        inline_frames: int = 0,
        computations: ChildComputations | None = None,
    ) -> None:
        """`inline_frames`: requests with at most this many frames take their first
        step on the caller's thread in `symbolicate_async`. `computations`: child
        processes that compute missing entries (else the fetch threads do)."""
        self._computations = computations
        self._symcaches = symcaches
        self._sourcebundles = sourcebundles
        self._handles = SymcacheHandles()
        self._demangler = Demangler()
        self._renderer = LocationRenderer(self._demangler)
        self._pool = ThreadPoolExecutor(max_workers=fetch_workers, thread_name_prefix="fetch")
        self._inline_frames = inline_frames

    def warm_up(self) -> None:
        """Does at start-up what the first request would otherwise wait for."""
        self._demangler.warm_up()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def symbolicate(
        self, request: SymbolicateRequest, sources: Sequence[SourceConfig], scope: str
    ) -> dict[str, Any]:
        """The `completed` response body of a request (blocking until it is done)."""
        steps = self.steps(request, sources, scope)
        step = _advance(steps)
        while not isinstance(step, _Done):
            self._run_fetches(step)
            step = _advance(steps)
        return step.response

    async def symbolicate_async(
        self,
        request: SymbolicateRequest,
        sources: Sequence[SourceConfig],
        scope: str,
        cpu: Executor,
    ) -> dict[str, Any]:
        """`symbolicate`, with the CPU steps on `cpu` and the fetches awaited on the
        fetch pool."""
        loop = asyncio.get_running_loop()
        steps = self.steps(request, sources, scope)
        if request.frame_count <= self._inline_frames:
            # The first step of a small request runs here: answered from memory, it
            # costs less than handing it to a thread and back. It does no I/O.
            step = _advance(steps)
        else:
            step = await loop.run_in_executor(cpu, _advance, steps)
        while not isinstance(step, _Done):
            await asyncio.gather(*(loop.run_in_executor(self._pool, fetch) for fetch in step))
            step = await loop.run_in_executor(cpu, _advance, steps)
        return step.response

    def steps(
        self, request: SymbolicateRequest, sources: Sequence[SourceConfig], scope: str
    ) -> Steps:
        """The request's work; see the module docstring."""
        table = ModuleTable(request.modules)
        threads = [
            self._thread(raw, request.options.frame_order, table) for raw in request.stacktraces
        ]
        referenced = [module for module in table.modules if module.referenced]
        fetches = self._fetches(referenced, sources, scope, self._symcaches, "symcache")
        if fetches:
            yield fetches

        stacktraces = [self._symbolicate_thread(thread, request) for thread in threads]

        if request.options.apply_source_context:
            wanted = self._wanting_sources(threads, table)
            modules = [table.modules[index] for index in wanted]
            fetches = self._fetches(modules, sources, scope, self._sourcebundles, "sources")
            if fetches:
                yield fetches
            texts: dict[int, dict[str, list[str] | None]] = {}
            reads: Fetches = [
                functools.partial(_read_sources, module, wanted[module.index], texts)
                for module in modules
                if module.sources is not None and module.sources.ok
            ]
            if reads:
                yield reads  # reading bundles is file I/O: a fetch like the others
            _add_source_context(modules, wanted, texts)
        return {
            "status": "completed",
            **({"signal": request.signal} if request.signal is not None else {}),
            "stacktraces": stacktraces,
            "modules": [
                self._module_json(module, request.options.dif_candidates, sources)
                for module in table.modules
            ],
        }

    # Threads and frames

    @staticmethod
    def _thread(raw: RawStacktrace, frame_order: str, table: ModuleTable) -> _Thread:
        frames = list(raw.frames)
        if frame_order == "caller_first":
            frames.reverse()
        # `original_index` counts callee first whatever the order, as Symbolicator's
        # does: with `caller_first`, input frame i of n gets n - 1 - i.
        indexes = list(range(len(frames)))
        modules = [table.find(frame.instruction_addr, frame.relative_module) for frame in frames]
        for module in modules:
            if module is not None:
                module.referenced = True
        return _Thread(raw, frames, indexes, modules)

    def _symbolicate_thread(self, thread: _Thread, request: SymbolicateRequest) -> dict[str, Any]:
        any_adjustment = any(f.adjust_instruction_addr is not None for f in thread.frames)
        context = ThreadContext(
            signal=request.signal,
            registers=thread.raw.registers,
            default_adjustment=Adjustment.YES if any_adjustment else Adjustment.AUTO,
        )
        output: list[dict[str, Any]] = []
        owners: list[tuple[dict[str, Any], Module | None]] = []
        last = len(thread.frames) - 1
        for index, (frame, original, module) in enumerate(
            zip(thread.frames, thread.original_indexes, thread.modules, strict=True)
        ):
            produced = self._symbolicate_frame(frame, original, index, module, context)
            if _dropped(frame, produced, index == last, output):
                continue
            output.extend(produced)
            owners.extend([(produced_frame, module) for produced_frame in produced])
        if request.options.frame_order == "caller_first":
            output.reverse()
        thread.output = owners
        result: dict[str, Any] = {}
        for key in ("thread_id", "thread_name", "is_requesting"):
            value = getattr(thread.raw, key)
            if value is not None:
                result[key] = value
        if thread.raw.registers:
            result["registers"] = {name: hex(v) for name, v in thread.raw.registers.items()}
        result["frames"] = output
        return result

    def _symbolicate_frame(
        self,
        frame: RawFrame,
        original_index: int,
        index: int,
        module: Module | None,
        context: ThreadContext,
    ) -> list[dict[str, Any]]:
        if module is None:
            return [
                failed_frame(
                    frame, original_index, FrameStatus.UNKNOWN_IMAGE, None, self._demangler
                )
            ]
        result = module.symcache
        if result is None or not result.ok or module.handle is None:
            status = (
                FrameStatus.MALFORMED
                if result is not None and result.status is EntryStatus.MALFORMED
                else FrameStatus.MISSING
            )
            return [failed_frame(frame, original_index, status, module, self._demangler)]
        rendered = self._renderer.frames(frame, module, index, context)
        if not rendered:
            return [
                failed_frame(
                    frame, original_index, FrameStatus.MISSING_SYMBOL, module, self._demangler
                )
            ]
        return with_original_index(rendered, original_index)

    # Fetching

    def _fetches(
        self,
        modules: list[Module],
        sources: Sequence[SourceConfig],
        scope: str,
        cache: DerivedCache,
        kind: str,
    ) -> Fetches:
        """Applies what is remembered; returns the fetches of the other modules.

        With fetch processes, largest images first: the largest goes to a process of
        its own (they balance image sizes), whose download and conversion then do not
        wait for the interpreter lock the small ones hold in the other. Without them,
        smaller images first: their files are done in a few milliseconds each, so their
        share of the cores is used while the large files are still downloading, and the
        long conversions of large files then run with the cores to themselves (measured:
        3-10 % less time for a cold request than in request order; largest first took
        3-10 % more)."""
        fetches: Fetches = []
        largest_first = self._computations is not None
        ordered = sorted(modules, key=lambda m: m.image_size or 0, reverse=largest_first)
        for module in ordered:
            if module.object_type in _UNSUPPORTED_TYPES:
                continue  # nothing here could look its addresses up: fetch nothing
            remembered = cache.remembered(module.object_id, sources, scope)
            if remembered is None:
                fetches.append(
                    functools.partial(self._fetch_one, module, sources, scope, cache, kind)
                )
            else:
                self._apply(module, remembered, kind)
        return fetches

    def _run_fetches(self, fetches: Fetches) -> None:
        if len(fetches) == 1:
            fetches[0]()
            return
        for future in [self._pool.submit(fetch) for fetch in fetches]:
            future.result()

    def _fetch_one(
        self,
        module: Module,
        sources: Sequence[SourceConfig],
        scope: str,
        cache: DerivedCache,
        kind: str,
    ) -> None:
        try:
            result = self._fetch_entries(module, sources, scope, cache)
        except Exception:
            # A failure of this service rather than of a source (a broken cache
            # directory, say): the request goes on; a module whose symcache result
            # stays None reports `other`.
            logger.exception("symbolicate.fetch_failed kind=%s module=%s", kind, module.index)
            if kind == "sources":
                module.sources = DerivedResult(EntryStatus.ERROR, None, None, detail="internal")
            return
        self._apply(module, result, kind)

    def _fetch_entries(
        self, module: Module, sources: Sequence[SourceConfig], scope: str, cache: DerivedCache
    ) -> DerivedResult:
        """The module's result, computed where missing by a fetch process if there are
        any (then read here from the disk they share), else on this thread."""
        computations = self._computations
        if computations is None:
            return cache.fetch(module.object_id, sources, scope)
        existing = cache.fetch_existing(module.object_id, sources, scope)
        if existing is not None:
            return existing
        weight = module.image_size or 0
        elsewhere = computations.compute(
            cache.conversion.name, module.object_id, sources, scope, weight
        )
        return cache.fetch(module.object_id, sources, scope, computed_elsewhere=elsewhere)

    def _apply(self, module: Module, result: DerivedResult, kind: str) -> None:
        if kind == "sources":
            module.sources = result
            return
        module.symcache = result
        if result.ok and result.entry is not None:
            try:
                module.handle = self._handles.get(result.entry)
            except (OSError, symbolic.SymbolicError) as exc:
                log_event(
                    logger, "symbolicate.symcache_unreadable", logging.WARNING, error=str(exc)
                )
                module.symcache = DerivedResult(
                    EntryStatus.MALFORMED, None, result.source_id, result.candidates
                )

    # Source context

    @staticmethod
    def _wanting_sources(
        threads: list[_Thread], table: ModuleTable
    ) -> dict[int, list[dict[str, Any]]]:
        """Output frames with a file and a line, by the index of their module."""
        wanted: dict[int, list[dict[str, Any]]] = {}
        # Modules whose frames were all dropped count as unused again (as in Symbolicator).
        for module in table.modules:
            module.referenced = False
        for thread in threads:
            for frame, owner in thread.output or ():
                if owner is None:
                    continue
                owner.referenced = True
                if "abs_path" in frame and frame.get("lineno") is not None:
                    wanted.setdefault(owner.index, []).append(frame)
        return wanted

    # Modules

    def _module_json(
        self, module: Module, with_candidates: bool, sources: Sequence[SourceConfig]
    ) -> dict[str, Any]:
        result = module.symcache
        if not module.referenced:
            # Also a module whose frames were all left out: with source context, modules
            # are judged by the output frames (as in Symbolicator).
            status = "unused"
        elif module.object_type in _UNSUPPORTED_TYPES:
            status = "unsupported"
        elif result is None:  # its lookup failed inside this service
            status = "other"
        else:
            status = _DEBUG_STATUS.get(result.status, "other")
        info = result.object_info if result is not None else None
        features = set(info.features) if info is not None else set()
        bundle = module.sources
        if bundle is not None and bundle.ok:
            features.add("sources")
        output: dict[str, Any] = {
            "debug_status": status,
            "features": {
                "has_debug_info": "debug" in features,
                "has_unwind_info": "unwind" in features,
                "has_symbols": "symtab" in features,
                "has_sources": "sources" in features,
            },
            "arch": module.handle.arch if module.handle is not None else "unknown",
            "type": module.object_type.value,
        }
        raw = module.raw
        identifiers = {
            "code_id": module.code_id,
            "code_file": raw.code_file,
            "debug_id": module.debug_id,
            "debug_file": raw.debug_file,
            "debug_checksum": raw.debug_checksum,
        }
        output.update({key: value for key, value in identifiers.items() if value is not None})
        output["image_addr"] = hex(module.image_addr)
        if module.image_size is not None:
            output["image_size"] = module.image_size
        if with_candidates and (result is not None or bundle is not None):
            candidates = _candidates_json(module, sources)
            if candidates:
                output["candidates"] = candidates
        return output


def _read_sources(
    module: Module,
    frames: list[dict[str, Any]],
    texts: dict[int, dict[str, list[str] | None]],
) -> None:
    """Reads the source files that `frames` name out of the module's bundle."""
    result = module.sources
    assert result is not None
    assert result.entry is not None
    try:
        bundle = SourceBundle(result.entry)
    except (OSError, ValueError, KeyError) as exc:
        log_event(logger, "symbolicate.bundle_unreadable", logging.WARNING, error=str(exc))
        return
    texts[module.index] = {path: bundle.lines(path) for path in {f["abs_path"] for f in frames}}


def _add_source_context(
    modules: list[Module],
    wanted: dict[int, list[dict[str, Any]]],
    texts: dict[int, dict[str, list[str] | None]],
) -> None:
    for module in modules:
        files = texts.get(module.index)
        if files is None:
            continue
        for frame in wanted[module.index]:
            lines = files.get(frame["abs_path"])
            if lines is not None and apply_context(frame, lines):
                # Keep Symbolicator's key order: context comes before source_link and trust.
                ordered = {key: frame[key] for key in _FRAME_KEYS if key in frame}
                frame.clear()
                frame.update(ordered)


def _dropped(
    frame: RawFrame, produced: list[dict[str, Any]], is_last: bool, output: list[dict[str, Any]]
) -> bool:
    """Frames Symbolicator leaves out: scanned guesses that resolve to nothing, and
    the bogus return address below the thread's entry function."""
    status = produced[0]["status"]
    if frame.trust == "scan" and status in ("missing_symbol", "unknown_image"):
        return True
    if not is_last or status != "unknown_image" or not output:
        return False
    if output[-1].get("function") in _THREAD_ENTRY_FUNCTIONS:
        return True
    return frame.addr_mode == "abs" and frame.instruction_addr < 4096


def _candidates_json(module: Module, sources: Sequence[SourceConfig]) -> list[dict[str, Any]]:
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    chosen = module.symcache.object_info if module.symcache is not None else None
    chosen_source = module.symcache.source_id if module.symcache is not None else None
    results = [r for r in (module.symcache, module.sources) if r is not None]
    for result in results:
        for candidate in result.candidates:
            entry = entries.setdefault(
                (candidate.source_id, candidate.location), candidate.to_json()
            )
            if (
                result is module.symcache
                and chosen is not None
                and candidate.source_id == chosen_source
                and candidate.features is not None
                and _is_chosen(candidate, result)
            ):
                entry["debug"] = {"status": "ok" if result.ok else "malformed"}
    object_id = module.object_id
    for config in sources:
        if not source_applies(config, object_id):
            continue
        if not any(source_id == config.id for source_id, _ in entries):
            entries[(config.id, _NO_FILES_LISTED)] = {
                "source": config.id,
                "location": _NO_FILES_LISTED,
                "download": {"status": "notfound"},
            }
    return [entries[key] for key in sorted(entries)]


def _is_chosen(candidate: Candidate, result: DerivedResult) -> bool:
    if result.entry is None:
        return False
    chosen = result.entry.info.get("object")
    return isinstance(chosen, dict) and chosen.get("location") == candidate.location


@dataclass
class _Done:
    response: dict[str, Any]


def _advance(steps: Steps) -> Fetches | _Done:
    """Runs `steps` to its next fetches, or to its end.

    (A generator's end is a `StopIteration`, which cannot cross a future.)"""
    try:
        return next(steps)
    except StopIteration as end:
        return _Done(end.value)
