"""Peak server memory while sentry-cli uploads and the server assembles a 1 GiB debug file.

Target: the server's peak resident set size (RSS) stays under 300 MiB.

Every run starts a fresh server and runs `sentry-cli debug-files upload --wait BIG.debug`
against it (default options: 8 MiB gzip chunks, 8 requests at once). A thread reads
/proc/<server pid>/status every 20 ms (VmRSS, RssAnon, RssFile); at the end VmHWM, the
kernel's own high-water mark of the RSS, gives the peak that sampling could miss. Samples
are split into the chunk upload and the assembly (from the moment the server's staging
file `assemble-*` appears). After sentry-cli exits, sampling goes on until the server is idle.

The 1 GiB section is compressible by default; `--junk random` (incompressible) needs
`--set upload.max_request_size=33MiB`, because at the default limit the server refuses
sentry-cli's requests (see benchmarks/README.md, finding F1).

Usage: uv run python benchmarks/upload_memory.py [--runs 3] [--size-mib 1024] [--junk random]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import time
from functools import partial
from pathlib import Path
from typing import Any

from _harness import (
    GIB,
    MIB,
    ForeignLoad,
    MemorySample,
    RssSampler,
    StagingWatcher,
    add_server_options,
    check_free_space,
    default_workdir,
    is_disturbed,
    machine_info,
    make_big_debug_file,
    median,
    mib,
    parse_client_log,
    process_cpu_seconds,
    process_memory,
    process_threads,
    running_server,
    sentry_cli_env,
    sentry_cli_upload_command,
    server_config,
    undisturbed_run,
    wait_for_quiet_machine,
    wait_until_idle,
    write_result,
)

LIMIT = 300 * MIB


def sample_json(sample: MemorySample, started: float) -> dict[str, float]:
    return {
        "at_s": round(sample.at - started, 2),
        "rss_mib": mib(sample.rss),
        "anon_mib": mib(sample.anon),
        "file_mib": mib(sample.file),
    }


def run_once(
    index: int, workdir: Path, big: Path, interval: float, config: dict[str, Any]
) -> dict[str, Any]:
    with running_server(workdir / f"data-{index}", config) as server:
        time.sleep(0.5)  # let start-up settle
        baseline = process_memory(server.pid)
        cpu = process_cpu_seconds(server.pid)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        command = sentry_cli_upload_command(server, "bench", big)
        client_log = workdir / f"sentry-cli-{index}.log"
        waited = wait_for_quiet_machine()
        with (
            StagingWatcher(server.staging_dir, big.stat().st_size, interval=0.01) as watcher,
            RssSampler(server.pid, interval) as sampler,
            ForeignLoad(server.pid) as other,
        ):
            launched = time.time()
            started = time.perf_counter()
            with client_log.open("w") as stderr:
                result = subprocess.run(
                    command,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    text=True,
                    env=sentry_cli_env("debug"),
                    check=False,
                )
            elapsed = time.perf_counter() - started
            threads = process_threads(server.pid)
            client_cpu = process_cpu_seconds(server.pid) - cpu
            # Work the upload started in the background (cache precomputation) counts too.
            background = wait_until_idle(server.pid)
        cpu = process_cpu_seconds(server.pid) - cpu
        after = process_memory(server.pid)
        client = resource.getrusage(resource.RUSAGE_CHILDREN)
        if result.returncode != 0 or " OK " not in result.stdout:
            lines = client_log.read_text().splitlines()
            errors = [line for line in lines if line.startswith("error") or "reported" in line]
            raise RuntimeError(f"sentry-cli failed:\n{result.stdout}\n" + "\n".join(errors[-8:]))
    timeline = parse_client_log(client_log.read_text(), launched)
    client_log.unlink()
    samples = sampler.samples
    split_at = watcher.appeared or float("inf")
    exited = started + elapsed
    uploading = [s for s in samples if s.at < split_at]
    assembling = [s for s in samples if split_at <= s.at < exited]
    after_exit = [s for s in samples if s.at >= exited]
    peak = sampler.peak()

    def highest(part: list[MemorySample]) -> float | None:
        return mib(max(s.rss for s in part)) if part else None

    return {
        "wall_seconds": round(elapsed, 2),
        "waited_for_quiet_s": waited,
        "other_cpu_seconds": other.seconds,
        "client_phases_s": {
            "scan_and_hash": round(timeline.first_assemble - timeline.options_answered, 2),
            "chunk_upload": round(timeline.uploads_done - (timeline.first_upload or 0.0), 2),
            "assembly_and_polls": round(timeline.last_response - timeline.uploads_done, 2),
        },
        "assembly_started_after_s": round(split_at - started, 2) if watcher.appeared else None,
        "baseline_rss_mib": mib(baseline["VmRSS"]),
        "baseline_hwm_mib": mib(baseline["VmHWM"]),
        "peak_sampled": sample_json(peak, started),
        "peak_during_upload_mib": highest(uploading),
        "peak_during_assembly_mib": highest(assembling),
        "peak_after_client_exit_mib": highest(after_exit),
        "background_busy_after_exit_s": round(background, 1),
        "vm_hwm_mib": mib(after["VmHWM"]),
        "final_rss_mib": mib(after["VmRSS"]),
        "samples": len(samples),
        "server_cpu_seconds_until_client_exit": round(client_cpu, 2),
        "server_cpu_seconds": round(cpu, 2),
        "sentry_cli_cpu_seconds": round(
            client.ru_utime + client.ru_stime - children.ru_utime - children.ru_stime, 2
        ),
        "server_threads_at_end": threads,
    }


def disturbed(run: dict[str, Any]) -> bool:
    return is_disturbed(run["other_cpu_seconds"], run["wall_seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024, help="size of the random section")
    parser.add_argument("--interval", type=float, default=0.02, help="RSS sampling interval (s)")
    parser.add_argument("--workdir", type=Path, default=default_workdir() / "memory")
    parser.add_argument("--keep-file", action="store_true", help="keep the big debug file")
    parser.add_argument("--name", default="upload_memory", help="result file name")
    parser.add_argument(
        "--junk",
        choices=("compressible", "random"),
        default="compressible",
        help="content of the 1 GiB section (random needs a larger upload.max_request_size)",
    )
    add_server_options(parser)
    args = parser.parse_args()
    config = server_config(args.set)

    workdir: Path = args.workdir
    size = args.size_mib * MIB
    check_free_space(workdir, 4 * size + GIB // 4)
    big = make_big_debug_file(workdir, size, compressible=args.junk == "compressible")
    total = big.stat().st_size
    print(f"{big.name}: {total} bytes")

    runs = []
    repeated = 0
    try:
        for index in range(args.runs):
            attempt = partial(run_once, index, workdir, big, args.interval, config)
            run, thrown_away = undisturbed_run(attempt, disturbed)
            repeated += thrown_away
            runs.append(run)
            print(
                f"run {index + 1}: upload+assembly {run['wall_seconds']:.1f} s, "
                f"baseline {run['baseline_rss_mib']:.0f} MiB, peak sampled "
                f"{run['peak_sampled']['rss_mib']:.0f} MiB "
                f"(upload {run['peak_during_upload_mib']} MiB, "
                f"assembly {run['peak_during_assembly_mib']} MiB, after sentry-cli exited "
                f"{run['peak_after_client_exit_mib']} MiB), "
                f"VmHWM {run['vm_hwm_mib']:.0f} MiB"
            )
    finally:
        if not args.keep_file:
            big.unlink(missing_ok=True)

    peak = median([run["vm_hwm_mib"] for run in runs])
    worst = max(run["vm_hwm_mib"] for run in runs)
    summary = {
        "wall_seconds": median([run["wall_seconds"] for run in runs]),
        "baseline_rss_mib": median([run["baseline_rss_mib"] for run in runs]),
        "peak_sampled_rss_mib": median([run["peak_sampled"]["rss_mib"] for run in runs]),
        "vm_hwm_mib": peak,
        "vm_hwm_worst_mib": worst,
        "server_cpu_seconds": median([run["server_cpu_seconds"] for run in runs]),
        "sentry_cli_cpu_seconds": median([run["sentry_cli_cpu_seconds"] for run in runs]),
    }
    met = worst < LIMIT / MIB
    path = write_result(
        args.name,
        {
            "target": "peak server RSS < 300 MiB during a 1 GiB sentry-cli upload + assembly",
            "met": met,
            "machine": machine_info(workdir),
            "settings": {
                "file_bytes": total,
                "junk": args.junk,
                "sample_interval_s": args.interval,
                "runs": args.runs,
                "runs_repeated_because_disturbed": repeated,
                "server_config": config,
            },
            "median": summary,
            "runs": runs,
        },
    )
    print(
        f"median: wall {summary['wall_seconds']:.1f} s, baseline "
        f"{summary['baseline_rss_mib']:.0f} MiB, peak (VmHWM) {peak:.0f} MiB, "
        f"worst {worst:.0f} MiB "
        f"(target < 300 MiB: {'met' if met else 'NOT met'}); written to {path}"
    )


if __name__ == "__main__":
    main()
