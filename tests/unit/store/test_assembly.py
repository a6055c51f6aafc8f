"""The assemble state machine, driven directly with real chunks and a controllable clock."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from symvault.config import UploadConfig
from symvault.metrics import Metrics
from symvault.model.difs import DebugFile
from symvault.store.assembly import Assembler, AssembleRequest, AssembleResult, AssembleState
from symvault.store.chunks import ChunkStore, chunk_key
from symvault.store.database import Database
from symvault.store.debug_files import DebugFiles
from symvault.store.filesystem import FilesystemStorage
from symvault.store.locks import FileLock
from symvault.store.multipart import ReceivedPart
from symvault.store.tables import AssembleTask, utcnow
from tests.conftest import fixture_path
from tests.unit.conftest import ProjectFactory

CHUNK_SIZE = 4096
LEASE = timedelta(hours=1)  # long enough that the heartbeat never runs during a test
ERROR_RETENTION = timedelta(minutes=5)
FINAL = (AssembleState.OK, AssembleState.ERROR)


class Clock:
    """The assembler's notion of now, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Env:
    """An assembler with everything real behind it, and helpers to upload like a client."""

    def __init__(
        self,
        db: Database,
        storage: FilesystemStorage,
        lock: FileLock,
        org: int,
        project: int,
        config: UploadConfig,
    ) -> None:
        self.db = db
        self.storage = storage
        self.org = org
        self.project = project
        self.clock = Clock()
        self.metrics = Metrics()
        self.chunks = ChunkStore(db, storage, lock)
        self.debug_files = DebugFiles(db, storage)
        self.assembled: list[DebugFile] = []
        # Set `gate` to hold each finished job in its callback until the gate opens.
        self.gate: threading.Event | None = None
        self.in_callback = threading.Event()
        self.assembler = Assembler(
            db,
            self.chunks,
            self.debug_files,
            storage,
            config,
            self.metrics,
            on_assembled=self._on_assembled,
            clock=self.clock,
        )

    def _on_assembled(self, record: DebugFile) -> None:
        self.assembled.append(record)
        if self.gate is not None:
            self.in_callback.set()
            assert self.gate.wait(10)

    def upload(
        self, data: bytes, org: int | None = None, only: set[int] | None = None
    ) -> list[str]:
        """Uploads the chunks of `data` (those at the indexes in `only`, if given)."""
        parts, checksums = [], []
        for index, start in enumerate(range(0, max(len(data), 1), CHUNK_SIZE)):
            piece = data[start : start + CHUNK_SIZE]
            digest = hashlib.sha1(piece).hexdigest()
            checksums.append(digest)
            if only is None or index in only:
                path = self.storage.staging_dir() / f"part-{uuid.uuid4().hex}"
                path.write_bytes(piece)
                parts.append(ReceivedPart("file_gzip", digest, digest, len(piece), path))
        self.chunks.save(self.org if org is None else org, parts)
        return checksums

    def assemble(self, request: AssembleRequest, project: int | None = None) -> AssembleResult:
        project_id = self.project if project is None else project
        answers = self.assembler.assemble(project_id, self.org, [request])
        assert list(answers) == [request.checksum]
        return answers[request.checksum]

    def wait(
        self,
        request: AssembleRequest,
        project: int | None = None,
        timeout: float = 10,
        settle: bool = True,
    ) -> AssembleResult:
        """Polls like `sentry-cli --wait` until the file is `ok` or `error`."""
        deadline = time.monotonic() + timeout
        while True:
            answer = self.assemble(request, project)
            if answer.state in FINAL:
                if settle:
                    self.settle()
                return answer
            assert answer.state == AssembleState.ASSEMBLING
            assert time.monotonic() < deadline, "assembly did not finish in time"
            time.sleep(0.01)

    def settle(self) -> None:
        """Lets running jobs finish their bookkeeping (metrics, callbacks).

        Jobs still queued are cancelled (and resumed once their lease runs out).
        """
        self.assembler.stop()
        self.assembler.start()

    def outcomes(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "symvault_assembled_files_total", {"outcome": outcome}
        )
        return value or 0.0

    def task(self, checksum: str, project: int | None = None) -> AssembleTask | None:
        with self.db.read() as session:
            return session.get(
                AssembleTask, (self.project if project is None else project, checksum)
            )


