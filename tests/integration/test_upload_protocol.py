"""The chunk-upload and assemble protocol, request by request, over real HTTP.

Each test drives the real server with `tests.support.chunks` so that it can
check every answer (status code and JSON message) and break the rules on
purpose. Limits are tested against a server started with small ones.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import fixture_path
from tests.support.chunks import (
    MULTIPART_TYPE,
    Chunk,
    ChunkClient,
    SplitFile,
    encode_multipart,
    sha1_of,
    split_bytes,
    split_file,
)
from tests.support.server import ServerProcess

SMALL_LIMITS: dict[str, Any] = {
    "upload": {
        "chunk_size": 65536,
        "max_request_size": 196608,
        "chunks_per_request": 4,
        "max_file_size": 200000,
    },
    "server": {"max_json_body": 4096},
}
DATA_TYPES = {"none", "rel", "exe", "lib", "dump", "dbg", "src", "other"}


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with tiny upload limits, shared by the tests of this module."""
    process = ServerProcess(tmp_path_factory.mktemp("small-limits") / "data", SMALL_LIMITS)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def chunks(server: ServerProcess, project: str) -> Iterator[ChunkClient]:
    with server.client() as client:
        yield ChunkClient(client, "default", project)


@pytest.fixture
def small(small_server: ServerProcess, project: str) -> Iterator[ChunkClient]:
    with small_server.client() as client:
        yield ChunkClient(client, "default", project)


def _unique_chunks(split: SplitFile, wanted: list[str]) -> list[Chunk]:
    """One chunk of `split` for each SHA-1 in `wanted`."""
    by_sha1 = {chunk.sha1: chunk for chunk in split.chunks}
    return [by_sha1[sha1] for sha1 in wanted]


def _assert_missing(client: ChunkClient, split: SplitFile, missing: list[str]) -> None:
    entry = client.assemble_one(split)
    assert entry == {"state": "not_found", "missingChunks": missing, "detail": None, "dif": None}


# The options document


def test_options_document(server: ServerProcess, chunks: ChunkClient) -> None:
    response = chunks.http.get(chunks.options_path)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    options = response.json()
    assert options["url"] == f"{server.url}/api/0/organizations/default/chunk-upload/"
    assert options["hashAlgorithm"] == "sha1"
    assert "gzip" in options["compression"]
    for key in ("chunkSize", "chunksPerRequest", "maxRequestSize", "maxFileSize", "maxWait"):
        assert type(options[key]) is int, key
    assert options["chunkSize"] == 8 * 1024**2
    assert options["chunksPerRequest"] == 64
    assert options["maxRequestSize"] >= options["chunkSize"]
    assert options["maxFileSize"] == 2 * 1024**3
    assert type(options["concurrency"]) is int
    assert 1 <= options["concurrency"] <= 255
    assert "debug_files" in options["accept"]


def test_options_follow_the_configured_limits(small: ChunkClient) -> None:
    options = small.options()
    assert options["chunkSize"] == 65536
    assert options["chunksPerRequest"] == 4
    assert options["maxRequestSize"] == 196608
    assert options["maxFileSize"] == 200000


# The assemble state machine


