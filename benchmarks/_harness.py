"""Shared helpers for the benchmark scripts in this directory.

A benchmark starts the real server (`python -m symvault serve`) as a subprocess with a fresh
data directory, drives it with an HTTP client or the real `sentry-cli`, watches the server
process through /proc, and writes a small JSON result to `benchmarks/results/`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
FIXTURES_OUT = ROOT / "tests" / "fixtures" / "build"
LLVM_BIN = Path("/usr/lib/llvm-14/bin")
MIB = 1024 * 1024
GIB = 1024 * MIB
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

_TOKEN = re.compile(r"^\s{4}([0-9a-f]{64})\s*$", re.MULTILINE)
_SERVER_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) (\S+)(.*)$")
_CLI_LINE = re.compile(
    r"^\s*[A-Z]+\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d+) ([+-]\d\d:\d\d) (.*)$"
)
_REQUEST = re.compile(r"^> (GET|POST|PUT|DELETE) (\S+) HTTP/")


# The server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """`symvault serve` in a subprocess, with its own data directory, config and log file."""

    def __init__(
        self,
        data_dir: Path,
        config: dict[str, Any] | None = None,
        environment: dict[str, str | None] | None = None,
    ) -> None:
        """`environment`: variables set (or, if None, removed) for the server process."""
        self.data_dir = data_dir
        self.environment = environment or {}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = data_dir.parent / f"{data_dir.name}.yml"
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.config_path.write_text(yaml.safe_dump(config or {}))
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "store" / "tmp"

    def chunk_path(self, checksum: str) -> Path:
        return self.data_dir / "store" / "chunks" / checksum[:2] / checksum[2:]

    def start(self, timeout: float = 60.0) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "symvault",
                    "serve",
                    "--config",
                    str(self.config_path),
                    "--data-dir",
                    str(self.data_dir),
                    "--bind",
                    f"127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=server_environment(self.environment),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthcheck", timeout=1).text == "ok":
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        else:
            raise RuntimeError(f"server did not start:\n{self.log()}")
        self._await_fetch_processes(deadline)
        match = _TOKEN.search(self.log())
        if match is None:
            raise RuntimeError(f"no admin token in the server output:\n{self.log()}")
        self.token = match.group(1)

    def _await_fetch_processes(self, deadline: float) -> None:
        """Waits until the fetch processes are ready: they start in the background, and
        until then the server fetches in its own threads, which is not what is measured."""
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{self.url}/metrics", timeout=5).text
            if _gauge(metrics, "symvault_fetch_processes") >= _gauge(
                metrics, "symvault_fetch_processes_configured"
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the fetch processes did not start:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def ended_unexpectedly(self, grace: float = 15.0) -> bool:
        """True if the process ended (or is ending) although `stop` was not called."""
        if self.process is None:
            return False
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            return False
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=600
        )

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=30).text


def _gauge(metrics: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", metrics, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def server_environment(changes: dict[str, str | None] | None = None) -> dict[str, str]:
    """The server's environment: this one, unbuffered, with a bytecode cache, and `changes`
    (a None value removes a variable).

    This machine sets PYTHONDONTWRITEBYTECODE and the project environment holds no .pyc
    files, so every server process would compile each module it imports, at start-up and
    on first use of lazily imported modules (demangle's language modules: 0.1-0.2 s on the
    first symbolication request). Installed services have their bytecode compiled, so the
    server writes and reads it under the work directory (PYTHONPYCACHEPREFIX), leaving the
    project environment untouched.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(default_workdir() / "pycache")
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@contextlib.contextmanager
def running_server(
    data_dir: Path,
    config: dict[str, Any] | None = None,
    environment: dict[str, str | None] | None = None,
) -> Iterator[Server]:
    """A started server (`Server`'s arguments) whose data directory and config are removed
    afterwards.

    Raises `RunDisturbed` if the server process ends before the benchmark stops it (another
    program on the machine may stop servers, for instance).
    """
    if data_dir.exists():
        shutil.rmtree(data_dir)
    server = Server(data_dir, config, environment)
    try:
        server.start()
        try:
            yield server
        except Exception as exc:
            if server.ended_unexpectedly():
                raise RunDisturbed(f"the server ended unexpectedly ({server.log_path})") from exc
            raise
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        server.config_path.unlink(missing_ok=True)


def server_log_events(log: str, event: str) -> list[tuple[float, str]]:
    """(epoch seconds, rest of line) of every server log line whose message is `event`.

    The server logs local wall-clock time with millisecond resolution.
    """
    found = []
    for line in log.splitlines():
        match = _SERVER_LOG_TIME.match(line)
        if match is None or match.group(3) != event:
            continue
        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")  # noqa: DTZ007
        found.append((stamp.timestamp(), match.group(4).strip()))
    return found


