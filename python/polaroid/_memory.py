"""Keeps the memory a large result was received into for the next one, for a while.

gRPC receives a result into memory from the C library's `malloc`, and pyarrow and Polars
keep their columns in that same memory. On glibc, once such a result is freed, `malloc`
hands most of its pages back to the kernel, so the next collect of a large result faults
them in again, one per 4 KiB (about 0.3 s per GiB on the benchmark machine,
docs/benchmarks.md). While whole results are being collected, and for `seconds` after the
last one, glibc is told not to trim freed memory; then what is free goes back to the
kernel (`malloc_trim`) and trimming resumes at glibc's own adapted thresholds.

The setting is the process's: memory other libraries free meanwhile is kept as well. It
is off when the user has tuned glibc's `malloc` (its environment variables or
`GLIBC_TUNABLES`), and nothing changes on other C libraries.
"""

from __future__ import annotations

import ctypes
import os
import platform
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol

#: How long freed memory is kept after the last collect, unless set otherwise.
DEFAULT_SECONDS = 30.0
#: Overrides the default period: a number of seconds, or "off".
ENVIRONMENT_VARIABLE = "POLAROID_MEMORY_RETENTION_SECONDS"

# mallopt(3) parameters.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Blocks below 32 MiB come from the heap, where freed memory can be kept: the ceiling
# glibc's own adaptive mmap threshold rises to on 64-bit. gRPC receives each message
# (4 MiB from Polaroid's servers) into one such block.
RETAIN_MMAP_BYTES = 32 * 1024 * 1024
# -1 is SIZE_MAX to glibc: never trim on free. A finite threshold would not cap what is
# kept: once the free top of the heap passes it, glibc releases all of it.
RETAIN_TRIM = -1
# Afterwards: twice the mmap threshold, the trim threshold glibc's adaptive rule pairs
# with it. (Setting either threshold ends that adaptation for good, so this is where a
# process that once freed a 32 MiB block would be anyway.)
RESTORED_TRIM_BYTES = 2 * RETAIN_MMAP_BYTES
# The longest single wait of the trimmer (the period is re-checked after it).
MAX_WAIT_SECONDS = 3600.0


class Allocator(Protocol):
    """The two glibc calls retention makes."""

    def mallopt(self, param: int, value: int) -> int: ...

    def malloc_trim(self, pad: int) -> int: ...


def _glibc() -> Allocator | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc  # type: ignore[return-value]


def _user_tuned_malloc(environ: Mapping[str, str]) -> bool:
    """Whether the environment already tunes glibc's malloc (`MALLOC_ARENA_MAX`,
    `MALLOC_TRIM_THRESHOLD_` and the like, or `GLIBC_TUNABLES`): its settings are kept."""
    return any(name.startswith("MALLOC_") for name in environ) or "glibc.malloc." in environ.get(
        "GLIBC_TUNABLES", ""
    )


def _checked_seconds(seconds: float | None) -> float | None:
    if seconds is not None and not (0 <= seconds < float("inf")):
        raise ValueError(f"seconds must be a finite number >= 0 or None, not {seconds!r}")
    return seconds or None


def default_seconds(environ: Mapping[str, str] = os.environ) -> float | None:
    """The period a process starts with: the environment's, else 30 s, and none when the
    user tuned malloc themselves."""
    configured = environ.get(ENVIRONMENT_VARIABLE)
    if configured is not None:
        if configured.strip().lower() in ("", "off", "none"):
            return None
        try:
            return _checked_seconds(float(configured))
        except ValueError:
            # A bad value must not stop the package from importing in a notebook.
            warnings.warn(
                f"{ENVIRONMENT_VARIABLE} must be a number of seconds or 'off', not "
                f"{configured!r}; using the default",
                stacklevel=2,
            )
    return None if _user_tuned_malloc(environ) else DEFAULT_SECONDS


