"""Cold symbolication: one `/symbolicate` request whose 8 modules come from a symbol server.

Target: with cold caches, the request takes at most 1.2 x the time of downloading the same
8 files and converting them directly, one after the other (so downloads and conversions must
overlap).

The debug files of the 8 modules of the symbolication benchmarks (`_harness.bench_modules`)
are served in `native` layout by tests/support/symbol_server.py's `SymbolServer` on
127.0.0.1, which answers every request (found or not) after an artificial delay: 0 and 100 ms
by default, a symbol server next door and one across a WAN. The symvault server is started
fresh for every measurement (empty cache) with an `http` source for it
(`connect_to_reserved_ips: true`, `logging.level: warning`).

In every run and for every delay, in alternating order:

* server: the wall time of one `POST /symbolicate` (the 64-frame stack trace of
  symbolicate_warm.py, `http` source), checked to symbolicate all frames; the symbol
  server's log says which paths were asked for. With `apply_source_context` off (the request
  then needs exactly the 8 files) and with the default options (source bundles are looked
  for too: more requests to the symbol server, none found);
* direct: the same 8 files downloaded one after the other with httpx (one client, made
  before timing as the server makes its own, keeping its connection as the server's
  downloader does), each written to a file, then each converted with symbolic
  (`Archive.open`, the object, `make_symcache`, `dump_into` a file), one after the other.
  Its sum is the baseline. It runs twice: in a new process that has imported httpx and
  symbolic and made its client (`direct`), and in this process, which has done the same
  work before (`direct_warm`);
* direct on threads, as a reference: the same work with the overlap and nothing else,
  each file downloaded and then converted on a thread of its own, fresh
  (`direct_threads`) and warm (`direct_threads_warm`). Its ratio to the sequential work
  says what overlapping alone gains or costs on the machine at that delay.

The fresh server's first request pays for first use of code and of a heap that has to
grow, as the new process's direct work does: the two are compared (`ratio`). The same
request is then sent to the server again in another scope (`?scope=second`): entries of
non-public sources are per scope, so its cache is just as empty, but the process is warm;
it is compared with the warm direct work (`ratio_second_scope`). The target holds if both
medians are within it.

Usage: uv run python benchmarks/symbolicate_cold.py [--runs 5] [--delays 0 0.1]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import symbolic

from _harness import (
    BenchModule,
    ForeignLoad,
    add_server_options,
    default_workdir,
    delayed_symbol_server,
    is_disturbed,
    machine_info,
    median,
    native_symbols,
    running_server,
    server_config,
    symbolicate_request,
    tree_cpu_seconds,
    undisturbed_run,
    wait_for_quiet_machine,
    write_result,
)

TARGET = 1.2


def direct(
    files: list[tuple[str, str, str]], base_url: str, out: Path, client: httpx.Client
) -> dict[str, Any]:
    """Downloads the files (name, path, debug id) one by one, then converts them one by one."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    downloads = []
    started = time.perf_counter()
    for file in files:
        begun = time.perf_counter()
        _download(file, base_url, out, client)
        downloads.append(time.perf_counter() - begun)
    downloaded = time.perf_counter()
    conversions = []
    for file in files:
        begun = time.perf_counter()
        _convert(file, out)
        conversions.append(time.perf_counter() - begun)
    finished = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    return {
        "download_seconds": round(downloaded - started, 4),
        "convert_seconds": round(finished - downloaded, 4),
        "total_seconds": round(finished - started, 4),
        "per_file_download": [round(value, 4) for value in downloads],
        "per_file_convert": [round(value, 4) for value in conversions],
    }


