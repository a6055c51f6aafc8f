"""Several real sentry-cli processes uploading the same files at the same time."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.conftest import fixture_path
from tests.support.sentry_cli import SentryCli
from tests.support.server import ServerProcess

UPLOADED = [
    "crash_pdb",
    "crash_pe",
    "shapes_elf",
    "shapes_elf_debug",
    "rust_elf",
    "rust_elf_debug",
    "crash_macho_fat",
    "crash_dsym_arm64",
    "crash_wasm",
    "crash_breakpad",
]
#: Uploads at the same time into one project.
PROCESSES = 2


def _expected_objects(fixtures: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(debug id, object name, arch, kind) of every object in `UPLOADED`."""
    expected = set()
    for key in UPLOADED:
        if key == "crash_macho_fat":
            # sentry-cli uploads each architecture of a fat file on its own.
            for arch_key in ("crash_macho_x86_64", "crash_macho_arm64"):
                entry = fixtures[arch_key]
                expected.add((entry["debug_id"], "crash", entry["arch"], entry["kind"]))
            continue
        entry = fixtures[key]
        name = entry["object_name"]
        if entry["file_format"] == "breakpad":
            name = name.removesuffix(".sym")
        expected.add((entry["debug_id"], name, entry["arch"], entry["kind"]))
    return expected


def _upload_at_once(cli: SentryCli, project: str, paths: list[Path]) -> None:
    def upload(_: int) -> subprocess.CompletedProcess[str]:
        return cli.upload("default", project, *paths)

    with ThreadPoolExecutor(PROCESSES) as pool:
        results = list(pool.map(upload, range(PROCESSES)))
    for result in results:
        assert result.returncode == 0, result.stdout + result.stderr
        assert "ERROR" not in result.stdout, result.stdout


def _stored_files(server: ServerProcess) -> list[Path]:
    return [path for path in (server.data_dir / "store" / "files").rglob("*") if path.is_file()]


def test_same_files_uploaded_twice_at_once_are_stored_once(
    start_server: Callable[..., ServerProcess], fixtures: dict[str, Any]
) -> None:
    server = start_server()
    assert server.token is not None
    cli = SentryCli(server.url, server.token)
    paths = [fixture_path(fixtures, key) for key in UPLOADED]
    expected = _expected_objects(fixtures)

    checksums: set[str] = set()
    # The second project finds every chunk and every file already stored.
    for project in ("first", "second"):
        _upload_at_once(cli, project, paths)

        with server.client() as client:
            response = client.get(
                f"/api/0/projects/default/{project}/files/dsyms/", params={"per_page": 100}
            )
        assert response.status_code == 200
        records = response.json()
        objects = Counter(
            (r["debugId"], r["objectName"], r["cpuName"], r["data"]["type"]) for r in records
        )
        assert set(objects) == expected
        assert all(count == 1 for count in objects.values()), objects
        per_file = Counter((r["sha1"], r["debugId"]) for r in records)
        assert all(count == 1 for count in per_file.values()), per_file
        checksums |= {r["sha1"] for r in records}

        assert len(_stored_files(server)) == len(checksums)
        assert list((server.data_dir / "store" / "tmp").iterdir()) == []
