"""Real return addresses of real binaries, symbolicated over HTTP from sentry-cli uploads.

Each program's probes (return addresses with what llvm-symbolizer or
llvm-pdbutil reports for the call before them) become caller frames behind a
crashing frame 0. Every output frame is checked: function, raw symbol, file,
line, the inline chain, `sym_addr` and the looked-up `instruction_addr`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.support.stacktraces import (
    FIELD_ORDER,
    crash_frame,
    expected_function,
    module_of,
    probe_frames,
    probes_of,
    store_source,
    symbolicate,
)

ELF_BASE = 0x5555_5555_4000
PE_BASE = 0x1_4000_0000
MACHO_BASE = 0x1_0000_0000

#: program -> (code file key, image address, language, instruction size before a return address)
PROGRAMS = {
    "crash_elf": ("crash_elf", ELF_BASE, "c", 1),
    "shapes_elf": ("shapes_elf", ELF_BASE, "cpp", 1),
    "rust_elf": ("rust_elf", ELF_BASE, "rust", 1),
    "crash_pe": ("crash_pe", PE_BASE, None, 1),
    "crash_macho_x86_64": ("crash_macho_x86_64", MACHO_BASE, "c", 1),
    "crash_macho_arm64": ("crash_macho_arm64", MACHO_BASE, "c", 4),
}


def by_original_index(frames: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = {}
    for frame in frames:
        grouped.setdefault(frame["original_index"], []).append(frame)
    return grouped


def same_function(program: str) -> Callable[[str, dict[str, Any]], bool]:
    """PDBs name C functions with their parameters (`crash_run(int)`): compare up to `(`."""
    if program == "crash_pe":
        return lambda got, want: got.split("(")[0] == expected_function(want)
    return lambda got, want: got == expected_function(want)


def check_expansion(
    program: str,
    got: list[dict[str, Any]],
    want: list[dict[str, Any]],
    image_addr: int,
    looked_up: int,
    language: str | None,
    code_file: str,
) -> None:
    """One input frame's output against the frames llvm reports, innermost first."""
    matches = same_function(program)
    assert [frame["status"] for frame in got] == ["symbolicated"] * len(want), got
    assert len({frame["original_index"] for frame in got}) == 1
    for output, expected in zip(got, want, strict=True):
        assert matches(output["function"], expected), (output, expected)
        if program == "crash_pe":
            assert output["symbol"] == output["function"]
        else:
            assert output["symbol"] == expected["symbol"]
        assert output["abs_path"] == expected["file"]
        assert output["filename"] == posixpath.basename(expected["file"])
        assert output["lineno"] == expected["line"]
        assert output["instruction_addr"] == hex(looked_up)
        assert output["package"] == code_file
        assert output.get("lang") == language
        assert "addr_mode" not in output  # absolute: the module has an image address
        assert list(output) == [key for key in FIELD_ORDER if key in output]
    # Only the outermost (real) function has a symbol address.
    assert [("sym_addr" in frame) for frame in got] == [False] * (len(got) - 1) + [True]
    assert got[-1]["sym_addr"] == hex(image_addr + int(want[-1]["sym_addr"], 16))


def request_for(
    fixtures: dict[str, Any], program: str, project: str, **module_fields: Any
) -> dict[str, Any]:
    key, image_addr, _, _ = PROGRAMS[program]
    return {
        "sources": [store_source("default", project)],
        "modules": [module_of(fixtures, key, image_addr, **module_fields)],
        "stacktraces": [
            {
                "frames": [
                    crash_frame(fixtures, program, image_addr),
                    *probe_frames(fixtures, program, image_addr),
                ]
            }
        ],
    }