def direct_threads(
    files: list[tuple[str, str, str]], base_url: str, out: Path, client: httpx.Client
) -> dict[str, Any]:
    """The same work with the overlap the target asks for and nothing else: each file
    downloaded, then converted, on a thread of its own (no cache, no bookkeeping). What
    overlapping alone costs or gains on this machine, as a reference for the server."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    def one(file: tuple[str, str, str]) -> None:
        _download(file, base_url, out, client)
        _convert(file, out)

    with ThreadPoolExecutor(len(files)) as pool:
        started = time.perf_counter()
        list(pool.map(one, files))
        finished = time.perf_counter()
    shutil.rmtree(out, ignore_errors=True)
    return {"total_seconds": round(finished - started, 4)}


def _download(file: tuple[str, str, str], base_url: str, out: Path, client: httpx.Client) -> None:
    name, path, _ = file
    response = client.get(base_url + path)
    response.raise_for_status()
    (out / name).write_bytes(response.content)


def _convert(file: tuple[str, str, str], out: Path) -> None:
    name, _, debug_id = file
    archive = symbolic.Archive.open(str(out / name))
    obj = next(o for o in archive.iter_objects() if o.debug_id == debug_id)
    with (out / f"{name}.symcache").open("wb") as handle:
        obj.make_symcache().dump_into(handle)


DIRECT_MODES = {"sequential": direct, "threads": direct_threads}


def direct_files(modules: list[BenchModule]) -> list[tuple[str, str, str]]:
    return [(module.name, module.native_path(), module.debug_id) for module in modules]


def direct_in_fresh_process(
    modules: list[BenchModule], base_url: str, out: Path, mode: str = "sequential"
) -> dict[str, Any]:
    """`direct` (or `direct_threads`) in a new process that has imported httpx and symbolic
    and made its client, as a fresh server has: its first downloads and conversions pay
    their first-use costs (code paged in, a heap that grows), as the server's first
    request does."""
    spec = json.dumps(
        {"files": direct_files(modules), "url": base_url, "out": str(out), "mode": mode}
    )
    completed = subprocess.run(
        [sys.executable, __file__, "--direct-once", spec],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def direct_once(spec: str) -> None:
    """The child of `direct_in_fresh_process`: prints its figures as one JSON line."""
    settings = json.loads(spec)
    files = [tuple(item) for item in settings["files"]]
    work = DIRECT_MODES[settings["mode"]]
    with httpx.Client(timeout=60) as client:
        print(json.dumps(work(files, settings["url"], Path(settings["out"]), client)))


def through_server(
    workdir: Path,
    index: int,
    body: dict[str, Any],
    config: dict[str, Any],
    symbols: Any,
    environment: dict[str, str | None] | None = None,
) -> dict[str, Any]:
    """One request to a fresh server (empty cache); its wall time and the symbol server's log.

    Then the same request in another scope: the cache is empty for it too (entries of
    non-public sources are per scope), but the server process has served a request before.
    `environment`: variables of the server process, as `running_server` takes them.
    """
    data_dir = workdir / f"data-{index}"
    with running_server(data_dir, config, environment) as server, server.client() as client:
        client.get("/healthcheck")  # connection made before timing
        symbols.requests.clear()
        figures = {}
        for label, scope in (("", "first"), ("second_scope_", "second")):
            symbols.requests.clear()
            wait_for_quiet_machine()
            cpu = tree_cpu_seconds(server.pid)  # fetch processes included
            started = time.perf_counter()
            response = client.post("/symbolicate", json=body, params={"scope": scope})
            elapsed = time.perf_counter() - started
            cpu = tree_cpu_seconds(server.pid) - cpu
            check(response.json())
            figures[f"{label}seconds"] = round(elapsed, 4)
            figures[f"{label}server_cpu_seconds"] = round(cpu, 2)
            if not label:
                paths = [request.path for request in symbols.requests]
                figures["symbol_server_requests"] = len(paths)
                figures["symbol_server_paths"] = paths
    return figures


def check(result: dict[str, Any]) -> None:
    if result.get("status") != "completed":
        raise RuntimeError(f"request not completed: {str(result)[:500]}")
    statuses = {frame["status"] for frame in result["stacktraces"][0]["frames"]}
    missing = [m["debug_id"] for m in result["modules"] if m["debug_status"] != "found"]
    if statuses != {"symbolicated"} or missing:
        raise RuntimeError(f"frames {statuses}, modules not found {missing}")


def run_once(
    index: int,
    workdir: Path,
    modules: list[BenchModule],
    symbols_dir: Path,
    delay: float,
    config: dict[str, Any],
    client: httpx.Client,
) -> dict[str, Any]:
    symbols = delayed_symbol_server(symbols_dir, delay)
    result: dict[str, Any] = {"delay": delay}
    other = 0.0
    busy = 0.0
    with symbols:
        source = {"type": "http", "id": "symbols", "url": symbols.url}
        variants = {
            "server": symbolicate_request(modules, [source], apply_source_context=False),
            "server_default_options": symbolicate_request(modules, [source]),
        }
        # The fresh server's first request is compared with a fresh process's direct
        # work; the warm server's request in another scope with direct work in this
        # process, which has done it before.
        files = direct_files(modules)
        out = workdir / "direct"
        direct_work: dict[str, Callable[[], dict[str, Any]]] = {
            "direct": lambda: direct_in_fresh_process(modules, symbols.url, out),
            "direct_warm": lambda: direct(files, symbols.url, out, client),
            "direct_threads": lambda: direct_in_fresh_process(modules, symbols.url, out, "threads"),
            "direct_threads_warm": lambda: direct_threads(files, symbols.url, out, client),
        }
        measurements = [*direct_work, *variants]
        order = measurements if index % 2 == 0 else measurements[::-1]
        for what in order:
            with ForeignLoad() as load:
                if what in direct_work:
                    wait_for_quiet_machine()
                    result[what] = direct_work[what]()
                    busy += result[what]["total_seconds"]
                else:
                    result[what] = through_server(workdir, index, variants[what], config, symbols)
                    busy += result[what]["seconds"]
            other += load.seconds
    baseline = result["direct"]["total_seconds"]
    warm_baseline = result["direct_warm"]["total_seconds"]
    result["order"] = order
    result["ratio"] = round(result["server"]["seconds"] / baseline, 3)
    result["ratio_default_options"] = round(
        result["server_default_options"]["seconds"] / baseline, 3
    )
    result["ratio_second_scope"] = round(
        result["server"]["second_scope_seconds"] / warm_baseline, 3
    )
    result["ratio_direct_threads"] = round(result["direct_threads"]["total_seconds"] / baseline, 3)
    result["ratio_direct_threads_warm"] = round(
        result["direct_threads_warm"]["total_seconds"] / warm_baseline, 3
    )
    result["other_cpu_seconds"] = round(other, 2)
    result["disturbed"] = is_disturbed(other, busy)
    return result


#: The medians reported per delay: name -> the figure's path in a run's result.
MEDIANS: dict[str, tuple[str, ...]] = {
    "direct_seconds": ("direct", "total_seconds"),
    "direct_download_seconds": ("direct", "download_seconds"),
    "direct_convert_seconds": ("direct", "convert_seconds"),
    "direct_warm_seconds": ("direct_warm", "total_seconds"),
    "server_seconds": ("server", "seconds"),
    "ratio": ("ratio",),
    "server_default_options_seconds": ("server_default_options", "seconds"),
    "ratio_default_options": ("ratio_default_options",),
    "server_second_scope_seconds": ("server", "second_scope_seconds"),
    "ratio_second_scope": ("ratio_second_scope",),
    "direct_threads_seconds": ("direct_threads", "total_seconds"),
    "ratio_direct_threads": ("ratio_direct_threads",),
    "direct_threads_warm_seconds": ("direct_threads_warm", "total_seconds"),
    "ratio_direct_threads_warm": ("ratio_direct_threads_warm",),
    "server_default_options_second_scope_seconds": (
        "server_default_options",
        "second_scope_seconds",
    ),
}


def _figure(run: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = run
    for key in path:
        value = value[key]
    return float(value)


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--direct-once":
        direct_once(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--delays", type=float, nargs="+", default=[0.0, 0.1])
    parser.add_argument("--workdir", type=Path, default=default_workdir() / "symbolicate-cold")
    parser.add_argument("--name", default="symbolicate_cold", help="result file name")
    add_server_options(parser)
    args = parser.parse_args()
    extra = server_config(args.set)
    config = {
        **extra,
        "connect_to_reserved_ips": True,
        "logging": {"level": "warning"},
    }
    workdir: Path = args.workdir
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    native = native_symbols(workdir)
    modules, symbols_dir, placed = native.modules, native.directory, native.paths
    sizes = {module.name: module.file.stat().st_size for module in modules}
    print(f"files: {json.dumps(sizes)}", flush=True)

    client = httpx.Client(timeout=60)  # made before timing, as the server makes its own
    with delayed_symbol_server(symbols_dir, 0.0) as symbols:  # first-use costs, unrecorded
        direct(direct_files(modules), symbols.url, workdir / "direct", client)
    results: dict[str, Any] = {}
    repeated = 0
    for delay in args.delays:
        runs = []
        for index in range(args.runs):
            run, thrown_away = undisturbed_run(
                lambda index=index, delay=delay: run_once(
                    index, workdir, modules, symbols_dir, delay, config, client
                ),
                lambda result: bool(result["disturbed"]),
            )
            repeated += thrown_away
            runs.append(run)
            print(
                f"delay {delay * 1000:.0f} ms run {index + 1}: direct "
                f"{run['direct']['total_seconds']:.3f} s (download "
                f"{run['direct']['download_seconds']:.3f}, convert "
                f"{run['direct']['convert_seconds']:.3f}), server {run['server']['seconds']:.3f} s "
                f"({run['server']['symbol_server_requests']} requests to the symbol server), "
                f"ratio {run['ratio']:.2f}; warm: direct "
                f"{run['direct_warm']['total_seconds']:.3f} s, server "
                f"{run['server']['second_scope_seconds']:.3f} s, ratio "
                f"{run['ratio_second_scope']:.2f}; direct on threads "
                f"{run['direct_threads']['total_seconds']:.3f} s fresh "
                f"({run['ratio_direct_threads']:.2f}), "
                f"{run['direct_threads_warm']['total_seconds']:.3f} s warm "
                f"({run['ratio_direct_threads_warm']:.2f}); default options "
                f"{run['server_default_options']['seconds']:.3f} s "
                f"({run['server_default_options']['symbol_server_requests']} requests), ratio "
                f"{run['ratio_default_options']:.2f}",
                flush=True,
            )
        results[f"{delay * 1000:.0f}ms"] = {
            "median": {
                name: median([_figure(run, path) for run in runs]) for name, path in MEDIANS.items()
            },
            "runs": runs,
        }

    client.close()
    # Both comparisons count: a fresh server with a fresh process, a warm one with a warm one.
    worst = max(
        max(result["median"]["ratio"], result["median"]["ratio_second_scope"])
        for result in results.values()
    )
    met = worst <= TARGET
    path = write_result(
        args.name,
        {
            "target": f"cold /symbolicate of 8 modules <= {TARGET} x sequential download + "
            "conversion of the same files (fresh server vs a fresh process, and a warm server "
            "in another scope vs a warm process)",
            "met": met,
            "machine": machine_info(workdir),
            "settings": {
                "runs": args.runs,
                "delays_s": args.delays,
                "files": sizes,
                "native_paths": placed,
                "server_config": config,
                "runs_repeated_because_disturbed": repeated,
            },
            "delays": results,
        },
    )
    for label, result in results.items():
        summary = result["median"]
        print(
            f"delay {label}: direct {summary['direct_seconds']:.3f} s, server "
            f"{summary['server_seconds']:.3f} s, ratio {summary['ratio']:.2f} (default options "
            f"{summary['server_default_options_seconds']:.3f} s, "
            f"{summary['ratio_default_options']:.2f}); warm: direct "
            f"{summary['direct_warm_seconds']:.3f} s, server in another scope "
            f"{summary['server_second_scope_seconds']:.3f} s, "
            f"{summary['ratio_second_scope']:.2f}; direct on threads: "
            f"{summary['ratio_direct_threads']:.2f} fresh, "
            f"{summary['ratio_direct_threads_warm']:.2f} warm"
        )
    print(f"worst ratio {worst:.2f} (target <= {TARGET}: {'met' if met else 'NOT met'}); {path}")


if __name__ == "__main__":
    main()