def histogram_sums(metrics_text: str, name: str) -> dict[str, tuple[float, float]]:
    """{route: (count, sum)} of a Prometheus histogram labelled by `route`."""
    result: dict[str, list[float]] = {}
    pattern = re.compile(rf'^{name}_(count|sum)\{{route="([^"]*)"\}} (\S+)$', re.MULTILINE)
    for kind, route, value in pattern.findall(metrics_text):
        entry = result.setdefault(route, [0.0, 0.0])
        entry[0 if kind == "count" else 1] = float(value)
    return {route: (count, total) for route, (count, total) in result.items()}


# Processes


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (10 ms resolution)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_memory(pid: int) -> dict[str, int]:
    """Memory figures of /proc/<pid>/status in bytes: VmRSS, VmHWM, RssAnon, RssFile, ..."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key.startswith(("Vm", "Rss")) and rest.strip().endswith("kB"):
            values[key] = int(rest.split()[0]) * 1024
    return values


def wait_until_idle(
    pid: int, window: float = 1.0, threshold: float = 0.05, timeout: float = 600.0
) -> float:
    """Waits until a process uses under `threshold` CPU seconds in `window` seconds.

    Returns about how long it stayed busy (to within `window`).
    """
    started = time.perf_counter()
    last = process_cpu_seconds(pid)
    while time.perf_counter() - started < timeout:
        time.sleep(window)
        now = process_cpu_seconds(pid)
        if now - last < threshold:
            break
        last = now
    return max(0.0, time.perf_counter() - started - window)


def machine_busy_seconds() -> float:
    """CPU time all processors of the machine spent busy since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def wait_for_quiet_machine(limit: float = 0.1, window: float = 2.0) -> float:
    """Waits until the whole machine is busy less than `limit` of one CPU over `window` seconds.

    Other processes (a test suite, say) would make the figures noisy. Returns the time waited;
    gives up after $SYMVAULT_BENCH_QUIET_TIMEOUT seconds (default 900, 0 to not wait).
    """
    timeout = float(os.environ.get("SYMVAULT_BENCH_QUIET_TIMEOUT", "900"))
    if timeout <= 0:
        return 0.0
    started = time.perf_counter()
    told = False
    while time.perf_counter() - started < timeout:
        before = machine_busy_seconds()
        time.sleep(window)
        if machine_busy_seconds() - before < limit * window:
            break
        if not told:
            print("  (waiting for other processes to leave the machine idle)", flush=True)
            told = True
    return round(time.perf_counter() - started - window, 1)