@pytest.mark.parametrize("program", list(PROGRAMS))
def test_code_file_and_debug_companion(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str, program: str
) -> None:
    key, image_addr, language, instruction = PROGRAMS[program]
    body = request_for(fixtures, program, formats_project)
    result = symbolicate(client, body)

    frames = result["stacktraces"][0]["frames"]
    grouped = by_original_index(frames)
    probes = probes_of(fixtures, program)
    assert sorted(grouped) == list(range(len(probes) + 1))
    code_file = body["modules"][0]["code_file"]

    crash = fixtures["crash_addresses"][program]
    crash_addr = image_addr + int(crash["address"], 16)
    check_expansion(
        program, grouped[0], crash["frames"], image_addr, crash_addr, language, code_file
    )
    for index, probe in enumerate(probes, start=1):
        return_address = image_addr + int(probe["return_address"], 16)
        looked_up = return_address - instruction
        assert looked_up == image_addr + int(probe["call_address"], 16) or instruction == 1
        check_expansion(
            program, grouped[index], probe["frames"], image_addr, looked_up, language, code_file
        )
    # Output order is the input order, each expansion innermost first.
    assert [frame["original_index"] for frame in frames] == sorted(
        frame["original_index"] for frame in frames
    )

    (module,) = result["modules"]
    entry = fixtures[key]
    assert module["debug_status"] == "found"
    assert module["arch"] == entry["arch"]
    assert module["features"]["has_debug_info"] is True
    assert module["features"]["has_sources"] is False
    assert module["debug_id"] == entry["debug_id"]
    assert module["image_addr"] == hex(image_addr)
    assert module["image_size"] == entry["image_size"]
    assert "candidates" not in module


