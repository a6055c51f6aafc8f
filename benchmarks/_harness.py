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

    def __init__(self, data_dir: Path, config: dict[str, Any] | None = None) -> None:
        self.data_dir = data_dir
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
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
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
        match = _TOKEN.search(self.log())
        if match is None:
            raise RuntimeError(f"no admin token in the server output:\n{self.log()}")
        self.token = match.group(1)

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


@contextlib.contextmanager
def running_server(data_dir: Path, config: dict[str, Any] | None = None) -> Iterator[Server]:
    """A started server whose data directory and config are removed afterwards.

    Raises `RunDisturbed` if the server process ends before the benchmark stops it (another
    program on the machine may stop servers, for instance).
    """
    if data_dir.exists():
        shutil.rmtree(data_dir)
    server = Server(data_dir, config)
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

    Children count once they have been waited for.
    """

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.seconds = 0.0

    def _own(self) -> float:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.process_time() + children.ru_utime + children.ru_stime

    def __enter__(self) -> ForeignLoad:
        self._machine = machine_busy_seconds()
        self._own_start = self._own()
        self._server = process_cpu_seconds(self._pid)
        return self

    def __exit__(self, *exc: object) -> None:
        machine = machine_busy_seconds() - self._machine
        own = self._own() - self._own_start
        with contextlib.suppress(FileNotFoundError):
            own += process_cpu_seconds(self._pid) - self._server
        self.seconds = round(max(0.0, machine - own), 2)


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


# Results


def median(values: Sequence[float]) -> float:
    return round(float(statistics.median(values)), 3)


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
    }


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