class ForeignLoad:
    """CPU time used on the machine by processes other than this one, its children and `pid`.

    Children count once they have been waited for. With `tree`, `pid` stands for itself and
    all its descendants (a server with several worker processes); without a `pid`, only
    this process and its children are the benchmark's own.
    """

    def __init__(self, pid: int | None = None, *, tree: bool = False) -> None:
        self._pid = pid
        self._tree = tree
        self.seconds = 0.0

    def _own(self) -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    def _server_cpu(self) -> float:
        if self._pid is None:
            return 0.0
        if self._tree:
            return tree_cpu_seconds(self._pid)
        with contextlib.suppress(FileNotFoundError):
            return process_cpu_seconds(self._pid)
        return 0.0

    def __enter__(self) -> ForeignLoad:
        self._machine = machine_busy_seconds()
        self._own_start = self._own()
        self._server = self._server_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        machine = machine_busy_seconds() - self._machine
        own = self._own() - self._own_start
        server = self._server_cpu()
        if server:
            own += server - self._server
        self.seconds = round(max(0.0, machine - own), 2)


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (a server and its worker processes), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found = [pid]
    for member in found:  # grows while iterating: breadth first
        found.extend(children.get(member, []))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` and its live descendants."""
    total = 0.0
    for member in process_tree(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += process_cpu_seconds(member)
    return total


def tree_memory(pid: int) -> dict[int, dict[str, int]]:
    """`process_memory` of `pid` and each live descendant, by pid."""
    result = {}
    for member in process_tree(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            result[member] = process_memory(member)
    return result


#: How often a run is tried when other processes disturb it.
MAX_ATTEMPTS = 3


class RunDisturbed(Exception):
    """Something outside the benchmark spoiled a run."""


def is_disturbed(other_cpu_seconds: float, wall_seconds: float) -> bool:
    """True if other processes used more than 10% of a CPU (at least 0.3 s) meanwhile."""
    return other_cpu_seconds > max(0.3, 0.1 * wall_seconds)


def undisturbed_run(
    run: Callable[[], dict[str, Any]], disturbed: Callable[[dict[str, Any]], bool]
) -> tuple[dict[str, Any], int]:
    """Calls `run` until a run is not `disturbed` (at most MAX_ATTEMPTS times).

    Returns the last result and how many runs were thrown away.
    """
    for attempt in range(MAX_ATTEMPTS):
        last = attempt == MAX_ATTEMPTS - 1
        try:
            result = run()
        except RunDisturbed as exc:
            if last:
                raise
            print(f"  {exc}: running again", flush=True)
            continue
        if last or not disturbed(result):
            return result, attempt
        print("  other processes used the CPU meanwhile: running again", flush=True)
    raise AssertionError("unreachable")


def process_threads(pid: int) -> int:
    return sum(1 for _ in Path(f"/proc/{pid}/task").iterdir())


@dataclass
class MemorySample:
    at: float
    rss: int
    anon: int
    file: int


@dataclass
class RssSampler:
    """Samples a process's RSS from a thread every `interval` seconds."""

    pid: int
    interval: float = 0.02
    samples: list[MemorySample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        next_at = time.perf_counter()
        while not self._stop.is_set():
            try:
                memory = process_memory(self.pid)
            except (FileNotFoundError, ProcessLookupError):
                return
            self.samples.append(
                MemorySample(
                    time.perf_counter(),
                    memory["VmRSS"],
                    memory.get("RssAnon", 0),
                    memory.get("RssFile", 0),
                )
            )
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.perf_counter()))

    def peak(self) -> MemorySample:
        return max(self.samples, key=lambda sample: sample.rss)


class StagingWatcher:
    """Notes when the server's `assemble-*` staging file appears, fills up and goes away."""

    def __init__(self, directory: Path, size: int, interval: float = 0.002) -> None:
        self._directory = directory
        self._size = size
        self._interval = interval
        self.appeared: float | None = None
        self.complete: float | None = None
        self.gone: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> StagingWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _current_size(self) -> int | None:
        for entry in os.scandir(self._directory):
            if entry.name.startswith("assemble-"):
                try:
                    return entry.stat().st_size
                except FileNotFoundError:
                    return None
        return None

    def _loop(self) -> None:
        while not self._stop.is_set() and self.gone is None:
            size = self._current_size()
            now = time.perf_counter()
            if size is not None:
                self.appeared = self.appeared or now
                if size >= self._size and self.complete is None:
                    self.complete = now
            elif self.appeared is not None:
                self.gone = now
            time.sleep(self._interval)


# The page cache


def drop_caches_available() -> bool:
    try:
        drop_caches()
    except OSError:
        return False
    return True


def drop_caches() -> None:
    """Writes back dirty pages and empties the page cache (needs root)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


# Files


def sha1_file(path: Path, block: int = MIB) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as handle:
        while data := handle.read(block):
            digest.update(data)
    return digest.hexdigest()


def chunk_checksums(path: Path, chunk_size: int) -> list[str]:
    """SHA-1 of each `chunk_size` slice of a file, as sentry-cli computes them."""
    checksums = []
    with path.open("rb") as handle:
        while data := handle.read(chunk_size):
            checksums.append(hashlib.sha1(data, usedforsecurity=False).hexdigest())
    return checksums


def llvm_tool(name: str) -> str:
    candidate = LLVM_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found (install LLVM 14)")
    return found


def crash_debug_fixture() -> Path:
    """The `crash.debug` ELF debug companion, built by tests/fixtures/build.py if needed."""
    path = FIXTURES_OUT / "elf" / "crash.debug"
    if not path.exists():
        subprocess.run(
            [sys.executable, str(ROOT / "tests" / "fixtures" / "build.py"), str(FIXTURES_OUT)],
            check=True,
            cwd=ROOT,
        )
    return path


#: Maps random bytes to 16 letters: 4 bits of entropy a byte, so gzip halves it (as with DWARF).
_COMPRESSIBLE = bytes(0x41 + value % 16 for value in range(256))


def make_big_debug_file(workdir: Path, junk_size: int, *, compressible: bool = False) -> Path:
    """A valid ELF debug file of about `junk_size` bytes: crash.debug plus a `.junk` section.

    The section is random bytes, or random letters of a 16-letter alphabet if `compressible`;
    either way no two chunks are equal.
    """
    kind = "compressible" if compressible else "random"
    target = workdir / f"big-{junk_size // MIB}MiB-{kind}.debug"
    if target.exists():
        return target
    junk = workdir / "junk.bin"
    with junk.open("wb") as out:
        for _ in range(junk_size // MIB):
            block = os.urandom(MIB)
            out.write(block.translate(_COMPRESSIBLE) if compressible else block)
    partial = target.with_suffix(".partial")
    subprocess.run(
        [llvm_tool("llvm-objcopy"), f"--add-section=.junk={junk}", crash_debug_fixture(), partial],
        check=True,
    )
    junk.unlink()
    partial.replace(target)
    return target


# sentry-cli


def sentry_cli_binary() -> str:
    beside_python = Path(sys.executable).parent / "sentry-cli"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("sentry-cli")
    if found is None:
        raise RuntimeError("sentry-cli is not installed (it is a dev dependency)")
    return found


def sentry_cli_version() -> str:
    result = subprocess.run(
        [sentry_cli_binary(), "--version"], capture_output=True, text=True, check=True
    )
    return result.stdout.strip()


def sentry_cli_env(log_level: str = "warn") -> dict[str, str]:
    env = {
        **os.environ,
        "SENTRY_LOG_LEVEL": log_level,
        "SENTRY_DISABLE_UPDATE_CHECK": "1",
        "SENTRY_NO_PROGRESS_BAR": "1",
    }
    env.pop("SENTRY_AUTH_TOKEN", None)
    env.pop("SENTRY_URL", None)
    return env


def sentry_cli_upload_command(server: Server, project: str, *paths: Path) -> list[str]:
    return [
        sentry_cli_binary(),
        "--url",
        server.url + "/",
        "--auth-token",
        server.token,
        "debug-files",
        "upload",
        "--org",
        "default",
        "--project",
        project,
        "--wait",
        *(str(path) for path in paths),
    ]


def server_config(settings: Sequence[str]) -> dict[str, Any]:
    """A server config tree from `--set section.key=VALUE` options (values are YAML)."""
    config: dict[str, Any] = {}
    for setting in settings:
        dotted, sep, raw = setting.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {setting!r}")
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = yaml.safe_load(raw)
    return config


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="server config setting, e.g. upload.assemble_workers=4 (repeatable)",
    )


# sentry-cli's debug log


@dataclass
class ClientTimeline:
    """What sentry-cli did when, from its debug log (seconds after its launch)."""

    first_request: float
    options_answered: float
    first_assemble: float
    first_upload: float | None
    uploads_done: float
    last_response: float
    in_flight: dict[str, float]
    in_flight_total: float
    poll_sleeps: float
    requests: dict[str, int]
    assemble_requests: list[float]
    """Duration of each assemble request, in order (they are never concurrent)."""


def _kind(method: str, path: str) -> str:
    if path.endswith("/chunk-upload/"):
        return "chunk_upload" if method == "POST" else "options"
    if path.endswith("/assemble/"):
        return "assemble"
    return "other"


def parse_client_log(text: str, launched: float) -> ClientTimeline:
    events: list[tuple[float, str, str]] = []  # (time, "start" | "end", kind)
    for line in text.splitlines():
        match = _CLI_LINE.match(line)
        if match is None:
            continue
        stamp = datetime.fromisoformat(f"{match.group(1)}.{match.group(2)[:6]}{match.group(3)}")
        message = match.group(4)
        request = _REQUEST.match(message)
        if request is not None:
            events.append((stamp.timestamp() - launched, "start", _kind(*request.groups())))
        elif message.startswith("< HTTP/"):
            events.append((stamp.timestamp() - launched, "end", ""))

    open_kinds: list[str] = []  # kinds of the requests in flight, oldest first
    open_since: list[float] = []
    assemble_requests: list[float] = []
    since: dict[str, float] = {}
    in_flight: dict[str, float] = {}
    counts: dict[str, int] = {}
    total_since = 0.0
    in_flight_total = 0.0
    starts = [at for at, what, _ in events if what == "start"]
    ends: list[tuple[float, str]] = []
    for at, what, kind in events:
        if what == "start":
            counts[kind] = counts.get(kind, 0) + 1
            if not open_kinds:
                total_since = at
            if kind not in open_kinds:
                since[kind] = at
            open_kinds.append(kind)
            open_since.append(at)
            continue
        ended = open_kinds.pop(0)  # concurrent requests are all chunk uploads
        began = open_since.pop(0)
        if ended == "assemble":
            assemble_requests.append(round(at - began, 3))
        ends.append((at, ended))
        if ended not in open_kinds:
            in_flight[ended] = in_flight.get(ended, 0.0) + at - since[ended]
        if not open_kinds:
            in_flight_total += at - total_since

    def first_start(kind: str) -> float | None:
        return next((at for at, what, k in events if what == "start" and k == kind), None)

    uploads_done = max((at for at, kind in ends if kind == "chunk_upload"), default=0.0)
    # Polls: every gap between the answer to one assemble request and the next request.
    poll_sleeps = sum(
        max(0.0, next_start - at)
        for at, kind in ends
        if kind == "assemble" and at >= uploads_done
        for next_start in [min((s for s in starts if s > at), default=at)]
    )
    return ClientTimeline(
        first_request=starts[0],
        options_answered=next(at for at, kind in ends if kind == "options"),
        first_assemble=first_start("assemble") or 0.0,
        first_upload=first_start("chunk_upload"),
        uploads_done=uploads_done,
        last_response=ends[-1][0],
        in_flight={kind: round(value, 3) for kind, value in in_flight.items()},
        in_flight_total=in_flight_total,
        poll_sleeps=poll_sleeps,
        requests=counts,
        assemble_requests=assemble_requests,
    )


# Fixtures


def bench_fixtures(workdir: Path | None = None) -> dict[str, Any]:
    """The fixture manifest, with the large files, built in `<workdir>/fixtures`.

    Built by tests/fixtures/build.py with `--large` (about a minute the first time; a stamp
    makes later calls return at once). Kept apart from tests/fixtures/build so that test
    runs going on meanwhile are not disturbed.
    """
    out = (workdir or default_workdir()) / "fixtures"
    subprocess.run(
        [sys.executable, str(ROOT / "tests" / "fixtures" / "build.py"), str(out), "--large"],
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return manifest


@dataclass(frozen=True)
class BenchModule:
    """A module of the symbolication benchmarks: its debug file and where frames point."""

    name: str
    file: Path
    """The debug file (what is uploaded, or served by a symbol server)."""
    file_type: str
    """Its `FileType` value, which decides its place in a native layout."""
    object_type: str
    debug_id: str
    code_id: str
    code_file: str
    debug_file: str
    image_size: int
    arch: str
    addresses: tuple[int, ...]
    """Return addresses relative to the image (WebAssembly: code offsets), 8 of them."""
    crash_address: int | None = None
    """An address inside the leaf function, for a crashing frame 0."""

    @property
    def relative_only(self) -> bool:
        """WebAssembly modules have no load address: frames use `rel:N` addresses."""
        return self.object_type == "wasm"

    def lookup_address(self, address: int, crashing: bool = False) -> int:
        """The address symbolic is asked for: the call before a return address."""
        if self.relative_only:
            return address
        if self.arch.startswith("arm64"):
            aligned = address - address % 4
            return aligned if crashing else aligned - 4
        return address if crashing else address - 1

    def object_id(self) -> Any:
        from symvault.model.objects import ObjectId, ObjectType  # noqa: PLC0415

        return ObjectId(
            debug_id=self.debug_id,
            code_id=self.code_id,
            debug_file=self.debug_file,
            code_file=self.code_file,
            object_type=ObjectType(self.object_type),
        )

    def native_path(self) -> str:
        """Where a symbol server in `native` layout keeps the debug file."""
        from symvault.model.objects import FileType  # noqa: PLC0415
        from symvault.model.sources import Layout  # noqa: PLC0415
        from symvault.sources.layouts import layout_paths  # noqa: PLC0415

        return layout_paths(Layout(type="native"), FileType(self.file_type), self.object_id())[0]


FRAMES_PER_MODULE = 8


def _cycled(values: Sequence[int], count: int = FRAMES_PER_MODULE) -> tuple[int, ...]:
    return tuple(values[index % len(values)] for index in range(count))


def _probe_addresses(manifest: dict[str, Any], program: str) -> tuple[int, ...]:
    return _cycled([int(probe["return_address"], 16) for probe in manifest["probes"][program]])


def _wasm_addresses(path: Path, size: int) -> tuple[int, ...]:
    """One address inside each function of a WebAssembly file, from its symcache."""
    import symbolic  # noqa: PLC0415

    symcache = next(symbolic.Archive.open(str(path)).iter_objects()).make_symcache()
    found: dict[str, int] = {}
    for address in range(size):
        for location in symcache.lookup(address)[-1:]:
            found.setdefault(location.symbol, address + 1)
    return _cycled(sorted(found.values()))


def _breakpad_copy(manifest: dict[str, Any], directory: Path) -> tuple[Path, str, str]:
    """crash.sym with other ids, so that it is a module of its own: (path, debug id, code id)."""
    import uuid  # noqa: PLC0415

    original = manifest["crash_breakpad"]
    debug_uuid = uuid.UUID(int=uuid.UUID(original["debug_id"]).int ^ 0xB0B0B0B0)
    debug_id = str(debug_uuid)
    code_id = debug_uuid.hex + "b0b0b0b0"
    lines = Path(original["path"]).read_text().splitlines()
    rewritten = []
    for line in lines:
        if line.startswith("MODULE "):
            parts = line.split(" ")
            parts[3] = debug_uuid.hex.upper() + "0"
            rewritten.append(" ".join(parts))
        elif line.startswith("INFO CODE_ID "):
            rewritten.append(f"INFO CODE_ID {code_id.upper()}")
        else:
            rewritten.append(line)
    target = directory / "breakpad" / "crash.sym"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(rewritten) + "\n")
    return target, debug_id, code_id


def bench_modules(manifest: dict[str, Any], workdir: Path) -> list[BenchModule]:
    """The 8 modules of the symbolication benchmarks, one per debug file format.

    ELF (C, C++, Rust), PE/PDB, Mach-O x86_64 and arm64 (dSYM), WebAssembly, and the
    Breakpad file of the C program rewritten with other ids so that it is a module of its
    own (its frames are the C program's probes).
    """
    breakpad_path, breakpad_debug_id, breakpad_code_id = _breakpad_copy(manifest, workdir)
    crash = manifest["crash_elf"]

    def native(name: str, program: str, debug_key: str, file_type: str, kind: str) -> BenchModule:
        code = manifest[program]
        debug = manifest[debug_key]
        crash_address = manifest["crash_addresses"].get(program, {}).get("address")
        return BenchModule(
            name=name,
            file=Path(debug["path"]),
            file_type=file_type,
            object_type=kind,
            debug_id=code["debug_id"],
            code_id=code["code_id"],
            code_file=f"/opt/app/{code['object_name']}",
            debug_file=f"/opt/app/{debug['object_name']}",
            image_size=code["image_size"],
            arch=code["arch"],
            addresses=_probe_addresses(manifest, program),
            crash_address=int(crash_address, 16) if crash_address else None,
        )

    pe = native("crash_pe", "crash_pe", "crash_pdb", "pdb", "pe")
    wasm = manifest["crash_wasm"]
    return [
        native("crash_elf", "crash_elf", "crash_elf_debug", "elf_debug", "elf"),
        native("shapes_elf", "shapes_elf", "shapes_elf_debug", "elf_debug", "elf"),
        native("rust_elf", "rust_elf", "rust_elf_debug", "elf_debug", "elf"),
        BenchModule(
            **{
                **pe.__dict__,
                "code_file": "C:\\app\\crash.exe",
                "debug_file": "C:\\app\\crash.pdb",
            }
        ),
        native(
            "crash_macho_x86_64", "crash_macho_x86_64", "crash_dsym_x86_64", "mach_debug", "macho"
        ),
        native("crash_macho_arm64", "crash_macho_arm64", "crash_dsym_arm64", "mach_debug", "macho"),
        BenchModule(
            name="crash_wasm",
            file=Path(wasm["path"]),
            file_type="wasm_debug",
            object_type="wasm",
            debug_id=wasm["debug_id"],
            code_id=wasm["code_id"],
            code_file="crash.wasm",
            debug_file="crash.wasm",
            image_size=wasm["image_size"],
            arch=wasm["arch"],
            addresses=_wasm_addresses(Path(wasm["path"]), wasm["size"]),
        ),
        BenchModule(
            name="crash_breakpad",
            file=breakpad_path,
            file_type="breakpad",
            object_type="elf",
            debug_id=breakpad_debug_id,
            code_id=breakpad_code_id,
            code_file="/opt/app/crash-bp",
            debug_file="/opt/app/crash-bp",
            image_size=crash["image_size"],
            arch=crash["arch"],
            addresses=_probe_addresses(manifest, "crash_elf"),
        ),
    ]


def native_layout(modules: Sequence[BenchModule], directory: Path) -> dict[str, str]:
    """Copies the modules' debug files into `directory` in native layout: {name: path}."""
    placed = {}
    for module in modules:
        relative = module.native_path()
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(module.file, target)
        placed[module.name] = relative
    return placed


@dataclass(frozen=True)
class NativeSymbols:
    """The modules of the symbolication benchmarks with their debug files in native layout."""

    modules: list[BenchModule]
    directory: Path
    paths: dict[str, str]
    """Module name -> its debug file's path in `directory`."""


def native_symbols(workdir: Path) -> NativeSymbols:
    """`bench_modules` (made in `workdir/modules`), their files in native layout in
    `workdir/symbols`."""
    modules = bench_modules(bench_fixtures(), workdir / "modules")
    directory = workdir / "symbols"
    return NativeSymbols(modules, directory, native_layout(modules, directory))


#: Where each module of a request is loaded (WebAssembly modules have no address).
IMAGE_BASE = 0x10000000


def symbolicate_request(
    modules: Sequence[BenchModule], sources: list[dict[str, Any]], **options: Any
) -> dict[str, Any]:
    """A /symbolicate body: one stack trace, 8 frames per module, frame 0 crashing."""
    raw_modules = []
    frames: list[dict[str, Any]] = []
    for index, module in enumerate(modules):
        image_addr = 0 if module.relative_only else IMAGE_BASE * (index + 1)
        raw_modules.append(
            {
                "type": module.object_type,
                "code_id": module.code_id,
                "code_file": module.code_file,
                "debug_id": module.debug_id,
                "debug_file": module.debug_file,
                "image_addr": hex(image_addr),
                "image_size": module.image_size,
            }
        )
        addresses = list(module.addresses)
        if not frames and module.crash_address is not None:
            addresses[0] = module.crash_address
        for address in addresses:
            frame: dict[str, Any] = {"instruction_addr": hex(image_addr + address)}
            if module.relative_only:
                frame["addr_mode"] = f"rel:{index}"
            frames.append(frame)
    body: dict[str, Any] = {
        "sources": sources,
        "modules": raw_modules,
        "stacktraces": [{"frames": frames}],
    }
    if options:
        body["options"] = options
    return body


def lookup_plan(modules: Sequence[BenchModule]) -> list[tuple[int, list[int]]]:
    """For each module in request order, the addresses symbolic is asked for."""
    plan = []
    for index, module in enumerate(modules):
        addresses = list(module.addresses)
        crashing = index == 0 and module.crash_address is not None
        if crashing:
            assert module.crash_address is not None
            addresses[0] = module.crash_address
        plan.append(
            (
                index,
                [
                    module.lookup_address(address, crashing and position == 0)
                    for position, address in enumerate(addresses)
                ],
            )
        )
    return plan


def sentry_cli_upload(server: Server, project: str, *paths: Path) -> None:
    """Uploads files with the real sentry-cli and waits for their assembly."""
    result = subprocess.run(
        sentry_cli_upload_command(server, project, *paths),
        capture_output=True,
        text=True,
        env=sentry_cli_env(),
        check=False,
    )
    if result.returncode != 0 or "ERROR" in result.stdout:
        raise RuntimeError(f"sentry-cli upload failed:\n{result.stdout}{result.stderr}")


# A local symbol server


def delayed_symbol_server(
    root: Path | None, delay: float, synthesize: Callable[[str], bytes | None] | None = None
) -> Any:
    """tests/support/symbol_server.py's `SymbolServer` over `root`, answering every request
    (found or not) after `delay` seconds, as a server across a network would. `synthesize`
    may make up the body of a path that is not on disk (None: not found)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.support.symbol_server import Reply, SymbolServer  # noqa: PLC0415

    class DelayedSymbolServer(SymbolServer):  # type: ignore[misc]
        def reply_for(self, path: str) -> Any:
            if delay:
                time.sleep(delay)
            reply = super().reply_for(path)
            if reply is None and synthesize is not None:
                data = synthesize(path)
                return Reply.file(data) if data is not None else None
            return reply

    server = DelayedSymbolServer(root=root)
    # The test server writes headers and body separately; without TCP_NODELAY, Nagle's
    # algorithm and the client's delayed ACK add 40 ms to every small answer.
    inner = server._server
    inner.RequestHandlerClass = type(
        "NoDelayHandler", (inner.RequestHandlerClass,), {"disable_nagle_algorithm": True}
    )
    return server


# Load generation with wrk

#: Posts one JSON body over and over; prints wrk's figures as JSON when done.
_WRK_SCRIPT = """
local body_file = assert(io.open("%(body)s", "rb"))
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = "application/json"
%(headers)s
function done(summary, latency, requests)
  io.write("WRK_JSON ")
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "bytes": %%d, "errors_connect": %%d, ' ..
    '"errors_read": %%d, "errors_write": %%d, "errors_status": %%d, "errors_timeout": %%d, ' ..
    '"latency_mean_us": %%.1f, "latency_max_us": %%d, "p50_us": %%d, "p90_us": %%d, ' ..
    '"p99_us": %%d, "p999_us": %%d}\\n',
    summary.requests, summary.duration, summary.bytes, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


def wrk_command(
    url: str,
    body_file: Path,
    headers: dict[str, str],
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
    timeout: int = 10,
) -> list[str]:
    """The `wrk` command posting `body_file` to `url` (writes its Lua script beside it)."""
    script = body_file.with_suffix(".lua")
    header_lines = "\n".join(
        f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()
    )
    script.write_text(_WRK_SCRIPT % {"body": body_file, "headers": header_lines})
    return [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={round(seconds)}s",
        f"--timeout={timeout}s",
        f"--script={script}",
        url,
    ]


def wrk_figures(output: str) -> dict[str, Any]:
    """The figures the Lua script prints when wrk is done (latencies in µs)."""
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            figures: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            figures["requests_per_s"] = round(
                figures["requests"] / (figures["duration_us"] / 1e6), 1
            )
            return figures
    raise RuntimeError(f"no figures in wrk's output:\n{output}")


def run_wrk(
    url: str,
    body_file: Path,
    headers: dict[str, str],
    *,
    connections: int,
    seconds: float,
    threads: int = 1,
) -> dict[str, Any]:
    """Runs `wrk` posting `body_file` to `url`; returns its figures (latencies in µs)."""
    command = wrk_command(
        url, body_file, headers, connections=connections, seconds=seconds, threads=threads
    )
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return wrk_figures(result.stdout + result.stderr)


def worker_histograms(
    server: Server, route: str, workers: int, name: str = "symvault_http_request_duration_seconds"
) -> list[tuple[float, float]]:
    """(count, sum) of a route's request-duration histogram in each server process.

    Every process has its own /metrics; a new connection reaches any of them, so /metrics is
    asked on new connections until `workers` different answers were seen (each process's
    figures for `route` stay fixed while no load runs). Needs every process to have answered
    at least one request of `route`, so that no two processes give the same answer.
    """
    seen: set[tuple[float, float]] = set()
    for _ in range(400):
        with httpx.Client(timeout=30) as client:
            text = client.get(f"{server.url}/metrics", headers={"Connection": "close"}).text
        seen.add(histogram_sums(text, name).get(route, (0.0, 0.0)))
        if len(seen) == workers:
            return sorted(seen)
    raise RuntimeError(f"saw {len(seen)} different /metrics answers, expected {workers}")


# Results


def median(values: Sequence[float]) -> float:
    return round(float(statistics.median(values)), 3)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` quantile (0..1) of `values`, nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def machine_info(workdir: Path) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = int(line.split()[1]) * 1024
    filesystem = subprocess.run(
        ["df", "--output=source,fstype", str(workdir)], capture_output=True, text=True, check=False
    ).stdout.splitlines()[-1:]
    commit = _git("rev-parse", "--short", "HEAD").strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory / GIB, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sentry_cli": sentry_cli_version(),
        "workdir": str(workdir),
        "filesystem": " ".join(filesystem[0].split()) if filesystem else "unknown",
        "symvault_commit": commit,
        "uncommitted_src": _uncommitted_src_fingerprint(),
        "python_loop_seconds": python_loop_seconds(),
    }


