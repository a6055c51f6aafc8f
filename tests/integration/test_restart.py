"""A server that dies while assembling a file finishes the job after a restart."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import fixture_path
from tests.support.chunks import ChunkClient
from tests.support.server import ServerProcess

JUNK_SIZE = 256 * 1024 * 1024
#: Short, so that the dead server's claim on the job runs out soon.
LEASE_SECONDS = 2


def _objcopy() -> str:
    found = shutil.which("llvm-objcopy") or shutil.which("objcopy")
    if found is None and Path("/usr/lib/llvm-14/bin/llvm-objcopy").exists():
        found = "/usr/lib/llvm-14/bin/llvm-objcopy"
    if found is None:
        pytest.skip("llvm-objcopy is needed to build a large debug file")
    return found


@pytest.fixture
def big_debug_file(fixtures: dict[str, Any], tmp_path: Path) -> Iterator[Path]:
    """crash.debug with 256 MiB of random bytes added as a section: large, and valid."""
    junk = tmp_path / "junk.bin"
    big = tmp_path / "big.debug"
    try:
        with junk.open("wb") as out:
            for _ in range(JUNK_SIZE // (8 * 1024 * 1024)):
                out.write(os.urandom(8 * 1024 * 1024))
        subprocess.run(
            [
                _objcopy(),
                f"--add-section=.junk={junk}",
                str(fixture_path(fixtures, "crash_elf_debug")),
                str(big),
            ],
            check=True,
            capture_output=True,
        )
        junk.unlink()
        yield big
    finally:
        junk.unlink(missing_ok=True)
        big.unlink(missing_ok=True)


def _wait_for_assembly_to_write(server: ServerProcess, timeout: float = 10) -> None:
    """Returns once the server is writing the assembled file (its temporary file grows)."""
    staging = server.data_dir / "store" / "tmp"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in staging.glob("assemble-*"):
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_size > 0:
                    return
        time.sleep(0.002)
    raise AssertionError(f"no assembly started within {timeout}s")


def test_assembly_interrupted_by_a_crash_completes_after_restart(
    start_server: Callable[..., ServerProcess],
    big_debug_file: Path,
    fixtures: dict[str, Any],
) -> None:
    server = start_server({"upload": {"assemble_lease": f"{LEASE_SECONDS}s"}})
    try:
        with server.client() as client:
            uploader = ChunkClient(client, "default", "restart")
            split = uploader.split(big_debug_file)
            assert len(split.chunks) > 30
            uploader.upload_file(split, compress=False)

            assert uploader.assemble_one(split)["state"] == "assembling"
            _wait_for_assembly_to_write(server)
            server.kill()
        assert f"assemble.ok project_id=1 checksum={split.sha1}" not in server.log(), (
            "the file was assembled before the server was killed"
        )

        started = time.monotonic()
        server.start()
        with server.client() as client:
            uploader = ChunkClient(client, "default", "restart")
            entry, states = uploader.poll(split, timeout=60)
            assert set(states[:-1]) <= {"assembling"}
            assert entry["state"] == "ok", entry
            assert time.monotonic() - started < 60
            dif = entry["dif"]
            assert dif["sha1"] == split.sha1
            assert dif["size"] == big_debug_file.stat().st_size
            assert dif["debugId"] == fixtures["crash_elf_debug"]["debug_id"]
            assert f"assemble.resumed project_id=1 checksum={split.sha1}" in server.log()

            digest = hashlib.sha1()
            with client.stream(
                "GET", "/api/0/projects/default/restart/files/dsyms/", params={"id": dif["id"]}
            ) as download:
                assert download.status_code == 200
                for block in download.iter_bytes():
                    digest.update(block)
            assert digest.hexdigest() == split.sha1

            listed = client.get("/api/0/projects/default/restart/files/dsyms/").json()
            assert [item["id"] for item in listed] == [dif["id"]]
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)
