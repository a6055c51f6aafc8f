"""Warm symbolication: throughput and latency of `/symbolicate` under load, against symbolic.

Targets, with warm caches, a 64-frame stack trace across 8 modules, on this 2-core machine:
at least 1,000 requests/s, and server time per frame at most 3 x the raw `symbolic` look-up
of the same frames, measured in the same run.

Each run starts a fresh server (`server.workers` 2, then 1; `logging.level: warning`),
uploads the debug files of the 8 modules with the real sentry-cli to a project (ELF C, C++
and Rust, PE/PDB, Mach-O x86_64 and arm64 dSYMs, WebAssembly, and the Breakpad file of the
C program with other ids; see `_harness.bench_modules`), waits for the server to finish the
symcaches it precomputes on upload, and checks that one request symbolicates all 64 frames.
The request names the project as a `store` source and carries the admin token, as Sentry's
requests carry their sources; frames are the fixture manifest's probes (return addresses
inside the programs' own code, several in inline chains), 8 per module, frame 0 crashing.

Then, per connection count (1, 8, 32): `wrk` (one thread, Lua script posting the JSON body)
warms up for 3 s and runs for 15 s. From the server side: the request-duration histogram of
`/symbolicate` on /metrics, before and after, of every worker process (server time per
request = sum / count), and the CPU time of all server processes. Finally a sustained
phase: 100 s of load with 8 connections, then the same 15 s measurement, so that what
builds up under long load (memos filling, allocator state) shows in the figures.

Then in the benchmark process, with the server idle, on the same data directory:

* `Symbolicator.symbolicate(parsed request)` in-process (no HTTP), and the other in-process
  steps of a request: JSON decoding + request validation (`parse_request`), token and
  project checks (`Accounts.authenticate` + `authorize_project`), `orjson.dumps` of the
  response; what is left of the server time is HTTP, ASGI, event loop and thread hand-offs;
* the raw symbolic look-up of the same 64 frames: `symbolic.SymCache.open` of the 8
  symcache entries the server uses + `lookup(address)` of each frame, reading each
  location's fields (`raw_open_lookup`), and the look-ups alone (`raw_lookup`).

Usage: uv run python benchmarks/symbolicate_warm.py [--runs 3] [--workers 2 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import symbolic

from _harness import (
    BenchModule,
    ForeignLoad,
    Server,
    add_server_options,
    bench_fixtures,
    bench_modules,
    default_workdir,
    is_disturbed,
    lookup_plan,
    machine_info,
    median,
    run_wrk,
    running_server,
    sentry_cli_upload,
    server_config,
    symbolicate_request,
    tree_cpu_seconds,
    tree_memory,
    undisturbed_run,
    wait_for_quiet_machine,
    worker_histograms,
    write_result,
)
from symvault.app import build_services
from symvault.config import load_config
from symvault.model.symbolication import parse_request
from symvault.store.accounts import READ_SCOPES

TARGET_RPS = 1000.0
TARGET_RATIO = 3.0
PROJECT = "bench"
ROUTE = "/symbolicate"
SUSTAINED_CONNECTIONS = 8
PHASE_KEYS = (
    "requests_per_s",
    "p50_ms",
    "p99_ms",
    "server_ms_per_request",
    "server_cpu_ms_per_request",
    "server_us_per_frame",
    "server_cpu_us_per_frame",
    "server_cpu_cores_busy",
    "wrk_cpu_seconds",
    "server_rss_mib_after",
)


def wait_tree_idle(pid: int, window: float = 1.0, threshold: float = 0.05) -> None:
    """Waits until the server's processes together use under `threshold` CPU-s a `window`."""
    last = tree_cpu_seconds(pid)
    for _ in range(600):
        time.sleep(window)
        now = tree_cpu_seconds(pid)
        if now - last < threshold:
            return
        last = now


def upload_modules(server: Server, modules: list[BenchModule]) -> None:
    """Uploads the debug files; dSYMs as their bundles."""
    paths = []
    for module in modules:
        path = module.file
        bundle = next((p for p in path.parents if p.suffix == ".dSYM"), None)
        paths.append(bundle or path)
    sentry_cli_upload(server, PROJECT, *paths)


