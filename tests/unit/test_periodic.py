"""Background jobs: they run at their intervals, and one failing job does not stop others."""

from __future__ import annotations

import itertools
import logging
import threading
import time

import pytest

from symvault.periodic import PeriodicJobs


def wait_until(condition: threading.Event, timeout: float = 5.0) -> None:
    assert condition.wait(timeout), "the job did not run in time"


def test_jobs_run_repeatedly_until_stopped() -> None:
    runs: list[float] = []
    ran_three_times = threading.Event()

    def job() -> None:
        runs.append(time.monotonic())
        if len(runs) >= 3:
            ran_three_times.set()

    jobs = PeriodicJobs()
    jobs.add("tick", 0.02, job)
    jobs.start()
    try:
        wait_until(ran_three_times)
    finally:
        jobs.stop()
    count = len(runs)
    time.sleep(0.1)
    assert len(runs) == count, "a stopped job kept running"
    assert all(later - earlier >= 0.015 for earlier, later in itertools.pairwise(runs))


def test_a_failing_job_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    failures = 0
    healthy_runs = 0
    done = threading.Event()

    def failing() -> None:
        nonlocal failures
        failures += 1
        raise RuntimeError("disk on fire")

    def healthy() -> None:
        nonlocal healthy_runs
        healthy_runs += 1
        if healthy_runs >= 3 and failures >= 3:
            done.set()

    jobs = PeriodicJobs()
    jobs.add("failing", 0.01, failing)
    jobs.add("healthy", 0.01, healthy)
    with caplog.at_level(logging.ERROR, logger="symvault.periodic"):
        jobs.start()
        try:
            wait_until(done)
        finally:
            jobs.stop()
    failed = [r for r in caplog.records if "periodic.job_failed" in r.getMessage()]
    assert failed
    assert "job=failing" in failed[0].getMessage()
    assert failed[0].exc_info is not None


def test_delayed_job_waits_for_its_first_run() -> None:
    delayed = threading.Event()
    prompt = threading.Event()
    jobs = PeriodicJobs()
    jobs.add("delayed", 0.01, delayed.set, delay=60)
    jobs.add("prompt", 60, prompt.set)
    jobs.start()
    try:
        wait_until(prompt)
        time.sleep(0.05)
    finally:
        jobs.stop()
    assert not delayed.is_set()


def test_stop_returns_promptly_while_idle() -> None:
    jobs = PeriodicJobs()
    jobs.add("hourly", 3600, lambda: None)
    jobs.start()
    started = time.monotonic()
    jobs.stop()
    assert time.monotonic() - started < 2


def test_no_jobs_no_thread() -> None:
    jobs = PeriodicJobs()
    before = threading.active_count()
    jobs.start()
    assert threading.active_count() == before
    jobs.stop()
