"""Keeps the memory a large result was received into for the next one, for a while.

gRPC receives a result into memory from the C library's `malloc`, and pyarrow and Polars
keep their columns in that same memory. On glibc, once such a result is freed, `malloc`
hands the pages back to the kernel, so the next collect of a large result faults a fresh
page in for every 4 KiB it receives (about 0.3 s per GiB on the benchmark machine,
docs/benchmarks.md). While results are being collected, and for `seconds` after the last
one, glibc is told to keep freed memory for reuse; then what is free goes back to the
kernel and glibc returns to trimming on every free. That is the decay jemalloc and
mimalloc apply to their own memory, applied to glibc's for the time results arrive.

Elsewhere (musl, macOS, Windows) nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: How long freed memory is kept after the last collect, unless set otherwise.
DEFAULT_SECONDS = 30.0

# mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# While retaining: blocks up to 32 MiB (the ceiling glibc's own adaptive threshold rises
# to on 64-bit) come from the heap, which is then never trimmed on free (`mallopt` takes
# an int, so 2 GiB is the most it can keep). gRPC's receive buffers are a message each,
# 4 MiB from Polaroid's servers.
_RETAIN_MMAP_BYTES = 32 * 1024 * 1024
_RETAIN_TRIM_BYTES = 2**31 - 1
# Afterwards: glibc's initial trim threshold, so frees return memory as in a new process.
_DEFAULT_TRIM_BYTES = 128 * 1024


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):
        return None


class Retention:
    """The process's policy for memory freed after collects: retained while results
    arrive and for `seconds` after the last one, then trimmed."""

    def __init__(self, seconds: float | None = DEFAULT_SECONDS) -> None:
        self._libc = _glibc()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._seconds = seconds
        self._retaining = False
        self._receiving = 0
        self._last_received = 0.0
        self._trimmer: threading.Thread | None = None

    @property
    def retaining(self) -> bool:
        """Whether freed memory is being kept right now."""
        with self._lock:
            return self._retaining

    def set_seconds(self, seconds: float | None) -> None:
        if seconds is not None and not (0 <= seconds < float("inf")):
            raise ValueError(f"seconds must be a finite number >= 0 or None, not {seconds!r}")
        with self._lock:
            self._seconds = seconds
            if not seconds:
                self._stop_retaining()
            # A waiting trimmer re-reads the period (and, with retention off, stops).
            self._changed.notify_all()

    @contextmanager
    def receiving(self) -> Iterator[None]:
        """Wraps receiving a result: freed memory is kept from here until the period
        after the last such receipt has passed."""
        counted = False
        with self._lock:
            if self._libc is not None and self._seconds:
                counted = True
                self._receiving += 1
                if not self._retaining:
                    self._libc.mallopt(_M_MMAP_THRESHOLD, _RETAIN_MMAP_BYTES)
                    self._libc.mallopt(_M_TRIM_THRESHOLD, _RETAIN_TRIM_BYTES)
                    self._retaining = True
        try:
            yield
        finally:
            if counted:
                with self._lock:
                    self._receiving -= 1
                    self._last_received = time.monotonic()
                    if self._trimmer is None:
                        self._trimmer = threading.Thread(
                            target=self._trim_when_idle, name="polaroid-memory", daemon=True
                        )
                        self._trimmer.start()

    def _trim_when_idle(self) -> None:
        with self._lock:
            while self._seconds:
                idle = time.monotonic() - self._last_received
                if self._receiving == 0 and idle >= self._seconds:
                    break
                self._changed.wait(self._seconds - idle if self._receiving == 0 else self._seconds)
            self._stop_retaining()
            self._trimmer = None

    def _stop_retaining(self) -> None:
        """Gives what is free back to the kernel; frees trim again. Called under the lock,
        so a collect starting meanwhile retains again only after this."""
        if self._retaining and self._libc is not None:
            self._libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_BYTES)
            self._libc.malloc_trim(0)
            self._retaining = False

    def _after_fork_in_child(self) -> None:
        # A child has no trimmer thread (and maybe a lock some other thread held): it
        # starts afresh, keeping nothing until it collects itself.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._receiving = 0
        self._trimmer = None
        self._stop_retaining()


RETENTION = Retention()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=RETENTION._after_fork_in_child)


def set_memory_retention(seconds: float | None) -> None:
    """How long, after the last `collect()`, the process keeps the memory freed results
    were received into, so that the next large result reuses it instead of faulting new
    pages in (on glibc; elsewhere nothing changes). `None` or 0 turns this off and gives
    freed memory back now. The default is 30 seconds.

    >>> import polaroid as pr
    >>> pr.set_memory_retention(120)     # a notebook that re-runs large collects
    >>> pr.set_memory_retention(None)    # a process that must stay small
    """
    RETENTION.set_seconds(seconds)