class Retention:
    """The process's policy for memory freed after collects: kept while results arrive
    and for `seconds` after the last one, then given back."""

    def __init__(
        self, seconds: float | None = DEFAULT_SECONDS, allocator: Allocator | None = None
    ) -> None:
        self._allocator = allocator if allocator is not None else _glibc()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._seconds = _checked_seconds(seconds)
        self._retaining = False
        self._receiving = 0
        self._last_received = 0.0
        self._trimmer: threading.Thread | None = None
        # Bumped in a forked child, so that a receipt the parent began is not counted off.
        self._generation = 0

    @property
    def retaining(self) -> bool:
        """Whether freed memory is being kept right now."""
        with self._lock:
            return self._retaining

    def set_seconds(self, seconds: float | None) -> None:
        """Sets the period; `None` or 0 stops retaining now and gives freed memory back."""
        seconds = _checked_seconds(seconds)
        with self._lock:
            self._seconds = seconds
            if seconds is None:
                self._stop_retaining()
            # A waiting trimmer re-reads the period.
            self._changed.notify_all()

    @contextmanager
    def receiving(self) -> Iterator[None]:
        """Wraps receiving a whole result: freed memory is kept from here until `seconds`
        after the last receipt ends."""
        generation = None
        with self._lock:
            if self._allocator is not None and self._seconds is not None:
                if self._retaining or self._start_retaining(self._allocator):
                    self._receiving += 1
                    generation = self._generation
        try:
            yield
        finally:
            if generation is not None:
                self._received(generation)

    def _start_retaining(self, allocator: Allocator) -> bool:
        # Without the mmap threshold (a 32-bit glibc refuses 32 MiB), messages would be
        # mapped and unmapped whole, and keeping the heap would keep nothing: retention
        # is then off for good.
        if not allocator.mallopt(M_MMAP_THRESHOLD, RETAIN_MMAP_BYTES):
            self._allocator = None
            return False
        # Marked first: a fork between the two calls must leave a child that restores.
        self._retaining = True
        allocator.mallopt(M_TRIM_THRESHOLD, RETAIN_TRIM)
        return True

    def _received(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation:
                return
            self._receiving -= 1
            self._last_received = time.monotonic()
            if self._trimmer is None:
                trimmer = threading.Thread(
                    target=self._trim_when_idle, name="polaroid-memory", daemon=True
                )
                try:
                    trimmer.start()
                except RuntimeError:
                    # No thread to be had (a thread limit, or the interpreter exiting):
                    # give the memory back now rather than keep it for good.
                    self._stop_retaining()
                    return
                self._trimmer = trimmer

    def _trim_when_idle(self) -> None:
        with self._lock:
            try:
                while self._seconds is not None and self._retaining:
                    idle = time.monotonic() - self._last_received
                    if self._receiving == 0 and idle >= self._seconds:
                        break
                    remaining = self._seconds - idle if self._receiving == 0 else self._seconds
                    self._changed.wait(min(remaining, MAX_WAIT_SECONDS))
            finally:
                self._stop_retaining()
                self._trimmer = None

    def _stop_retaining(self) -> None:
        """Trimming resumes and what is free goes back to the kernel. Called under the
        lock, so a collect starting meanwhile retains again only after this."""
        if self._retaining and self._allocator is not None:
            self._allocator.mallopt(M_TRIM_THRESHOLD, RESTORED_TRIM_BYTES)
            self._allocator.malloc_trim(0)
            self._retaining = False

    def _after_fork_in_child(self) -> None:
        # A child has no trimmer thread (and maybe a lock some other thread held): it
        # starts afresh, keeping nothing until it collects itself.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._generation += 1
        self._receiving = 0
        self._trimmer = None
        self._stop_retaining()


RETENTION = Retention(default_seconds())
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=RETENTION._after_fork_in_child)


def set_memory_retention(seconds: float | None) -> None:
    """How long, after the last whole-result `collect()`, the process keeps the memory
    freed results were received into, so that the next large result reuses it instead
    of faulting new pages in (glibc only). `None` or 0 stops this and gives freed memory
    back now. The default is 30 seconds, or `POLAROID_MEMORY_RETENTION_SECONDS` (a number
    or "off"); it is off when the environment tunes glibc's malloc itself (`MALLOC_*`,
    `GLIBC_TUNABLES`), unless a period is set explicitly, and then the trim threshold
    left after the period is 64 MiB whatever the environment said.

    >>> import polaroid as pr
    >>> pr.set_memory_retention(120)     # a notebook that re-runs large collects
    >>> pr.set_memory_retention(None)    # a process that must stay small
    """
    RETENTION.set_seconds(seconds)
