"""Memory retention between collects (polaroid._memory). On glibc, measured in a child
process against the real standalone (the allocator's settings are the whole process's): a
large result's pages are reused by the next collect instead of faulted in anew, and go
back to the kernel once collects stop for the period. The policy itself (when glibc is
told what, overlapping collects, forks, the period's bounds) is checked against an
allocator that records the calls, on every platform."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from polaroid import _memory

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="retention changes glibc's malloc only",
)

# In the child: a result of 8.4M rows x 2 int64 columns (134 MB), made on the server by a
# cross join, collected four times; then the decay, or retention turned off ("off"). Prints
# what it measured as JSON.
CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import polars as pl
    import polaroid as pr

    def rss():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    pr.set_memory_retention(float(sys.argv[2]))
    conn = pr.connect(sys.argv[1])
    a, b = pl.DataFrame({"a": range(2048)}), pl.DataFrame({"b": range(4096)})
    frame = pr.from_polars(a, connection=conn).join(
        pr.from_polars(b, connection=conn), how="cross"
    )
    out = {}
    first = frame.collect()
    assert first.equals(a.join(b, how="cross")), "the result differs from Polars'"
    out["bytes"] = int(first.estimated_size())
    del first
    out["later_collect_faults"] = []
    for _ in range(3):
        before = faults()
        later = frame.collect()
        out["later_collect_faults"].append(faults() - before)
        out["rss_holding"] = rss()
        del later
    out["rss_just_freed"] = rss()
    out["retaining"] = pr._memory.RETENTION.retaining
    start = time.monotonic()
    if sys.argv[3] == "off":
        pr.set_memory_retention(None)
    while pr._memory.RETENTION.retaining and time.monotonic() - start < 30:
        time.sleep(0.05)
    out["released_after_seconds"] = time.monotonic() - start
    out["rss_released"] = rss()
    out["retaining_after"] = pr._memory.RETENTION.retaining
    print(json.dumps(out))
    """
)


def run_child(address: str, seconds: float, then: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, address, str(seconds), then],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc_only
def test_later_large_collects_reuse_freed_pages_which_then_go_back(standalone):
    period = 3.0
    out = run_child(standalone.address, period, "decay")
    pages = out["bytes"] // 4096
    # Without retention glibc trims on free and each later collect faults the whole result
    # in again (40,000-53,000 faults per collect of these 32,768 pages on the benchmark
    # machine); with it, all three together fault in a few thousand (the first time a
    # thread of gRPC's receives into its own arena, that arena grows).
    assert sum(out["later_collect_faults"]) < pages, out
    # Freed, but kept for the next collect while the period runs...
    assert out["retaining"], out
    assert out["rss_just_freed"] > out["rss_holding"] - out["bytes"] // 4, out
    # ...then given back to the kernel.
    assert not out["retaining_after"], out
    assert out["released_after_seconds"] < 30, out
    assert out["rss_released"] < out["rss_holding"] - out["bytes"] // 2, out


@glibc_only
def test_turning_retention_off_gives_memory_back_at_once(standalone):
    out = run_child(standalone.address, 600, "off")
    assert out["retaining"] and not out["retaining_after"], out
    assert out["released_after_seconds"] < 1, out
    assert out["rss_released"] < out["rss_holding"] - out["bytes"] // 2, out


class RecordingAllocator:
    """Records what retention asks of glibc; `refuse_mmap` plays a glibc that rejects the
    32 MiB mmap threshold."""

    def __init__(self, refuse_mmap: bool = False) -> None:
        self.calls: list[tuple[str, int, int] | tuple[str, int]] = []
        self.refuse_mmap = refuse_mmap

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append(("mallopt", param, value))
        return 0 if self.refuse_mmap and param == _memory.M_MMAP_THRESHOLD else 1

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(("malloc_trim", pad))
        return 1


RETAIN = [
    ("mallopt", _memory.M_MMAP_THRESHOLD, 32 * 1024 * 1024),
    ("mallopt", _memory.M_TRIM_THRESHOLD, -1),
]
RELEASE = [("mallopt", _memory.M_TRIM_THRESHOLD, 64 * 1024 * 1024), ("malloc_trim", 0)]


def wait_until_released(retention: _memory.Retention) -> float:
    start = time.monotonic()
    while retention.retaining:
        assert time.monotonic() - start < 10, "retention never ended"
        time.sleep(0.01)
    return time.monotonic() - start


def test_memory_is_kept_for_the_period_after_the_last_collect_then_given_back():
    allocator = RecordingAllocator()
    retention = _memory.Retention(seconds=0.5, allocator=allocator)
    with retention.receiving():
        assert allocator.calls == RETAIN
    assert retention.retaining, "kept right after the collect"
    assert allocator.calls == RETAIN
    waited = wait_until_released(retention)
    assert 0.3 < waited < 5, waited
    assert allocator.calls == RETAIN + RELEASE
    assert retention._trimmer is None


