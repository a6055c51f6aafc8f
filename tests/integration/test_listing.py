"""Listing, filtering, downloading and deleting a project's debug files."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import fixture_path
from tests.support.chunks import ChunkClient
from tests.support.sentry_cli import SentryCli
from tests.support.server import ServerProcess

LISTING = "listing"
#: Uploaded one after the other, so listed newest first in reverse order.
UPLOADED = [
    "crash_pdb",
    "crash_pe",
    "shapes_elf_debug",
    "crash_wasm",
    "crash_breakpad",
    "crash_dsym_x86_64",
]
DOWNLOAD_NAMES = {
    "crash_pdb": "crash.pdb",
    "crash_pe": "crash.exe",
    "shapes_elf_debug": "shapes.debug",
    "crash_wasm": "crash.wasm",
    "crash_breakpad": "crash.sym",
    "crash_dsym_x86_64": "crash.dSYM",
}
_LINK = re.compile(r'<([^>]+)>; rel="(\w+)"; results="(true|false)"; cursor="([^"]+)"')


@pytest.fixture(scope="module")
def listed(server: ServerProcess, fixtures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The files of the `listing` project by fixture key, uploaded in `UPLOADED` order."""
    records = {}
    with server.client() as client:
        uploader = ChunkClient(client, "default", LISTING)
        for key in UPLOADED:
            entry = uploader.store(uploader.split(fixture_path(fixtures, key)))
            assert entry["state"] == "ok", (key, entry)
            records[key] = entry["dif"]
    return records


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def _list(client: httpx.Client, project: str = LISTING, **params: Any) -> httpx.Response:
    return client.get(f"/api/0/projects/default/{project}/files/dsyms/", params=params)


def _ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()]


def _links(response: httpx.Response) -> dict[str, tuple[str, bool, str]]:
    """rel -> (url, results, cursor) of the Link header."""
    found = _LINK.findall(response.headers["link"])
    assert len(found) == 2, response.headers["link"]
    return {rel: (url, results == "true", cursor) for url, rel, results, cursor in found}


def test_newest_first(client: httpx.Client, listed: dict[str, dict[str, Any]]) -> None:
    response = _list(client)

    assert response.status_code == 200
    assert _ids(response) == [listed[key]["id"] for key in reversed(UPLOADED)]
    assert response.json() == [listed[key] for key in reversed(UPLOADED)]


def test_pages_follow_the_link_header(
    client: httpx.Client, listed: dict[str, dict[str, Any]]
) -> None:
    everything = [listed[key]["id"] for key in reversed(UPLOADED)]

    first = _list(client, per_page=4)
    assert _ids(first) == everything[:4]
    links = _links(first)
    assert links["previous"][1:] == (False, "0:0:1")
    assert links["next"][1:] == (True, "0:4:0")

    second = client.get(links["next"][0])
    assert _ids(second) == everything[4:]
    links = _links(second)
    assert links["previous"][1:] == (True, "0:0:1")
    assert links["next"][1:] == (False, "0:8:0")
    # The next link keeps the other parameters.
    assert "per_page=4" in links["next"][0]

    back = client.get(links["previous"][0])
    assert _ids(back) == everything[:4]

    pages = []
    url: str | None = f"/api/0/projects/default/{LISTING}/files/dsyms/?per_page=2"
    while url is not None:
        page = client.get(url)
        pages.append(_ids(page))
        url, more, _cursor = _links(page)["next"]
        url = url if more else None
    assert pages == [everything[0:2], everything[2:4], everything[4:6]]


def _pdb_id(fixtures: dict[str, Any]) -> str:
    debug_id: str = fixtures["crash_pdb"]["debug_id"]
    return debug_id


def _shapes_code_id(fixtures: dict[str, Any]) -> str:
    code_id: str = fixtures["shapes_elf_debug"]["code_id"]
    return code_id