def test_assemble_state_machine(chunks: ChunkClient, fixtures: dict[str, Any]) -> None:
    entry_of = fixtures["crash_elf_debug"]
    # 1 KiB chunks: this file then has repeated chunks, which are asked for once.
    split = split_file(fixture_path(fixtures, "crash_elf_debug"), 1024)
    unique = list(dict.fromkeys(split.chunk_ids))
    assert len(unique) < len(split.chunk_ids)

    _assert_missing(chunks, split, unique)

    half = len(unique) // 2
    assert chunks.upload_chunks(_unique_chunks(split, unique[:half])).status_code == 200
    _assert_missing(chunks, split, unique[half:])

    response = chunks.upload_chunks(_unique_chunks(split, unique[half:]))
    assert response.status_code == 200
    assert response.json() == {}

    started = chunks.assemble_one(split)
    assert started == {"state": "assembling", "missingChunks": [], "detail": None, "dif": None}
    done, states = chunks.poll(split)
    assert set(states[:-1]) <= {"assembling"}
    assert done["state"] == "ok", done
    assert done["missingChunks"] == []
    assert done["detail"] is None
    dif = done["dif"]
    for key in ("id", "objectName", "cpuName", "sha1", "debugId", "uuid", "symbolType"):
        assert isinstance(dif[key], str), key
    assert dif["objectName"] == "crash.debug"
    assert dif["cpuName"] == "x86_64"
    assert dif["sha1"] == split.sha1 == entry_of["sha1"]
    assert dif["debugId"] == entry_of["debug_id"]
    assert dif["uuid"] == entry_of["debug_id"][:36]
    assert dif["codeId"] == entry_of["code_id"]
    assert dif["symbolType"] == "elf"
    assert dif["size"] == entry_of["size"]
    assert dif["headers"] == {"Content-Type": "application/x-elf-binary"}
    assert dif["dateCreated"].endswith("Z")
    assert dif["data"]["type"] in DATA_TYPES
    assert dif["data"] == {"type": "dbg", "features": sorted(entry_of["features"])}

    # Polls after the end repeat the answer; so does asking without chunks.
    assert chunks.assemble_one(split) == done
    assert chunks.assemble_one(split) == done
    response = chunks.assemble({split.sha1: {"name": split.name, "chunks": []}})
    assert response.status_code == 200
    assert response.json() == {split.sha1: done}


def test_answer_holds_exactly_the_requested_files(
    chunks: ChunkClient, fixtures: dict[str, Any]
) -> None:
    stored = chunks.split(fixture_path(fixtures, "crash_wasm"))
    assert chunks.store(stored)["state"] == "ok"
    unknown = split_bytes(os.urandom(3000), 1000, "unknown.bin")
    empty = sha1_of(os.urandom(20))

    response = chunks.assemble(
        {
            stored.sha1: stored.request(),
            unknown.sha1: unknown.request(),
            empty: {"name": "empty.bin", "chunks": []},
        }
    )

    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {stored.sha1, unknown.sha1, empty}
    assert answer[stored.sha1]["state"] == "ok"
    assert answer[stored.sha1]["missingChunks"] == []
    assert answer[stored.sha1]["dif"]["objectName"] == "crash.wasm"
    assert answer[unknown.sha1] == {
        "state": "not_found",
        "missingChunks": unknown.chunk_ids,
        "detail": None,
        "dif": None,
    }
    assert answer[empty] == {"state": "not_found", "missingChunks": [], "detail": None, "dif": None}


def test_empty_chunk_list_is_not_found(chunks: ChunkClient) -> None:
    checksum = sha1_of(os.urandom(64))
    for _poll in range(2):
        response = chunks.assemble({checksum: {"name": "nothing.debug", "chunks": []}})
        assert response.status_code == 200
        assert response.json() == {
            checksum: {"state": "not_found", "missingChunks": [], "detail": None, "dif": None}
        }


def test_debug_id_override_applies_to_the_age_only(
    server: ServerProcess, project: str, fixtures: dict[str, Any]
) -> None:
    pdb = fixtures["crash_pdb"]
    uuid = pdb["debug_id"][:36]
    assert pdb["debug_id"] == f"{uuid}-1"
    with server.client() as client:
        aged = ChunkClient(client, "default", f"{project}-age")
        split = aged.split(fixture_path(fixtures, "crash_pdb"))
        entry = aged.store(split, debug_id=f"{uuid.upper()}-2")
        assert entry["state"] == "ok", entry
        assert entry["dif"]["debugId"] == f"{uuid}-2"
        assert entry["dif"]["uuid"] == uuid

        other = ChunkClient(client, "default", f"{project}-alt")
        foreign = "0123abcd-0000-1111-2222-333344445555-2"
        entry = other.store(split, debug_id=foreign)
        assert entry["state"] == "ok", entry
        assert entry["dif"]["debugId"] == pdb["debug_id"]

        listed = client.get(f"/api/0/projects/default/{project}-age/files/dsyms/").json()
        assert [item["debugId"] for item in listed] == [f"{uuid}-2"]