def python_loop_seconds(iterations: int = 10_000_000) -> float:
    """Seconds this machine takes for a plain Python loop, best of three: a yardstick
    for comparing results taken at different times (this VM's speed drifts)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(iterations):
            total += number
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=False)
    return result.stdout


def _uncommitted_src_fingerprint() -> str | None:
    """SHA-1 over the uncommitted changes below src/ (None if there are none)."""
    diff = _git("diff", "HEAD", "--", "src")
    untracked = _git("ls-files", "--others", "--exclude-standard", "--", "src").split()
    if not diff and not untracked:
        return None
    digest = hashlib.sha1(diff.encode(), usedforsecurity=False)
    for name in sorted(untracked):
        digest.update(name.encode() + (ROOT / name).read_bytes())
    return f"{digest.hexdigest()[:12]} ({len(untracked)} untracked files)"


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    stamped = {"benchmark": name, "date": datetime.now(UTC).isoformat(timespec="seconds")}
    path.write_text(json.dumps({**stamped, **result}, indent=2) + "\n")
    return path


def default_workdir() -> Path:
    return Path(os.environ.get("SYMVAULT_BENCH_DIR", "/tmp/symvault-bench"))


def check_free_space(workdir: Path, needed: int) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(workdir).free
    if free < needed:
        raise SystemExit(f"{workdir} has {free / GIB:.1f} GiB free, {needed / GIB:.1f} needed")


def mib(value: float) -> float:
    return round(value / MIB, 1)
