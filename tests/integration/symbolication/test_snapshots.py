"""Whole responses of the main cases, as snapshots (`tests/.../__snapshots__`).

Volatile values are replaced before comparing: the fixture directory (absolute
paths in debug info), the fixtures' ids (which depend on those paths), request
ids, the symbol server's address. Regenerate
with `uv run pytest tests/integration/symbolication/test_snapshots.py
--snapshot-update` and review the diff by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import symbolic
from syrupy.assertion import SnapshotAssertion

from tests.integration.symbolication.conftest import CONFIGURED_PROJECT, upload
from tests.support.server import ServerProcess
from tests.support.stacktraces import (
    crash_frame,
    module_of,
    normalize,
    probe_frames,
    store_source,
    symbolicate,
)
from tests.support.symbol_server import SymbolServer

BASES = {
    "crash_elf": 0x5555_5555_4000,
    "shapes_elf": 0x5555_5555_4000,
    "rust_elf": 0x5555_5555_4000,
    "crash_pe": 0x1_4000_0000,
    "crash_macho_x86_64": 0x1_0000_0000,
    "crash_macho_arm64": 0x1_0000_0000,
}


def stack_request(fixtures: dict[str, Any], program: str, project: str) -> dict[str, Any]:
    base = BASES[program]
    return {
        "signal": 11,
        "sources": [store_source("default", project)],
        "modules": [module_of(fixtures, program, base)],
        "stacktraces": [
            {
                "thread_id": 1,
                "thread_name": "main",
                "is_requesting": True,
                "registers": {
                    "pc" if "arm64" in program else "rip": crash_frame(fixtures, program, base)[
                        "instruction_addr"
                    ]
                },
                "frames": [
                    crash_frame(fixtures, program, base),
                    *probe_frames(fixtures, program, base),
                ],
            }
        ],
        "options": {"apply_source_context": False},
    }


@pytest.mark.parametrize("program", list(BASES))
def test_stack_of_each_program(
    client: httpx.Client,
    fixtures: dict[str, Any],
    formats_project: str,
    snapshot: SnapshotAssertion,
    program: str,
) -> None:
    result = symbolicate(client, stack_request(fixtures, program, formats_project))
    assert normalize(result, fixtures) == snapshot


def test_source_context(
    client: httpx.Client,
    server: ServerProcess,
    fixtures: dict[str, Any],
    snapshot: SnapshotAssertion,
) -> None:
    project = upload(
        server,
        fixtures,
        "sym-snapshot-sources",
        ("crash_elf", "crash_elf_debug"),
        extra=("--include-sources",),
    )
    body = stack_request(fixtures, "crash_elf", project)
    body["options"] = {}
    body["stacktraces"][0]["frames"] = body["stacktraces"][0]["frames"][:2]
    assert normalize(symbolicate(client, body), fixtures) == snapshot


def test_statuses_and_candidates(
    configured_server: ServerProcess,
    symbol_server: SymbolServer,
    fixtures: dict[str, Any],
    snapshot: SnapshotAssertion,
) -> None:
    prefix = "snapshot-statuses"
    code_id = fixtures["crash_elf"]["code_id"]
    symbol_server.put(
        f"{prefix}/{code_id[:2]}/{code_id[2:]}.debug",
        Path(fixtures["crash_elf_debug"]["path"]).read_bytes(),
    )
    base, other = 0x7F00_0000_0000, 0x7F10_0000_0000
    body = {
        "sources": [{"type": "http", "id": "symbols", "url": symbol_server.url_for(prefix)}],
        "modules": [
            module_of(fixtures, "crash_elf", base),
            module_of(fixtures, "shapes_elf", other),
            module_of(fixtures, "rust_elf", other * 2, debug_id="not a debug id", code_id="ZZ"),
        ],
        "stacktraces": [
            {
                "frames": [
                    crash_frame(fixtures, "crash_elf", base),
                    {"instruction_addr": hex(base + 0x10), "trust": "cfi"},
                    {"instruction_addr": hex(other + 0x1200), "function": "_Z10shapes_runi"},
                    {
                        "instruction_addr": "0x10000000",
                        "symbol": "_ZN4core3fmt9Formatter3pad17h0123456789abcdefE",
                    },
                ]
            }
        ],
        "options": {"dif_candidates": True},
    }
    with configured_server.client() as client:
        result = symbolicate(client, body)
    assert normalize(result, fixtures, [(symbol_server.url, "http://<symbol server>/")]) == snapshot


def test_relative_addresses_of_a_module_without_image_address(
    configured_server: ServerProcess,
    symbol_server: SymbolServer,
    fixtures: dict[str, Any],
    snapshot: SnapshotAssertion,
) -> None:
    """WebAssembly modules live at 0: frames keep `rel:N` and are not adjusted."""
    prefix = "snapshot-wasm"
    code_id = fixtures["crash_wasm"]["code_id"]
    symbol_server.put(
        f"{prefix}/{code_id[:2]}/{code_id[2:]}.debug",
        Path(fixtures["crash_wasm"]["path"]).read_bytes(),
    )
    body = {
        "sources": [{"type": "http", "id": "symbols", "url": symbol_server.url_for(prefix)}],
        "modules": [module_of(fixtures, "crash_wasm", 0)],
        "stacktraces": [
            {
                "frames": [
                    {"instruction_addr": hex(address), "addr_mode": "rel:0"}
                    for address in wasm_code_addresses(fixtures)
                ]
            }
        ],
        "options": {"apply_source_context": False},
    }
    with configured_server.client() as client:
        result = symbolicate(client, body)
    assert normalize(result, fixtures, [(symbol_server.url, "http://<symbol server>/")]) == snapshot


def wasm_code_addresses(fixtures: dict[str, Any]) -> list[int]:
    """One address inside each function of the WebAssembly fixture (from its symbols)."""
    archive = symbolic.Archive.open(fixtures["crash_wasm"]["path"])
    symcache = next(archive.iter_objects()).make_symcache()
    found: dict[str, int] = {}
    for address in range(fixtures["crash_wasm"]["size"]):
        for location in symcache.lookup(address)[-1:]:
            found.setdefault(location.symbol, address + 1)
    return sorted(found.values())


def test_mozilla_response(
    configured_server: ServerProcess, fixtures: dict[str, Any], snapshot: SnapshotAssertion
) -> None:
    upload(configured_server, fixtures, CONFIGURED_PROJECT, ("crash_elf", "crash_elf_debug"))
    debug_id = fixtures["crash_elf"]["debug_id"].replace("-", "").upper() + "0"
    offsets = [int(p["return_address"], 16) - 1 for p in fixtures["probes"]["crash_elf"]]
    payload = {
        "jobs": [
            {
                "memoryMap": [["crash", debug_id], ["libnothing.so", "0" * 33]],
                "stacks": [[[0, offset] for offset in offsets] + [[1, 0x10], [-1, 0x20]]],
            }
        ]
    }
    with httpx.Client(base_url=configured_server.url, timeout=60) as client:
        response = client.post("/symbolicate/v5", json=payload)
    assert response.status_code == 200
    assert normalize(response.json(), fixtures) == snapshot