@pytest.mark.parametrize(
    ("key", "detail"),
    [
        ("crash_macho_fat", "Object contains 2 architectures (1 expected)"),
        ("garbage", "Unsupported debug information file: unsupported object file format"),
        ("notes", "Unsupported debug information file: unsupported object file format"),
        ("truncated", "Invalid debug information file: invalid ELF file"),
    ],
)
def test_files_that_cannot_be_stored_end_in_error(
    chunks: ChunkClient, fixtures: dict[str, Any], key: str, detail: str
) -> None:
    split = chunks.split(fixture_path(fixtures, key))
    entry = chunks.store(split)

    assert entry["state"] == "error"
    assert entry["detail"].startswith(detail), entry
    assert entry["dif"] is None
    assert entry["missingChunks"] == []
    # An error is reported again by later polls, not retried at once.
    assert chunks.assemble_one(split) == entry
    listed = chunks.http.get(f"/api/0/projects/default/{chunks.project}/files/dsyms/")
    assert listed.status_code == 200
    assert listed.json() == []


def test_assembled_content_must_match_the_checksum(
    chunks: ChunkClient, fixtures: dict[str, Any]
) -> None:
    real = chunks.split(fixture_path(fixtures, "shapes_elf_debug"))
    chunks.upload_file(real)
    claimed = SplitFile(real.name, sha1_of(b"something else"), real.size, real.chunks)

    assert chunks.assemble_one(claimed)["state"] == "assembling"
    entry, _states = chunks.poll(claimed)

    assert entry == {
        "state": "error",
        "missingChunks": [],
        "detail": "Reported checksum mismatch",
        "dif": None,
    }
    missing = chunks.http.get(
        f"/api/0/projects/default/{chunks.project}/files/dsyms/unknown/",
        params={"checksums": [claimed.sha1, real.sha1]},
    )
    assert missing.status_code == 200
    assert missing.json() == {"missing": sorted([claimed.sha1, real.sha1])}


def test_file_over_the_maximum_size_is_refused(
    small: ChunkClient, fixtures: dict[str, Any]
) -> None:
    split = small.split(fixture_path(fixtures, "rust_elf"))
    assert split.size > SMALL_LIMITS["upload"]["max_file_size"]

    entry = small.store(split)

    assert entry == {
        "state": "error",
        "missingChunks": [],
        "detail": "File rustapp exceeds maximum size",
        "dif": None,
    }


# Chunk uploads that break the rules


def test_chunk_named_after_other_data_is_refused(chunks: ChunkClient) -> None:
    good = os.urandom(5000)
    bad = os.urandom(5000)
    claimed = sha1_of(os.urandom(5000))

    for field, payload in (("file", bad), ("file_gzip", gzip.compress(bad))):
        response = chunks.post_parts([("file", sha1_of(good), good), (field, claimed, payload)])
        assert response.status_code == 400
        assert response.json() == {"error": "Checksum mismatch"}

    # Nothing of the refused requests was kept, not even the good chunk.
    split = split_bytes(good + bad, 5000, "x.debug")
    _assert_missing(chunks, split, [sha1_of(good), sha1_of(bad)])
    assert chunks.assemble({claimed: {"name": "y", "chunks": [claimed]}}).json()[claimed][
        "missingChunks"
    ] == [claimed]


def test_chunk_name_must_be_a_sha1(chunks: ChunkClient) -> None:
    response = chunks.post_parts([("file", "chunk-1", b"data")])
    assert response.status_code == 400
    assert response.json() == {
        "error": "Invalid chunk name 'chunk-1': it must be the SHA-1 of the chunk"
    }


def test_chunk_as_large_as_the_chunk_size_is_accepted(small: ChunkClient) -> None:
    # Random bytes, but not starting like a JSON, XML or BCSymbolMap file by chance.
    data = b"\0" + os.urandom(65535)
    response = small.post_parts([("file", sha1_of(data), data)])
    assert response.status_code == 200
    split = split_bytes(data, 65536, "exact.bin")
    assert small.assemble_one(split)["state"] == "assembling"
    entry, _states = small.poll(split)
    assert entry["state"] == "error"  # random bytes are no debug file, but all chunks were there
    assert entry["detail"].startswith("Unsupported debug information file")


