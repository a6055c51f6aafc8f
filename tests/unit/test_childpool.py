"""ChildPool: real child processes, tasks that answer, raise, crash and wait."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from symvault.childpool import ChildDied, ChildPool, NoChildren, TaskFailed

# Tasks and initializers run in children, which import this module by name.


def make_state(label: str) -> dict[str, str]:
    return {"label": label}


def failing_initializer() -> None:
    raise RuntimeError("no configuration")


def describe(state: dict[str, str], value: int) -> tuple[str, int, int]:
    return state["label"], value * 2, os.getpid()


def pid_after(state: dict[str, str], seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def raising(state: dict[str, str]) -> None:
    raise ValueError("the file is not an object file")


def crashing(state: dict[str, str]) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def unpicklable(state: dict[str, str]) -> object:
    return lambda: None


@pytest.fixture
def pool() -> Iterator[ChildPool]:
    started = ChildPool(2, make_state, ("test",), threads=4, name="test", restart_delay=0.2)
    started.start()
    assert started.wait_started(timeout=60) == 2
    yield started
    started.close()


def test_tasks_run_in_children_with_the_initializers_state(pool: ChildPool) -> None:
    futures = [pool.submit(describe, (n,), weight=1) for n in range(6)]
    results = [future.result(timeout=30) for future in futures]
    assert [(label, doubled) for label, doubled, _ in results] == [
        ("test", 2 * n) for n in range(6)
    ]
    pids = {pid for _, _, pid in results}
    assert os.getpid() not in pids
    assert len(pids) == 2  # light tasks spread over both children


def test_a_heavy_task_leaves_the_other_child_to_the_light_ones(pool: ChildPool) -> None:
    heavy = pool.submit(pid_after, (0.5,), weight=350_000)
    light = [pool.submit(pid_after, (0.01,), weight=16_000) for _ in range(7)]
    heavy_pid = heavy.result(timeout=30)
    light_pids = {future.result(timeout=30) for future in light}
    assert light_pids
    assert heavy_pid not in light_pids


def test_tasks_in_one_child_run_at_the_same_time(pool: ChildPool) -> None:
    started = time.monotonic()
    # Same weight each: the first two go to different children, the others follow the
    # lower load; four threads per child, so eight 0.5 s waits end in about 0.5 s.
    futures = [pool.submit(pid_after, (0.5,), weight=1) for _ in range(8)]
    for future in futures:
        future.result(timeout=30)
    assert time.monotonic() - started < 1.5


def test_an_exception_in_a_task_is_reported_with_its_message(pool: ChildPool) -> None:
    with pytest.raises(TaskFailed, match="ValueError: the file is not an object file"):
        pool.submit(raising, (), weight=1).result(timeout=30)
    assert pool.submit(describe, (1,), weight=1).result(timeout=30)[1] == 2


def test_a_result_that_does_not_pickle_is_a_failure_not_a_hang(pool: ChildPool) -> None:
    with pytest.raises(TaskFailed):
        pool.submit(unpicklable, (), weight=1).result(timeout=30)
    assert pool.running == 2


def test_a_crashed_child_fails_its_tasks_and_is_replaced(pool: ChildPool) -> None:
    waiting = pool.submit(pid_after, (5.0,), weight=1000)
    crash = pool.submit(crashing, (), weight=1)
    with pytest.raises(ChildDied):
        crash.result(timeout=30)
    # The other child's task is unaffected.
    assert waiting.result(timeout=30) != os.getpid()
    deadline = time.monotonic() + 60
    while pool.running < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pool.running == 2
    assert pool.submit(describe, (3,), weight=1).result(timeout=30)[1] == 6


def test_children_that_cannot_start_leave_no_children() -> None:
    broken = ChildPool(1, failing_initializer, (), threads=1, name="broken")
    try:
        broken.start()
        assert broken.wait_started(timeout=60) == 0
        with pytest.raises(NoChildren):
            broken.submit(describe, (1,), weight=1)
    finally:
        broken.close()


def test_close_fails_pending_tasks_and_ends_the_children() -> None:
    pool = ChildPool(1, make_state, ("x",), threads=1, name="closing")
    pool.start()
    assert pool.wait_started(timeout=60) == 1
    pid = pool.submit(describe, (1,), weight=1).result(timeout=30)[2]
    pending = pool.submit(pid_after, (30.0,), weight=1)
    pool.close()
    with pytest.raises(ChildDied):
        pending.result(timeout=10)
    assert not _alive(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_close_leaves_no_descriptor_of_the_pool_open() -> None:
    # Each child's connection is closed once, by its reader, before `close` returns.
    before = _open_descriptors()
    for round_ in range(3):
        pool = ChildPool(2, make_state, ("fds",), threads=2, name=f"fds-{round_}")
        pool.start()
        assert pool.wait_started(timeout=60) == 2
        assert pool.submit(describe, (round_,), weight=1).result(timeout=30)[1] == 2 * round_
        pool.close()
    assert _open_descriptors() - before == set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_end_when_the_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from tests.unit.test_childpool import make_state, pid_after
        from symvault.childpool import ChildPool

        pool = ChildPool(2, make_state, ("x",), threads=1, name="orphans")
        pool.start()
        pool.wait_started(timeout=60)
        futures = [pool.submit(pid_after, (0.5,), weight=1) for _ in range(4)]
        pids = {future.result() for future in futures}
        print(" ".join(map(str, sorted(pids))), flush=True)
        sys.stdin.read()
        """
    )
    root = Path(__file__).resolve().parents[2]
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert parent.stdout is not None
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(pids) == 2
    assert all(_alive(pid) for pid in pids)
    parent.kill()
    parent.communicate()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    """True while `pid` runs (zombies count as ended: only their parent can reap them)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _open_descriptors() -> set[str]:
    return {entry.name for entry in Path("/proc/self/fd").iterdir()}