#: Filters as functions of the fixture manifest (ids depend on the build).
Filters = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.mark.parametrize(
    ("filters", "keys"),
    [
        (lambda f: {"debug_id": _pdb_id(f)}, ["crash_pe", "crash_pdb"]),
        (
            # Breakpad's spelling: compact, upper case, the age appended.
            lambda f: {"debug_id": _pdb_id(f).replace("-", "").upper()},
            ["crash_pe", "crash_pdb"],
        ),
        # Without its age the PDB's id names another file.
        (lambda f: {"debug_id": _pdb_id(f).rsplit("-", 1)[0]}, []),
        (lambda f: {"code_id": _shapes_code_id(f).upper()}, ["shapes_elf_debug"]),
        (lambda f: {"code_id": f["crash_pe"]["code_id"]}, ["crash_pe"]),
        (lambda _: {"query": "CRASH.PDB"}, ["crash_pdb"]),
        (lambda _: {"query": "Shapes"}, ["shapes_elf_debug"]),
        (
            lambda _: {"query": "crash"},
            ["crash_dsym_x86_64", "crash_breakpad", "crash_wasm", "crash_pe", "crash_pdb"],
        ),
        (lambda _: {"query": "wasm32"}, ["crash_wasm"]),
        (lambda f: {"query": _pdb_id(f).upper()}, ["crash_pe", "crash_pdb"]),
        (lambda f: {"query": _shapes_code_id(f)}, ["shapes_elf_debug"]),
        (lambda f: {"query": f["crash_dsym_x86_64"]["debug_id"][-12:]}, ["crash_dsym_x86_64"]),
        (lambda _: {"query": "no-such-file"}, []),
        (lambda _: {"file_formats": ["pdb", "wasm"]}, ["crash_wasm", "crash_pdb"]),
        (lambda _: {"file_formats": "breakpad"}, ["crash_breakpad"]),
        (lambda _: {"file_formats": "proguard"}, []),
        (lambda f: {"debug_id": _pdb_id(f), "file_formats": "pe"}, ["crash_pe"]),
    ],
)
def test_filters(
    client: httpx.Client,
    listed: dict[str, dict[str, Any]],
    fixtures: dict[str, Any],
    filters: Filters,
    keys: list[str],
) -> None:
    assert _ids(_list(client, **filters(fixtures))) == [listed[key]["id"] for key in keys]


@pytest.mark.parametrize("key", UPLOADED)
def test_download_byte_for_byte(
    client: httpx.Client, listed: dict[str, dict[str, Any]], fixtures: dict[str, Any], key: str
) -> None:
    response = _list(client, id=listed[key]["id"])

    assert response.status_code == 200
    assert response.content == fixture_path(fixtures, key).read_bytes()
    assert response.headers["content-type"] == "application/octet-stream"
    assert (
        response.headers["content-disposition"] == f'attachment; filename="{DOWNLOAD_NAMES[key]}"'
    )


def test_download_of_an_unknown_id_is_404(
    client: httpx.Client, listed: dict[str, dict[str, Any]]
) -> None:
    response = _list(client, id=987654321)
    assert response.status_code == 404
    assert response.json() == {"detail": "debug file 987654321 does not exist in this project"}


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"id": "abc"}, "Query parameter 'id' must be an integer, not 'abc'"),
        ({"id": "-1"}, "Query parameter 'id' must not be negative"),
        ({"per_page": "many"}, "Query parameter 'per_page' must be an integer, not 'many'"),
        ({"id": "1_000"}, "Query parameter 'id' must be an integer, not '1_000'"),
        ({"id": "9" * 30}, f"Query parameter 'id' must be at most {2**63 - 1}"),
        ({"per_page": "9" * 30}, f"Query parameter 'per_page' must be at most {2**63 - 1}"),
        ({"cursor": "bad"}, "Invalid cursor 'bad'"),
        ({"cursor": "0:1.5:0"}, "Invalid cursor '0:1.5:0'"),
        (
            {"cursor": f"0:{'9' * 30}:0"},
            f"Invalid cursor '0:{'9' * 30}:0': the offset is too large",
        ),
        ({"debug_id": "xyz"}, "invalid debug id: 'xyz'"),
        ({"code_id": "not-hex"}, "invalid code id: 'not-hex'"),
    ],
)
def test_invalid_query_values_are_400(
    client: httpx.Client, listed: dict[str, dict[str, Any]], params: dict[str, str], detail: str
) -> None:
    response = _list(client, **params)
    assert response.status_code == 400
    assert response.json() == {"detail": detail}


def test_missing_checksums(
    client: httpx.Client, listed: dict[str, dict[str, Any]], fixtures: dict[str, Any]
) -> None:
    path = f"/api/0/projects/default/{LISTING}/files/dsyms/unknown/"
    known = fixtures["crash_pdb"]["sha1"]
    unknown = "0" * 40

    response = client.get(path, params={"checksums": [known.upper(), unknown, "F" * 40]})
    assert response.status_code == 200
    assert response.json() == {"missing": [unknown, "f" * 40]}

    response = client.get(path)
    assert response.status_code == 200
    assert response.json() == {"missing": []}

    response = client.get(path, params={"checksums": [known, "nope"]})
    assert response.status_code == 400
    assert response.json() == {"detail": "invalid SHA-1 checksum: 'nope'"}


