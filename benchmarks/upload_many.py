"""Uploading 200 small debug files in one sentry-cli run: total time and the server's share.

Builds 200 distinct small ELF executables with DWARF (`clang -g -O1 -DSEED=n
-Wl,--build-id=sha1`, each with its own build id), then per run starts a fresh server and
times `sentry-cli debug-files upload --wait DIR` against it. The share of the server is
measured three ways:

* from sentry-cli's debug log (nanosecond timestamps on every request and response): the
  time with at least one request in flight (the client waiting for the server), the sleeps
  between polls while the server is still assembling, and what is left: sentry-cli's own
  work (start-up, scanning and hashing the files, compressing chunks, printing);
* from the server: its CPU time (/proc/<pid>/stat) and the sum of request durations of the
  `symvault_http_request_duration_seconds` histogram on /metrics, before and after;
* from the server log: the time from the assemble request that starts the jobs to the last
  `assemble.ok` line.

Usage: uv run python benchmarks/upload_many.py [--runs 5] [--files 200]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from _harness import (
    ForeignLoad,
    add_server_options,
    check_free_space,
    default_workdir,
    histogram_sums,
    is_disturbed,
    llvm_tool,
    machine_info,
    median,
    parse_client_log,
    process_cpu_seconds,
    running_server,
    sentry_cli_env,
    sentry_cli_upload_command,
    server_config,
    server_log_events,
    undisturbed_run,
    wait_for_quiet_machine,
    wait_until_idle,
    write_result,
)

SOURCE = """\
#include <stdio.h>

static int __attribute__((noinline)) mix(int value) { return value * 31 + SEED; }

