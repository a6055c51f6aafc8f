"""What happens to frames that cannot be symbolicated, and which frames are left out."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.stacktraces import (
    FIELD_ORDER,
    crash_frame,
    module_of,
    probe_frames,
    store_source,
    symbolicate,
)

BASE = 0x5555_0000_0000
UNMAPPED = 0xDEAD_0000_0000


def request(
    fixtures: dict[str, Any], project: str, frames: list[dict[str, Any]], **options: Any
) -> dict[str, Any]:
    return {
        "sources": [store_source("default", project)],
        "modules": [module_of(fixtures, "crash_elf", BASE)],
        "stacktraces": [{"frames": frames}],
        "options": options,
    }


def test_unsymbolicated_frames_come_back_as_sent(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    sent = {
        "instruction_addr": "0XDEAD00001A",
        "platform": "native",
        "package": "/lib/libunknown.so",
        "lang": "cpp",
        "symbol": "sym",
        "function": "func",
        "sym_addr": 0xDEAD000010,
        "filename": "x.c",
        "abs_path": "/src/x.c",
        "lineno": 0,
        "pre_context": ["a"],
        "context_line": "b",
        "post_context": ["c"],
        "source_link": "https://example.com/x.c",
        "trust": "cfi",
        "function_id": 5,
        "in_app": True,  # not a Symbolicator field (any more): dropped
        "something_else": 1,
    }
    body = request(fixtures, formats_project, [crash_frame(fixtures, "crash_elf", BASE), sent])
    _, frame = symbolicate(client, body)["stacktraces"][0]["frames"]
    assert frame == {
        "status": "unknown_image",
        "original_index": 1,
        "platform": "native",
        "instruction_addr": "0xdead00001a",
        "function_id": "0x5",
        "package": "/lib/libunknown.so",
        "lang": "cpp",
        "symbol": "sym",
        "sym_addr": "0xdead000010",
        "function": "func",
        "filename": "x.c",
        "abs_path": "/src/x.c",
        "lineno": 0,
        "pre_context": ["a"],
        "context_line": "b",
        "post_context": ["c"],
        "source_link": "https://example.com/x.c",
        "trust": "cfi",
    }
    assert list(frame) == [key for key in FIELD_ORDER if key in frame]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        # Only a function: demangled into `function`, the mangled name kept as `symbol`.
        (
            {"function": "_ZN6shapes11shapes_sinkEPVll"},
            {
                "function": "shapes::shapes_sink(long volatile*, long)",
                "symbol": "_ZN6shapes11shapes_sinkEPVll",
            },
        ),
        # Only a symbol: demangled into `function`.
        (
            {"symbol": "_ZN7rustapp4main17hcfcc9e17ff30cf99E"},
            {"function": "rustapp::main", "symbol": "_ZN7rustapp4main17hcfcc9e17ff30cf99E"},
        ),
        # The frame's language does not stop detection.
        (
            {"function": "_Z10shapes_runi", "lang": "c"},
            {"function": "shapes_run(int)", "symbol": "_Z10shapes_runi", "lang": "c"},
        ),
        # Objective-C names are their own demangling.
        ({"function": "-[Foo bar:]"}, {"function": "-[Foo bar:]", "symbol": "-[Foo bar:]"}),
        # Both given, or a name that is not mangled: untouched.
        (
            {"function": "f", "symbol": "_Z10shapes_runi"},
            {"function": "f", "symbol": "_Z10shapes_runi"},
        ),
        ({"function": "plain_c"}, {"function": "plain_c"}),
    ],
)
def test_names_of_unsymbolicated_frames_are_demangled(
    client: httpx.Client,
    fixtures: dict[str, Any],
    formats_project: str,
    names: dict[str, str],
    expected: dict[str, str],
) -> None:
    frames = [
        crash_frame(fixtures, "crash_elf", BASE),
        {"instruction_addr": hex(UNMAPPED), **names},
    ]
    _, frame = symbolicate(client, request(fixtures, formats_project, frames))["stacktraces"][0][
        "frames"
    ]
    assert frame["status"] == "unknown_image"
    assert {key: frame[key] for key in ("function", "symbol", "lang") if key in frame} == expected


def test_scanned_frames_that_resolve_to_nothing_are_left_out(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    caller = probe_frames(fixtures, "crash_elf", BASE)[2]
    frames = [
        crash_frame(fixtures, "crash_elf", BASE),
        {"instruction_addr": hex(BASE + 0x10), "trust": "scan"},  # missing_symbol: out
        {"instruction_addr": hex(UNMAPPED), "trust": "scan"},  # unknown_image: out
        {**caller, "trust": "scan"},  # symbolicated: kept
        {"instruction_addr": hex(BASE + 0x10), "trust": "cfi"},  # not a scan: kept
        {"instruction_addr": hex(UNMAPPED), "trust": "fp"},
        {"instruction_addr": hex(BASE + 0x1132)},
    ]
    result = symbolicate(client, request(fixtures, formats_project, frames))
    out = result["stacktraces"][0]["frames"]
    assert [(f["original_index"], f["status"], f.get("trust")) for f in out] == [
        (0, "symbolicated", None),
        (3, "symbolicated", "scan"),
        (4, "missing_symbol", "cfi"),
        (5, "unknown_image", "fp"),
        (6, "symbolicated", None),
    ]


@pytest.mark.parametrize("apply_source_context", [True, False])
def test_module_whose_frames_were_all_left_out(
    client: httpx.Client,
    fixtures: dict[str, Any],
    formats_project: str,
    apply_source_context: bool,
) -> None:
    """As in Symbolicator: with source context on, a module is judged by the frames
    that made it into the output, so it ends up `unused`."""
    shapes_base = BASE + 0x1000_0000
    body = request(
        fixtures,
        formats_project,
        [
            {"instruction_addr": hex(shapes_base + 0x1143)},
            {"instruction_addr": hex(BASE + 0x10), "trust": "scan"},
        ],
        apply_source_context=apply_source_context,
    )
    body["modules"].append(module_of(fixtures, "shapes_elf", shapes_base))
    result = symbolicate(client, body)
    assert [f["function"] for f in result["stacktraces"][0]["frames"]] == [
        "shapes::shapes_sink(long volatile*, long)"
    ]
    crash_module, shapes_module = result["modules"]
    assert shapes_module["debug_status"] == "found"
    assert crash_module["debug_status"] == ("unused" if apply_source_context else "found")


def test_garbage_after_start_is_left_out(
    client: httpx.Client, fixtures: dict[str, Any], formats_project: str
) -> None:
    """A thread's outermost frame below `_start` is an unmapped guess (glibc marks
    `_start` as having no return address)."""
    start_caller = {"instruction_addr": hex(BASE + 0x1041)}  # returns into `_start`
    frames = [crash_frame(fixtures, "crash_elf", BASE), start_caller, {"instruction_addr": "0x7"}]
    out = symbolicate(client, request(fixtures, formats_project, frames))["stacktraces"][0][
        "frames"
    ]
    assert [frame.get("function") for frame in out] == ["crash_leaf_store", "_start"]

    # Only the outermost frame is judged so.
    frames = [*frames[:2], {"instruction_addr": hex(UNMAPPED)}, start_caller]
    out = symbolicate(client, request(fixtures, formats_project, frames))["stacktraces"][0][
        "frames"
    ]
    assert [frame["status"] for frame in out] == [
        "symbolicated",
        "symbolicated",
        "unknown_image",
        "symbolicated",
    ]


@pytest.mark.parametrize(
    ("last", "kept"),
    [
        ({"instruction_addr": "0xfff"}, False),  # a null-page address is no return address
        ({"instruction_addr": "0x1000"}, True),
        ({"instruction_addr": "0x10", "addr_mode": "rel:3"}, True),  # not absolute
    ],
)
def test_small_outermost_addresses_are_left_out(
    client: httpx.Client,
    fixtures: dict[str, Any],
    formats_project: str,
    last: dict[str, Any],
    kept: bool,
) -> None:
    frames = [crash_frame(fixtures, "crash_elf", BASE), last]
    out = symbolicate(client, request(fixtures, formats_project, frames))["stacktraces"][0][
        "frames"
    ]
    assert len(out) == (2 if kept else 1)
    # ... but not when it is the only frame.
    alone = symbolicate(client, request(fixtures, formats_project, [last]))
    assert [frame["status"] for frame in alone["stacktraces"][0]["frames"]] == ["unknown_image"]
