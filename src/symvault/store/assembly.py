"""Assembling uploaded chunks into debug files: the assemble state machine.

Every (project, checksum) pair has at most one `assemble_tasks` row, and every
answer to the assemble endpoint is read from it, so polls are idempotent and a
second concurrent upload of the same file finds the first one's task instead
of starting another:

```
        (no row) --all chunks owned--> created --worker picks it--> assembling
                                                                     |      |
                                                                     ok   error
```

A process owns the tasks it has queued or is running and renews their lease
(`lease_until`) from a heartbeat thread. A task whose lease has run out
belongs to a process that died: the heartbeat of any live process, or the
next poll, claims it with a conditional UPDATE and runs it again. Failed
tasks are reported for `error_retention`, then a new attempt is allowed.

Assembly streams the chunks into a temporary file while hashing, so memory
use does not depend on the file size, then detects what the file is and
records it in the project.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from sqlalchemy import delete, select, tuple_, update

from symvault.config import UploadConfig
from symvault.errors import DebugFileError
from symvault.logs import log_event
from symvault.metrics import Metrics
from symvault.model.difs import DebugFile
from symvault.store.chunks import ChunkStore
from symvault.store.database import Database, insert_ignore
from symvault.store.debug_files import DebugFiles, StoredContent
from symvault.store.detection import detect_file
from symvault.store.storage import Storage
from symvault.store.tables import AssembleTask, utcnow
from symvault.store.validation import admit

__all__ = ["AssembleRequest", "AssembleResult", "AssembleState", "Assembler"]

logger = logging.getLogger(__name__)

_COPY_BLOCK = 1024 * 1024
_PENDING = ("created", "assembling")


class AssembleState(StrEnum):
    NOT_FOUND = "not_found"
    CREATED = "created"
    ASSEMBLING = "assembling"
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True)
class AssembleRequest:
    """One file of an assemble request."""

    checksum: str
    name: str
    chunks: tuple[str, ...]
    debug_id: str | None = None


@dataclass(frozen=True)
class AssembleResult:
    state: AssembleState
    missing_chunks: Sequence[str] = ()
    detail: str | None = None
    debug_file: DebugFile | None = None


TaskKey = tuple[int, str]


class _KnownChunks:
    """Which chunks of a request the organization owns and the server still has.

    Loaded once per request, for all its files; a file whose contents are already
    stored does not need its chunks, only proof of ownership.
    """

    def __init__(
        self,
        chunks: ChunkStore,
        debug_files: DebugFiles,
        organization_id: int,
        requests: Sequence[AssembleRequest],
    ) -> None:
        every_chunk = {chunk for request in requests for chunk in request.chunks}
        self._owned = chunks.owned(organization_id, every_chunk)
        self._available = chunks.available(every_chunk)
        self._stored = debug_files.stored_checksums([request.checksum for request in requests])

    def missing(self, request: AssembleRequest) -> list[str]:
        missing = [chunk for chunk in request.chunks if chunk not in self._owned]
        if not missing and request.checksum not in self._stored:
            missing = [chunk for chunk in request.chunks if chunk not in self._available]
        return list(dict.fromkeys(missing))


class Assembler:
    """Answers assemble requests and runs assembly jobs on a bounded thread pool."""

    def __init__(
        self,
        db: Database,
        chunks: ChunkStore,
        debug_files: DebugFiles,
        storage: Storage,
        config: UploadConfig,
        metrics: Metrics,
        on_assembled: Callable[[DebugFile], None] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._db = db
        self._chunks = chunks
        self._debug_files = debug_files
        self._storage = storage
        self._config = config
        self._metrics = metrics
        self._on_assembled = on_assembled
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._owned: set[TaskKey] = set()
        self._owned_lock = threading.Lock()
        self._stopping = threading.Event()
        self._heartbeat: threading.Thread | None = None

    # Lifecycle

    def start(self) -> None:
        """Starts the workers and the heartbeat, and resumes abandoned tasks."""
        self._executor = ThreadPoolExecutor(
            max_workers=self._config.assemble_workers, thread_name_prefix="assemble"
        )
        self._stopping.clear()
        self._heartbeat = threading.Thread(
            target=self._heartbeat_loop, name="assemble-heartbeat", daemon=True
        )
        self._heartbeat.start()
        self.resume_abandoned()

    def stop(self) -> None:
        """Stops taking work; running jobs finish, queued ones are left to other processes."""
        self._stopping.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        with self._owned_lock:
            # Jobs cancelled above never ran: this process no longer owns their tasks,
            # so that whoever claims them once their lease runs out (this process too,
            # if started again) runs them.
            self._owned.clear()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
            self._heartbeat = None

    # The endpoint

    def assemble(
        self, project_id: int, organization_id: int, requests: Sequence[AssembleRequest]
    ) -> dict[str, AssembleResult]:
        """Answers one assemble request, starting jobs for files ready to be assembled.

        What the answers depend on is read with a few queries for the whole request
        (sentry-cli sends every file of an upload in one), and new tasks are created in
        one transaction.
        """
        checksums = [request.checksum for request in requests]
        records = self._debug_files.newest_by_checksum(project_id, checksums)
        tasks = self._load_tasks(project_id, checksums)
        known = _KnownChunks(self._chunks, self._debug_files, organization_id, requests)
        results: dict[str, AssembleResult] = {}
        ready: list[AssembleRequest] = []
        for request in requests:
            record = records.get(request.checksum)
            if record is not None:
                results[request.checksum] = AssembleResult(AssembleState.OK, debug_file=record)
                continue
            task = tasks.get(request.checksum)
            if task is not None:
                answer = self._answer_from_task((project_id, request.checksum), task)
                if answer is not None:
                    results[request.checksum] = answer
                    continue
            if not request.chunks:
                results[request.checksum] = AssembleResult(AssembleState.NOT_FOUND)
                continue
            missing = known.missing(request)
            if missing:
                results[request.checksum] = AssembleResult(
                    AssembleState.NOT_FOUND, missing_chunks=missing
                )
                continue
            ready.append(request)
        results.update(self._create_tasks(project_id, ready))
        return {checksum: results[checksum] for checksum in checksums}

    def _create_tasks(
        self, project_id: int, requests: Sequence[AssembleRequest]
    ) -> dict[str, AssembleResult]:
        if not requests:
            return {}
        now = self._clock()
        created: list[TaskKey] = []
        with self._db.write() as session:
            for request in requests:
                inserted = insert_ignore(
                    session,
                    AssembleTask,
                    [
                        {
                            "project_id": project_id,
                            "checksum": request.checksum,
                            "name": request.name,
                            "debug_id": request.debug_id,
                            "chunks": json.dumps(list(request.chunks)),
                            "state": AssembleState.CREATED.value,
                            "lease_until": now + self._config.assemble_lease,
                            "updated_at": now,
                        }
                    ],
                    ["project_id", "checksum"],
                )
                if inserted:
                    created.append((project_id, request.checksum))
        for key in created:
            self._submit(key)
        results = {key[1]: AssembleResult(AssembleState.ASSEMBLING) for key in created}
        # Files another upload created meanwhile: answer from their task.
        others = [request.checksum for request in requests if request.checksum not in results]
        for checksum, task in self._load_tasks(project_id, others).items():
            answer = self._answer_from_task((project_id, checksum), task)
            results[checksum] = answer or AssembleResult(AssembleState.ASSEMBLING)
        for checksum in others:
            results.setdefault(checksum, AssembleResult(AssembleState.NOT_FOUND))
        return results

    def _answer_from_task(self, key: TaskKey, task: AssembleTask) -> AssembleResult | None:
        """The answer a persisted task gives, or None if it no longer counts."""
        now = self._clock()
        if task.state == AssembleState.ERROR:
            if task.updated_at + self._config.error_retention > now:
                return AssembleResult(AssembleState.ERROR, detail=task.detail)
            self._forget_task(key, task.state)
            return None
        if task.state == AssembleState.OK:
            record = self._debug_files.find_by_checksum(*key)
            if record is None and task.result:
                # A newer upload covering the same features made it redundant.
                record = DebugFile.from_dict(json.loads(task.result))
            if record is not None:
                return AssembleResult(AssembleState.OK, debug_file=record)
            self._forget_task(key, task.state)
            return None
        if task.lease_until is None or task.lease_until < now:
            self._claim(key)
        # Queued (`created`) tasks are reported as `assembling` too: sentry-cli takes
        # `created` in its first answer as final and would never report the outcome.
        return AssembleResult(AssembleState.ASSEMBLING)

    # Task rows

    def _load_task(self, key: TaskKey) -> AssembleTask | None:
        with self._db.read() as session:
            return session.get(AssembleTask, key)

    def _load_tasks(self, project_id: int, checksums: Sequence[str]) -> dict[str, AssembleTask]:
        found: dict[str, AssembleTask] = {}
        with self._db.read() as session:
            for start in range(0, len(checksums), 500):
                batch = list(checksums[start : start + 500])
                found.update(
                    (task.checksum, task)
                    for task in session.scalars(
                        select(AssembleTask).where(
                            AssembleTask.project_id == project_id,
                            AssembleTask.checksum.in_(batch),
                        )
                    )
                )
        return found

    def _forget_task(self, key: TaskKey, state: str | None = None) -> None:
        condition = (AssembleTask.project_id == key[0]) & (AssembleTask.checksum == key[1])
        if state is not None:
            condition &= AssembleTask.state == state
        with self._db.write() as session:
            session.execute(delete(AssembleTask).where(condition))

    def forget(self, project_id: int, checksum: str) -> None:
        """Drops the finished upload state of a file, so that uploading it again stores it.

        Called when a debug file is deleted on purpose.
        """
        with self._db.write() as session:
            session.execute(
                delete(AssembleTask).where(
                    AssembleTask.project_id == project_id,
                    AssembleTask.checksum == checksum,
                    AssembleTask.state.in_([AssembleState.OK.value, AssembleState.ERROR.value]),
                )
            )

    def _set_state(
        self,
        key: TaskKey,
        state: AssembleState,
        detail: str | None = None,
        record: DebugFile | None = None,
    ) -> None:
        with self._db.write() as session:
            session.execute(
                update(AssembleTask)
                .where(AssembleTask.project_id == key[0], AssembleTask.checksum == key[1])
                .values(
                    state=state.value,
                    detail=detail,
                    result=json.dumps(record.to_dict()) if record is not None else None,
                    updated_at=self._clock(),
                    lease_until=None
                    if state in (AssembleState.OK, AssembleState.ERROR)
                    else self._clock() + self._config.assemble_lease,
                )
            )

    def _claim(self, key: TaskKey) -> bool:
        """Takes over a pending task whose lease ran out; True if this process got it."""
        now = self._clock()
        with self._db.write() as session:
            result = session.execute(
                update(AssembleTask)
                .where(
                    AssembleTask.project_id == key[0],
                    AssembleTask.checksum == key[1],
                    AssembleTask.state.in_(_PENDING),
                    (AssembleTask.lease_until.is_(None)) | (AssembleTask.lease_until < now),
                )
                .values(lease_until=now + self._config.assemble_lease)
            )
            claimed = bool(getattr(result, "rowcount", 0))
        if claimed:
            log_event(logger, "assemble.resumed", project_id=key[0], checksum=key[1])
            self._submit(key)
        return claimed

    def resume_abandoned(self) -> int:
        """Claims and restarts pending tasks whose lease has run out."""
        with self._db.read() as session:
            expired = session.execute(
                select(AssembleTask.project_id, AssembleTask.checksum)
                .where(
                    AssembleTask.state.in_(_PENDING),
                    (AssembleTask.lease_until.is_(None))
                    | (AssembleTask.lease_until < self._clock()),
                )
                .limit(100)
            ).all()
        return sum(self._claim((project_id, checksum)) for project_id, checksum in expired)

    # Jobs

    def _submit(self, key: TaskKey) -> None:
        executor = self._executor
        if executor is None or self._stopping.is_set():
            return  # Not running: the lease runs out and another process takes it.
        with self._owned_lock:
            if key in self._owned:
                return
            self._owned.add(key)
        try:
            executor.submit(self._run, key)
        except RuntimeError:  # shut down meanwhile
            with self._owned_lock:
                self._owned.discard(key)

    def _run(self, key: TaskKey) -> None:
        try:
            task = self._load_task(key)
            if task is None or task.state not in _PENDING:
                return
            self._set_state(key, AssembleState.ASSEMBLING)
            try:
                record = self._assemble_task(task)
            except DebugFileError as exc:
                log_event(logger, "assemble.failed", checksum=key[1], detail=str(exc))
                self._set_state(key, AssembleState.ERROR, detail=str(exc))
                self._metrics.assembled.labels("error").inc()
                return
            except Exception:
                logger.exception("assemble.crashed checksum=%s", key[1])
                self._set_state(
                    key, AssembleState.ERROR, detail="Internal error while assembling the file"
                )
                self._metrics.assembled.labels("error").inc()
                return
            self._set_state(key, AssembleState.OK, record=record)
            self._metrics.assembled.labels("ok").inc()
            log_event(
                logger,
                "assemble.ok",
                project_id=key[0],
                checksum=key[1],
                debug_id=record.debug_id,
                size=record.size,
            )
            if self._on_assembled is not None:
                self._on_assembled(record)
        finally:
            with self._owned_lock:
                self._owned.discard(key)

    def _assemble_task(self, task: AssembleTask) -> DebugFile:
        chunks: list[str] = json.loads(task.chunks)
        stored = self._debug_files.find_stored(task.checksum)
        if stored is not None:
            local = self._storage.local_path(stored.storage_key)
            if local is not None and local.exists():
                return self._record(task, local, stored, stored.size)
        path, size = self._concatenate(task.name, task.checksum, chunks)
        try:
            return self._record(task, path, path, size)
        finally:
            path.unlink(missing_ok=True)

    def _record(
        self, task: AssembleTask, path: Path, source: Path | StoredContent, size: int
    ) -> DebugFile:
        metas = detect_file(path, task.name, task.debug_id)
        if len(metas) != 1:
            raise DebugFileError(f"Object contains {len(metas)} architectures (1 expected)")
        admit(path, metas[0], size, self._config.validate_max_size)
        record, _created = self._debug_files.create(
            task.project_id, metas[0], task.checksum, size, source
        )
        self._debug_files.clean_redundant(task.project_id, record.debug_id)
        return record

    def _concatenate(self, name: str, checksum: str, chunks: Sequence[str]) -> tuple[Path, int]:
        """Writes the chunks, in order, to a temporary file while hashing them."""
        sizes = self._chunks.available(chunks)
        if any(chunk not in sizes for chunk in chunks):
            raise DebugFileError("Not all chunks available for assembling")
        total = sum(sizes[chunk] for chunk in chunks)
        if total > self._config.max_file_size:
            raise DebugFileError(f"File {name} exceeds maximum size")
        fd, raw_path = tempfile.mkstemp(prefix="assemble-", dir=self._storage.staging_dir())
        path = Path(raw_path)
        digest = hashlib.sha1(usedforsecurity=False)
        buffer = bytearray(_COPY_BLOCK)
        view = memoryview(buffer)
        try:
            with os.fdopen(fd, "wb") as out, self._chunks.reading():
                for chunk in chunks:
                    try:
                        source = self._chunks.open(chunk)
                    except FileNotFoundError as exc:
                        raise DebugFileError("Not all chunks available for assembling") from exc
                    with source:
                        while count := source.readinto(buffer):
                            digest.update(view[:count])
                            out.write(view[:count])
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        if digest.hexdigest() != checksum:
            path.unlink(missing_ok=True)
            raise DebugFileError("Reported checksum mismatch")
        return path, total

    # Heartbeat

    def _heartbeat_loop(self) -> None:
        interval = max(self._config.assemble_lease.total_seconds() / 3, 0.2)
        while not self._stopping.wait(interval):
            try:
                self._renew_leases()
                self.resume_abandoned()
            except Exception:
                logger.exception("assemble.heartbeat_failed")

    def _renew_leases(self) -> None:
        with self._owned_lock:
            owned = sorted(self._owned)
        if not owned:
            return
        until = self._clock() + self._config.assemble_lease
        with self._db.write() as session:
            for start in range(0, len(owned), 200):
                batch = owned[start : start + 200]
                session.execute(
                    update(AssembleTask)
                    .where(
                        tuple_(AssembleTask.project_id, AssembleTask.checksum).in_(batch),
                        AssembleTask.state.in_(_PENDING),
                    )
                    .values(lease_until=until)
                )
