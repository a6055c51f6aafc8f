"""Server memory under a long mixed load of warm and cold `/symbolicate` requests.

Target: the RSS of the server's processes stays bounded under a 10-minute mixed load of warm
and cold requests: no growth after the first minute.

Set-up: a fresh server (`server.workers` 2 by default, `logging.level: warning`,
`connect_to_reserved_ips: true`), the 8 modules of the symbolication benchmarks uploaded
with sentry-cli (`_harness.bench_modules`), and a local symbol server
(tests/support/symbol_server.py, no delay) that makes up debug files on request: every
`<xx>/<build id>.debug` path of a planned module is answered with a template ELF debug file
(the C program's `crash.debug`, 14 KB; the C++ `shapes.debug`, 17 KB; every tenth request
the Rust `rustapp.debug`, 4 MB) whose build id bytes are replaced by the module's, so every
module is a distinct, valid debug file that no cache has seen.

Load, both for the whole duration:

* warm: `wrk` (1 thread, 4 connections) posting the 64-frame, 8-module request of
  symbolicate_warm.py (store source, admin token), as fast as the server answers;
* cold: one client thread sending, one after the other, requests with 4 modules nobody asked
  for before (8 frames each, `http` source pointing at the symbol server): every request
  makes the server download, describe and convert 4 new files (and look for their source
  bundles).

Every second the benchmark reads VmRSS, RssAnon and RssFile of every server process
(/proc/<pid>/status of the server and its descendants). Reported: total RSS at 1, 5 and 10
minutes, its maximum, and its slope (least squares, MiB per minute) after the first minute
and over the last 5 minutes, and the mean of each minute; the samples are kept in the JSON.

Usage: uv run python benchmarks/symbolicate_memory.py [--seconds 600] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from _harness import (
    BenchModule,
    ForeignLoad,
    Server,
    add_server_options,
    bench_fixtures,
    bench_modules,
    default_workdir,
    delayed_symbol_server,
    machine_info,
    percentile,
    running_server,
    sentry_cli_upload,
    server_config,
    symbolicate_request,
    tree_cpu_seconds,
    tree_memory,
    write_result,
    wrk_command,
    wrk_figures,
)

PROJECT = "bench"
COLD_MODULES_PER_REQUEST = 4
MIB = 2**20


class ColdModules:
    """Makes up modules: ids, request entries and the bytes of their debug files."""

    def __init__(self, templates: dict[str, BenchModule]) -> None:
        self._templates = templates
        self._data = {name: module.file.read_bytes() for name, module in templates.items()}
        self._ids = {name: bytes.fromhex(module.code_id) for name, module in templates.items()}
        for name, data in self._data.items():
            if data.count(self._ids[name]) != 1:
                raise RuntimeError(f"{name}: build id not found exactly once")
        self._planned: dict[str, str] = {}  # code id -> template
        self._lock = threading.Lock()
        self.count = 0

    def new(self, template: str) -> BenchModule:
        build_id = hashlib.sha1(f"cold-{self.count}".encode(), usedforsecurity=False).digest()
        self.count += 1
        code_id = build_id.hex()
        module = replace(
            self._templates[template],
            name=f"cold-{self.count}",
            debug_id=str(uuid.UUID(bytes_le=build_id[:16])),
            code_id=code_id,
            code_file=f"/opt/cold/{self.count}",
            debug_file=f"/opt/cold/{self.count}.debug",
        )
        with self._lock:
            self._planned[code_id] = template
        return module

    def body_of(self, path: str) -> bytes | None:
        """The debug file at a native-layout path, if it is a planned module's."""
        directory, _, name = path.partition("/")
        if not name.endswith(".debug"):
            return None
        code_id = directory + name.removesuffix(".debug")
        with self._lock:
            template = self._planned.get(code_id)
        if template is None:
            return None
        return self._data[template].replace(self._ids[template], bytes.fromhex(code_id))


def check_template(modules: ColdModules) -> None:
    """The made-up files carry the ids symbolic will read (debug id from the build id)."""
    import symbolic  # noqa: PLC0415

    module = modules.new("crash_elf")
    path = default_workdir() / "memory-check.debug"
    data = modules.body_of(module.native_path())
    assert data is not None
    path.write_bytes(data)
    obj = next(symbolic.Archive.open(str(path)).iter_objects())
    path.unlink()
    if (obj.debug_id, obj.code_id) != (module.debug_id, module.code_id):
        raise RuntimeError(f"made-up ids differ: {obj.debug_id} {obj.code_id} vs {module}")