@pytest.mark.parametrize("field", ["file", "file_gzip"])
def test_chunk_larger_than_the_chunk_size_is_refused(small: ChunkClient, field: str) -> None:
    data = os.urandom(65537) if field == "file" else bytes(65537)
    payload = data if field == "file" else gzip.compress(data)
    checksum = sha1_of(data)

    response = small.post_parts([(field, checksum, payload)])

    assert response.status_code == 400
    assert response.json() == {
        "error": f"Part {field!r} ({checksum!r}) is larger than the limit of 65536 bytes"
    }
    _assert_missing(small, split_bytes(data, 65537, "big.bin"), [checksum])


def test_request_filled_to_the_maximum_is_accepted_despite_gzip_overhead(
    small: ChunkClient,
) -> None:
    # sentry-cli fills requests up to maxRequestSize with uncompressed chunk data; data
    # that does not compress then makes the gzip-compressed body slightly larger.
    pieces = [os.urandom(65536) for _ in range(3)]
    parts = [("file_gzip", sha1_of(piece), gzip.compress(piece)) for piece in pieces]
    body = encode_multipart(parts)
    assert len(body) > 196608

    response = small.http.post(
        small.options_path, content=body, headers={"Content-Type": MULTIPART_TYPE}
    )

    assert response.status_code == 200, response.text
    data = b"".join(pieces)
    entry = small.assemble_one(split_bytes(data, 65536, "pieces.bin"))
    assert entry["missingChunks"] == []
    assert entry["state"] in ("assembling", "error")


def test_request_larger_than_the_maximum_is_refused(small: ChunkClient) -> None:
    pieces = [os.urandom(65536) for _ in range(4)]
    body = encode_multipart([("file", sha1_of(piece), piece) for piece in pieces])
    expected = {"error": "Request is larger than the maximum request size of 196608 bytes"}

    with_length = small.http.post(
        small.options_path, content=body, headers={"Content-Type": MULTIPART_TYPE}
    )
    assert with_length.request.headers["content-length"] == str(len(body))
    assert with_length.status_code == 400
    assert with_length.json() == expected

    def stream() -> Iterator[bytes]:
        for start in range(0, len(body), 16384):
            yield body[start : start + 16384]

    without_length = small.http.post(
        small.options_path, content=stream(), headers={"Content-Type": MULTIPART_TYPE}
    )
    assert "content-length" not in without_length.request.headers
    assert without_length.request.headers["transfer-encoding"] == "chunked"
    assert without_length.status_code == 400
    assert without_length.json() == expected

    data = b"".join(pieces)
    _assert_missing(
        small, split_bytes(data, 65536, "pieces.bin"), [sha1_of(piece) for piece in pieces]
    )


def test_body_far_over_the_maximum_is_refused_before_reading_it(small: ChunkClient) -> None:
    # Beyond the data limit, a body only gets slack for framing: 64 KiB per allowed chunk.
    body = encode_multipart([("ignored", "junk.bin", os.urandom(196608 + 4 * 65536 + 1))])

    response = small.http.post(
        small.options_path, content=body, headers={"Content-Type": MULTIPART_TYPE}
    )

    assert response.status_code == 400
    assert response.json() == {
        "error": "Request is larger than the maximum request size of 458752 bytes"
    }


def test_more_chunks_than_allowed_per_request_are_refused(small: ChunkClient) -> None:
    pieces = [os.urandom(100) for _ in range(5)]

    response = small.post_parts([("file_gzip", sha1_of(p), gzip.compress(p)) for p in pieces])

    assert response.status_code == 400
    assert response.json() == {"error": "Too many files in one request (at most 4 are allowed)"}
    data = b"".join(pieces)
    _assert_missing(small, split_bytes(data, 100, "p.bin"), [sha1_of(p) for p in pieces])


