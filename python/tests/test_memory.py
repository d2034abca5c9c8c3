"""Memory retention between collects (polaroid._memory): on glibc, a large result's pages
are reused by the next collect instead of faulted in anew, and go back to the kernel once
collects stop for the period. Measured in a child process against the real standalone,
since the allocator's settings are the whole process's."""

from __future__ import annotations

import json
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
def test_a_second_large_collect_reuses_the_first_ones_pages_then_they_go_back(standalone):
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


@glibc_only
def test_retention_lasts_until_every_overlapping_collect_is_done_plus_the_period():
    retention = _memory.Retention(seconds=0.2)
    first, second = retention.receiving(), retention.receiving()
    first.__enter__()
    assert retention.retaining
    second.__enter__()
    first.__exit__(None, None, None)
    time.sleep(0.5)  # Past the period: the second receipt still holds retention.
    assert retention.retaining
    second.__exit__(None, None, None)
    deadline = time.monotonic() + 10
    while retention.retaining:
        assert time.monotonic() < deadline, "retention never ended"
        time.sleep(0.02)

    # Off: nothing retained, at once, and collects no longer retain.
    with retention.receiving():
        assert retention.retaining
        retention.set_seconds(None)
        assert not retention.retaining
    with retention.receiving():
        assert not retention.retaining


def test_the_period_must_be_a_finite_number_of_seconds():
    retention = _memory.Retention()
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite number"):
            retention.set_seconds(bad)


@glibc_only
def test_collects_from_many_threads_share_one_trimmer():
    retention = _memory.Retention(seconds=0.1)

    def receive() -> None:
        for _ in range(50):
            with retention.receiving():
                pass

    threads = [threading.Thread(target=receive) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 10
    while retention.retaining:
        assert time.monotonic() < deadline, "retention never ended"
        time.sleep(0.02)
    assert retention._trimmer is None


@glibc_only
def test_a_forked_child_keeps_nothing_its_parent_was_retaining():
    import os

    retention = _memory.RETENTION
    with retention.receiving():
        assert retention.retaining
        reader, writer = os.pipe()
        child = os.fork()
        if child == 0:
            os.write(writer, b"1" if retention.retaining else b"0")
            os._exit(0)
        os.close(writer)
        answer = os.read(reader, 1)
        os.close(reader)
        os.waitpid(child, 0)
    assert answer == b"0"
