"""Fetch processes (`symbolication.fetch_processes`): the server's children that download
and convert, seen from outside: over HTTP, in /proc, in /metrics.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fixture_path
from tests.support.server import ServerProcess
from tests.support.stacktraces import crash_frame, module_of, native_debug_path
from tests.support.symbol_server import SymbolServer

BASE = 0x7F00_0000_0000


def fetch_children(server: ServerProcess) -> list[int]:
    """Pids of the server's fetch processes (children running `symvault.childpool`)."""
    assert server.process is not None
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == server.process.pid and b"symvault.childpool" in command:
            found.append(int(entry.name))
    return sorted(found)


def counter(metrics: str, name: str, kind: str) -> float:
    match = re.search(rf'^{name}_total{{kind="{kind}"}} (\S+)$', metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
def serving(
    tmp_path: Path, symbol_server: SymbolServer, fixtures: dict[str, Any]
) -> Iterator[tuple[ServerProcess, dict[str, Any]]]:
    """A server with two fetch processes and a request for crash_elf from the symbol server."""
    prefix = f"fetch-processes-{tmp_path.name}"
    relative = native_debug_path(fixtures, "crash_elf")
    symbol_server.put(
        f"{prefix}/{relative}", fixture_path(fixtures, "crash_elf_debug").read_bytes()
    )
    server = ServerProcess(
        tmp_path / "data",
        {"connect_to_reserved_ips": True, "symbolication": {"fetch_processes": 2}},
    )
    server.start()
    assert server.wait_for_fetch_processes() == 2
    body = {
        "sources": [{"type": "http", "id": "symbols", "url": symbol_server.url_for(prefix + "/")}],
        "modules": [module_of(fixtures, "crash_elf", BASE)],
        "stacktraces": [{"frames": [crash_frame(fixtures, "crash_elf", BASE)]}],
        "options": {"apply_source_context": False},
    }
    try:
        yield server, body
    finally:
        server.stop()


def symbolicate(server: ServerProcess, body: dict[str, Any], scope: str) -> dict[str, Any]:
    with server.client() as client:
        response = client.post("/symbolicate", params={"scope": scope}, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["status"] == "completed"
    return result


def test_children_compute_and_the_server_counts_what_they_counted(
    serving: tuple[ServerProcess, dict[str, Any]],
) -> None:
    server, body = serving
    assert len(fetch_children(server)) == 2
    result = symbolicate(server, body, "first")
    assert result["modules"][0]["debug_status"] == "found"
    assert result["stacktraces"][0]["frames"][0]["status"] == "symbolicated"
    with server.client() as client:
        metrics = client.get("/metrics").text
    # The miss was counted in a child and handed over; the server's reading of the
    # entry the child wrote is not a second lookup.
    assert counter(metrics, "symvault_cache_misses", "symcaches") == 1
    assert counter(metrics, "symvault_cache_hits", "symcaches") == 0
    assert counter(metrics, "symvault_cache_computations", "objects") >= 1


def test_killed_children_are_replaced_and_requests_go_on(
    serving: tuple[ServerProcess, dict[str, Any]],
) -> None:
    server, body = serving
    before = fetch_children(server)
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while server.log().count("childpool.child_ended") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.log().count("childpool.child_ended") == 2
    # Until their replacements are ready (no sooner than a few seconds after a child
    # that lived only briefly), the server does the work itself.
    first = symbolicate(server, body, "while-replacing")
    assert first["modules"][0]["debug_status"] == "found"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        after = fetch_children(server)
        if len(after) == 2 and not set(after) & set(before):
            break
        time.sleep(0.2)
    assert len(after) == 2
    assert not set(after) & set(before)
    again = symbolicate(server, body, "after-replacing")
    assert again["stacktraces"][0]["frames"][0]["status"] == "symbolicated"
    assert "childpool.child_ended" in server.log()


def test_stopping_the_server_ends_its_children(
    serving: tuple[ServerProcess, dict[str, Any]],
) -> None:
    server, body = serving
    symbolicate(server, body, "before-stop")
    children = fetch_children(server)
    assert len(children) == 2
    server.stop()
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def test_a_killed_server_leaves_no_children(
    serving: tuple[ServerProcess, dict[str, Any]],
) -> None:
    server, _ = serving
    children = fetch_children(server)
    assert len(children) == 2
    server.kill()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in children):
        time.sleep(0.05)
    # Orphans are reparented and reaped by init once they end.
    assert not [pid for pid in children if _running(pid)]


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