int main(int argc, char **argv) {
    (void)argv;
    printf("%d\\n", mix(argc));
    return 0;
}
"""
HISTOGRAM = "symvault_http_request_duration_seconds"


# The files


def build_files(directory: Path, count: int) -> list[Path]:
    """`count` distinct small ELF executables with debug info (reused if already built)."""
    stamp = directory / "stamp.json"
    key = {"count": count, "source": hashlib.sha1(SOURCE.encode()).hexdigest()}
    files = [directory / f"tiny-{seed:03d}" for seed in range(count)]
    if stamp.exists() and json.loads(stamp.read_text()) == key:
        return files
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    source = directory.parent / "tiny.c"
    source.write_text(SOURCE)
    clang = llvm_tool("clang")

    def compile_one(seed: int) -> None:
        flags = ["-g", "-O1", f"-DSEED={seed}", "-Wl,--build-id=sha1"]
        subprocess.run([clang, *flags, "-o", str(files[seed]), str(source)], check=True)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(compile_one, range(count)))
    digests = {hashlib.sha1(path.read_bytes()).hexdigest() for path in files}
    if len(digests) != count:
        raise RuntimeError("the generated files are not all distinct")
    stamp.write_text(json.dumps(key))
    return files


# A run


def run_once(
    index: int, workdir: Path, files_dir: Path, count: int, config: dict[str, Any]
) -> dict[str, Any]:
    client_log = workdir / f"sentry-cli-{index}.log"
    with running_server(workdir / f"data-{index}", config) as server:
        waited = wait_for_quiet_machine()
        before = histogram_sums(server.metrics(), HISTOGRAM)
        cpu = process_cpu_seconds(server.pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        command = sentry_cli_upload_command(server, f"many-{index}", files_dir)
        with client_log.open("w") as stderr, ForeignLoad(server.pid) as other:
            launched = time.time()
            started = time.perf_counter()
            result = subprocess.run(
                command,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=sentry_cli_env("debug"),
                check=False,
            )
            elapsed = time.perf_counter() - started
        cpu_at_exit = process_cpu_seconds(server.pid)
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        after = histogram_sums(server.metrics(), HISTOGRAM)
        # Background work the upload started (cache precomputation) may go on.
        background = wait_until_idle(server.pid)
        background_cpu = process_cpu_seconds(server.pid) - cpu_at_exit
        cpu = cpu_at_exit - cpu
        server_log = server.log()
    ok_lines = result.stdout.count(" OK ")
    if result.returncode != 0 or ok_lines != count:
        raise RuntimeError(f"sentry-cli failed ({ok_lines} OK):\n{result.stdout[-3000:]}")

    timeline = parse_client_log(client_log.read_text(), launched)
    client_log.unlink()
    durations = {}
    for route, (count_after, total_after) in after.items():
        count_before, total_before = before.get(route, (0.0, 0.0))
        if route.startswith("/api/"):
            durations[route] = (round(count_after - count_before), total_after - total_before)
    assembled = [at - launched for at, _ in server_log_events(server_log, "assemble.ok")]
    # The first assemble request after the chunk upload starts the jobs.
    jobs_started = timeline.uploads_done if timeline.uploads_done else timeline.first_assemble
    client_own = elapsed - timeline.in_flight_total - timeline.poll_sleeps
    return {
        "wall_seconds": round(elapsed, 3),
        "waited_for_quiet_s": waited,
        "other_cpu_seconds": other.seconds,
        "client": {
            "until_first_request": round(timeline.first_request, 3),
            "scan_and_hash": round(timeline.first_assemble - timeline.options_answered, 3),
            "own_work_total": round(client_own, 3),
            "cpu_seconds": round(
                used.ru_utime + used.ru_stime - children.ru_utime - children.ru_stime, 2
            ),
            "after_last_response": round(elapsed - timeline.last_response, 3),
        },
        "waiting_for_server": {
            "in_flight_total": round(timeline.in_flight_total, 3),
            "in_flight_by_kind": timeline.in_flight,
            "poll_sleeps": round(timeline.poll_sleeps, 3),
            "requests": timeline.requests,
            "assemble_request_seconds": timeline.assemble_requests,
        },
        "server": {
            "cpu_seconds": round(cpu, 2),
            "request_seconds_by_route": {
                route: {"count": n, "seconds": round(total, 3)}
                for route, (n, total) in durations.items()
            },
            "request_seconds_total": round(sum(total for _, total in durations.values()), 3),
            "assembly_span": round(max(assembled) - jobs_started, 3) if assembled else None,
            "assembled_files": len(assembled),
            "busy_after_client_exit": round(background, 1),
            "cpu_seconds_after_client_exit": round(background_cpu, 2),
        },
        "share": {
            "in_flight": round(timeline.in_flight_total / elapsed, 3),
            "in_flight_plus_poll_sleeps": round(
                (timeline.in_flight_total + timeline.poll_sleeps) / elapsed, 3
            ),
            "server_cpu_per_wall": round(cpu / elapsed, 3),
        },
    }


def disturbed(run: dict[str, Any]) -> bool:
    return is_disturbed(run["other_cpu_seconds"], run["wall_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--workdir", type=Path, default=default_workdir() / "many")
    parser.add_argument("--name", default="upload_many", help="result file name")
    add_server_options(parser)
    args = parser.parse_args()
    config = server_config(args.set)

    workdir: Path = args.workdir
    check_free_space(workdir, 1024**3)
    files_dir = workdir / f"files-{args.files}"
    files = build_files(files_dir, args.files)
    size = sum(path.stat().st_size for path in files)
    print(f"{len(files)} files, {size / 1024:.0f} KiB in all")

    runs = []
    repeated = 0
    for index in range(args.runs):
        attempt = partial(run_once, index, workdir, files_dir, args.files, config)
        run, thrown_away = undisturbed_run(attempt, disturbed)
        repeated += thrown_away
        runs.append(run)
        client, waiting, server = run["client"], run["waiting_for_server"], run["server"]
        print(
            f"run {index + 1}: wall {run['wall_seconds']:.2f} s; sentry-cli: before first "
            f"request {client['until_first_request']:.2f} s, scan+hash "
            f"{client['scan_and_hash']:.2f} s, own work {client['own_work_total']:.2f} s; "
            f"waiting: in flight {waiting['in_flight_total']:.2f} s + poll sleeps "
            f"{waiting['poll_sleeps']:.2f} s; server CPU {server['cpu_seconds']:.2f} s, "
            f"assembly span {server['assembly_span']} s"
        )

    def med(*keys: str) -> float:
        values = []
        for run in runs:
            value: Any = run
            for key in keys:
                value = value[key]
            values.append(value)
        return round(median(values), 3)

    summary = {
        "wall_seconds": med("wall_seconds"),
        "client_until_first_request": med("client", "until_first_request"),
        "client_scan_and_hash": med("client", "scan_and_hash"),
        "client_own_work_total": med("client", "own_work_total"),
        "client_cpu_seconds": med("client", "cpu_seconds"),
        "in_flight_total": med("waiting_for_server", "in_flight_total"),
        "poll_sleeps": med("waiting_for_server", "poll_sleeps"),
        "server_cpu_seconds": med("server", "cpu_seconds"),
        "server_request_seconds_total": med("server", "request_seconds_total"),
        "server_assembly_span": med("server", "assembly_span"),
        "share_in_flight": med("share", "in_flight"),
        "share_in_flight_plus_poll_sleeps": med("share", "in_flight_plus_poll_sleeps"),
    }
    path = write_result(
        args.name,
        {
            "target": "report the total time of a 200-file sentry-cli upload and the server share",
            "machine": machine_info(workdir),
            "settings": {
                "files": args.files,
                "bytes": size,
                "runs": args.runs,
                "runs_repeated_because_disturbed": repeated,
                "server_config": config,
            },
            "median": summary,
            "runs": runs,
        },
    )
    print(
        f"median: wall {summary['wall_seconds']:.2f} s, of which waiting for the server "
        f"{summary['in_flight_total']:.2f} s in requests + {summary['poll_sleeps']:.2f} s "
        f"polling; server CPU {summary['server_cpu_seconds']:.2f} s; written to {path}"
    )


if __name__ == "__main__":
    main()