def test_delete_then_upload_again(
    client: httpx.Client, sentry_cli: SentryCli, fixtures: dict[str, Any], project: str
) -> None:
    pdb_path = fixture_path(fixtures, "crash_pdb")
    first = sentry_cli.upload("default", project, pdb_path, fixture_path(fixtures, "crash_wasm"))
    assert first.returncode == 0, first.stdout + first.stderr
    by_name = {item["objectName"]: item for item in _list(client, project).json()}
    pdb_id = by_name["crash.pdb"]["id"]
    dsyms = f"/api/0/projects/default/{project}/files/dsyms/"

    deleted = client.delete(dsyms, params={"id": pdb_id})
    assert deleted.status_code == 204
    assert deleted.content == b""

    gone = {"detail": f"debug file {pdb_id} does not exist in this project"}
    for response in (
        _list(client, project, id=pdb_id),
        client.delete(dsyms, params={"id": pdb_id}),
    ):
        assert response.status_code == 404
        assert response.json() == gone
    assert _ids(_list(client, project)) == [by_name["crash.wasm"]["id"]]
    missing = client.get(f"{dsyms}unknown/", params={"checksums": fixtures["crash_pdb"]["sha1"]})
    assert missing.json() == {"missing": [fixtures["crash_pdb"]["sha1"]]}

    again = sentry_cli.upload("default", project, pdb_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to upload" not in again.stdout
    assert f"OK {fixtures['crash_pdb']['debug_id']} (crash.pdb; x86_64" in again.stdout
    items = {item["objectName"]: item for item in _list(client, project).json()}
    assert set(items) == {"crash.pdb", "crash.wasm"}
    assert int(items["crash.pdb"]["id"]) > int(pdb_id)
    assert items["crash.pdb"]["dateCreated"] > by_name["crash.pdb"]["dateCreated"]
    download = _list(client, project, id=items["crash.pdb"]["id"])
    assert download.content == pdb_path.read_bytes()


def test_ids_of_deleted_files_are_not_reused(
    client: httpx.Client, fixtures: dict[str, Any], project: str
) -> None:
    uploader = ChunkClient(client, "default", project)
    first = uploader.store(uploader.split(fixture_path(fixtures, "crash_wasm")))["dif"]
    newest = uploader.store(uploader.split(fixture_path(fixtures, "crash_breakpad")))["dif"]
    dsyms = f"/api/0/projects/default/{project}/files/dsyms/"
    assert client.delete(dsyms, params={"id": newest["id"]}).status_code == 204

    other = uploader.store(uploader.split(fixture_path(fixtures, "shapes_elf")))["dif"]

    assert int(newest["id"]) > int(first["id"])
    # Sentry's ids are never reused: a client holding the old id (a retried DELETE,
    # a cache keyed by id) must not reach the new file through it.
    assert int(other["id"]) > int(newest["id"])


def test_delete_needs_a_valid_id(client: httpx.Client, listed: dict[str, dict[str, Any]]) -> None:
    dsyms = f"/api/0/projects/default/{LISTING}/files/dsyms/"
    for params, detail in (
        ({}, "Query parameter 'id' is required"),
        ({"id": "abc"}, "Query parameter 'id' must be an integer, not 'abc'"),
        ({"id": "9" * 30}, f"Query parameter 'id' must be at most {2**63 - 1}"),
    ):
        response = client.delete(dsyms, params=params)
        assert response.status_code == 400
        assert response.json() == {"detail": detail}
    assert len(_ids(_list(client))) == len(UPLOADED)


def test_newer_files_with_more_features_replace_older_ones(
    client: httpx.Client,
    sentry_cli: SentryCli,
    fixtures: dict[str, Any],
    project: str,
    tmp_path: Path,
) -> None:
    debug_id = fixtures["crash_elf"]["debug_id"]
    bundled = sentry_cli.run(
        "debug-files",
        "bundle-sources",
        str(fixture_path(fixtures, "crash_elf_debug")),
        "-o",
        str(tmp_path),
    )
    assert bundled.returncode == 0, bundled.stderr
    [bundle] = tmp_path.glob("*.src.zip")

    def names() -> list[str]:
        response = _list(client, project, debug_id=debug_id)
        return [item["objectName"] for item in response.json()]

    steps = [
        (fixture_path(fixtures, "crash_elf"), ["crash"]),
        (bundle, [bundle.name, "crash"]),
        (fixture_path(fixtures, "crash_elf_debug"), ["crash.debug", bundle.name, "crash"]),
        (fixture_path(fixtures, "crash_elf_full"), ["crash.full", bundle.name]),
    ]
    for path, expected in steps:
        result = sentry_cli.upload("default", project, path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert names() == expected, path
    full = _list(client, project, debug_id=debug_id).json()[0]
    assert full["data"]["features"] == ["debug", "symtab", "unwind"]