def not_found(answer: AssembleResult) -> list[str]:
    """The missing chunks of a `not_found` answer."""
    assert answer.state == AssembleState.NOT_FOUND
    assert (answer.detail, answer.debug_file) == (None, None)
    return list(answer.missing_chunks)


def request_for(
    data: bytes, name: str, chunks: list[str], debug_id: str | None = None
) -> AssembleRequest:
    return AssembleRequest(hashlib.sha1(data).hexdigest(), name, tuple(chunks), debug_id)


EnvFactory = Callable[..., Env]


@pytest.fixture
def make_env(
    db: Database, storage: FilesystemStorage, tmp_path: Path, make_project: ProjectFactory
) -> Iterator[EnvFactory]:
    started: list[Env] = []
    org, project = make_project("acme", "app")

    def make(**config: Any) -> Env:
        settings = {
            "assemble_lease": LEASE,
            "error_retention": ERROR_RETENTION,
            "assemble_workers": 2,
            **config,
        }
        env = Env(
            db,
            storage,
            FileLock(tmp_path / "locks" / "chunks.lock"),
            org,
            project,
            UploadConfig(**settings),
        )
        env.assembler.start()
        started.append(env)
        return env

    yield make
    for env in started:
        env.assembler.stop()


@pytest.fixture
def env(make_env: EnvFactory) -> Env:
    return make_env()


def fixture_upload(fixtures: dict[str, Any], key: str) -> tuple[bytes, str]:
    path = fixture_path(fixtures, key)
    return path.read_bytes(), path.name


