"""Every frame and module status, each produced by setting up its situation.

Files come from a real HTTP symbol server (`tests/support/symbol_server.py`)
that counts hits and misbehaves on request; `dif_candidates` must list exactly
the locations the server was asked for, each with what happened there.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import ServerProcess
from tests.support.stacktraces import (
    crash_frame,
    module_of,
    native_debug_path,
    store_source,
    symbolicate,
)
from tests.support.symbol_server import Reply, SymbolServer

BASE = 0x7F00_0000_0000
OTHER_BASE = 0x7F10_0000_0000
NO_FILES = "No object files listed on this source"


def crash_debug(fixtures: dict[str, Any]) -> str:
    """Where the native layout keeps crash's debug companion (by its build id)."""
    return native_debug_path(fixtures, "crash_elf")


def http_source(server: SymbolServer, prefix: str, **extra: Any) -> dict[str, Any]:
    return {"type": "http", "id": "symbols", "url": server.url_for(prefix + "/"), **extra}


def hits_under(server: SymbolServer, prefix: str) -> dict[str, int]:
    """Hits per URL below a test's prefix."""
    return {
        server.url_for(path): count
        for path, count in server.hits.items()
        if path.startswith(prefix + "/")
    }


@pytest.fixture
def client(configured_server: ServerProcess) -> Any:
    with configured_server.client() as http:
        yield http


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A path on the symbol server of this test alone (so no cache entry is shared)."""
    return "".join(ch if ch.isalnum() else "-" for ch in request.node.name).strip("-")


def file_of(fixtures: dict[str, Any], key: str) -> bytes:
    return Path(fixtures[key]["path"]).read_bytes()


def serve_crash_debug(server: SymbolServer, fixtures: dict[str, Any], prefix: str) -> None:
    """Puts crash's debug companion where the native layout looks for it."""
    server.put(f"{prefix}/{crash_debug(fixtures)}", file_of(fixtures, "crash_elf_debug"))


