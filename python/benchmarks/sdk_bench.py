"""The SDK benchmark (docs/benchmarks.md, "Python SDK"):

1. SDK overhead per call over the raw gRPC stub (Head on a small frame, interleaved);
   and per-call latency: the trivial call (that Head) and head(5) + collect() through the
   SDK, p50 and p99, with the raw stub's same requests for reference;
2. collect() of a ~1 GiB result into a polars.DataFrame (by default over Arrow Flight from
   its worker; and with `flight=False`, over Collect through the coordinator), against
   reading the same data from a local Arrow IPC file, and the machine's floor: the same
   bytes over a plain loopback socket;
3. issue 21's pipeline (Parquet -> filter -> with_columns -> join a 1,000-row table ->
   group_by/agg -> sort -> head 20) at 1 and 10 million rows through the SDK on `polaroid
   standalone`, in Polars in-process (its default engine), and in Dask distributed with two
   local workers (`--sections peers`).

Run from the repository root against a release build:

    cargo build --release -p polaroid
    pip install ./python "dask[distributed,dataframe]"
    python python/benchmarks/sdk_bench.py --binary $CARGO_TARGET_DIR/release/polaroid
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import polars as pl
from polars.testing import assert_frame_equal

import polaroid as pr
from polaroid.v1 import dataframe_pb2 as pb

ROOT = pathlib.Path(__file__).resolve().parents[2]


def start_standalone(binary: str, data_root: pathlib.Path, state: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [binary, "standalone", "--bind", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
         "--data-root", str(data_root), "--state-dir", state, "--cache-bytes", str(6 << 30)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    address = process.stdout.readline().strip().rsplit(" ", 1)[-1]
    http = process.stdout.readline().strip().rsplit(" ", 1)[-1]
    process.address = address  # type: ignore[attr-defined]
    # Ready once its workers have registered.
    import urllib.request

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{http}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return process
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("polaroid standalone did not become ready")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[round((len(ordered) - 1) * p)]


def overhead(conn: pr.Connection, iterations: int) -> None:
    frame = pr.from_dict({"a": [1, 2, 3]}, connection=conn)
    request = pb.HeadRequest(handle=frame.handle, n=1)
    sdk, raw = [], []
    # Kept until the end: no handle drops run in the background while timing.
    made = []
    for _ in range(iterations):
        start = time.perf_counter()
        # head() alone makes no call: its handle, asked for, makes the Head call. The frame
        # is kept, not just its handle: a frame let go is dropped on the server (a durable
        # write) by a background thread, in batches of 64, while later calls are timed.
        made.append(head := frame.head(1))
        head.handle
        sdk.append(time.perf_counter() - start)
        start = time.perf_counter()
        conn.stub.Head(request)
        raw.append(time.perf_counter() - start)
    us = lambda s: s * 1e6  # noqa: E731
    print(f"| Head through the SDK, p50 / p99 | {us(percentile(sdk, .5)):.0f} µs / {us(percentile(sdk, .99)):.0f} µs |")
    print(f"| the same on the raw stub, p50 / p99 | {us(percentile(raw, .5)):.0f} µs / {us(percentile(raw, .99)):.0f} µs |")
    print(f"| SDK overhead per call, p50 difference | {us(percentile(sdk, .5) - percentile(raw, .5)):.0f} µs |")


def calls(conn: pr.Connection, iterations: int) -> None:
    """Per-call latency as a notebook meets it, each with the raw stub's same request
    interleaved for reference. The trivial call is the one the overhead measure times: a
    Head on a 3-row frame (`df.head(1)`, its handle asked for, which makes the call);
    with_columns on that frame also runs the server's zero-row type check. head(5) +
    collect() is of a 1,000-row frame, whose schema the SDK has not fetched."""
    frame = pr.from_dict({"a": [1, 2, 3]}, connection=conn)
    source = pr.from_dict({"a": list(range(1000)), "b": [str(i) for i in range(1000)]}, connection=conn)
    head_request = pb.HeadRequest(handle=frame.handle, n=1)
    collect_request = pb.CollectRequest(handle=source.handle, limit=5)
    expected = pl.DataFrame({"a": range(5), "b": [str(i) for i in range(5)]})
    assert source.head(5).collect().equals(expected)
    # The transport alone: a health check the coordinator answers itself, with no work.
    health = conn._channel.unary_unary(
        "/grpc.health.v1.Health/Check", request_serializer=bytes, response_deserializer=bytes
    )
    runs: dict[str, list[float]] = {
        "trivial": [], "raw head": [], "with_columns": [], "head collect": [], "raw collect": [],
        "health": [],
    }
    # Kept until the end: no handle drops run in the background while timing.
    made: list[object] = []
    # Each call that makes a handle follows one that writes nothing: in standalone a
    # handle's record is written durably (fsync), and a call right after another such
    # would queue behind its write.
    steps = {
        "trivial": lambda: made.append(head := frame.head(1)) or head.handle,
        "raw collect": lambda: list(conn.stub.Collect(collect_request)),
        "raw head": lambda: conn.stub.Head(head_request),
        "head collect": lambda: source.head(5).collect(),
        "with_columns": lambda: made.append(frame.with_columns(b=pr.lit(1))),
        "health": lambda: health(b""),
    }
    for _ in range(iterations):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            runs[name].append(time.perf_counter() - start)
    p50_p99 = lambda name: f"{percentile(runs[name], .5) * 1e6:,.0f} µs / {percentile(runs[name], .99) * 1e6:,.0f} µs"  # noqa: E731
    print(f"| SDK trivial call (Head on a 3-row frame), p50 / p99, {iterations:,} calls | {p50_p99('trivial')} |")
    print(f"| the same Head on the raw stub, p50 / p99 | {p50_p99('raw head')} |")
    print(f"| SDK with_columns on the 3-row frame, p50 / p99 | {p50_p99('with_columns')} |")
    print(f"| SDK head(5).collect() of a 1,000-row frame (one Collect), p50 / p99 | {p50_p99('head collect')} |")
    print(f"| the same Collect(limit=5) on the raw stub, p50 / p99 | {p50_p99('raw collect')} |")
    print(f"| a gRPC health check on the raw channel (the transport alone), p50 / p99 | {p50_p99('health')} |")


def collect_ratio(conn: pr.Connection, data_root: pathlib.Path, mib: int, repetitions: int) -> None:
    rows = mib * (1 << 20) // 16
    path = data_root / f"sdk-{mib}mib.arrow"
    if not path.exists():
        pl.DataFrame({"id": range(rows), "x": pl.int_range(0, rows, eager=True) * 7}).write_ipc(path)
    frame = pr.read_ipc(path.name, connection=conn)
    frame.collect()  # computed and cached on its worker: the collect measures transfer
    # The same handle over Collect through the coordinator (`connect(..., flight=False)`).
    over_collect = pr.Connection(conn.target, flight=False)
    collect_frame = pr.DataFrame(frame.handle, over_collect)
    # A plain pyarrow.flight client, as any Arrow Flight user would write it: FlightInfo
    # from the coordinator, then DoGet at the location it names, into a pyarrow Table.
    import pyarrow.flight as flight

    coordinator = flight.connect(f"grpc+tcp://{conn.target}")
    info = coordinator.get_flight_info(flight.FlightDescriptor.for_path(frame.handle))
    [endpoint] = info.endpoints
    location = endpoint.locations[0].uri.decode()
    at_worker = coordinator if location == "arrow-flight-reuse-connection://?" else flight.connect(location)
    remote, collect_times, local, loaded, plain_flight = [], [], [], [], []
    size = 0.0
    for _ in range(repetitions):
        start = time.perf_counter()
        table = at_worker.do_get(endpoint.ticket).read_all()
        plain_flight.append(time.perf_counter() - start)
        assert table.num_rows == rows
        del table
        start = time.perf_counter()
        df = frame.collect()
        remote.append(time.perf_counter() - start)
        size = df.estimated_size() / 1e6
        assert df.height == rows
        del df
        start = time.perf_counter()
        df = collect_frame.collect()
        collect_times.append(time.perf_counter() - start)
        assert df.height == rows
        del df
        # Polars' default: the file is memory-mapped, its pages read when first touched.
        start = time.perf_counter()
        copy = pl.read_ipc(path)
        local.append(time.perf_counter() - start)
        assert copy.height == rows
        del copy
        # The file's bytes read into memory first, as a collect must receive them.
        start = time.perf_counter()
        copy = pl.read_ipc(path.read_bytes())
        loaded.append(time.perf_counter() - start)
        assert copy.height == rows
        del copy
    over_collect.close()
    at_worker.close()
    if at_worker is not coordinator:
        coordinator.close()
    r, l, m = statistics.median(remote), statistics.median(local), statistics.median(loaded)
    c, p = statistics.median(collect_times), statistics.median(plain_flight)
    print(f"| collect() of {size / 1000:.2f} GB into polars (default: Flight from its worker), median of {repetitions} | {r:.2f} s ({size / r:.0f} MB/s) |")
    print(f"| the same over Collect through the coordinator (flight=False) | {c:.2f} s ({size / c:.0f} MB/s) |")
    print(f"| the same with a plain pyarrow.flight client (DoGet at the worker, read_all into a Table) | {p:.2f} s ({size / p:.0f} MB/s) |")
    print(f"| pl.read_ipc of the same data from a local file | {l:.2f} s ({size / l:.0f} MB/s) |")
    spread = lambda times: ", ".join(f"{t:.2f}" for t in times)  # noqa: E731
    print(f"| every run: default / flight=False / pyarrow.flight / local read | {spread(remote)} / {spread(collect_times)} / {spread(plain_flight)} / {spread(local)} s |")
    print(f"| ratio, collect / local read (throughput) | {l / r:.2f} |")
    print(f"| ratio, pyarrow.flight client / local read | {l / p:.2f} |")
    print(f"| pl.read_ipc(path.read_bytes()), the file read into memory first | {m:.2f} s ({size / m:.0f} MB/s) |")
    print(f"| ratio, collect / that read | {m / r:.2f} |")


# The floor's sender, a process of its own: connects `rounds` times and, once told to
# start, sends `chunks` blocks of 4 MiB each time.
FLOOR_SENDER = """
import os, socket, sys
port, rounds, chunks = map(int, sys.argv[1:])
payload = os.urandom(4 << 20)
for _ in range(rounds):
    with socket.create_connection(("127.0.0.1", port)) as out:
        out.recv(1)
        for _ in range(chunks):
            out.sendall(payload)