class TestStateMachine:
    def test_missing_chunks_then_assembling_then_ok(
        self, env: Env, fixtures: dict[str, Any]
    ) -> None:
        data, name = fixture_upload(fixtures, "crash_elf_debug")
        chunks = env.upload(data, only={1, 3})
        assert len(chunks) == 4
        request = request_for(data, name, chunks)

        assert not_found(env.assemble(request)) == [chunks[0], chunks[2]]
        # In the order of the request, each once.
        reordered = request_for(data, name, [chunks[2], chunks[3], chunks[0], chunks[2]])
        assert not_found(env.assemble(reordered)) == [chunks[2], chunks[0]]
        assert env.task(request.checksum) is None

        env.upload(data, only={0, 2})
        # `created` would end sentry-cli's wait at once, so it is reported as `assembling`.
        assert env.assemble(request) == AssembleResult(AssembleState.ASSEMBLING)
        answer = env.wait(request)
        assert answer.state == AssembleState.OK
        assert answer.missing_chunks == ()
        assert answer.detail is None
        record = answer.debug_file
        assert record is not None
        entry = fixtures["crash_elf_debug"]
        assert (record.checksum, record.size) == (entry["sha1"], entry["size"])
        assert (record.debug_id, record.file_format) == (entry["debug_id"], "elf")
        assert record.object_name == "crash.debug"
        assert env.assembled == [record]
        assert env.debug_files.find_by_checksum(env.project, entry["sha1"]) == record
        with env.storage.open(record.storage_key) as handle:
            assert handle.read() == data
        assert env.outcomes("ok") == 1
        # Later polls answer from the record, without chunks as well.
        assert env.assemble(request).debug_file == record
        assert env.assemble(request_for(data, name, [])).debug_file == record
        assert list(env.storage.staging_dir().iterdir()) == []

    def test_each_file_of_a_request_gets_its_own_answer(
        self, env: Env, fixtures: dict[str, Any]
    ) -> None:
        pdb, pdb_name = fixture_upload(fixtures, "crash_pdb")
        wasm, wasm_name = fixture_upload(fixtures, "crash_wasm")
        complete = request_for(pdb, pdb_name, env.upload(pdb))
        wasm_chunks = env.upload(wasm, only=set())
        partial = request_for(wasm, wasm_name, wasm_chunks)
        unknown = request_for(b"nothing", "nothing", [])
        answers = env.assembler.assemble(env.project, env.org, [unknown, complete, partial])
        assert list(answers) == [unknown.checksum, complete.checksum, partial.checksum]
        assert not_found(answers[unknown.checksum]) == []
        assert answers[complete.checksum].state == AssembleState.ASSEMBLING
        assert not_found(answers[partial.checksum]) == wasm_chunks
        assert env.wait(complete).state == AssembleState.OK

    def test_no_chunks_and_no_file_is_not_found(self, env: Env) -> None:
        request = request_for(b"never uploaded", "a.debug", [])
        assert not_found(env.assemble(request)) == []

    def test_chunks_of_another_organization_are_missing(
        self, env: Env, fixtures: dict[str, Any], make_project: ProjectFactory
    ) -> None:
        other_org, _ = make_project("globex", "app")
        data, name = fixture_upload(fixtures, "crash_breakpad")
        chunks = env.upload(data, org=other_org)
        assert not_found(env.assemble(request_for(data, name, chunks))) == chunks

    def test_expired_chunks_are_missing(self, env: Env, fixtures: dict[str, Any]) -> None:
        data, name = fixture_upload(fixtures, "crash_breakpad")
        chunks = env.upload(data)
        assert env.chunks.sweep(timedelta(hours=1), now=utcnow() + timedelta(hours=2)) == 1
        assert not_found(env.assemble(request_for(data, name, chunks))) == chunks

    def test_a_file_is_assembled_from_repeated_chunks(self, env: Env) -> None:
        piece = b"BCSymbolMap Version: 2.0\n" + b"_symbol\n" * (CHUNK_SIZE // 8)
        piece = piece[:CHUNK_SIZE]
        data = piece * 3
        chunks = env.upload(data)
        assert len(set(chunks)) == 1
        debug_id = "2d10a6e2-e0e1-3f2c-b25c-d0d0c2c0a1f1"
        answer = env.wait(request_for(data, "a.bcsymbolmap", chunks, debug_id))
        assert answer.debug_file is not None
        assert (answer.debug_file.size, answer.debug_file.file_format) == (len(data), "bcsymbolmap")

    def test_client_debug_id_may_override_the_age(self, env: Env, fixtures: dict[str, Any]) -> None:
        data, name = fixture_upload(fixtures, "crash_pdb")
        uuid_part = fixtures["crash_pdb"]["debug_id"][:36]
        chunks = env.upload(data)
        answer = env.wait(request_for(data, name, chunks, f"{uuid_part}-5"))
        assert answer.debug_file is not None
        assert answer.debug_file.debug_id == f"{uuid_part}-5"


class TestErrors:
    @pytest.mark.parametrize(
        ("key", "detail"),
        [
            ("garbage", "Unsupported debug information file: unsupported object file format"),
            ("crash_macho_fat", "Object contains 2 architectures (1 expected)"),
            ("corrupt_debug", "corrupted dwarf debug data"),
            ("riscv_elf", "its CPU architecture is unknown"),
        ],
    )
    def test_files_that_are_refused(
        self, env: Env, fixtures: dict[str, Any], key: str, detail: str
    ) -> None:
        data, name = fixture_upload(fixtures, key)
        request = request_for(data, name, env.upload(data))
        answer = env.wait(request)
        assert answer.state == AssembleState.ERROR
        assert answer.detail is not None
        assert detail in answer.detail
        assert answer.debug_file is None
        assert env.debug_files.count(env.project) == 0
        assert env.outcomes("error") == 1
        assert env.assembled == []
        assert list(env.storage.staging_dir().iterdir()) == []

    def test_reported_checksum_mismatch(self, env: Env, fixtures: dict[str, Any]) -> None:
        data, name = fixture_upload(fixtures, "crash_breakpad")
        chunks = env.upload(data)
        request = AssembleRequest(hashlib.sha1(b"something else").hexdigest(), name, tuple(chunks))
        answer = env.wait(request)
        assert (answer.state, answer.detail) == (AssembleState.ERROR, "Reported checksum mismatch")

    def test_file_over_the_maximum_size(
        self, make_env: EnvFactory, fixtures: dict[str, Any]
    ) -> None:
        env = make_env(max_file_size=10_000)
        data, name = fixture_upload(fixtures, "crash_elf_debug")
        answer = env.wait(request_for(data, name, env.upload(data)))
        assert answer.state == AssembleState.ERROR
        assert answer.detail == "File crash.debug exceeds maximum size"

    def test_error_is_kept_for_its_retention_then_a_new_attempt_is_allowed(
        self, env: Env, fixtures: dict[str, Any]
    ) -> None:
        data, name = fixture_upload(fixtures, "crash_elf_debug")
        chunks = env.upload(data)
        request = request_for(data, name, chunks)
        # The database still lists a chunk whose file has gone: the job cannot read it.
        env.storage.delete(chunk_key(chunks[2]))
        answer = env.wait(request)
        assert answer == AssembleResult(
            AssembleState.ERROR, detail="Not all chunks available for assembling"
        )

        env.upload(data, only={2})
        env.clock.advance(ERROR_RETENTION - timedelta(seconds=1))
        assert env.assemble(request) == answer
        assert env.outcomes("error") == 1

        env.clock.advance(timedelta(seconds=2))
        assert env.assemble(request).state == AssembleState.ASSEMBLING
        answer = env.wait(request)
        assert answer.state == AssembleState.OK
        assert env.outcomes("error") == 1
        assert env.outcomes("ok") == 1


class TestLeases:
    def insert_task(
        self, env: Env, request: AssembleRequest, state: str, lease_until: datetime | None
    ) -> None:
        with env.db.write() as session:
            session.add(
                AssembleTask(
                    project_id=env.project,
                    checksum=request.checksum,
                    name=request.name,
                    debug_id=request.debug_id,
                    chunks=json.dumps(list(request.chunks)),
                    state=state,
                    lease_until=lease_until,
                    updated_at=env.clock() - timedelta(minutes=1),
                )
            )

    @pytest.mark.parametrize("state", ["created", "assembling"])
    def test_a_dead_process_task_is_resumed(
        self, env: Env, fixtures: dict[str, Any], state: str
    ) -> None:
        data, name = fixture_upload(fixtures, "crash_breakpad")
        request = request_for(data, name, env.upload(data))
        self.insert_task(env, request, state, env.clock() - timedelta(seconds=1))
        assert env.assembler.resume_abandoned() == 1
        answer = env.wait(request)
        assert answer.state == AssembleState.OK
        assert env.outcomes("ok") == 1
        assert env.assembler.resume_abandoned() == 0

    def test_a_live_lease_is_respected_until_it_runs_out(
        self, env: Env, fixtures: dict[str, Any]
    ) -> None:
        data, name = fixture_upload(fixtures, "crash_breakpad")
        request = request_for(data, name, env.upload(data))
        lease_until = env.clock() + timedelta(seconds=30)
        self.insert_task(env, request, "assembling", lease_until)

        assert env.assembler.resume_abandoned() == 0
        for _ in range(3):
            assert env.assemble(request) == AssembleResult(AssembleState.ASSEMBLING)
        time.sleep(0.05)
        task = env.task(request.checksum)
        assert task is not None
        assert (task.state, task.lease_until) == ("assembling", lease_until)
        assert env.debug_files.count(env.project) == 0

        # The other process died: the next poll takes the task over.
        env.clock.advance(timedelta(seconds=31))
        assert env.assemble(request).state == AssembleState.ASSEMBLING
        assert env.wait(request).state == AssembleState.OK

    def test_task_without_a_lease_is_resumed(self, env: Env, fixtures: dict[str, Any]) -> None:
        data, name = fixture_upload(fixtures, "crash_breakpad")
        request = request_for(data, name, env.upload(data))
        self.insert_task(env, request, "created", None)
        assert env.assembler.resume_abandoned() == 1
        assert env.wait(request).state == AssembleState.OK


def poll_at_once(env: Env, request: AssembleRequest, threads: int) -> list[AssembleResult]:
    """Sends the same assemble request from `threads` threads at the same moment."""
    start = threading.Barrier(threads)
    answers: list[AssembleResult] = []
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            start.wait()
            answers.append(env.assemble(request))
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    workers = [threading.Thread(target=poll) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    return answers


def test_concurrent_requests_start_exactly_one_job(env: Env, fixtures: dict[str, Any]) -> None:
    for key in ("crash_elf_debug", "crash_pdb", "crash_wasm"):
        data, name = fixture_upload(fixtures, key)
        request = request_for(data, name, env.upload(data))
        before = env.outcomes("ok")
        answers = poll_at_once(env, request, threads=8)
        assert len(answers) == 8
        assert {a.state for a in answers} <= {AssembleState.ASSEMBLING, AssembleState.OK}
        assert env.wait(request).state == AssembleState.OK
        assert env.outcomes("ok") == before + 1
    assert len(env.assembled) == 3
    assert env.debug_files.count(env.project) == 3


def test_jobs_cancelled_by_stop_run_after_a_restart(
    make_env: EnvFactory, fixtures: dict[str, Any]
) -> None:
    env = make_env(assemble_workers=1)
    env.gate = threading.Event()
    requests = []
    for key in ("crash_breakpad", "crash_pdb", "crash_wasm"):
        data, name = fixture_upload(fixtures, key)
        requests.append(request_for(data, name, env.upload(data)))
    first, *queued = requests
    env.assemble(first)
    assert env.in_callback.wait(10)  # the only worker is busy with the first file
    for request in queued:
        assert env.assemble(request).state == AssembleState.ASSEMBLING

    stopping = threading.Thread(target=env.assembler.stop)
    stopping.start()
    time.sleep(0.2)  # stop() cancels the queued jobs, then waits for the running one
    env.gate.set()
    stopping.join()

    # The same assembler starts again; once the leases of the cancelled jobs have run
    # out, polls hand them to its workers.
    env.assembler.start()
    env.clock.advance(LEASE + timedelta(seconds=1))
    for request in requests:
        assert env.wait(request, settle=False).state == AssembleState.OK
    assert env.debug_files.count(env.project) == 3


def test_ok_survives_the_record_being_cleaned_as_redundant(
    env: Env, fixtures: dict[str, Any]
) -> None:
    old_data, old_name = fixture_upload(fixtures, "crash_elf_debug")
    old_request = request_for(old_data, old_name, env.upload(old_data))
    old = env.wait(old_request).debug_file
    assert old is not None

    # The same debug id with a superset of the features makes the first file redundant.
    new_data, new_name = fixture_upload(fixtures, "crash_elf_full")
    new = env.wait(request_for(new_data, new_name, env.upload(new_data))).debug_file
    assert new is not None
    assert new.debug_id == old.debug_id
    assert env.debug_files.get(env.project, old.id) is None

    # A client still polling for the first file is told it is ok, with its record.
    answer = env.assemble(old_request)
    assert answer == AssembleResult(AssembleState.OK, debug_file=old)
    assert env.outcomes("ok") == 2


def test_forget_lets_a_deleted_file_be_uploaded_again(env: Env, fixtures: dict[str, Any]) -> None:
    data, name = fixture_upload(fixtures, "crash_breakpad")
    request = request_for(data, name, env.upload(data))
    first = env.wait(request).debug_file
    assert first is not None

    env.debug_files.delete(env.project, first.id)
    # Without forgetting, the finished task still answers for the deleted file.
    assert env.assemble(request) == AssembleResult(AssembleState.OK, debug_file=first)

    env.assembler.forget(env.project, request.checksum)
    assert env.task(request.checksum) is None
    assert env.assemble(request).state == AssembleState.ASSEMBLING
    second = env.wait(request).debug_file
    assert second is not None
    assert env.debug_files.find_by_checksum(env.project, request.checksum) == second
    assert env.outcomes("ok") == 2


def test_forget_leaves_pending_tasks_alone(env: Env, fixtures: dict[str, Any]) -> None:
    data, name = fixture_upload(fixtures, "crash_breakpad")
    request = request_for(data, name, env.upload(data))
    with env.db.write() as session:
        session.add(
            AssembleTask(
                project_id=env.project,
                checksum=request.checksum,
                name=name,
                chunks=json.dumps(list(request.chunks)),
                state="assembling",
                lease_until=env.clock() + timedelta(minutes=1),
                updated_at=env.clock(),
            )
        )
    env.assembler.forget(env.project, request.checksum)
    task = env.task(request.checksum)
    assert task is not None
    assert task.state == "assembling"


def test_another_project_reuses_stored_contents_after_chunks_expired(
    env: Env, fixtures: dict[str, Any], make_project: ProjectFactory
) -> None:
    data, name = fixture_upload(fixtures, "crash_pdb")
    chunks = env.upload(data)
    first = env.wait(request_for(data, name, chunks)).debug_file
    assert first is not None
    env.chunks.sweep(timedelta(hours=1), now=utcnow() + timedelta(hours=2))
    assert env.chunks.available(chunks) == {}

    # The organization uploaded these chunks once, and the contents are stored.
    _, other_project = make_project("acme", "other")
    answer = env.wait(request_for(data, name, chunks), project=other_project)
    assert answer.state == AssembleState.OK
    second = answer.debug_file
    assert second is not None
    assert second.project_id == other_project
    assert second.storage_key == first.storage_key
    with env.db.read() as session:
        tasks = session.scalars(select(AssembleTask.project_id)).all()
    assert sorted(tasks) == sorted([env.project, other_project])