def test_inline_chains_are_expanded_innermost_first(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    """The first crash probe returns into an inlined call two levels deep."""
    result = symbolicate(client, request_for(fixtures, "crash_elf", formats_project))
    chain = by_original_index(result["stacktraces"][0]["frames"])[1]
    assert [frame["function"] for frame in chain] == [
        "crash_inline_inner",
        "crash_inline_outer",
        "crash_run",
    ]
    assert [frame["filename"] for frame in chain] == ["crash_util.h", "crash_util.h", "crash.c"]
    assert len({frame["instruction_addr"] for frame in chain}) == 1


def test_cpp_names_are_demangled_with_parameters_without_return_types(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    result = symbolicate(client, request_for(fixtures, "shapes_elf", formats_project))
    frames = result["stacktraces"][0]["frames"]
    functions = {frame["symbol"]: frame["function"] for frame in frames}
    assert functions["_ZN6shapes16accumulate_areasIlEET_PKPKNS_5ShapeEiPVl"] == (
        "shapes::accumulate_areas<long>(shapes::Shape const* const*, int, long volatile*)"
    )
    assert functions["_ZNK6shapes9Rectangle4areaEPVl"] == (
        "shapes::Rectangle::area(long volatile*) const"
    )
    assert functions["_Z10shapes_runi"] == "shapes_run(int)"
    assert functions["main"] == "main"
    assert {frame["lang"] for frame in frames} == {"cpp"}


def test_rust_names_lose_their_hash(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    result = symbolicate(client, request_for(fixtures, "rust_elf", formats_project))
    frames = result["stacktraces"][0]["frames"]
    functions = {frame["symbol"]: frame["function"] for frame in frames}
    assert functions["_ZN7rustapp4main17hcfcc9e17ff30cf99E"] == "rustapp::main"
    assert functions["_ZN7rustapp14rustapp_engine11rustapp_run17h390ade0af4b42b28E"] == (
        "rustapp::rustapp_engine::rustapp_run"
    )
    assert all("::h" not in frame["function"] for frame in frames)


def test_stripped_binary_falls_back_to_its_symbol_table(
    client: httpx.Client, fixtures: dict[str, Any], stripped_project: str
) -> None:
    body = request_for(fixtures, "crash_elf", stripped_project)
    result = symbolicate(client, body)
    frames = result["stacktraces"][0]["frames"]
    grouped = by_original_index(frames)
    probes = probes_of(fixtures, "crash_elf")
    # No debug information: no inlinees, no files, line 0; the outer function is right.
    assert [len(grouped[index]) for index in sorted(grouped)] == [1] * (len(probes) + 1)
    wanted = [fixtures["crash_addresses"]["crash_elf"]["frames"][-1]] + [
        probe["frames"][-1] for probe in probes
    ]
    for frame, expected in zip(frames, wanted, strict=True):
        assert frame["status"] == "symbolicated"
        assert frame["function"] == expected["function"]
        assert frame["symbol"] == expected["symbol"]
        assert frame["sym_addr"] == hex(ELF_BASE + int(expected["sym_addr"], 16))
        assert frame["lineno"] == 0
        assert "abs_path" not in frame
        assert "filename" not in frame
        assert "lang" not in frame
    (module,) = result["modules"]
    assert module["debug_status"] == "found"
    assert module["features"] == {
        "has_debug_info": False,
        "has_unwind_info": True,
        "has_symbols": True,
        "has_sources": False,
    }


def test_breakpad_gives_the_outer_function_and_the_innermost_line(
    client: httpx.Client, fixtures: dict[str, Any], breakpad_project: str
) -> None:
    """Breakpad files have no inline records: one frame per address, named after the
    outer function but with the line (and file) of the innermost inlinee."""
    body = request_for(fixtures, "crash_elf", breakpad_project)
    result = symbolicate(client, body)
    frames = result["stacktraces"][0]["frames"]
    probes = probes_of(fixtures, "crash_elf")
    wanted = [fixtures["crash_addresses"]["crash_elf"]["frames"]] + [
        probe["frames"] for probe in probes
    ]
    assert len(frames) == len(wanted)
    for index, (frame, chain) in enumerate(zip(frames, wanted, strict=True)):
        assert frame["original_index"] == index
        assert frame["status"] == "symbolicated"
        assert frame["function"] == chain[-1]["function"]
        assert frame["sym_addr"] == hex(ELF_BASE + int(chain[-1]["sym_addr"], 16))
        assert frame["lineno"] == chain[0]["line"]
        assert frame["abs_path"] == chain[0]["file"]
    (module,) = result["modules"]
    assert module["debug_status"] == "found"
    assert module["arch"] == "x86_64"


def test_caller_first_reverses_input_and_output(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    callee_first = request_for(fixtures, "crash_elf", formats_project)
    expected = symbolicate(client, callee_first)["stacktraces"][0]["frames"]

    caller_first = {
        **callee_first,
        "options": {"frame_order": "caller_first"},
        "stacktraces": [{"frames": callee_first["stacktraces"][0]["frames"][::-1]}],
    }
    frames = symbolicate(client, caller_first)["stacktraces"][0]["frames"]
    # The last input frame is the crashing one (not adjusted); inline chains come
    # outer function first. `original_index` counts callee first, as Symbolicator's does.
    assert frames == expected[::-1]
    assert frames[-1]["function"] == "crash_leaf_store"
    assert frames[-1]["original_index"] == 0
    assert [frame["function"] for frame in frames[-4:-1]] == [
        "crash_run",
        "crash_inline_outer",
        "crash_inline_inner",
    ]


def test_relative_addresses_come_back_absolute(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    absolute = request_for(fixtures, "crash_macho_arm64", formats_project)
    expected = symbolicate(client, absolute)["stacktraces"][0]["frames"]

    relative_frames = [
        {
            "instruction_addr": hex(int(frame["instruction_addr"], 16) - MACHO_BASE),
            "addr_mode": "rel:0",
        }
        for frame in absolute["stacktraces"][0]["frames"]
    ]
    relative = {**absolute, "stacktraces": [{"frames": relative_frames}]}
    assert symbolicate(client, relative)["stacktraces"][0]["frames"] == expected


def test_relative_addresses_name_their_module_by_request_index(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    """`rel:1` is the second module of the request, wherever it is loaded."""
    probe = probes_of(fixtures, "crash_elf")[2]
    body = {
        "sources": [store_source("default", formats_project)],
        "modules": [
            module_of(fixtures, "crash_macho_x86_64", MACHO_BASE),
            module_of(fixtures, "crash_elf", ELF_BASE),
        ],
        "stacktraces": [
            {
                "frames": [
                    {"instruction_addr": "0x10", "addr_mode": "rel:1"},
                    {"instruction_addr": probe["return_address"], "addr_mode": "rel:1"},
                    {"instruction_addr": "0x10", "addr_mode": "rel:7"},
                ]
            }
        ],
    }
    result = symbolicate(client, body)
    frames = result["stacktraces"][0]["frames"]
    assert frames[0]["status"] == "missing_symbol"
    assert frames[0]["addr_mode"] == "rel:1"
    assert frames[1]["status"] == "symbolicated"
    assert frames[1]["function"] == "crash_run"
    assert frames[1]["instruction_addr"] == hex(ELF_BASE + int(probe["return_address"], 16) - 1)
    assert frames[2]["status"] == "unknown_image"
    assert frames[2]["addr_mode"] == "rel:7"
    assert [module["debug_status"] for module in result["modules"]] == ["unused", "found"]


def test_module_without_image_size_extends_to_the_next_module(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    next_module = ELF_BASE + 0x10_0000
    probe = probes_of(fixtures, "crash_elf")[3]
    beyond_code = ELF_BASE + 0x8000  # past crash's real size (0x4018), before shapes
    body = {
        "sources": [store_source("default", formats_project)],
        "modules": [
            module_of(fixtures, "crash_elf", ELF_BASE, image_size=None),
            module_of(fixtures, "shapes_elf", next_module, image_size=None),
        ],
        "stacktraces": [
            {
                "frames": [
                    {"instruction_addr": hex(beyond_code)},
                    {"instruction_addr": hex(ELF_BASE + int(probe["return_address"], 16))},
                ]
            }
        ],
    }
    result = symbolicate(client, body)
    crash_module, shapes_module = result["modules"]
    assert crash_module["image_size"] == 0x10_0000
    assert "image_size" not in shapes_module  # the last module extends without bound
    beyond, caller = result["stacktraces"][0]["frames"]
    assert beyond["status"] != "unknown_image"
    assert beyond["package"] == "/opt/app/crash"
    assert caller["status"] == "symbolicated"
    assert caller["function"] == "crash_dispatch"
    assert crash_module["debug_status"] == "found"
    assert shapes_module["debug_status"] == "unused"

    # With its real size given, the same address belongs to no module.
    body["modules"][0]["image_size"] = fixtures["crash_elf"]["image_size"]
    beyond, _ = symbolicate(client, body)["stacktraces"][0]["frames"]
    assert beyond["status"] == "unknown_image"
    assert "package" not in beyond


class TestCrashingFrame:
    """Frame 0 is looked up where it points unless the signal and the IP register say
    it was a call; `adjust_instruction_addr` overrides the heuristic."""

    # crash_leaf_store: line 11 up to 0x1132, line 12 from 0x1132 (the faulting store).
    def request(
        self, fixtures: dict[str, Any], project: str, frame: dict[str, Any], **extra: Any
    ) -> dict[str, Any]:
        return {
            "sources": [store_source("default", project)],
            "modules": [module_of(fixtures, "crash_elf", ELF_BASE)],
            "stacktraces": [{"frames": [frame]}],
            **extra,
        }

    def lookup(self, client: httpx.Client, body: dict[str, Any]) -> tuple[str, int]:
        result = symbolicate(client, body)
        (frame,) = result["stacktraces"][0]["frames"]
        assert frame["function"] == "crash_leaf_store"
        return frame["instruction_addr"], frame["lineno"]

    @pytest.mark.parametrize(
        ("signal", "rip", "adjusted"),
        [
            (None, None, False),
            (11, None, False),  # no IP register: trust the frame
            (11, 0x1132, False),  # the IP is the frame: the fault happened here
            (11, 0x2000, True),  # SIGSEGV elsewhere: frame 0 is a caller
            (4, 0x2000, True),  # SIGILL
            (10, 0x2000, True),  # SIGBUS
            (6, 0x2000, False),  # SIGABRT: not a faulting instruction
        ],
    )
    def test_signal_and_registers(
        self,
        client: httpx.Client,
        fixtures: dict[str, Any],
        formats_project: str,
        signal: int | None,
        rip: int | None,
        adjusted: bool,
    ) -> None:
        address = ELF_BASE + 0x1132
        extra: dict[str, Any] = {}
        if signal is not None:
            extra["signal"] = signal
        body = self.request(fixtures, formats_project, {"instruction_addr": hex(address)}, **extra)
        if rip is not None:
            body["stacktraces"][0]["registers"] = {"rip": hex(ELF_BASE + rip)}
        expected = (hex(address - 1), 11) if adjusted else (hex(address), 12)
        assert self.lookup(client, body) == expected

    def test_registers_are_echoed_and_signal_returned(
        self, client: httpx.Client, fixtures: dict[str, Any], formats_project: str
    ) -> None:
        body = self.request(
            fixtures, formats_project, {"instruction_addr": hex(ELF_BASE + 0x1132)}, signal=11
        )
        body["stacktraces"][0].update(
            {"registers": {"rip": 0x1234, "rsp": "0X7FFC"}, "thread_id": 7, "is_requesting": True}
        )
        result = symbolicate(client, body)
        assert result["signal"] == 11
        stacktrace = result["stacktraces"][0]
        assert stacktrace["registers"] == {"rip": "0x1234", "rsp": "0x7ffc"}
        assert stacktrace["thread_id"] == 7
        assert stacktrace["is_requesting"] is True
        assert "thread_name" not in stacktrace

    def test_arm64_uses_pc(
        self, client: httpx.Client, fixtures: dict[str, Any], formats_project: str
    ) -> None:
        crash = fixtures["crash_addresses"]["crash_macho_arm64"]
        address = MACHO_BASE + int(crash["address"], 16)
        body = {
            "sources": [store_source("default", formats_project)],
            "modules": [module_of(fixtures, "crash_macho_arm64", MACHO_BASE)],
            "signal": 11,
            "stacktraces": [
                {
                    "registers": {"pc": hex(address + 8)},
                    "frames": [{"instruction_addr": hex(address)}],
                }
            ],
        }
        (frame,) = symbolicate(client, body)["stacktraces"][0]["frames"]
        assert frame["instruction_addr"] == hex(address - 4)
        body["stacktraces"][0]["registers"] = {"rip": hex(address + 8)}  # not arm64's register
        (frame,) = symbolicate(client, body)["stacktraces"][0]["frames"]
        assert frame["instruction_addr"] == hex(address)

    def test_adjust_instruction_addr(
        self, client: httpx.Client, fixtures: dict[str, Any], formats_project: str
    ) -> None:
        address = ELF_BASE + 0x1132
        forced = self.request(
            fixtures,
            formats_project,
            {"instruction_addr": hex(address), "adjust_instruction_addr": True},
        )
        assert self.lookup(client, forced) == (hex(address - 1), 11)

        probe = probes_of(fixtures, "crash_elf")[2]
        return_address = ELF_BASE + int(probe["return_address"], 16)
        body = {
            "sources": [store_source("default", formats_project)],
            "modules": [module_of(fixtures, "crash_elf", ELF_BASE)],
            "stacktraces": [
                {
                    "frames": [
                        # Once any frame sets the flag, frames without it are adjusted,
                        # the crashing frame included.
                        {"instruction_addr": hex(address)},
                        {"instruction_addr": hex(return_address), "adjust_instruction_addr": False},
                    ]
                }
            ],
        }
        crash, caller = symbolicate(client, body)["stacktraces"][0]["frames"]
        assert crash["instruction_addr"] == hex(address - 1)
        assert "adjust_instruction_addr" not in crash
        assert caller["instruction_addr"] == hex(return_address)
        assert caller["adjust_instruction_addr"] is False