def check_response(response: dict[str, Any], frames: int) -> dict[str, int]:
    if response.get("status") != "completed":
        raise RuntimeError(f"request not completed: {str(response)[:500]}")
    statuses: dict[str, int] = {}
    inputs = set()
    for frame in response["stacktraces"][0]["frames"]:
        statuses[frame["status"]] = statuses.get(frame["status"], 0) + 1
        inputs.add(frame["original_index"])
    bad = [m for m in response["modules"] if m["debug_status"] != "found"]
    if bad or len(inputs) != frames or set(statuses) != {"symbolicated"}:
        raise RuntimeError(f"not all frames symbolicated: {statuses}, modules {bad}")
    return {"output_frames": sum(statuses.values()), "input_frames": len(inputs)}


def load_phase(
    server: Server,
    workers: int,
    body_file: Path,
    connections: int,
    seconds: float,
    warmup: float = 3.0,
) -> dict[str, Any]:
    """Warm-up, then one measured wrk run with server-side figures."""
    headers = {"Authorization": f"Bearer {server.token}"}
    url = server.url + ROUTE
    run_wrk(url, body_file, headers, connections=connections, seconds=warmup)
    before = worker_histograms(server, ROUTE, workers)
    wait_for_quiet_machine()
    cpu = tree_cpu_seconds(server.pid)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with ForeignLoad(server.pid, tree=True) as load:
        figures = run_wrk(url, body_file, headers, connections=connections, seconds=seconds)
    server_cpu = tree_cpu_seconds(server.pid) - cpu
    after_children = resource.getrusage(resource.RUSAGE_CHILDREN)
    after = worker_histograms(server, ROUTE, workers)
    count = sum(c for c, _ in after) - sum(c for c, _ in before)
    total = sum(s for _, s in after) - sum(s for _, s in before)
    if figures["errors_status"] or figures["errors_timeout"]:
        raise RuntimeError(f"wrk saw errors: {figures}")
    requests = figures["requests"]
    memory = tree_memory(server.pid)
    return {
        "connections": connections,
        "wrk": figures,
        "requests_per_s": figures["requests_per_s"],
        "p50_ms": round(figures["p50_us"] / 1000, 3),
        "p99_ms": round(figures["p99_us"] / 1000, 3),
        "server_requests_counted": int(count),
        "server_ms_per_request": round(1000 * total / count, 3),
        "server_cpu_ms_per_request": round(1000 * server_cpu / requests, 3),
        "server_cpu_cores_busy": round(server_cpu / (figures["duration_us"] / 1e6), 2),
        "wrk_cpu_seconds": round(
            after_children.ru_utime
            + after_children.ru_stime
            - children.ru_utime
            - children.ru_stime,
            2,
        ),
        "server_rss_mib_after": round(sum(m.get("VmRSS", 0) for m in memory.values()) / 2**20, 1),
        "other_cpu_seconds": load.seconds,
        "disturbed": is_disturbed(load.seconds, seconds),
    }


def per_call_us(calls: int, action: Callable[[], object]) -> float:
    """Median microseconds of `action` over `calls` calls."""
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        action()
        samples.append((time.perf_counter_ns() - started) / 1000)
    return round(statistics.median(samples), 2)


