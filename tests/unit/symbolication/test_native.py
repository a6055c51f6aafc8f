"""Address adjustment and output frames (`symbolication/native.py`).

The heuristics are checked against symbolic's own `find_best_instruction` for
every architecture symbolic names, many addresses and signals.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import symbolic

from symvault.caches.symcaches import Location, Symcache
from symvault.memo import Memo
from symvault.model.symbolication import RawFrame, RawModule
from symvault.symbolication.demangle import Demangler
from symvault.symbolication.modules import Module, ModuleTable
from symvault.symbolication.native import (
    Adjustment,
    FrameStatus,
    LocationRenderer,
    ThreadContext,
    caller_instruction,
    failed_frame,
    ip_register,
    lookup_address,
    previous_instruction,
    with_original_index,
)
from tests.conftest import fixture_path


def symbolicated_frames(
    frame: RawFrame,
    original_index: int,
    module: Module,
    relative: int,
    locations: tuple[Location, ...],
    renderer: LocationRenderer,
) -> list[dict[str, Any]]:
    """The output frames of a lookup, as the service gives them for one input frame."""
    return with_original_index(
        renderer.render_frames(frame, module, relative, locations), original_index
    )


#: Architectures as symcaches name them (symbolic's canonical names).
ARCHES = (
    "x86",
    "x86_64",
    "x86_64h",
    "arm",
    "armv5",
    "armv6",
    "armv6m",
    "armv7",
    "armv7s",
    "armv7k",
    "armv7m",
    "armv7em",
    "arm64",
    "arm64e",
    "arm64v8",
    "arm64_32",
    "ppc",
    "ppc64",
    "mips",
    "mips64",
    "wasm32",
    "unknown",
)
ADDRESSES = (0x10, 0x1000, 0x1001, 0x1002, 0x1003, 0x1005, 0x1006, 0x1007, 0x100A, 0x7FFF_FFFF_FFFF)
SIGNALS = (None, 4, 6, 10, 11, 12)


def test_every_architecture_is_known_to_symbolic() -> None:
    assert all(symbolic.arch_is_known(arch) for arch in ARCHES)
    assert all(symbolic.normalize_arch(arch) == arch for arch in ARCHES)


@pytest.mark.parametrize("arch", ARCHES)
def test_caller_instruction_matches_symbolic(arch: str) -> None:
    checked = 0
    for address, crashing, signal in itertools.product(ADDRESSES, (False, True), SIGNALS):
        # symbolic's C interface reads an IP register of 0 as "none": leave 0 out.
        for ip_value in (None, address, address + 4, address - 8, 1):
            expected = symbolic.find_best_instruction(
                address, arch, crashing_frame=crashing, signal=signal, ip_reg=ip_value
            )
            got = caller_instruction(address, arch, crashing, signal, ip_value)
            assert got == expected, (hex(address), crashing, signal, ip_value)
            checked += 1
    assert checked == len(ADDRESSES) * 2 * len(SIGNALS) * 5


@pytest.mark.parametrize("arch", ARCHES)
def test_previous_instruction_matches_symbolic(arch: str) -> None:
    for address in ADDRESSES:
        expected = symbolic.find_best_instruction(address, arch, crashing_frame=False)
        assert previous_instruction(address, arch) == expected, hex(address)


@pytest.mark.parametrize(
    ("arch", "address", "previous"),
    [
        ("x86_64", 0x1005, 0x1004),
        ("x86", 0x1005, 0x1004),
        ("arm64", 0x1005, 0x1000),  # aligned to 4, then one instruction back
        ("arm64", 0x1008, 0x1004),
        ("armv7", 0x1005, 0x1002),  # Thumb: 2-byte alignment
        ("ppc64", 0x100F, 0x1000),
        ("mips", 0x1008, 0x1000),  # the delay slot: two instructions back
        ("wasm32", 0x1006, 0x1000),
        ("unknown", 0x1005, 0x1004),
    ],
)
def test_previous_instruction_examples(arch: str, address: int, previous: int) -> None:
    assert previous_instruction(address, arch) == previous


def test_previous_instruction_stops_at_zero() -> None:
    """symbolic wraps around below 0; an address that small is in no module anyway."""
    assert previous_instruction(0, "x86_64") == 0
    assert previous_instruction(2, "arm64") == 0


@pytest.mark.parametrize("arch", ARCHES)
def test_ip_register_matches_symbolic(arch: str) -> None:
    assert ip_register(arch) == symbolic.arch_get_ip_reg_name(arch)


# lookup_address


def module(image_addr: int, image_size: int | None = 0x10000, index: int = 0) -> Module:
    raws = [RawModule(type="elf", image_addr=0x10, image_size=1)] * index
    raws.append(RawModule(type="elf", image_addr=image_addr, image_size=image_size))
    return ModuleTable(tuple(raws)).modules[index]


def frame(address: int, **fields: Any) -> RawFrame:
    return RawFrame(instruction_addr=address, **fields)


def context(
    signal: int | None = None,
    registers: dict[str, int] | None = None,
    default: Adjustment = Adjustment.AUTO,
) -> ThreadContext:
    return ThreadContext(signal, registers or {}, default)


BASE = 0x7000_0000


class TestLookupAddress:
    def test_callers_are_looked_up_one_instruction_back(self) -> None:
        mod = module(BASE)
        assert lookup_address(frame(BASE + 0x105), mod, 1, context(), "x86_64") == 0x104
        assert lookup_address(frame(BASE + 0x105), mod, 1, context(), "arm64") == 0x100
        # The crashing frame is taken as it is (aligned).
        assert lookup_address(frame(BASE + 0x105), mod, 0, context(), "x86_64") == 0x105
        assert lookup_address(frame(BASE + 0x105), mod, 0, context(), "arm64") == 0x104

    def test_crashing_frame_with_signal_and_ip_register(self) -> None:
        mod = module(BASE)
        elsewhere = context(11, {"rip": BASE + 0x500, "pc": BASE + 0x500})
        assert lookup_address(frame(BASE + 0x105), mod, 0, elsewhere, "x86_64") == 0x104
        assert lookup_address(frame(BASE + 0x108), mod, 0, elsewhere, "arm64") == 0x104
        # The register of another architecture is not looked at.
        only_rip = context(11, {"rip": BASE + 0x500})
        assert lookup_address(frame(BASE + 0x108), mod, 0, only_rip, "arm64") == 0x108
        # The IP register counts for the crashing frame only.
        here = context(11, {"rip": BASE + 0x105})
        assert lookup_address(frame(BASE + 0x105), mod, 0, here, "x86_64") == 0x105
        assert lookup_address(frame(BASE + 0x105), mod, 1, here, "x86_64") == 0x104
        # SIGABRT is raised by a call, not by a faulting instruction.
        aborted = context(6, {"rip": BASE + 0x500})
        assert lookup_address(frame(BASE + 0x105), mod, 0, aborted, "x86_64") == 0x105

    def test_explicit_adjustment(self) -> None:
        mod = module(BASE)
        forced = frame(BASE + 0x105, adjust_instruction_addr=True)
        kept = frame(BASE + 0x105, adjust_instruction_addr=False)
        assert lookup_address(forced, mod, 0, context(), "x86_64") == 0x104
        assert lookup_address(kept, mod, 3, context(), "x86_64") == 0x105
        assert lookup_address(kept, mod, 3, context(), "arm64") == 0x104  # aligned only
        # The thread default applies to frames that do not say.
        yes = context(default=Adjustment.YES)
        assert lookup_address(frame(BASE + 0x105), mod, 0, yes, "x86_64") == 0x104

    def test_relative_addresses(self) -> None:
        mod = module(BASE)
        rel = frame(0x105, addr_mode="rel:0")
        assert lookup_address(rel, mod, 1, context(), "x86_64") == 0x104

    def test_modules_without_image_address_are_not_adjusted(self) -> None:
        wasm = module(0, index=1)
        assert lookup_address(frame(0x105, addr_mode="rel:1"), wasm, 1, context(), "wasm32") == (
            0x105
        )
        forced = frame(0x105, addr_mode="rel:1", adjust_instruction_addr=True)
        assert lookup_address(forced, wasm, 1, context(), "wasm32") == 0x105
        # Absolute addresses cannot be placed in such a module.
        assert lookup_address(frame(0x105), wasm, 1, context(), "wasm32") is None

    def test_addresses_before_the_module(self) -> None:
        mod = module(BASE)
        assert lookup_address(frame(BASE - 1), mod, 1, context(), "x86_64") is None
        # The module's first byte as a return address: the call is before the module.
        assert lookup_address(frame(BASE), mod, 1, context(), "x86_64") is None
        assert lookup_address(frame(BASE), mod, 0, context(), "x86_64") == 0


# Output frames


def location(
    symbol: str, line: int, path: str | None = "/src/a.cpp", sym_addr: int = 0x100
) -> Location:
    return Location(symbol=symbol, language="cpp", sym_addr=sym_addr, path=path, line=line)


class TestSymbolicatedFrames:
    def test_inline_chain(self) -> None:
        mod = module(BASE)
        locations = (
            location("_Z5innerv", 3, sym_addr=0xFFFF_FFFF),
            location("_Z5outerv", 10, path="/src/b.cpp"),
        )
        frames = symbolicated_frames(
            frame(BASE + 0x105, trust="cfi"),
            4,
            mod,
            0x104,
            locations,
            LocationRenderer(Demangler()),
        )
        assert frames == [
            {
                "status": "symbolicated",
                "original_index": 4,
                "instruction_addr": hex(BASE + 0x104),
                "lang": "cpp",
                "symbol": "_Z5innerv",
                "function": "inner()",
                "filename": "a.cpp",
                "abs_path": "/src/a.cpp",
                "lineno": 3,
                "trust": "cfi",
            },
            {
                "status": "symbolicated",
                "original_index": 4,
                "instruction_addr": hex(BASE + 0x104),
                "lang": "cpp",
                "symbol": "_Z5outerv",
                "sym_addr": hex(BASE + 0x100),
                "function": "outer()",
                "filename": "b.cpp",
                "abs_path": "/src/b.cpp",
                "lineno": 10,
                "trust": "cfi",
            },
        ]
        assert list(frames[1]).index("sym_addr") == list(frames[1]).index("symbol") + 1

    def test_relative_module_and_fallback_paths(self) -> None:
        wasm = module(0, index=2)
        sent = frame(0x105, addr_mode="rel:2", filename="given.c", abs_path="/given.c")
        (output,) = symbolicated_frames(
            sent, 0, wasm, 0x105, (location("f", 0, path=None),), LocationRenderer(Demangler())
        )
        assert output["addr_mode"] == "rel:2"
        assert output["instruction_addr"] == "0x105"
        assert output["sym_addr"] == "0x100"
        assert output["lineno"] == 0
        # No file in the debug info: the client's stays.
        assert (output["filename"], output["abs_path"]) == ("given.c", "/given.c")

    def test_windows_paths(self) -> None:
        (output,) = symbolicated_frames(
            frame(BASE + 1),
            0,
            module(BASE),
            0,
            (location("f", 1, path="C:\\src\\dir\\main.c"),),
            LocationRenderer(Demangler()),
        )
        assert output["filename"] == "main.c"
        assert output["abs_path"] == "C:\\src\\dir\\main.c"


class TestRememberedFrames:
    """`LocationRenderer.frames`: lookups in a real symcache of crash.debug, remembered."""

    @pytest.fixture
    def crash(self, fixtures: dict[str, Any], tmp_path: Path) -> Module:
        debug_file = fixture_path(fixtures, "crash_elf_debug")
        obj = next(symbolic.Archive.open(str(debug_file)).iter_objects())
        path = tmp_path / "crash.symcache"
        with path.open("wb") as out:
            obj.make_symcache().dump_into(out)
        loaded = module(BASE)
        loaded.handle = Symcache(symbolic.SymCache.open(str(path)), Memo(100), token=1)
        return loaded

    @staticmethod
    def probe(fixtures: dict[str, Any]) -> int:
        return BASE + int(fixtures["probes"]["crash_elf"][0]["return_address"], 16)

    @staticmethod
    def remembered(
        renderer: LocationRenderer,
        sent: RawFrame,
        loaded: Module,
        index: int,
        thread: ThreadContext,
    ) -> list[dict[str, Any]]:
        """The frames of `sent` after two uses in other stack traces: remembered."""
        for _ in range(2):
            renderer.frames(sent, loaded, index, replace(thread, rendered={}))
        return renderer.frames(sent, loaded, index, thread)

    def test_the_same_frames_as_a_lookup(self, crash: Module, fixtures: dict[str, Any]) -> None:
        renderer = LocationRenderer(Demangler())
        sent = frame(self.probe(fixtures))
        once = renderer.frames(sent, crash, 1, context())
        twice = renderer.frames(sent, crash, 1, context())
        assert twice is not once  # one use in another trace is not remembered
        first = renderer.frames(sent, crash, 1, context())
        assert first is twice  # from the second use on
        again = renderer.frames(sent, crash, 1, context())
        assert again is first
        expected = fixtures["probes"]["crash_elf"][0]["frames"]
        assert [f["function"] for f in first] == [f["function"] for f in expected]
        relative = lookup_address(sent, crash, 1, context(), "x86_64")
        assert relative is not None
        assert crash.handle is not None
        direct = renderer.render_frames(sent, crash, relative, crash.handle.lookup(relative))
        assert first == direct

    def test_copies_carry_the_index_and_leave_the_memory_alone(
        self, crash: Module, fixtures: dict[str, Any]
    ) -> None:
        renderer = LocationRenderer(Demangler())
        sent = frame(self.probe(fixtures))
        first = with_original_index(renderer.frames(sent, crash, 1, context()), 1)
        first[0]["context_line"] = "changed by a later step"
        second = with_original_index(renderer.frames(sent, crash, 1, context()), 7)
        assert {f["original_index"] for f in second} == {7}
        assert "context_line" not in second[0]
        assert list(second[0]) == [key for key in first[0] if key != "context_line"]

    def test_a_frame_repeated_in_one_stack_trace_counts_once(
        self, crash: Module, fixtures: dict[str, Any]
    ) -> None:
        renderer = LocationRenderer(Demangler())
        sent = frame(self.probe(fixtures))
        thread = context()
        recursion = [renderer.frames(sent, crash, index, thread) for index in (1, 2, 3)]
        assert recursion[0] is recursion[1] is recursion[2]
        other = renderer.frames(sent, crash, 1, context())
        assert other is not recursion[0]  # the first trace was one use
        assert renderer.frames(sent, crash, 1, context()) is other

    def test_what_the_output_depends_on_is_part_of_the_key(
        self, crash: Module, fixtures: dict[str, Any]
    ) -> None:
        renderer = LocationRenderer(Demangler())
        address = self.probe(fixtures)
        # Each variant is remembered first: a key missing a part would find another's.
        remembered = self.remembered
        caller = remembered(renderer, frame(address), crash, 1, context())
        crashing = remembered(renderer, frame(address), crash, 0, context())
        scanned = remembered(renderer, frame(address, trust="scan"), crash, 1, context())
        exact = remembered(renderer, frame(address), crash, 1, context(default=Adjustment.NO))
        moved = module(2 * BASE)
        moved.handle = crash.handle
        elsewhere = remembered(renderer, frame(address - BASE + 2 * BASE), moved, 1, context())
        assert caller[0]["instruction_addr"] == hex(address - 1)
        assert crashing[0]["instruction_addr"] == hex(address)  # looked up where it points
        assert exact[0]["instruction_addr"] == hex(address)
        assert "trust" not in caller[0]
        assert scanned[0]["trust"] == "scan"
        assert elsewhere[0]["instruction_addr"] == hex(address - BASE + 2 * BASE - 1)
        # A faulting crashing frame whose IP register points elsewhere: the call before.
        faulting = context(signal=11, registers={"rip": 1})
        assert remembered(renderer, frame(address), crash, 0, faulting)[0]["instruction_addr"] == (
            hex(address - 1)
        )

    def test_nothing_at_an_address_is_remembered_too(self, crash: Module) -> None:
        renderer = LocationRenderer(Demangler())
        assert renderer.frames(frame(BASE + 0x11), crash, 1, context()) == []  # ELF headers
        assert renderer.frames(frame(BASE - 1), crash, 1, context()) == []

    def test_frames_with_long_client_texts_are_not_remembered(
        self, crash: Module, fixtures: dict[str, Any]
    ) -> None:
        renderer = LocationRenderer(Demangler())
        sent = frame(self.probe(fixtures), abs_path="/" + "d" * 100_000)
        first = self.remembered(renderer, sent, crash, 1, context())
        again = renderer.frames(sent, crash, 1, context())
        assert first == again
        assert again is not first
        assert first[0]["function"] == fixtures["probes"]["crash_elf"][0]["frames"][0]["function"]


class TestFailedFrame:
    def test_keeps_the_input(self) -> None:
        sent = frame(
            0x42,
            addr_mode="rel:1",
            package="/lib/x.so",
            lineno=7,
            pre_context=("a",),
            trust="scan",
            sym_addr=0x40,
        )
        output = failed_frame(sent, 2, FrameStatus.MISSING, None, Demangler())
        assert output == {
            "status": "missing",
            "original_index": 2,
            "addr_mode": "rel:1",
            "instruction_addr": "0x42",
            "package": "/lib/x.so",
            "sym_addr": "0x40",
            "lineno": 7,
            "pre_context": ["a"],
            "trust": "scan",
        }

    def test_package_is_the_module_code_file(self) -> None:
        table = ModuleTable((RawModule(type="elf", code_file="/usr/lib/libc.so.6"),))
        output = failed_frame(
            frame(0x42, package="sent"), 0, FrameStatus.MISSING, table.modules[0], Demangler()
        )
        assert output["package"] == "/usr/lib/libc.so.6"
        table = ModuleTable((RawModule(type="elf"),))
        output = failed_frame(
            frame(0x42, package="sent"), 0, FrameStatus.MISSING, table.modules[0], Demangler()
        )
        assert "package" not in output  # replaced, even by nothing