def _gzip_bomb(size: int) -> bytes:
    """A valid gzip stream of `size` zero bytes (a multiple of 1 MiB), about size/1000 long."""
    block = bytes(1024 * 1024)
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor starts afresh, so every further block compresses alike.
    repeated = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(size // len(block)):
        crc = zlib.crc32(block, crc)
    final_empty_block = b"\x03\x00"
    trailer = struct.pack("<II", crc, size & 0xFFFFFFFF)
    return first + repeated * (size // len(block) - 1) + final_empty_block + trailer


def test_gzip_bomb_is_refused_quickly(server: ServerProcess, chunks: ChunkClient) -> None:
    bomb = _gzip_bomb(1024**3)
    assert len(bomb) < 2 * 1024**2
    checksum = hashlib.sha1(b"\0" * (1024 * 1024)).hexdigest()  # any sha1-shaped name

    started = time.monotonic()
    response = chunks.post_parts([("file_gzip", checksum, bomb)])
    elapsed = time.monotonic() - started

    assert response.status_code == 400
    assert response.json() == {
        "error": f"Part 'file_gzip' ({checksum!r}) is larger than the limit of 8388608 bytes"
    }
    # Inflating all of it would take several seconds; the server stops after 8 MiB.
    assert elapsed < 2.0, elapsed
    assert httpx.get(f"{server.url}/healthcheck").text == "ok"
    tmp = server.data_dir / "store" / "tmp"
    assert [path.name for path in tmp.iterdir() if path.name.startswith("part-")] == []


def test_truncated_and_invalid_gzip_are_refused(chunks: ChunkClient) -> None:
    data = os.urandom(20000)
    checksum = sha1_of(data)

    truncated = chunks.post_parts([("file_gzip", checksum, gzip.compress(data)[:-100])])
    assert truncated.status_code == 400
    assert truncated.json() == {
        "error": f"Part 'file_gzip' ({checksum!r}) ends in the middle of its gzip data"
    }

    invalid = chunks.post_parts([("file_gzip", checksum, data)])
    assert invalid.status_code == 400
    assert invalid.json() == {"error": f"Part 'file_gzip' ({checksum!r}) is not valid gzip data"}

    _assert_missing(chunks, split_bytes(data, 20000, "gz.bin"), [checksum])


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "multipart/form-data", "multipart/mixed; boundary=abc"],
)
def test_chunk_upload_must_be_multipart_with_a_boundary(
    chunks: ChunkClient, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = chunks.http.post(chunks.options_path, content=b'{"a": 1}', headers=headers)
    assert response.status_code == 400
    assert response.json() == {"error": "Expected a multipart/form-data body with a boundary"}


def test_multipart_body_without_its_end_is_refused(chunks: ChunkClient) -> None:
    data = os.urandom(1000)
    body = encode_multipart([("file", sha1_of(data), data)])
    cut = body[: body.rindex(b"--symvault")]

    response = chunks.http.post(
        chunks.options_path, content=cut, headers={"Content-Type": MULTIPART_TYPE}
    )

    assert response.status_code == 400
    assert response.json()["error"].startswith("Malformed multipart body")
    _assert_missing(chunks, split_bytes(data, 1000, "cut.bin"), [sha1_of(data)])


# Malformed assemble requests

_SHA = "a" * 40
_WHERE = f"Invalid assemble request: {_SHA!r}"


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ("[]", "Invalid assemble request: the body must be a JSON object"),
        ('"text"', "Invalid assemble request: the body must be a JSON object"),
        (
            '{"abc": {"name": "x", "chunks": []}}',
            "Invalid assemble request: 'abc': keys must be SHA-1 checksums "
            "(40 lowercase hex digits)",
        ),
        (
            f'{{"{"A" * 40}": {{"name": "x", "chunks": []}}}}',
            f"Invalid assemble request: {'A' * 40!r}: keys must be SHA-1 checksums "
            "(40 lowercase hex digits)",
        ),
        (f'{{"{_SHA}": []}}', f"{_WHERE}: the value must be an object"),
        (f'{{"{_SHA}": {{"chunks": []}}}}', f"{_WHERE}: 'name' must be a non-empty string"),
        (
            f'{{"{_SHA}": {{"name": 5, "chunks": []}}}}',
            f"{_WHERE}: 'name' must be a non-empty string",
        ),
        (
            f'{{"{_SHA}": {{"name": "x", "chunks": "{_SHA}"}}}}',
            f"{_WHERE}: 'chunks' must be a list of SHA-1 checksums",
        ),
        (
            f'{{"{_SHA}": {{"name": "x", "chunks": ["{_SHA}", "nope"]}}}}',
            f"{_WHERE}: 'chunks[1]' is not a SHA-1 checksum",
        ),
        (
            f'{{"{_SHA}": {{"name": "x", "chunks": [7]}}}}',
            f"{_WHERE}: 'chunks[0]' is not a SHA-1 checksum",
        ),
        (
            f'{{"{_SHA}": {{"name": "x", "chunks": [], "debug_id": 5}}}}',
            f"{_WHERE}: 'debug_id' must be a string",
        ),
    ],
)
def test_malformed_assemble_request(chunks: ChunkClient, body: str, detail: str) -> None:
    response = chunks.http.post(
        chunks.assemble_path, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json() == {"detail": detail}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "The request body is empty; a JSON document was expected"),
        (b"{not json", "The request body is not valid JSON: "),
        (b"\xff\xfe{}", "The request body is not valid JSON: "),
        (b"[" * 5_000 + b"]" * 5_000, "The request body is nested too deeply"),
    ],
)
def test_assemble_body_must_be_json(chunks: ChunkClient, body: bytes, detail: str) -> None:
    response = chunks.http.post(
        chunks.assemble_path, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith(detail)


def test_assemble_body_over_the_json_limit(small: ChunkClient) -> None:
    body = b'{"' + b"a" * 40 + b'": {"name": "' + b"x" * 5000 + b'", "chunks": []}}'
    expected = {"detail": "The request body is larger than 4096 bytes"}

    response = small.http.post(
        small.assemble_path, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json() == expected

    def stream() -> Iterator[bytes]:
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = small.http.post(
        small.assemble_path, content=stream(), headers={"Content-Type": "application/json"}
    )
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == expected


# Routing


@pytest.mark.parametrize(
    "path",
    [
        "/api/0/nothing/",
        "/api/0/organizations/default/",
        "/api/0/projects/default/x/files/difs/",
    ],
)
def test_unknown_route_is_a_json_404(chunks: ChunkClient, path: str) -> None:
    response = chunks.http.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "Not found"}


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/0/organizations/default/chunk-upload/", {"GET", "HEAD", "POST"}),
        ("GET", "/api/0/projects/default/x/files/difs/assemble/", {"POST"}),
        ("PATCH", "/api/0/projects/default/x/files/dsyms/", {"GET", "HEAD", "DELETE", "POST"}),
        ("POST", "/api/0/projects/default/x/files/dsyms/unknown/", {"GET", "HEAD"}),
    ],
)
def test_wrong_method_is_a_json_405(
    chunks: ChunkClient, method: str, path: str, allowed: set[str]
) -> None:
    response = chunks.http.request(method, path)
    assert response.status_code == 405
    assert response.json() == {"detail": "Method not allowed"}
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


def test_routes_answer_without_the_trailing_slash(chunks: ChunkClient) -> None:
    response = chunks.http.get(chunks.options_path.rstrip("/"))
    assert response.status_code == 200
    assert response.json()["hashAlgorithm"] == "sha1"


def test_head_answers_like_get(chunks: ChunkClient) -> None:
    # The first upload creates the project, so that the listing has something to answer.
    assert chunks.assemble({}).status_code == 200
    listing = f"/api/0/projects/default/{chunks.project}/files/dsyms/"
    for path in (chunks.options_path, listing):
        got = chunks.http.get(path)
        head = chunks.http.head(path)
        assert got.status_code == head.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"] == "application/json"
    assert chunks.http.get(listing).json() == []