def in_process(
    server: Server,
    config: dict[str, Any],
    modules: list[BenchModule],
    body: dict[str, Any],
    calls: int,
) -> dict[str, Any]:
    """The steps of a request without HTTP, and the raw symbolic look-ups, in this process."""
    settings = load_config(server.config_path, {"data_dir": str(server.data_dir)})
    services = build_services(settings, migrate=False)
    try:
        raw_body = json.dumps(body).encode()
        parsed = parse_request(json.loads(raw_body))
        assert parsed.sources is not None
        sources = parsed.sources
        symbolicator = services.symbolicator
        response = symbolicator.symbolicate(parsed, sources, "global")
        check_response(response, len(body["stacktraces"][0]["frames"]))
        header = f"Bearer {server.token}"

        def authorize() -> None:
            principal = services.accounts.authenticate(header)
            services.accounts.authorize_project(principal, "default", PROJECT, READ_SCOPES)

        steps = {
            "parse_us": per_call_us(calls, lambda: parse_request(json.loads(raw_body))),
            "authorize_us": per_call_us(calls, authorize),
            "symbolicate_us": per_call_us(
                calls, lambda: symbolicator.symbolicate(parsed, sources, "global")
            ),
            "serialize_us": per_call_us(calls, lambda: orjson.dumps(response)),
        }
        steps["total_us"] = round(sum(steps.values()), 2)

        entries = []
        for module in modules:
            result = services.caches.symcaches.fetch(module.object_id(), sources, "global")
            assert result.entry is not None
            entries.append(str(result.entry.path))
    finally:
        services.caches.close()
        services.symbolicator.close()
        services.db.dispose()

    plan = lookup_plan(modules)
    frames = sum(len(addresses) for _, addresses in plan)

    def raw(open_files: bool, read_fields: bool) -> Callable[[], None]:
        opened = [symbolic.SymCache.open(path) for path in entries]

        def run() -> None:
            caches = [symbolic.SymCache.open(path) for path in entries] if open_files else opened
            for index, addresses in plan:
                for address in addresses:
                    locations = caches[index].lookup(address)
                    if read_fields:
                        for location in locations:
                            _ = (location.symbol, location.lang, location.sym_addr)
                            _ = (location.full_path, location.line)

        return run

    for index, addresses in plan:  # every frame resolves
        symcache = symbolic.SymCache.open(entries[index])
        if not all(symcache.lookup(address) for address in addresses):
            raise RuntimeError(f"{modules[index].name}: an address does not resolve")
    raw_open_lookup = per_call_us(calls, raw(True, True))
    raw_lookup = per_call_us(calls, raw(False, True))
    raw_lookup_bare = per_call_us(calls, raw(False, False))
    return {
        **steps,
        "symbolicate_per_frame_us": round(steps["symbolicate_us"] / frames, 3),
        "raw_open_lookup_us": raw_open_lookup,
        "raw_lookup_us": raw_lookup,
        "raw_lookup_bare_us": raw_lookup_bare,
        "raw_open_lookup_per_frame_us": round(raw_open_lookup / frames, 3),
        "raw_lookup_per_frame_us": round(raw_lookup / frames, 3),
        "frames": frames,
        "config": config,
    }


