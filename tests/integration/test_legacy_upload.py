"""The legacy single-request upload: `POST .../files/dsyms/` with a `file` part."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fixture_path
from tests.support.sentry_cli import SentryCli
from tests.support.server import ServerProcess

DIF_KEYS = ["crash_macho_fat", "crash_pdb", "crash_wasm"]


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def _upload(client: httpx.Client, project: str, name: str, data: bytes) -> httpx.Response:
    return client.post(
        f"/api/0/projects/default/{project}/files/dsyms/",
        files=[("file", (name, data, "application/octet-stream"))],
    )


def _listed(client: httpx.Client, project: str) -> list[dict[str, Any]]:
    response = client.get(
        f"/api/0/projects/default/{project}/files/dsyms/", params={"per_page": 100}
    )
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()
    return items


def _nothing_recorded(client: httpx.Client, project: str) -> None:
    """A refused upload records nothing, not even the project it named."""
    response = client.get(f"/api/0/projects/default/{project}/files/dsyms/")
    assert response.status_code == 404, response.text
    assert response.json() == {"detail": f"project default/{project} does not exist"}


def _zip(members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def _files_named(root: Path, part: str) -> list[Path]:
    return [path for path in root.rglob("*") if part in path.name]


def test_single_debug_file(client: httpx.Client, project: str, fixtures: dict[str, Any]) -> None:
    pdb = fixtures["crash_pdb"]
    data = fixture_path(fixtures, "crash_pdb").read_bytes()

    response = _upload(client, project, "crash.pdb", data)

    assert response.status_code == 201
    [record] = response.json()
    assert record["objectName"] == "crash.pdb"
    assert record["debugId"] == pdb["debug_id"]
    assert record["cpuName"] == "x86_64"
    assert record["sha1"] == pdb["sha1"]
    assert record["size"] == pdb["size"]
    assert record["symbolType"] == "pdb"
    assert record["data"] == {"type": "dbg", "features": ["debug", "symtab"]}
    assert _listed(client, project) == [record]

    # The same file again creates nothing new.
    again = _upload(client, project, "crash.pdb", data)
    assert again.status_code == 201
    assert again.json() == []
    assert _listed(client, project) == [record]


def test_zip_of_debug_files_and_a_text_file(
    client: httpx.Client, project: str, fixtures: dict[str, Any]
) -> None:
    members: list[tuple[str | zipfile.ZipInfo, bytes]] = [
        (
            f"symbols/{key}/{fixture_path(fixtures, key).name}",
            fixture_path(fixtures, key).read_bytes(),
        )
        for key in DIF_KEYS
    ]
    members.append(("README.txt", fixture_path(fixtures, "notes").read_bytes()))
    members.append((zipfile.ZipInfo("empty-dir/"), b""))

    response = _upload(client, project, "symbols.zip", _zip(members))

    assert response.status_code == 201, response.text
    records = response.json()
    found = {(r["debugId"], r["objectName"], r["cpuName"]) for r in records}
    assert found == {
        (fixtures["crash_macho_x86_64"]["debug_id"], "crash", "x86_64"),
        (fixtures["crash_macho_arm64"]["debug_id"], "crash", "arm64"),
        (fixtures["crash_pdb"]["debug_id"], "crash.pdb", "x86_64"),
        (fixtures["crash_wasm"]["debug_id"], "crash.wasm", "wasm32"),
    }
    assert len(records) == 4
    # Both architectures of the fat file share its contents.
    fat = [r for r in records if r["symbolType"] == "macho"]
    assert {r["sha1"] for r in fat} == {fixtures["crash_macho_fat"]["sha1"]}
    assert {r["id"] for r in _listed(client, project)} == {r["id"] for r in records}


@pytest.mark.parametrize(
    "evil_name",
    ["../evil-{n}", "a/../../evil-{n}", "/tmp/evil-{n}", "\\\\server\\evil-{n}", "C:/evil-{n}"],
)
def test_zip_with_an_unsafe_path_is_refused(
    server: ServerProcess,
    client: httpx.Client,
    project: str,
    fixtures: dict[str, Any],
    evil_name: str,
) -> None:
    name = evil_name.format(n=project)
    archive = _zip(
        [
            ("crash.pdb", fixture_path(fixtures, "crash_pdb").read_bytes()),
            (name, fixture_path(fixtures, "crash_wasm").read_bytes()),
        ]
    )

    response = _upload(client, project, "symbols.zip", archive)

    assert response.status_code == 400
    assert response.json() == {"detail": f"Zip member {name!r} has an unsafe path"}
    # Nothing was written under its name anywhere, nor recorded from the rest of the zip.
    marker = f"evil-{project}"
    assert _files_named(server.data_dir.parent, marker) == []
    for directory in (server.data_dir.parent.parent, Path("/tmp"), Path.cwd(), Path("/")):
        assert not (directory / marker).exists(), directory
    _nothing_recorded(client, project)


def test_zip_bomb_is_refused(
    server: ServerProcess, client: httpx.Client, project: str, fixtures: dict[str, Any]
) -> None:
    archive = _zip(
        [
            ("crash.pdb", fixture_path(fixtures, "crash_pdb").read_bytes()),
            ("bomb.bin", bytes(64 * 1024 * 1024)),
        ]
    )
    assert len(archive) < 1024 * 1024

    response = _upload(client, project, "bomb.zip", archive)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Zip member 'bomb.bin' inflates more than 200 times its compressed size; "
        "refusing it as a zip bomb"
    }
    _nothing_recorded(client, project)
    tmp = server.data_dir / "store" / "tmp"
    assert [p.name for p in tmp.iterdir() if p.name.startswith(("zip-", "part-"))] == []


def test_zip_without_debug_files_is_refused(
    client: httpx.Client, project: str, fixtures: dict[str, Any]
) -> None:
    archive = _zip(
        [
            ("README.txt", fixture_path(fixtures, "notes").read_bytes()),
            ("garbage.bin", fixture_path(fixtures, "garbage").read_bytes()),
        ]
    )

    response = _upload(client, project, "nothing.zip", archive)

    assert response.status_code == 400
    assert response.json() == {"detail": "The zip file contains no debug information files"}


def test_truncated_zip_is_refused(
    client: httpx.Client, project: str, fixtures: dict[str, Any]
) -> None:
    archive = _zip([("crash.pdb", fixture_path(fixtures, "crash_pdb").read_bytes())])

    response = _upload(client, project, "cut.zip", archive[: len(archive) // 2])

    assert response.status_code == 400
    assert response.json()["detail"].startswith("Unsupported debug information file")
    _nothing_recorded(client, project)


def test_zip_with_a_corrupt_member_is_refused(
    client: httpx.Client, project: str, fixtures: dict[str, Any]
) -> None:
    data = fixture_path(fixtures, "crash_pdb").read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("crash.wasm", fixture_path(fixtures, "crash_wasm").read_bytes())
        archive.writestr("crash.pdb", data)
    damaged = bytearray(buffer.getvalue())
    start = bytes(damaged).index(data[:64])
    damaged[start + 5000 : start + 5010] = b"\xaa" * 10  # the CRC no longer matches

    response = _upload(client, project, "damaged.zip", bytes(damaged))

    assert response.status_code == 400
    assert response.json()["detail"].startswith("Zip member 'crash.pdb' is corrupt: ")
    _nothing_recorded(client, project)


def test_source_bundle_is_stored_as_one_file(
    client: httpx.Client,
    sentry_cli: SentryCli,
    project: str,
    fixtures: dict[str, Any],
    tmp_path: Path,
) -> None:
    result = sentry_cli.run(
        "debug-files",
        "bundle-sources",
        str(fixture_path(fixtures, "crash_elf_debug")),
        "-o",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    [bundle] = tmp_path.glob("*.src.zip")

    response = _upload(client, project, bundle.name, bundle.read_bytes())

    assert response.status_code == 201, response.text
    [record] = response.json()
    assert record["symbolType"] == "sourcebundle"
    assert record["debugId"] == fixtures["crash_elf_debug"]["debug_id"]
    assert record["data"]["features"] == ["sources"]
    assert record["objectName"] == bundle.name
    download = client.get(
        f"/api/0/projects/default/{project}/files/dsyms/", params={"id": record["id"]}
    )
    assert download.content == bundle.read_bytes()


def test_unsupported_single_file_is_refused(
    client: httpx.Client, project: str, fixtures: dict[str, Any]
) -> None:
    response = _upload(
        client, project, "garbage.bin", fixture_path(fixtures, "garbage").read_bytes()
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Unsupported debug information file: unsupported object file format"
    }


def test_corrupt_debug_file_is_refused(
    client: httpx.Client, project: str, fixtures: dict[str, Any]
) -> None:
    data = fixture_path(fixtures, "corrupt_debug").read_bytes()
    response = _upload(client, project, "broken.debug", data)
    assert response.status_code == 400
    assert response.json()["detail"].startswith("broken.debug: Invalid debug information file")
    _nothing_recorded(client, project)


def test_zip_with_a_corrupt_debug_file_records_nothing(
    client: httpx.Client, project: str, fixtures: dict[str, Any]
) -> None:
    archive = _zip(
        [
            ("crash.wasm", fixture_path(fixtures, "crash_wasm").read_bytes()),
            ("lib/broken.debug", fixture_path(fixtures, "corrupt_debug").read_bytes()),
        ]
    )

    response = _upload(client, project, "symbols.zip", archive)

    assert response.status_code == 400
    assert response.json()["detail"].startswith("lib/broken.debug: Invalid debug information file")
    _nothing_recorded(client, project)


def test_legacy_upload_must_be_multipart_with_a_file(client: httpx.Client, project: str) -> None:
    path = f"/api/0/projects/default/{project}/files/dsyms/"
    not_multipart = client.post(path, content=b"crash.pdb", headers={"Content-Type": "text/plain"})
    assert not_multipart.status_code == 400
    assert not_multipart.json() == {"detail": "Expected a multipart/form-data body with a boundary"}

    no_file = client.post(path, files=[("other", ("crash.pdb", b"data"))])
    assert no_file.status_code == 400
    assert no_file.json() == {"detail": "The request has no 'file' part"}
