"""`Caches` objects in this process, over a real database, real files and local HTTP servers."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from symvault.caches.derived import MEMO_SECONDS
from symvault.caches.service import Caches
from symvault.config import Config
from symvault.metrics import Metrics
from symvault.model.difs import DebugFile
from symvault.model.objects import FileType, ObjectId, ObjectType, file_types_for
from symvault.model.sources import Layout, SourceConfig, parse_sources
from symvault.sources.layouts import layout_paths
from symvault.store.accounts import Accounts
from symvault.store.database import Database
from symvault.store.debug_files import DebugFiles
from symvault.store.detection import detect_file
from symvault.store.filesystem import FilesystemStorage
from tests.conftest import fixture_path
from tests.support.clock import ManualClock
from tests.support.symbol_server import SymbolServer


def paths_of(file_type: FileType, module: ObjectId, layout: str = "native") -> list[str]:
    return layout_paths(Layout(type=layout), file_type, module)  # type: ignore[arg-type]


@dataclass(frozen=True)
class CrashModules:
    """The crash program's modules as stack traces name them, with the ids the build gave them.

    `debug_path` and friends are where a native-layout server keeps the ELF module's files.
    """

    elf: ObjectId
    pe: ObjectId

    def path(self, file_type: FileType, layout: str = "native") -> str:
        return paths_of(file_type, self.elf, layout)[0]

    @property
    def debug_path(self) -> str:
        return self.path(FileType.ELF_DEBUG)

    @property
    def code_path(self) -> str:
        return self.path(FileType.ELF_CODE)

    @property
    def breakpad_path(self) -> str:
        return self.path(FileType.BREAKPAD)

    @property
    def all_paths(self) -> list[str]:
        """Every path a lookup of the ELF module asks a native-layout server for."""
        return [
            path
            for file_type in file_types_for(ObjectType.ELF)
            for path in paths_of(file_type, self.elf)
        ]


@pytest.fixture(scope="session")
def crash(fixtures: dict[str, Any]) -> CrashModules:
    elf, pe = fixtures.get("crash_elf"), fixtures.get("crash_pe")
    if not elf or not pe:
        pytest.skip("the crash fixtures were not built on this machine")
    return CrashModules(
        elf=ObjectId(
            debug_id=elf["debug_id"],
            code_id=elf["code_id"],
            code_file="/opt/app/crash",
            debug_file="/opt/app/crash",
            object_type=ObjectType.ELF,
        ),
        pe=ObjectId(
            debug_id=pe["debug_id"],
            code_id=pe["code_id"],
            code_file="C:\\app\\crash.exe",
            debug_file="C:\\app\\crash.pdb",
            object_type=ObjectType.PE,
        ),
    )


def source(server: SymbolServer | str, source_id: str = "symbols", **fields: Any) -> SourceConfig:
    url = server if isinstance(server, str) else server.url
    return parse_sources([{"type": "http", "id": source_id, "url": url, **fields}])[0]


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


class World:
    """Everything `Caches` needs, built once per test; `caches()` builds (or restarts) it."""

    def __init__(self, tmp_path: Path, clock: ManualClock) -> None:
        self.tmp_path = tmp_path
        self.clock = clock
        self.db = Database(f"sqlite:///{tmp_path}/db.sqlite", lock_dir=tmp_path / "locks")
        self.db.migrate()
        self.storage = FilesystemStorage(tmp_path / "store")
        self.accounts = Accounts(self.db)
        self.debug_files = DebugFiles(self.db, self.storage)
        self.cache_dir = tmp_path / "cache"
        self.metrics = Metrics()
        self._built: list[Caches] = []

    def config(self, **overrides: Any) -> Config:
        raw: dict[str, Any] = {
            "data_dir": str(self.tmp_path / "data"),
            "cache_dir": str(self.cache_dir),
            # 127.0.0.1 (the test servers) is allowed, every other reserved address is not.
            "connect_to_reserved_ips": False,
            "reserved_ip_allowlist": ["127.0.0.1/32"],
            "connect_timeout": 2,
            "streaming_timeout": 0.3,
            "max_download_timeout": 10,
            "download_retries": 2,
            "host_failure_limit": 100,
            "host_block_time": 60,
            "max_download_size": 16 * 1024**2,
        }
        raw.update(overrides)
        return Config.model_validate(raw)

    def caches(self, **overrides: Any) -> Caches:
        """A `Caches` as a server builds it (a new one is a restart: same disk, new process)."""
        built = Caches(
            self.config(**overrides),
            self.metrics,
            self.accounts,
            self.debug_files,
            self.storage,
            clock=self.clock,
        )
        self._built.append(built)
        return built

    def next_lookup(self, seconds: float = 0.0) -> float:
        """Moves the clock past the memo of lookups (and by `seconds` more)."""
        return self.clock.advance(MEMO_SECONDS + 1 + seconds)

    def upload(self, organization: str, project: str, path: Path) -> DebugFile:
        """Stores a file in a project as an upload does; returns its record."""
        self.accounts.create_token(organization, project)
        ref = self.accounts.find_project_by_slugs(organization, project)
        assert ref is not None
        meta = detect_file(path, path.name)[0]
        staged = self.storage.staging_dir() / f"upload-{path.name}"
        shutil.copyfile(path, staged)
        data = path.read_bytes()
        record, _created = self.debug_files.create(
            ref.id, meta, hashlib.sha1(data).hexdigest(), len(data), staged
        )
        return record

    def metric(self, name: str, **labels: str) -> float:
        return sample(self.metrics, name, **labels)

    def computations(self, kind: str) -> float:
        return self.metric("symvault_cache_computations_total", kind=kind)

    def close(self) -> None:
        for built in self._built:
            built.close()
        self.db.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def world(tmp_path: Path, clock: ManualClock) -> Iterator[World]:
    built = World(tmp_path, clock)
    yield built
    built.close()


@pytest.fixture
def symbols() -> Iterator[SymbolServer]:
    with SymbolServer() as server:
        yield server


FixturePath = Callable[[str], Path]


@pytest.fixture
def fixture_file(fixtures: dict[str, Any]) -> FixturePath:
    """The path of a built fixture file by its manifest key."""
    return lambda key: fixture_path(fixtures, key)
