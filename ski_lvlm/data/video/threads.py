"""Decode threads with a deadline, and fork safety for the decoders.

:func:`with_deadline` runs one decode on a small pool of reusable daemon threads and gives up after
``timeout`` seconds, so a pathological file cannot stall a data loader. The fork hooks keep forked workers
(DataLoader, ``ski-lvlm data scan``) from inheriting a dead pool or half-freed decoder objects.
"""

from __future__ import annotations

import os
import queue
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Callable

from ski_lvlm.data.video.base import VideoDecodeError

class _DecodeThreads:
    """A few reusable *daemon* decode threads (``ThreadPoolExecutor`` threads are joined at interpreter
    exit, so one stuck decoder would hang the program's exit)."""

    def __init__(self, max_threads: int):
        self.max_threads = max_threads
        self.tasks: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.threads = 0
        self.idle = 0

    def submit(self, fn: Callable[[threading.Event], Any], cancel: threading.Event) -> Future:
        fut: Future = Future()
        with self.lock:
            if self.idle == 0 and self.threads < self.max_threads:
                self.threads += 1
                threading.Thread(target=self._loop, name="ski-decode", daemon=True).start()
        self.tasks.put((fut, fn, cancel))
        return fut

    def retire(self) -> None:
        for _ in range(self.max_threads):
            self.tasks.put(None)

    def _loop(self) -> None:
        while True:
            with self.lock:
                self.idle += 1
            item = self.tasks.get()
            with self.lock:
                self.idle -= 1
            if item is None:
                return
            fut, fn, cancel = item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn(cancel))
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                if isinstance(e, VideoDecodeError):
                    # the message says it all; drop frames that still hold decoder objects
                    e.__traceback__ = e.__context__ = e.__cause__ = None
                fut.set_exception(e)
            del item, fut, fn, cancel


_POOL_THREADS = 8  # concurrent read_frames calls per process (threaded data loaders)
_pool_lock = threading.Lock()
_pool: _DecodeThreads | None = None


def _get_pool() -> _DecodeThreads:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _DecodeThreads(_POOL_THREADS)
        return _pool


def _reset_after_fork() -> None:
    """A forked child (DataLoader worker, scan worker) inherits the pool object but not its threads."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


_decoded_since_gc = False  # set by every PyAV/decord call (note_decoded)


def note_decoded() -> None:
    """Record that this process opened a decoder (see :func:`_collect_before_fork`)."""
    global _decoded_since_gc
    _decoded_since_gc = True


def _collect_before_fork() -> None:
    """Free unreachable decoder objects in the parent before a fork.

    PyAV containers and streams reference each other, so they are freed by the cycle collector, not at
    once. A codec context still waiting for collection when the process forks would be freed in the
    child, where its decoder threads do not exist: ``avcodec_free_context`` then waits forever (a
    DataLoader or ``multiprocessing`` worker that hangs on start). Collecting first avoids that; it runs
    only if this process decoded something since the last fork.
    """
    global _decoded_since_gc
    if _decoded_since_gc:
        import gc

        gc.collect()
        _decoded_since_gc = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_collect_before_fork, after_in_child=_reset_after_fork)


def _retire_pool(pool: _DecodeThreads) -> None:
    """Abandon a pool whose thread is stuck in a decoder; later calls get a fresh pool."""
    global _pool
    with _pool_lock:
        if _pool is pool:
            _pool = None
    pool.retire()


def with_deadline(path: Path, timeout: float | None, fn: Callable[[threading.Event], Any]) -> Any:
    """Run ``fn(cancel)`` on a decode thread; raise ``VideoDecodeError(timeout)`` after ``timeout`` s.

    ``fn`` polls ``cancel`` between frames, so an abandoned decode stops soon after the deadline; a decoder
    stuck inside C code keeps its thread, and the pool holding it is retired. The threads are reused
    (a fresh thread per call would get a fresh malloc arena and page-fault the whole frame buffer every
    time, about 5-10 % slower than decoding inline). Threads, not processes: no fork and no copy of the
    decoded frames on the happy path.
    """
    cancel = threading.Event()
    if timeout is None or timeout <= 0:
        return fn(cancel)
    pool = _get_pool()
    fut = pool.submit(fn, cancel)
    try:
        return fut.result(timeout)
    except FutureTimeout:
        cancel.set()
        if not fut.cancel():  # running (not just queued): its thread may be stuck
            _retire_pool(pool)
        raise VideoDecodeError(path, "timeout", f"no result after {timeout:g} s") from None