CASES = {
    # case: (what the server answers for crash.debug, module status, frame status,
    #        download status of that candidate)
    "found": ("crash_elf_debug", "found", "symbolicated", "ok"),
    "nothing": (None, "missing", "missing", "notfound"),
    "damaged_dwarf": ("corrupt_debug", "malformed", "malformed", "ok"),
    "garbage": (Reply.garbage(), "malformed", "malformed", "malformed"),
    "server_error": (Reply.status(500), "fetching_failed", "missing", "error"),
    "forbidden": (Reply.status(403), "fetching_failed", "missing", "noperm"),
    "unauthorized": (Reply.status(401), "fetching_failed", "missing", "noperm"),
    "gone": (Reply.status(410), "missing", "missing", "notfound"),
    "stall": (Reply.stall(5), "timeout", "missing", "error"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_module_and_frame_status(
    client: httpx.Client,
    symbol_server: SymbolServer,
    fixtures: dict[str, Any],
    prefix: str,
    case: str,
) -> None:
    served, module_status, frame_status, download_status = CASES[case]
    if isinstance(served, str):
        symbol_server.put(f"{prefix}/{crash_debug(fixtures)}", file_of(fixtures, served))
    elif isinstance(served, Reply):
        symbol_server.misbehave(f"{prefix}/{crash_debug(fixtures)}", served)
    crash = crash_frame(fixtures, "crash_elf", BASE)
    body = {
        "sources": [http_source(symbol_server, prefix)],
        "modules": [module_of(fixtures, "crash_elf", BASE)],
        "stacktraces": [{"frames": [crash]}],
        "options": {"dif_candidates": True},
    }
    result = symbolicate(client, body)

    (frame,) = result["stacktraces"][0]["frames"]
    assert frame["status"] == frame_status
    assert frame["package"] == "/opt/app/crash"
    if frame_status != "symbolicated":
        # A failed frame comes back as it was sent.
        assert frame == {
            "status": frame_status,
            "original_index": 0,
            "instruction_addr": crash["instruction_addr"],
            "package": "/opt/app/crash",
        }
    (module,) = result["modules"]
    assert module["debug_status"] == module_status
    assert module["arch"] == ("x86_64" if module_status == "found" else "unknown")

    candidates = {candidate["location"]: candidate for candidate in module["candidates"]}
    debug_url = symbol_server.url_for(f"{prefix}/{crash_debug(fixtures)}")
    assert candidates[debug_url]["source"] == "symbols"
    assert candidates[debug_url]["download"]["status"] == download_status
    # The candidates are exactly the locations asked for, each asked for once.
    hits = hits_under(symbol_server, prefix)
    assert set(candidates) == set(hits)
    assert set(hits.values()) == {1}
    assert [c["location"] for c in module["candidates"]] == sorted(candidates)
    if download_status == "ok":
        assert candidates[debug_url]["download"]["features"]["has_debug_info"] is True
    if module_status == "found":
        assert candidates[debug_url]["debug"] == {"status": "ok"}
    for location, candidate in candidates.items():
        if location != debug_url and not location.endswith(".src.zip"):
            assert candidate["download"]["status"] == "notfound"
            assert "debug" not in candidate


def test_failed_conversion_marks_its_candidate(
    client: httpx.Client, symbol_server: SymbolServer, fixtures: dict[str, Any], prefix: str
) -> None:
    symbol_server.put(f"{prefix}/{crash_debug(fixtures)}", file_of(fixtures, "corrupt_debug"))
    body = {
        "sources": [http_source(symbol_server, prefix)],
        "modules": [module_of(fixtures, "crash_elf", BASE)],
        "stacktraces": [{"frames": [crash_frame(fixtures, "crash_elf", BASE)]}],
        "options": {"dif_candidates": True},
    }
    (module,) = symbolicate(client, body)["modules"]
    chosen = next(c for c in module["candidates"] if c["location"].endswith(crash_debug(fixtures)))
    assert chosen["debug"] == {"status": "malformed"}


def test_every_frame_status_in_one_request(
    client: httpx.Client, symbol_server: SymbolServer, fixtures: dict[str, Any], prefix: str
) -> None:
    serve_crash_debug(symbol_server, fixtures, prefix)
    body = {
        "sources": [http_source(symbol_server, prefix)],
        "modules": [
            module_of(fixtures, "crash_elf", BASE),
            module_of(fixtures, "shapes_elf", OTHER_BASE),  # nothing served for it
            module_of(fixtures, "rust_elf", OTHER_BASE * 2),  # no frames in it
        ],
        "stacktraces": [
            {
                "frames": [
                    crash_frame(fixtures, "crash_elf", BASE),
                    {"instruction_addr": hex(BASE + 0x10)},  # the ELF header: no symbol
                    {"instruction_addr": hex(OTHER_BASE + 0x1200)},
                    {"instruction_addr": hex(0x1000_0000)},  # below every module
                    {"instruction_addr": hex(BASE + 0x1132)},
                ]
            }
        ],
    }
    result = symbolicate(client, body)
    frames = result["stacktraces"][0]["frames"]
    assert [frame["status"] for frame in frames] == [
        "symbolicated",
        "missing_symbol",
        "missing",
        "unknown_image",
        "symbolicated",
    ]
    assert [frame["original_index"] for frame in frames] == [0, 1, 2, 3, 4]
    assert frames[1]["package"] == "/opt/app/crash"
    assert frames[2]["package"] == "/opt/app/shapes"
    assert "package" not in frames[3]
    assert [module["debug_status"] for module in result["modules"]] == [
        "found",
        "missing",
        "unused",
    ]
    for module in result["modules"]:
        assert "candidates" not in module  # dif_candidates is off
    unused = result["modules"][2]
    assert unused["arch"] == "unknown"
    assert not any(unused["features"].values())
    # Nothing was asked for the unused module.
    assert not any(path.startswith(f"{prefix}/4f/") for path in symbol_server.hits)


def test_no_sources_means_missing(client: httpx.Client, fixtures: dict[str, Any]) -> None:
    body = {
        "sources": [],
        "modules": [module_of(fixtures, "crash_elf", BASE)],
        "stacktraces": [{"frames": [crash_frame(fixtures, "crash_elf", BASE)]}],
        "options": {"dif_candidates": True},
    }
    result = symbolicate(client, body)
    assert result["stacktraces"][0]["frames"][0]["status"] == "missing"
    (module,) = result["modules"]
    assert module["debug_status"] == "missing"
    assert "candidates" not in module


def test_dotnet_modules_are_unsupported(
    client: httpx.Client, symbol_server: SymbolServer, fixtures: dict[str, Any], prefix: str
) -> None:
    serve_crash_debug(symbol_server, fixtures, prefix)
    body = {
        "sources": [http_source(symbol_server, prefix)],
        "modules": [
            module_of(fixtures, "crash_pe", OTHER_BASE, type="pe_dotnet"),
            module_of(fixtures, "crash_elf", BASE),
        ],
        "stacktraces": [
            {
                "frames": [
                    {"instruction_addr": hex(OTHER_BASE + 0x1010)},
                    crash_frame(fixtures, "crash_elf", BASE),
                ]
            }
        ],
        "options": {"dif_candidates": True},
    }
    result = symbolicate(client, body)
    dotnet, native = result["modules"]
    assert dotnet["debug_status"] == "unsupported"
    assert dotnet.get("candidates", []) == []
    assert native["debug_status"] == "found"
    frames = result["stacktraces"][0]["frames"]
    assert [frame["status"] for frame in frames] == ["missing", "symbolicated"]
    # Nothing was looked for on behalf of the .NET module.
    asked = [path for path in symbol_server.hits if path.startswith(prefix + "/")]
    elf_folder = f"{prefix}/{crash_debug(fixtures).split('/')[0]}/"
    assert asked
    assert [path for path in asked if not path.startswith(elf_folder)] == []


def test_a_failure_inside_the_service_is_other_and_not_remembered(
    tmp_path: Path, symbol_server: SymbolServer, fixtures: dict[str, Any], prefix: str
) -> None:
    serve_crash_debug(symbol_server, fixtures, prefix)
    server = ServerProcess(tmp_path / "data", {"connect_to_reserved_ips": True})
    server.start()
    try:
        # Symcaches can no longer be written: their directory is now a file.
        symcaches = tmp_path / "data" / "cache" / "symcaches"
        shutil.rmtree(symcaches, ignore_errors=True)
        symcaches.write_bytes(b"not a directory")
        body = {
            "sources": [http_source(symbol_server, prefix)],
            "modules": [module_of(fixtures, "crash_elf", BASE)],
            "stacktraces": [{"frames": [crash_frame(fixtures, "crash_elf", BASE)]}],
        }
        with server.client() as client:
            result = symbolicate(client, body)
            assert result["modules"][0]["debug_status"] == "other"
            assert result["stacktraces"][0]["frames"][0]["status"] == "missing"
            assert "symbolicate.fetch_failed" in server.log()

            symcaches.unlink()
            symcaches.mkdir()
            again = symbolicate(client, body)
            assert again["modules"][0]["debug_status"] == "found"
            assert again["stacktraces"][0]["frames"][0]["status"] == "symbolicated"
    finally:
        server.stop()


def test_candidates_across_sources(
    client: httpx.Client,
    configured_server: ServerProcess,
    symbol_server: SymbolServer,
    fixtures: dict[str, Any],
    prefix: str,
) -> None:
    """A store with no files for the module is listed as such; the HTTP source that has
    the file is used; candidates are sorted by source id, then location."""
    serve_crash_debug(symbol_server, fixtures, prefix)
    body = {
        "sources": [
            store_source("default", "nothing-uploaded", "a-store"),
            http_source(symbol_server, prefix),
        ],
        "modules": [module_of(fixtures, "crash_elf", BASE)],
        "stacktraces": [{"frames": [crash_frame(fixtures, "crash_elf", BASE)]}],
        "options": {"dif_candidates": True, "apply_source_context": False},
    }
    # A token limited to the (new, empty) project may read it.
    token = configured_server.create_token("default", "nothing-uploaded")
    with configured_server.client(token) as limited:
        result = symbolicate(limited, body)
    (module,) = result["modules"]
    assert module["debug_status"] == "found"
    assert module["candidates"][0] == {
        "source": "a-store",
        "location": NO_FILES,
        "download": {"status": "notfound"},
    }
    sources = [candidate["source"] for candidate in module["candidates"]]
    assert sources == sorted(sources)
    assert set(sources) == {"a-store", "symbols"}


@pytest.mark.parametrize("public", [False, True])
def test_scopes_keep_their_caches_apart_unless_the_source_is_public(
    client: httpx.Client,
    symbol_server: SymbolServer,
    fixtures: dict[str, Any],
    prefix: str,
    public: bool,
) -> None:
    path = f"{prefix}/{crash_debug(fixtures)}"
    symbol_server.put(path, file_of(fixtures, "crash_elf_debug"))
    body = {
        "sources": [http_source(symbol_server, prefix, is_public=public)],
        "modules": [module_of(fixtures, "crash_elf", BASE)],
        "stacktraces": [{"frames": [crash_frame(fixtures, "crash_elf", BASE)]}],
        "options": {"apply_source_context": False},
    }

    def downloads_after(scope: str | None) -> int:
        params = {"scope": scope} if scope is not None else {}
        result = symbolicate(client, body, **params)
        assert result["stacktraces"][0]["frames"][0]["status"] == "symbolicated"
        return symbol_server.hits[path]

    assert downloads_after("tenant-a") == 1
    assert downloads_after("tenant-a") == 1  # cached for that scope
    # Another scope has caches of its own, unless the source is public.
    assert downloads_after("tenant-b") == (1 if public else 2)
    assert downloads_after(None) == (1 if public else 3)  # `global` is a scope too