"""


def loopback_floor(mib: int, repetitions: int) -> None:
    """What receiving `mib` MiB over a plain loopback TCP socket costs this machine, with no
    protocol: into fresh 4 MiB buffers kept to the end (as a result must be), and into one
    reused buffer (the kernel's copy alone). The gap is the cost of new process memory."""
    import mmap
    import socket

    chunk = 4 << 20
    chunks = max(1, (mib << 20) // chunk)
    server = socket.create_server(("127.0.0.1", 0))
    sender = subprocess.Popen(
        [sys.executable, "-c", FLOOR_SENDER, str(server.getsockname()[1]), str(2 * repetitions), str(chunks)]
    )

    def receive(fresh: bool) -> float:
        connection, _ = server.accept()
        with connection:
            kept, reused = [], memoryview(bytearray(chunk))
            start = time.perf_counter()
            connection.sendall(b"g")  # nothing is sent before the clock starts
            for _ in range(chunks):
                # A mapping of its own: new pages from the kernel, never memory this
                # process freed earlier.
                view = memoryview(mmap.mmap(-1, chunk, flags=mmap.MAP_PRIVATE)) if fresh else reused
                got = 0
                while got < chunk:
                    got += connection.recv_into(view[got:])
                if fresh:
                    kept.append(view)
            return time.perf_counter() - start

    try:
        fresh_times, reused_times = [], []
        for _ in range(repetitions):
            fresh_times.append(receive(True))
            reused_times.append(receive(False))
    finally:
        sender.kill()
        sender.wait()
        server.close()
    f, r = statistics.median(fresh_times), statistics.median(reused_times)
    print(f"| {chunks * 4} MiB over plain loopback TCP into fresh buffers, kept (no protocol), median of {repetitions} | {f:.2f} s |")
    print(f"| the same into one reused buffer | {r:.2f} s |")


CATEGORIES = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def source_file(data_root: pathlib.Path, rows: int) -> pathlib.Path:
    """The core benchmark's Parquet file of `rows` rows (`polaroid-bench core` writes the
    same columns with the same formulas), written here when missing."""
    path = data_root / f"core-{rows}.parquet"
    if not path.exists():
        i = pl.int_range(0, rows, eager=True)
        pl.DataFrame({
            "id": i,
            "key": (i * 7919) % 1000,
            "value": ((i * 31) % 10_007) / 7.0,
            "qty": (i % 100).cast(pl.Int32),
            "category": pl.Series(CATEGORIES)[i % len(CATEGORIES)],
        }).write_parquet(path.with_suffix(".tmp"))
        path.with_suffix(".tmp").rename(path)
    return path


def dimension() -> pl.DataFrame:
    keys = pl.int_range(0, 1000, eager=True)
    return pl.DataFrame({
        "key": keys,
        "weight": 1.0 + (keys % 10) / 10.0,
    }).with_columns(pl.format("g{}", pl.col("key") % 25).alias("group"))


def pipeline_polars(lf: pl.LazyFrame, dim: pl.DataFrame, ordered: bool = False) -> pl.DataFrame:
    """Issue 21's pipeline, in Polars in-process with its default engine. `ordered` asks
    Polars for the row order Polaroid guarantees (docs/architecture.md, "Determinism"):
    the join keeps left-then-right order and groups come in order of first appearance."""
    return (
        lf.filter(pl.col("qty") > 10)
        .with_columns((pl.col("value") * 2).alias("double"), (pl.col("qty") + 1).alias("qty1"))
        .join(dim.lazy(), on="key", maintain_order="left_right" if ordered else None)
        .group_by("group", maintain_order=ordered)
        .agg(
            (pl.col("double") * pl.col("weight")).sum().alias("total"),
            pl.col("qty1").mean().alias("mean_qty"),
            pl.col("id").count().alias("n"),
        )
        .sort("total", descending=True, maintain_order=ordered)
        .head(20)
        .collect()
    )


def pipeline_sdk(frame: pr.DataFrame, dim: pr.DataFrame, threshold: float) -> pl.DataFrame:
    return (
        frame.filter(pr.col("qty") > threshold)
        .with_columns((pr.col("value") * 2).alias("double"), (pr.col("qty") + 1).alias("qty1"))
        .join(dim, on="key")
        .group_by("group")
        .agg(
            (pr.col("double") * pr.col("weight")).sum().alias("total"),
            pr.col("qty1").mean().alias("mean_qty"),
            pr.col("id").count().alias("n"),
        )
        .sort("total", descending=True)
        .head(20)
        .collect()
    )


def pipeline_dask(path: pathlib.Path, dim: pl.DataFrame) -> object:
    import dask.dataframe as dd

    ddf = dd.read_parquet(str(path), columns=["id", "key", "value", "qty"])
    ddf = ddf[ddf.qty > 10]
    ddf = ddf.assign(double=ddf.value * 2, qty1=ddf.qty + 1)
    ddf = ddf.merge(dim.to_pandas(), on="key")
    ddf = ddf.assign(weighted=ddf.double * ddf.weight)
    result = ddf.groupby("group").agg(
        total=("weighted", "sum"), mean_qty=("qty1", "mean"), n=("id", "count")
    )
    return result.compute().sort_values("total", ascending=False).head(20)


def peers(conn: pr.Connection, data_root: pathlib.Path, sizes: list[int], repetitions: int) -> None:
    """Issue 21's pipeline (Parquet -> filter -> with_columns -> join a 1,000-row table ->
    group_by/agg -> sort -> head 20 -> to the client) through the SDK on `polaroid
    standalone`, in Polars in-process (its default engine, and again keeping the order
    Polaroid keeps) and in Dask distributed with two
    workers, run alternately; each SDK run reads a fresh source handle with a threshold
    that selects the same rows, so no run reuses another's cached result."""
    from dask.distributed import Client, LocalCluster

    dim = dimension()
    dim_handle = pr.from_polars(dim, connection=conn)
    print("| rows | Polaroid (SDK) | Polars in-process | SDK / Polars | Polars, order kept "
          "| SDK / that | Dask, 2 workers | Dask / SDK |")
    print("|---|---|---|---|---|---|---|---|")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster):
        for rows in sizes:
            path = source_file(data_root, rows)
            times: dict[str, list[float]] = {"sdk": [], "polars": [], "ordered": [], "dask": []}
            # One uncounted round each way first: files into the page cache, pools started.
            for repetition in range(repetitions + 1):
                start = time.perf_counter()
                frame = pr.read_parquet(str(path), connection=conn)
                ours = pipeline_sdk(frame, dim_handle, 10 + (rows + repetition) * 1e-9)
                sdk = time.perf_counter() - start
                start = time.perf_counter()
                theirs = pipeline_polars(pl.scan_parquet(path), dim)
                local = time.perf_counter() - start
                start = time.perf_counter()
                same_order = pipeline_polars(pl.scan_parquet(path), dim, ordered=True)
                ordered = time.perf_counter() - start
                start = time.perf_counter()
                dask_result = pipeline_dask(path, dim)
                dask = time.perf_counter() - start
                # Sums may differ in their last bits with the order Polars adds in.
                assert_frame_equal(ours, theirs, check_exact=False)
                assert_frame_equal(ours, same_order, check_exact=False)
                assert len(dask_result) == theirs.height
                if repetition > 0:
                    times["sdk"].append(sdk)
                    times["polars"].append(local)
                    times["ordered"].append(ordered)
                    times["dask"].append(dask)
            sdk, local, ordered, dask = (
                statistics.median(times[k]) for k in ("sdk", "polars", "ordered", "dask")
            )
            print(f"| {rows:,} | {sdk * 1e3:.0f} ms | {local * 1e3:.0f} ms | {sdk / local:.2f} "
                  f"| {ordered * 1e3:.0f} ms | {sdk / ordered:.2f} "
                  f"| {dask * 1e3:.0f} ms | {dask / sdk:.1f} |")
    print(f"(medians of {repetitions}; Polars {pl.__version__}, default engine)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", required=True)
    parser.add_argument("--data-dir", default=str(ROOT / "bench-data"))
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--collect-mib", type=int, default=1024)
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--peer-rows", default="1000000,10000000",
                        help="source sizes of the peers section (comma-separated)")
    parser.add_argument("--state-parent", default=None,
                        help="directory for the server's state (handle records; default: the "
                             "system's temp dir). On tmpfs (/dev/shm) a call pays no fsync.")
    parser.add_argument("--sections", default="overhead,calls,collect,peers",
                        help="which of overhead, calls, collect and peers to run (comma-separated)")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    data_root = pathlib.Path(args.data_dir).resolve()
    data_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sdk-bench-state-", dir=args.state_parent) as state:
        server = start_standalone(args.binary, data_root, state)
        try:
            with pr.connect(server.address) as conn:  # type: ignore[attr-defined]
                if "overhead" in sections:
                    overhead(conn, args.iterations)
                if "calls" in sections:
                    calls(conn, args.iterations)
                if "collect" in sections:
                    collect_ratio(conn, data_root, args.collect_mib, args.repetitions)
                    loopback_floor(args.collect_mib, args.repetitions)
                if "peers" in sections:
                    sizes = [int(n) for n in args.peer_rows.split(",")]
                    peers(conn, data_root, sizes, args.repetitions)
        finally:
            server.terminate()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