def test_retention_lasts_until_every_overlapping_collect_is_done_plus_the_period():
    allocator = RecordingAllocator()
    retention = _memory.Retention(seconds=0.1, allocator=allocator)
    first, second = retention.receiving(), retention.receiving()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    time.sleep(0.4)  # Past the period: the second collect still holds retention.
    assert retention.retaining
    second.__exit__(None, None, None)
    wait_until_released(retention)
    assert allocator.calls == RETAIN + RELEASE, "glibc told once each way"


def test_collects_from_many_threads_share_one_trimmer():
    allocator = RecordingAllocator()
    retention = _memory.Retention(seconds=60, allocator=allocator)
    trimmers = set()

    def receive() -> None:
        for _ in range(50):
            with retention.receiving():
                pass
            trimmers.add(retention._trimmer)

    threads = [threading.Thread(target=receive) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    retention.set_seconds(0.01)
    wait_until_released(retention)
    assert len(trimmers - {None}) == 1, trimmers
    assert allocator.calls == RETAIN + RELEASE


def test_a_period_of_none_releases_now_and_later_collects_keep_nothing():
    allocator = RecordingAllocator()
    retention = _memory.Retention(seconds=600, allocator=allocator)
    with retention.receiving():
        retention.set_seconds(None)
        assert not retention.retaining
        assert allocator.calls == RETAIN + RELEASE
    with retention.receiving():
        pass
    assert allocator.calls == RETAIN + RELEASE, "later collects leave glibc alone"
    assert _memory.Retention(seconds=0, allocator=allocator).retaining is False


def test_a_glibc_that_refuses_the_mmap_threshold_is_left_alone():
    allocator = RecordingAllocator(refuse_mmap=True)
    retention = _memory.Retention(seconds=0.1, allocator=allocator)
    for _ in range(3):
        with retention.receiving():
            assert not retention.retaining
    assert allocator.calls == RETAIN[:1], "only the refused call, once"
    assert retention._trimmer is None


def test_without_a_thread_for_the_trimmer_memory_is_given_back_at_once(monkeypatch):
    allocator = RecordingAllocator()
    retention = _memory.Retention(seconds=600, allocator=allocator)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with retention.receiving():
        pass  # The collect itself succeeds.
    monkeypatch.undo()
    assert not retention.retaining
    assert retention._trimmer is None
    assert allocator.calls == RETAIN + RELEASE


def test_a_period_too_long_for_one_wait_still_ends_when_shortened():
    allocator = RecordingAllocator()
    retention = _memory.Retention(seconds=1e10, allocator=allocator)
    with retention.receiving():
        pass
    time.sleep(0.1)
    trimmer = retention._trimmer
    assert trimmer is not None and trimmer.is_alive(), "waiting, not crashed"
    retention.set_seconds(0.05)
    wait_until_released(retention)
    assert allocator.calls == RETAIN + RELEASE


def test_a_fork_inside_a_collect_leaves_the_child_keeping_nothing():
    allocator = RecordingAllocator()
    retention = _memory.Retention(seconds=600, allocator=allocator)
    with retention.receiving():
        retention._after_fork_in_child()  # What the child runs after fork().
        assert not retention.retaining
    assert retention._receiving == 0, "the parent's collect is not counted off"
    assert retention._trimmer is None
    assert allocator.calls == RETAIN + RELEASE


def test_the_period_must_be_a_finite_number_of_seconds():
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number"):
            _memory.Retention(seconds=600, allocator=RecordingAllocator()).set_seconds(bad)


def test_the_default_period_comes_from_the_environment_and_yields_to_malloc_tuning():
    assert _memory.default_seconds({}) == 30.0
    assert _memory.default_seconds({"POLAROID_MEMORY_RETENTION_SECONDS": "120"}) == 120.0
    assert _memory.default_seconds({"POLAROID_MEMORY_RETENTION_SECONDS": "off"}) is None
    assert _memory.default_seconds({"POLAROID_MEMORY_RETENTION_SECONDS": "0"}) is None
    assert _memory.default_seconds({"MALLOC_TRIM_THRESHOLD_": "1"}) is None
    assert _memory.default_seconds({"MALLOC_ARENA_MAX": "2"}) is None
    assert _memory.default_seconds(
        {"MALLOC_ARENA_MAX": "2", "POLAROID_MEMORY_RETENTION_SECONDS": "5"}
    ) == 5.0, "an explicit period wins"
    assert _memory.default_seconds({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}) is None
    assert _memory.default_seconds({"GLIBC_TUNABLES": "glibc.rtld.nns=2"}) == 30.0
    with pytest.warns(UserWarning, match="POLAROID_MEMORY_RETENTION_SECONDS"):
        assert _memory.default_seconds({"POLAROID_MEMORY_RETENTION_SECONDS": "soon"}) == 30.0


@glibc_only
def test_a_forked_child_keeps_nothing_its_parent_was_retaining():
    retention = _memory.RETENTION
    if retention._seconds is None:
        pytest.skip("retention is off in this environment")
    with retention.receiving():
        assert retention.retaining
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:
            try:
                os.write(writer, b"1" if retention.retaining else b"0")
            finally:
                os._exit(0)
        os.close(writer)
        answer = os.read(reader, 1)
        os.close(reader)
        os.waitpid(child, 0)
    assert answer == b"0"