class ColdLoad:
    """Sends cold requests one after the other from a thread."""

    def __init__(self, server: Server, modules: ColdModules, symbols_url: str) -> None:
        self._server = server
        self._modules = modules
        self._source = {"type": "http", "id": "symbols", "url": symbols_url}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.requests = 0

    def __enter__(self) -> ColdLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _request(self) -> dict[str, Any]:
        small = ["crash_elf", "shapes_elf"]
        templates = [small[(self.requests + n) % 2] for n in range(COLD_MODULES_PER_REQUEST)]
        if self.requests % 10 == 0:
            templates[-1] = "rust_elf"
        return symbolicate_request(
            [self._modules.new(template) for template in templates], [self._source]
        )

    def _loop(self) -> None:
        with httpx.Client(base_url=self._server.url, timeout=300) as client:
            while not self._stop.is_set():
                body = self._request()
                started = time.perf_counter()
                try:
                    answer = client.post("/symbolicate", json=body).json()
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                self.latencies.append(time.perf_counter() - started)
                self.requests += 1
                frames = answer.get("stacktraces", [{}])[0].get("frames", [])
                if answer.get("status") != "completed" or any(
                    frame["status"] != "symbolicated" for frame in frames
                ):
                    self.failures.append(json.dumps(answer)[:300])


def sample(pid: int, started: float) -> dict[str, Any]:
    memory = tree_memory(pid)
    return {
        "t": round(time.perf_counter() - started, 1),
        "rss": sum(m.get("VmRSS", 0) for m in memory.values()),
        "anon": sum(m.get("RssAnon", 0) for m in memory.values()),
        "file": sum(m.get("RssFile", 0) for m in memory.values()),
        "by_pid": {str(p): m.get("VmRSS", 0) for p, m in memory.items()},
    }


def slope_mib_per_minute(samples: list[dict[str, Any]], since: float, key: str = "rss") -> float:
    points = [(s["t"], s[key] / MIB) for s in samples if s["t"] >= since]
    if len(points) < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    numerator = sum((t - mean_t) * (v - mean_v) for t, v in points)
    denominator = sum((t - mean_t) ** 2 for t, _ in points)
    return round(60 * numerator / denominator, 2)


