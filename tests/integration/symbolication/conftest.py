"""Debug files uploaded once per session to the shared server, one project per group.

Tests only read these projects; tests that upload or need another
configuration use their own project or their own server.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fixture_path
from tests.support.sentry_cli import SentryCli
from tests.support.server import ServerProcess
from tests.support.symbol_server import SymbolServer

#: Every format with probes, code file and debug companion side by side.
FORMATS = (
    "crash_elf",
    "crash_elf_debug",
    "shapes_elf",
    "shapes_elf_debug",
    "rust_elf",
    "rust_elf_debug",
    "crash_pe",
    "crash_pdb",
    "crash_macho_x86_64",
    "crash_dsym_x86_64",
    "crash_macho_arm64",
    "crash_dsym_arm64",
)


def upload(
    server: ServerProcess,
    fixtures: dict[str, Any],
    project: str,
    keys: tuple[str, ...],
    extra: tuple[str, ...] = (),
    paths: tuple[Path, ...] = (),
) -> str:
    """Uploads fixture files (and `paths`) in one run of the real sentry-cli; returns
    the project slug."""
    assert server.token is not None
    cli = SentryCli(server.url, server.token)
    files = [fixture_path(fixtures, key) for key in keys] + list(paths)
    result = cli.upload("default", project, *files, extra=extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout, result.stdout
    return project


@pytest.fixture(scope="session")
def formats_project(server: ServerProcess, fixtures: dict[str, Any]) -> str:
    """ELF (C, C++, Rust), PE + PDB and Mach-O + dSYM (x86_64, arm64) of the crash programs."""
    return upload(server, fixtures, "sym-formats", FORMATS)


@pytest.fixture(scope="session")
def breakpad_project(server: ServerProcess, fixtures: dict[str, Any]) -> str:
    """Only the Breakpad symbol file of crash (same debug id as the ELF files)."""
    return upload(server, fixtures, "sym-breakpad", ("crash_breakpad",))


@pytest.fixture(scope="session")
def stripped_project(server: ServerProcess, fixtures: dict[str, Any]) -> str:
    """Only the stripped crash binary: a symbol table, no debug information."""
    return upload(server, fixtures, "sym-stripped", ("crash_elf_stripped",))


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    """A client of the shared server with its admin token."""
    with server.client() as http:
        yield http


#: The project whose uploads the configured server's own `sources` name (for the
#: Mozilla API and requests without `sources`).
CONFIGURED_PROJECT = "configured"


@pytest.fixture(scope="session")
def configured_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server for HTTP sources on this machine, with short timeouts and no retries,
    filesystem sources allowed in requests, and a configured store source."""
    config = {
        "connect_to_reserved_ips": True,
        "download_retries": 0,
        "connect_timeout": 1,
        "streaming_timeout": 1,
        "max_download_timeout": 3,
        # Tests provoke many failures from 127.0.0.1; it must not be skipped for them.
        "host_failure_limit": 1000,
        "symbolication": {"allow_filesystem_sources": True},
        "sources": [
            {
                "type": "store",
                "id": "configured-store",
                "organization": "default",
                "project": CONFIGURED_PROJECT,
            }
        ],
    }
    process = ServerProcess(tmp_path_factory.mktemp("configured") / "data", config)
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="session")
def symbol_server() -> Iterator[SymbolServer]:
    """One hit-counting symbol server; tests use their own path prefix on it."""
    with SymbolServer() as running:
        yield running


@pytest.fixture(scope="session")
def tokens(server: ServerProcess, formats_project: str) -> dict[str, str]:
    """Tokens of the shared server, made at once (each `symvault token create` takes seconds):

    - `other_org`: organization `someone-else`, limited to its project `theirs`;
    - `other_project`: organization `default`, limited to project `limited-elsewhere`;
    - `reader`: organization `default`, limited to the formats project, `project:read` only.
    """
    wanted = {
        "other_org": ("someone-else", "theirs"),
        "other_project": ("default", "limited-elsewhere"),
        "reader": ("default", formats_project, "project:read"),
    }
    with ThreadPoolExecutor(len(wanted)) as pool:
        futures = {name: pool.submit(server.create_token, *args) for name, args in wanted.items()}
        return {name: future.result() for name, future in futures.items()}