def run_once(
    index: int,
    workdir: Path,
    workers: int,
    modules: list[BenchModule],
    levels: list[int],
    seconds: float,
    sustain: float,
    calls: int,
    extra: dict[str, Any],
) -> dict[str, Any]:
    config = {
        **extra,
        "server": {**extra.get("server", {}), "workers": workers},
        "logging": {"level": "warning"},
    }
    with running_server(workdir / f"data-{workers}-{index}", config) as server:
        upload_modules(server, modules)
        wait_tree_idle(server.pid)
        source = {"type": "store", "id": "store", "organization": "default", "project": PROJECT}
        body = symbolicate_request(modules, [source])
        body_file = workdir / "request.json"
        body_file.write_text(json.dumps(body))
        with server.client() as client:
            first = client.post(ROUTE, json=body).json()
        shape = check_response(first, len(body["stacktraces"][0]["frames"]))
        processes = len(tree_memory(server.pid))
        phases = [
            load_phase(server, workers, body_file, connections, seconds) for connections in levels
        ]
        sustained = load_phase(
            server, workers, body_file, SUSTAINED_CONNECTIONS, seconds, warmup=sustain
        )
        sustained["warmup_seconds"] = sustain
        wait_for_quiet_machine()
        split = in_process(server, config, modules, body, calls)
    frames = split["frames"]
    unloaded = phases[0]
    server_per_frame = unloaded["server_ms_per_request"] * 1000 / frames
    best = max(phases, key=lambda phase: phase["requests_per_s"])
    for phase in [*phases, sustained]:
        phase["server_us_per_frame"] = round(phase["server_ms_per_request"] * 1000 / frames, 2)
        phase["server_cpu_us_per_frame"] = round(
            phase["server_cpu_ms_per_request"] * 1000 / frames, 2
        )
    return {
        "workers": workers,
        "server_processes": processes,
        "response": shape,
        "phases": phases,
        "sustained": sustained,
        "in_process": split,
        "best_requests_per_s": best["requests_per_s"],
        "best_connections": best["connections"],
        "server_us_per_frame": round(server_per_frame, 2),
        "raw_us_per_frame": split["raw_open_lookup_per_frame_us"],
        "ratio_server_to_raw": round(server_per_frame / split["raw_open_lookup_per_frame_us"], 1),
        "ratio_server_to_raw_lookup_only": round(
            server_per_frame / split["raw_lookup_per_frame_us"], 1
        ),
        "disturbed": any(phase["disturbed"] for phase in [*phases, sustained]),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    levels = [phase["connections"] for phase in runs[0]["phases"]]
    by_level = {}
    for position, connections in enumerate(levels):
        phases = [run["phases"][position] for run in runs]
        by_level[str(connections)] = {
            key: median([phase[key] for phase in phases]) for key in PHASE_KEYS
        }
    by_level[f"{SUSTAINED_CONNECTIONS} sustained"] = {
        key: median([run["sustained"][key] for run in runs]) for key in PHASE_KEYS
    }
    in_process_keys = [k for k in runs[0]["in_process"] if k.endswith("_us")]
    return {
        "by_connections": by_level,
        "best_requests_per_s": median([run["best_requests_per_s"] for run in runs]),
        "sustained_requests_per_s": median([run["sustained"]["requests_per_s"] for run in runs]),
        "server_us_per_frame": median([run["server_us_per_frame"] for run in runs]),
        "raw_us_per_frame": median([run["raw_us_per_frame"] for run in runs]),
        "ratio_server_to_raw": median([run["ratio_server_to_raw"] for run in runs]),
        "ratio_server_to_raw_lookup_only": median(
            [run["ratio_server_to_raw_lookup_only"] for run in runs]
        ),
        "in_process": {
            key: median([run["in_process"][key] for run in runs]) for key in in_process_keys
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=15.0, help="wrk duration per level")
    parser.add_argument(
        "--sustain", type=float, default=100.0, help="load before the sustained phase (s)"
    )
    parser.add_argument("--calls", type=int, default=2000, help="in-process calls per step")
    parser.add_argument("--workdir", type=Path, default=default_workdir() / "symbolicate-warm")
    parser.add_argument("--name", default="symbolicate_warm", help="result file name")
    add_server_options(parser)
    args = parser.parse_args()
    extra = server_config(args.set)
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    modules = bench_modules(bench_fixtures(), workdir / "modules")

    results: dict[str, Any] = {}
    repeated = 0
    for workers in args.workers:
        runs = []
        for index in range(args.runs):
            run, thrown_away = undisturbed_run(
                lambda index=index, workers=workers: run_once(
                    index,
                    workdir,
                    workers,
                    modules,
                    args.connections,
                    args.seconds,
                    args.sustain,
                    args.calls,
                    extra,
                ),
                lambda result: bool(result["disturbed"]),
            )
            repeated += thrown_away
            runs.append(run)
            levels = ", ".join(
                f"c={p['connections']}: {p['requests_per_s']:.0f} req/s p50 {p['p50_ms']:.2f} ms "
                f"p99 {p['p99_ms']:.2f} ms server {p['server_ms_per_request']:.2f} ms "
                f"cpu {p['server_cpu_ms_per_request']:.2f} ms"
                for p in [*run["phases"], run["sustained"]]
            )
            split = run["in_process"]
            print(
                f"workers={workers} run {index + 1}: {levels}; in-process "
                f"symbolicate {split['symbolicate_us']:.0f} us, parse {split['parse_us']:.0f} "
                f"us, authorize {split['authorize_us']:.0f} us, serialize "
                f"{split['serialize_us']:.0f} us; raw {split['raw_open_lookup_us']:.0f} us "
                f"(lookups {split['raw_lookup_us']:.0f} us); server/raw per frame "
                f"{run['ratio_server_to_raw']}",
                flush=True,
            )
        results[str(workers)] = {"median": summarize(runs), "runs": runs}

    throughput = max(r["median"]["best_requests_per_s"] for r in results.values())
    ratio = min(r["median"]["ratio_server_to_raw"] for r in results.values())
    met = {"requests_per_s": throughput >= TARGET_RPS, "server_to_raw": ratio <= TARGET_RATIO}
    path = write_result(
        args.name,
        {
            "target": (
                f">= {TARGET_RPS:.0f} requests/s and server time per frame <= {TARGET_RATIO} x "
                "raw symbolic look-up, warm caches, 64 frames / 8 modules"
            ),
            "met": met,
            "machine": machine_info(workdir),
            "settings": {
                "runs": args.runs,
                "connections": args.connections,
                "seconds_per_level": args.seconds,
                "wrk_threads": 1,
                "modules": [module.name for module in modules],
                "frames": 64,
                "in_process_calls": args.calls,
                "server_config": extra,
                "runs_repeated_because_disturbed": repeated,
            },
            "workers": results,
        },
    )
    for workers, result in results.items():
        summary = result["median"]
        print(
            f"workers={workers}: best {summary['best_requests_per_s']:.0f} req/s; server "
            f"{summary['server_us_per_frame']:.1f} us/frame vs raw "
            f"{summary['raw_us_per_frame']:.2f} us/frame = {summary['ratio_server_to_raw']} x"
        )
    print(f"targets: {met}; written to {path}")


if __name__ == "__main__":
    main()
