"""`ChildPool`: work run in child processes, each with threads of its own.

A server process holds one interpreter lock for all its threads. Downloads and
the Python around conversions need it, so a large file's download waits behind
the small files of the same request, and its conversion starts late. Children
have locks of their own: a pool of them runs tasks with the cores to
themselves, and a child that crashes (a conversion of a hostile file, the
kernel's OOM killer) takes its own tasks down, not the server.

- A child calls `initializer(*initargs)` once; what it returns (its state) is
  the first argument of every task it runs: `fn(state, *args)`. Functions and
  arguments are pickled, so tasks are module-level functions.
- Every task has a weight (the size of its work, roughly); it goes to the
  child with the least weight in flight, so one large task gets a child to
  itself while the small ones share the other.
- A child runs up to `threads` tasks at once (tasks that wait on the network
  should not wait for each other).
- A child that ends fails its tasks in flight with `ChildDied` and is started
  again; children end with the pool's process (`PR_SET_PDEATHSIG` on Linux,
  and the end of their pipe anywhere). The kernel sends that signal when the
  *thread* that started the child ends, so one thread of the pool, alive until
  `close`, starts them all.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from symvault.logs import log_event

__all__ = ["ChildDied", "ChildPool", "NoChildren", "TaskFailed"]

logger = logging.getLogger(__name__)

#: A child that ends sooner than this after it started is started again only after
#: `_RESTART_DELAY`: one that cannot live must not be restarted in a tight loop.
_MIN_LIFETIME = 5.0
_RESTART_DELAY = 5.0
_PR_SET_PDEATHSIG = 1
#: How a child starts: a new interpreter (nothing inherited from a process with
#: threads), given its end of a socket pair and the pid of its parent.
_CHILD_COMMAND = "import sys; from symvault.childpool import serve; serve(sys.argv[1:])"


class NoChildren(Exception):
    """No child is running (none could be started): do the work elsewhere."""


class ChildDied(Exception):
    """The child running the task ended before it answered."""


class TaskFailed(Exception):
    """The task raised in the child; the message names the exception."""


class _Child:
    """One child process as the pool sees it."""

    def __init__(self, process: subprocess.Popen[bytes], connection: Connection) -> None:
        self.process = process
        self.connection = connection
        self.started_at = time.monotonic()
        self.send_lock = threading.Lock()
        self.tasks: dict[int, tuple[Future[Any], int]] = {}
        self.load = 0
        self.alive = True
        #: Reads the child's answers; the only thread that closes `connection` once
        #: the child is adopted (two closing it could close a descriptor reused since).
        self.reader: threading.Thread | None = None


class ChildPool:
    def __init__(
        self,
        size: int,
        initializer: Callable[..., Any],
        initargs: Sequence[Any],
        threads: int,
        name: str,
        restart_delay: float = _RESTART_DELAY,
    ) -> None:
        self._restart_delay = restart_delay
        self._size = size
        self._initializer = initializer
        self._initargs = tuple(initargs)
        self._threads = threads
        self._name = name
        self._lock = threading.Lock()
        self._children: list[_Child] = []
        self._ids = itertools.count()
        self._closed = False
        #: Children to start again, by the time their predecessor started (None: stop).
        self._restarts: queue.Queue[float | None] = queue.Queue()
        self._started = threading.Event()

    def start(self, timeout: float = 60.0) -> None:
        """Starts the children in the background (`submit` raises `NoChildren` until
        one is ready); one not ready within `timeout` seconds is given up."""
        threading.Thread(
            target=self._supervise, args=(timeout,), name=f"{self._name}-starter", daemon=True
        ).start()

    def wait_started(self, timeout: float = 60.0) -> int:
        """Waits until `start` has started the children it could; how many run."""
        self._started.wait(timeout)
        return self.running

    @property
    def size(self) -> int:
        return self._size

    def _supervise(self, timeout: float) -> None:
        """Starts the children, then starts again those that end, until `close`."""
        starting = [self._spawn() for _ in range(self._size)]
        deadline = time.monotonic() + timeout
        for child in starting:
            if self._await_ready(child, deadline):
                self._adopt(child)
        self._started.set()
        while (predecessor_started := self._restarts.get()) is not None:
            if time.monotonic() - predecessor_started < _MIN_LIFETIME:
                time.sleep(self._restart_delay)
            if self._closed:
                return
            replacement = self._spawn()
            if self._await_ready(replacement, time.monotonic() + timeout):
                self._adopt(replacement)

    @property
    def running(self) -> int:
        with self._lock:
            return len(self._children)

    def submit(self, fn: Callable[..., Any], args: Sequence[Any], weight: int) -> Future[Any]:
        """Runs `fn(state, *args)` in the least loaded child; raises `NoChildren`."""
        future: Future[Any] = Future()
        weight = max(1, weight)
        with self._lock:
            live = [child for child in self._children if child.alive]
            if not live:
                raise NoChildren(f"no {self._name} process is running")
            child = min(live, key=lambda c: (c.load, len(c.tasks)))
            task_id = next(self._ids)
            child.tasks[task_id] = (future, weight)
            child.load += weight
        try:
            with child.send_lock:
                child.connection.send((task_id, fn, tuple(args)))
        except (OSError, ValueError) as exc:  # the child's pipe is gone
            self._finish(child, task_id)
            raise ChildDied(f"the {self._name} process cannot take work: {exc}") from exc
        return future

    def close(self) -> None:
        with self._lock:
            self._closed = True
            children, self._children = self._children, []
        self._restarts.put(None)
        for child in children:
            with contextlib.suppress(OSError, ValueError), child.send_lock:
                child.connection.send(None)
        for child in children:
            _end(child.process, grace=2.0)
            # Its reader sees the end of the pipe and closes the connection (`_lost`).
            if child.reader is not None:
                child.reader.join(timeout=5.0)

    # Children

    def _spawn(self) -> _Child:
        ours, theirs = socket.socketpair()
        with theirs:
            process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
                [sys.executable, "-c", _CHILD_COMMAND, str(theirs.fileno()), str(os.getpid())],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        connection = Connection(ours.detach())
        child = _Child(process, connection)
        try:
            # Where to import from first: unpickling the set-up needs the same modules.
            connection.send(list(sys.path))
            connection.send((self._initializer, self._initargs, self._threads, self._name))
        except OSError:
            pass  # it ended already; `_await_ready` says so
        return child

    def _await_ready(self, child: _Child, deadline: float) -> bool:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            if child.connection.poll(remaining):
                message = child.connection.recv()
                if message == ("ready", None):
                    return True
                log_event(
                    logger,
                    "childpool.start_failed",
                    logging.ERROR,
                    pool=self._name,
                    error=str(message[1]),
                )
            else:
                log_event(logger, "childpool.start_timeout", logging.ERROR, pool=self._name)
        except (EOFError, OSError) as exc:
            log_event(logger, "childpool.start_failed", logging.ERROR, pool=self._name, error=exc)
        _end(child.process, grace=0.0)
        child.connection.close()
        return False

    def _adopt(self, child: _Child) -> None:
        with self._lock:
            if self._closed:
                _end(child.process, grace=0.0)
                child.connection.close()
                return
            self._children.append(child)
            child.reader = threading.Thread(
                target=self._read, args=(child,), name=f"{self._name}-reader", daemon=True
            )
            child.reader.start()

    def _read(self, child: _Child) -> None:
        """Answers of one child, until it ends."""
        while True:
            try:
                task_id, ok, value = child.connection.recv()
            except Exception:  # noqa: BLE001 - ended, closed, or sent what cannot be read
                break
            future = self._finish(child, task_id)
            if future is None:
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(TaskFailed(value))
        self._lost(child)

    def _finish(self, child: _Child, task_id: int) -> Future[Any] | None:
        with self._lock:
            task = child.tasks.pop(task_id, None)
            if task is None:
                return None
            child.load -= task[1]
            return task[0]

    def _lost(self, child: _Child) -> None:
        with self._lock:
            child.alive = False
            tasks, child.tasks = child.tasks, {}
            child.load = 0
            if child in self._children:
                self._children.remove(child)
            closed = self._closed
        _end(child.process, grace=2.0)
        with child.send_lock:  # not while `submit` or `close` sends on it
            child.connection.close()
        for future, _ in tasks.values():
            future.set_exception(ChildDied(f"the {self._name} process ended"))
        if closed:
            return
        log_event(
            logger,
            "childpool.child_ended",
            logging.ERROR,
            pool=self._name,
            exitcode=child.process.returncode,
            tasks=len(tasks),
        )
        self._restarts.put(child.started_at)


def _end(process: subprocess.Popen[bytes], grace: float) -> None:
    """Waits up to `grace` seconds for the process to end, then kills it; reaps it."""
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def serve(argv: Sequence[str]) -> None:
    """A child's main function (`_CHILD_COMMAND`): its socket's fd and its parent's pid."""
    descriptor, parent = int(argv[0]), int(argv[1])
    _end_with_parent()
    if os.getppid() != parent:
        return  # the parent ended before the line above took effect
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when children stop
    connection = Connection(descriptor)
    try:
        sys.path[:] = connection.recv()
        initializer, initargs, threads, name = connection.recv()
    except (EOFError, OSError):
        return
    _serve(connection, initializer, initargs, threads, name)


def _serve(
    connection: Connection,
    initializer: Callable[..., Any],
    initargs: tuple[Any, ...],
    threads: int,
    name: str,
) -> None:
    try:
        state = initializer(*initargs)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which logs it
        connection.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    connection.send(("ready", None))
    send_lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=name)

    def run(task_id: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            reply: tuple[int, bool, Any] = (task_id, True, fn(state, *args))
        except BaseException as exc:  # noqa: BLE001 - the task's caller gets it
            reply = (task_id, False, f"{type(exc).__name__}: {exc}")
        with send_lock:
            try:
                connection.send(reply)
            except (OSError, EOFError):
                return  # the parent is gone
            except Exception as exc:  # noqa: BLE001 - the result does not pickle
                connection.send((task_id, False, f"{type(exc).__name__}: {exc}"))

    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        pool.submit(run, *message)
    pool.shutdown(wait=False, cancel_futures=True)
    # Not `sys.exit`: that would wait for the state's own threads (pools, timers).
    os._exit(0)


def _end_with_parent() -> None:
    """Has the kernel end this process when its parent ends (Linux)."""
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(name).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