def minute_means(samples: list[dict[str, Any]], key: str = "rss") -> list[float]:
    """Mean of each whole minute's samples: single samples swing with every conversion."""
    means = []
    for minute in range(int(samples[-1]["t"] // 60)):
        window = [s[key] for s in samples if minute * 60 <= s["t"] < (minute + 1) * 60]
        if window:
            means.append(round(sum(window) / len(window) / MIB, 1))
    return means


def at(samples: list[dict[str, Any]], seconds: float, key: str = "rss") -> float:
    nearest = min(samples, key=lambda s: abs(s["t"] - seconds))
    return round(nearest[key] / MIB, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=4, help="wrk connections (warm)")
    parser.add_argument("--workdir", type=Path, default=default_workdir() / "symbolicate-memory")
    parser.add_argument("--name", default="symbolicate_memory", help="result file name")
    add_server_options(parser)
    args = parser.parse_args()
    extra = server_config(args.set)
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    modules = bench_modules(bench_fixtures(), workdir / "modules")
    by_name = {module.name: module for module in modules}
    cold_modules = ColdModules(
        {name: by_name[name] for name in ("crash_elf", "shapes_elf", "rust_elf")}
    )
    check_template(cold_modules)
    config = {
        **extra,
        "server": {**extra.get("server", {}), "workers": args.workers},
        "logging": {"level": "warning"},
        "connect_to_reserved_ips": True,
    }

    symbols = delayed_symbol_server(None, 0.0, cold_modules.body_of)
    with symbols, running_server(workdir / "data", config) as server:
        paths = [next((p for p in m.file.parents if p.suffix == ".dSYM"), m.file) for m in modules]
        sentry_cli_upload(server, PROJECT, *paths)
        time.sleep(5)  # symcaches precomputed on upload
        store = {"type": "store", "id": "store", "organization": "default", "project": PROJECT}
        warm_body = workdir / "warm.json"
        warm_body.write_text(json.dumps(symbolicate_request(modules, [store])))
        command = wrk_command(
            server.url + "/symbolicate",
            warm_body,
            {"Authorization": f"Bearer {server.token}"},
            connections=args.connections,
            seconds=args.seconds,
            timeout=30,
        )
        samples = []
        started = time.perf_counter()
        cpu = tree_cpu_seconds(server.pid)
        with ForeignLoad(server.pid, tree=True) as load:
            wrk = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
            with ColdLoad(server, cold_modules, symbols.url) as cold:
                while wrk.poll() is None:
                    samples.append(sample(server.pid, started))
                    last = samples[-1]
                    if int(last["t"]) % 30 == 0:
                        print(
                            f"  {last['t']:6.0f} s: RSS {last['rss'] / MIB:7.1f} MiB (anon "
                            f"{last['anon'] / MIB:.1f}, file {last['file'] / MIB:.1f}), "
                            f"{cold.requests} cold requests",
                            flush=True,
                        )
                    time.sleep(max(0.0, len(samples) - (time.perf_counter() - started)))
            output = wrk.communicate()[0]
        server_cpu = tree_cpu_seconds(server.pid) - cpu
        cache_bytes = sum(
            p.stat().st_size for p in (server.data_dir / "cache").rglob("*") if p.is_file()
        )
    warm = wrk_figures(output)
    duration = samples[-1]["t"]
    summary = {
        "rss_mib_at_1_min": at(samples, 60),
        "rss_mib_at_5_min": at(samples, 300),
        "rss_mib_at_10_min": at(samples, 600),
        "rss_mib_at_end": round(samples[-1]["rss"] / MIB, 1),
        "rss_mib_max": round(max(s["rss"] for s in samples) / MIB, 1),
        "rss_mib_start": round(samples[0]["rss"] / MIB, 1),
        "anon_mib_at_1_min": at(samples, 60, "anon"),
        "anon_mib_at_end": round(samples[-1]["anon"] / MIB, 1),
        "file_mib_at_1_min": at(samples, 60, "file"),
        "file_mib_at_end": round(samples[-1]["file"] / MIB, 1),
        "rss_mib_minute_means": minute_means(samples),
        "slope_mib_per_min_after_1_min": slope_mib_per_minute(samples, 60),
        "slope_mib_per_min_last_5_min": slope_mib_per_minute(samples, duration - 300),
        "anon_slope_mib_per_min_after_1_min": slope_mib_per_minute(samples, 60, "anon"),
        "file_slope_mib_per_min_after_1_min": slope_mib_per_minute(samples, 60, "file"),
        "warm_requests": warm["requests"],
        "warm_requests_per_s": round(warm["requests"] / (warm["duration_us"] / 1e6), 1),
        "warm_p50_ms": round(warm["p50_us"] / 1000, 2),
        "warm_p99_ms": round(warm["p99_us"] / 1000, 2),
        "warm_errors": warm["errors_status"] + warm["errors_timeout"],
        "cold_requests": cold.requests,
        "cold_modules": cold_modules.count,
        "cold_failures": len(cold.failures),
        "cold_p50_s": round(percentile(cold.latencies, 0.5), 3) if cold.latencies else None,
        "cold_p99_s": round(percentile(cold.latencies, 0.99), 3) if cold.latencies else None,
        "server_cpu_seconds": round(server_cpu, 1),
        "cache_bytes_at_end": cache_bytes,
        "other_cpu_seconds": load.seconds,
    }
    grown = summary["rss_mib_at_end"] - summary["rss_mib_at_1_min"]
    met = (
        summary["slope_mib_per_min_after_1_min"] <= 1.0
        and grown <= 0.05 * summary["rss_mib_at_1_min"]
    )
    path = write_result(
        args.name,
        {
            "target": "server RSS bounded under 10 min of mixed warm/cold load; no growth "
            "after the first minute (judged: slope <= 1 MiB/min and end within 5 % of 1 min)",
            "met": met,
            "machine": machine_info(workdir),
            "settings": {
                "seconds": args.seconds,
                "workers": args.workers,
                "wrk_connections": args.connections,
                "cold_modules_per_request": COLD_MODULES_PER_REQUEST,
                "server_config": config,
            },
            "summary": summary,
            "cold_failures_first": cold.failures[:5],
            "samples": [{k: v for k, v in s.items() if k != "by_pid"} for s in samples],
            "samples_by_pid_every_30s": [s for s in samples if int(s["t"]) % 30 == 0],
        },
    )
    print(json.dumps(summary, indent=2))
    print(f"target {'met' if met else 'NOT met'}; written to {path}")


if __name__ == "__main__":
    main()
