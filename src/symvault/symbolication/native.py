"""Symbolicating one frame: the address to look up, the symcache lookup, the output frames.

Caller frames hold return addresses, which point after the call; the call is
looked up instead (the previous instruction), with symbolic's heuristic for
the crashing frame (`caller_instruction`: it uses the signal and the
instruction pointer register). `adjust_instruction_addr` overrides the
heuristic per frame; once any frame of a stack trace sets it, frames that do
not are adjusted.

A lookup yields the innermost inlined function first; each becomes a frame
sharing the input frame's `original_index`. Output frames follow Symbolicator:
the looked-up address as `instruction_addr`, absolute when the module has an
image address, `sym_addr` on the outermost function only, `filename` the base
name of `abs_path`, `package` the module's code file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from symvault.caches.symcaches import Location
from symvault.memo import Memo
from symvault.model.symbolication import RawFrame
from symvault.symbolication.demangle import Demangler
from symvault.symbolication.modules import Module

__all__ = [
    "Adjustment",
    "FrameStatus",
    "LocationRenderer",
    "ThreadContext",
    "caller_instruction",
    "failed_frame",
    "ip_register",
    "lookup_address",
    "previous_instruction",
    "with_original_index",
]

_SIGNALS_AT_FAULTING_INSTRUCTION = frozenset({4, 10, 11})  # SIGILL, SIGBUS, SIGSEGV
# Instruction alignment per CPU family, by prefix of symbolic's architecture names.
_ALIGNMENT = (("arm64", 4), ("arm", 2), ("ppc64", 8), ("ppc", 4), ("mips", 4), ("wasm", 4))
_IP_REGISTERS = (("x86_64", "rip"), ("x86", "eip"), ("arm", "pc"), ("ppc", "srr0"), ("mips", "pc"))


class FrameStatus(StrEnum):
    SYMBOLICATED = "symbolicated"
    MISSING_SYMBOL = "missing_symbol"
    UNKNOWN_IMAGE = "unknown_image"
    MISSING = "missing"
    MALFORMED = "malformed"


class Adjustment(StrEnum):
    AUTO = "auto"
    YES = "yes"
    NO = "no"


@dataclass(frozen=True)
class ThreadContext:
    signal: int | None
    registers: dict[str, int]
    default_adjustment: Adjustment
    #: Output frames rendered for this stack trace, by `LocationRenderer.frames`'s key:
    #: a frame repeated in one trace (recursion) is rendered once and counts as one use.
    rendered: dict[tuple[Any, ...], list[dict[str, Any]]] = field(default_factory=dict)


@functools.cache
def _alignment(arch: str) -> int:
    for prefix, alignment in _ALIGNMENT:
        if arch.startswith(prefix):
            return alignment
    return 1


@functools.cache
def _call_size(arch: str) -> int:
    """How far back from a return address the call instruction is taken to start."""
    alignment = _alignment(arch)
    return alignment * 2 if arch.startswith("mips") else alignment


def ip_register(arch: str) -> str | None:
    """The instruction pointer register of an architecture, as crash reports name it."""
    for prefix, register in _IP_REGISTERS:
        if arch.startswith(prefix):
            return register
    return None


def aligned_instruction(address: int, arch: str) -> int:
    return address - address % _alignment(arch)


def previous_instruction(address: int, arch: str) -> int:
    """The instruction before the one at `address` (the call before a return address)."""
    return max(address - address % _alignment(arch) - _call_size(arch), 0)


def caller_instruction(
    address: int, arch: str, crashing: bool, signal: int | None, ip_value: int | None
) -> int:
    """symbolic's heuristic: callers point after their call; the crashing frame points at
    the faulting instruction, unless the IP register says the fault was elsewhere."""
    adjust = not crashing or (
        ip_value is not None and ip_value != address and signal in _SIGNALS_AT_FAULTING_INSTRUCTION
    )
    if adjust:
        return previous_instruction(address, arch)
    return aligned_instruction(address, arch)


# Members looked up once: an enum member lookup costs as much as the arithmetic here.
_AUTO, _YES, _NO = Adjustment.AUTO, Adjustment.YES, Adjustment.NO


def lookup_address(
    frame: RawFrame, module: Module, index: int, context: ThreadContext, arch: str
) -> int | None:
    """The module-relative address to look up for a frame, or None if there is none.

    `index` is the frame's position counted from the crashing frame (0).
    """
    image_addr = module.image_addr
    address = frame.instruction_addr
    if frame.addr_mode == "abs":
        if not image_addr or address < image_addr:
            return None  # absolute addresses need a module with an image address
        absolute = address
    elif not image_addr:
        return address  # relative to a module without addresses (WebAssembly)
    else:
        absolute = image_addr + address
    given = frame.adjust_instruction_addr
    adjustment = context.default_adjustment if given is None else _YES if given else _NO
    if adjustment is _AUTO:
        crashing = index == 0
        register = ip_register(arch) if crashing else None
        ip_value = context.registers.get(register) if register else None
        adjusted = caller_instruction(absolute, arch, crashing, context.signal, ip_value)
    elif adjustment is _YES:
        adjusted = previous_instruction(absolute, arch)
    else:
        adjusted = aligned_instruction(absolute, arch)
    if adjusted < image_addr:
        return None
    return adjusted - image_addr


def _exposed(module: Module, relative: int) -> int:
    """An address as output: absolute if the module has an image address, else relative."""
    return module.image_addr + relative if module.supports_absolute_addresses else relative


def _base(frame: RawFrame, status: FrameStatus, original_index: int) -> dict[str, Any]:
    output: dict[str, Any] = {"status": status.value, "original_index": original_index}
    if frame.platform is not None:
        output["platform"] = frame.platform
    return output


_SYMBOLICATED = FrameStatus.SYMBOLICATED.value
#: Output frames are remembered only for frames and modules with at most this much
#: text of the client's (file names, code file).
_REMEMBERED_CLIENT_TEXT = 1024


class LocationRenderer:
    """Renders output frames, and remembers them: the same return addresses come back
    in crash after crash, so a warm frame costs a dictionary look-up and a copy."""

    def __init__(self, demangler: Demangler, capacity: int = 8192) -> None:
        self._demangler = demangler
        # Half a kilobyte to two an entry: `capacity` bounds them to tens of megabytes.
        self._rendered: Memo[Location, dict[str, Any]] = Memo(capacity)
        # Everything a frame's output depends on -> the output frames, with
        # `original_index` still to be set (empty: nothing at the address). Kept from
        # a frame's second use on: one-off frames would otherwise fill it for minutes.
        self._frames: Memo[tuple[Any, ...], list[dict[str, Any]]] = Memo(
            capacity, repeats_only=True
        )

    def render(self, location: Location) -> dict[str, Any]:
        """The fields a function found at an address gives a frame."""
        rendered = self._rendered.get(location)
        if rendered is not None:
            return rendered
        rendered = {}
        if location.language != "unknown":
            rendered["lang"] = location.language
        rendered["symbol"] = location.symbol
        rendered["function"] = (
            self._demangler.demangle(location.symbol, location.language) or location.symbol
        )
        if location.path:
            rendered["filename"] = _basename(location.path)
            rendered["abs_path"] = location.path
        rendered["lineno"] = location.line
        self._rendered.put(location, rendered)
        return rendered

    def frames(
        self, frame: RawFrame, module: Module, index: int, context: ThreadContext
    ) -> list[dict[str, Any]]:
        """The output frames of `frame` in a module with a symcache, innermost first,
        `original_index` still to be set; empty if the symcache has nothing there.

        Shared with later requests: copy before changing (`with_original_index`)."""
        handle = module.handle
        assert handle is not None
        # The crashing frame's address also depends on the signal and the IP register.
        crashing = None
        if index == 0:
            register = ip_register(handle.arch)
            crashing = (context.signal, context.registers.get(register) if register else None)
        key = (
            handle.identity,
            module.image_addr,
            module.index,
            module.raw.code_file,
            frame.instruction_addr,
            frame.addr_mode,
            frame.adjust_instruction_addr,
            frame.platform,
            frame.function_id,
            frame.trust,
            frame.filename,
            frame.abs_path,
            context.default_adjustment,
            crashing,
        )
        known = self._frames.get(key)
        if known is None:
            known = context.rendered.get(key)
        if known is not None:
            return known
        relative = lookup_address(frame, module, index, context, handle.arch)
        locations = handle.lookup(relative) if relative is not None else ()
        rendered = (
            self.render_frames(frame, module, relative, locations)
            if relative is not None and locations
            else []
        )
        # The key holds the client's texts: long ones would make the entry count no
        # bound on the memory the memo holds.
        client_text = len(frame.filename or "") + len(frame.abs_path or "")
        if client_text + len(module.raw.code_file or "") <= _REMEMBERED_CLIENT_TEXT:
            self._frames.put(key, rendered)
            context.rendered[key] = rendered
        return rendered

    def render_frames(
        self, frame: RawFrame, module: Module, relative: int, locations: tuple[Location, ...]
    ) -> list[dict[str, Any]]:
        """The output frames of the functions found at `relative` (not remembered)."""
        head: dict[str, Any] = {"status": _SYMBOLICATED, "original_index": None}
        if frame.platform is not None:
            head["platform"] = frame.platform
        if not module.supports_absolute_addresses:
            head["addr_mode"] = f"rel:{module.index}"
        head["instruction_addr"] = hex(_exposed(module, relative))
        if frame.adjust_instruction_addr is not None:
            head["adjust_instruction_addr"] = frame.adjust_instruction_addr
        if frame.function_id is not None:
            head["function_id"] = hex(frame.function_id)
        if module.raw.code_file is not None:
            head["package"] = module.raw.code_file
        frames = [{**head, **self.render(location)} for location in locations]
        # Only the outermost function has a symbol address; it follows `symbol`, as in
        # Symbolicator's field order.
        sym_addr = hex(_exposed(module, locations[-1].sym_addr))
        outermost: dict[str, Any] = {}
        for key, value in frames[-1].items():
            outermost[key] = value
            if key == "symbol":
                outermost["sym_addr"] = sym_addr
        frames[-1] = outermost
        for output in frames:
            if "abs_path" not in output:
                # The debug file names no file: keep what the client sent.
                for key in ("filename", "abs_path"):
                    value = getattr(frame, key)
                    if value is not None:
                        output[key] = value
            if frame.trust != "none":
                output["trust"] = frame.trust
        return frames


def with_original_index(shared: list[dict[str, Any]], original_index: int) -> list[dict[str, Any]]:
    """Copies of rendered frames for one input frame (a copy keeps the key order)."""
    frames = []
    for rendered in shared:
        output = rendered.copy()
        output["original_index"] = original_index
        frames.append(output)
    return frames


def failed_frame(
    frame: RawFrame,
    original_index: int,
    status: FrameStatus,
    module: Module | None,
    demangler: Demangler,
) -> dict[str, Any]:
    """The input frame as it came, with its status; a lone name gets demangled."""
    output = _base(frame, status, original_index)
    if frame.addr_mode != "abs":
        output["addr_mode"] = frame.addr_mode
    output["instruction_addr"] = hex(frame.instruction_addr)
    function, symbol = _fix_names(frame, demangler)
    fields: dict[str, Any] = {
        "adjust_instruction_addr": frame.adjust_instruction_addr,
        "function_id": hex(frame.function_id) if frame.function_id is not None else None,
        "package": module.raw.code_file if module is not None else frame.package,
        "lang": frame.lang,
        "symbol": symbol,
        "sym_addr": hex(frame.sym_addr) if frame.sym_addr is not None else None,
        "function": function,
        "filename": frame.filename,
        "abs_path": frame.abs_path,
        "lineno": frame.lineno,
        "pre_context": list(frame.pre_context) or None,
        "context_line": frame.context_line,
        "post_context": list(frame.post_context) or None,
        "source_link": frame.source_link,
        "trust": frame.trust if frame.trust != "none" else None,
    }
    output.update({key: value for key, value in fields.items() if value is not None})
    return output


def _fix_names(frame: RawFrame, demangler: Demangler) -> tuple[str | None, str | None]:
    """With only one of function and symbol given, demangle it into `function`.

    The mangling is detected from the name alone: Symbolicator ignores the frame's
    `lang` here.
    """
    function, symbol = frame.function, frame.symbol
    if (function is None) == (symbol is None):
        return function, symbol
    mangled = function if function is not None else symbol
    assert mangled is not None
    readable = demangler.demangle(mangled)
    if readable is None:
        return function, symbol
    return readable, (function if function is not None else symbol)


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1]
