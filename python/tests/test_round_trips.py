"""Round trips of the SDK's result calls, counted by the server (its `/metrics`):
`head(n).collect()` and `collect(limit=n)` are one `Collect`, a small whole result comes
back over `Collect` without any Flight call or connection, and a large one still comes
over Flight from its worker. Rows are compared with Polars computing the same locally."""

from __future__ import annotations

import collections
import datetime as dt
import decimal
import gc
import re
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

import polaroid as pr
import polaroid.connection
from polaroid.connection import FLIGHT_PROBE_BYTES

from conftest import Process

FRAME = pl.DataFrame(
    {
        "id": list(range(1_000)),
        "name": [f"name-{i}" for i in range(1_000)],
        "score": [None if i % 7 == 0 else i / 3 for i in range(1_000)],
    }
)

SAMPLE = re.compile(r'^polaroid_grpc_requests_total\{([^}]*)\} (\S+)$', re.M)
LABEL = re.compile(r'(\w+)="([^"]*)"')


class Calls:
    """The calls a server process has finished, by method, as its metrics count them:
    DataFrameService calls the coordinator received from clients, and every Flight call
    by where it was served (`flight.DoGet@worker`; one forwarded by the coordinator
    counts at both)."""

    def __init__(self, server: Process) -> None:
        self.url = f"http://{server.http}/metrics"

    def read(self) -> collections.Counter[str]:
        with urllib.request.urlopen(self.url, timeout=10) as answer:
            text = answer.read().decode()
        counts: collections.Counter[str] = collections.Counter()
        for labels, value in SAMPLE.findall(text):
            label = dict(LABEL.findall(labels))
            service, method = label.get("service", ""), label.get("method", "")
            # Background work of any connection in the session, not the calls measured.
            if method in ("Heartbeat", "DropHandle"):
                continue
            role = label.get("role")
            if service == "DataFrameService" and role == "coordinator":
                counts[method] += int(float(value))
            elif service == "FlightService":
                counts[f"flight.{method}@{role}"] += int(float(value))
        return counts

    def settled(self) -> collections.Counter[str]:
        """The counts once calls made before have all been counted (a call is counted when
        the server has sent its end, which may be just after the client saw it)."""
        counts = self.read()
        while True:
            time.sleep(0.1)
            again = self.read()
            if again == counts:
                return counts
            counts = again

    def during(self, action: Callable[[], object], expected: int) -> collections.Counter[str]:
        """The calls `action` made: wait until `expected` calls are counted, then a little
        longer, so that a further one would show too."""
        before = self.settled()
        action()
        deadline = time.monotonic() + 10
        while True:
            made = self.read() - before
            if sum(made.values()) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        time.sleep(0.2)
        return self.read() - before


@pytest.fixture(scope="module")
def calls(standalone) -> Calls:
    return Calls(standalone)


@pytest.fixture(scope="module")
def conn(standalone) -> Iterator[pr.Connection]:
    with pr.Connection(standalone.address) as connection:
        yield connection


@pytest.fixture(scope="module")
def frame(conn) -> pr.DataFrame:
    return pr.from_polars(FRAME, connection=conn)


def test_head_then_collect_is_one_collect(frame, calls):
    for n in (0, 1, 5, 999, 1_000, 5_000):
        got: list[pl.DataFrame] = []
        made = calls.during(lambda: got.append(frame.head(n).collect()), expected=1)
        assert made == {"Collect": 1}, (n, made)
        assert_frame_equal(got[0], FRAME.head(n))
    got.clear()
    made = calls.during(lambda: got.append(frame.limit(7).collect()), expected=1)
    assert made == {"Collect": 1}
    assert_frame_equal(got[0], FRAME.limit(7))
    # Heads of heads, and a collect's own limit, are the smallest of the limits.
    made = calls.during(lambda: got.append(frame.head(50).head(10).collect(limit=20)), expected=1)
    assert made == {"Collect": 1}
    assert_frame_equal(got[1], FRAME.head(50).head(10).head(20))
    made = calls.during(lambda: got.append(pl.from_arrow(frame.head(3).to_arrow())), expected=1)
    assert made == {"Collect": 1}
    assert_frame_equal(got[2], FRAME.head(3))


def test_collect_with_a_limit_is_one_collect(frame, calls):
    fresh = frame.filter(pr.col("id") % 3 == 0)  # no schema known to the SDK yet
    assert fresh._schema is None
    got: list[pl.DataFrame] = []
    made = calls.during(lambda: got.append(fresh.collect(limit=4)), expected=1)
    assert made == {"Collect": 1}
    assert_frame_equal(got[0], FRAME.filter(pl.col("id") % 3 == 0).head(4))


def test_a_head_used_otherwise_makes_its_handle_once(conn, frame, calls):
    before = dict(conn._owners)
    head = frame.head(10)
    # No handle yet: nothing to keep alive or drop.
    assert head._handle is None and conn._owners == before
    made = calls.during(lambda: head.shape, expected=2)
    assert made == {"Head": 1, "GetShape": 1}
    assert head.shape == (10, 3)
    assert conn._owners[head.handle] == 1 and head.handle not in before
    # From now on it is a frame like any other: its own handle is collected.
    got: list[pl.DataFrame] = []
    made = calls.during(lambda: got.append(head.collect()), expected=1)
    assert made == {"Collect": 1}
    assert_frame_equal(got[0], FRAME.head(10))
    derived = head.with_columns(double=pr.col("id") * 2).filter(pr.col("id") > 4)
    assert_frame_equal(
        derived.collect(),
        FRAME.head(10).with_columns(double=pl.col("id") * 2).filter(pl.col("id") > 4),
    )
    # Its schema is its parent's, asked of nobody when the parent's is known.
    assert frame.schema == FRAME.schema
    made = calls.during(lambda: frame.head(2).schema, expected=0)
    assert made == {}
    # Joins and SQL read the handle too.
    joined = frame.head(4).join(frame.head(2), on="id", how="inner")
    assert_frame_equal(
        joined.collect(),
        FRAME.head(4).join(FRAME.head(2), on="id", how="inner"),
    )
    assert_frame_equal(
        pr.sql("SELECT id FROM t ORDER BY id DESC", {"t": frame.head(3)}).collect(),
        pl.DataFrame({"id": [2, 1, 0]}),
    )


def test_a_heads_handle_outlives_its_parent_and_is_released(standalone):
    with pr.Connection(standalone.address) as conn:
        parent = pr.from_polars(FRAME, connection=conn)
        parent_handle = parent.handle
        head = parent.head(3)
        head_handle = head.handle
        del parent
        gc.collect()
        conn.flush_released()
        with pytest.raises(pr.NotFoundError):
            pr.DataFrame(parent_handle, conn).shape
        assert_frame_equal(head.collect(), FRAME.head(3))
        # A pending head keeps its parent (and so its handle) until it is made.
        pending = pr.from_polars(FRAME, connection=conn).head(2)
        gc.collect()
        conn.flush_released()
        assert_frame_equal(pending.collect(), FRAME.head(2))
        del head
        gc.collect()
        assert conn.flush_released() >= 1
        with pytest.raises(pr.NotFoundError):
            pr.DataFrame(head_handle, conn).shape


def test_heads_the_server_refuses_are_refused_at_the_call(frame, calls):
    made = calls.during(lambda: pytest.raises(pr.InvalidArgumentError, frame.head, -1), expected=1)
    assert made == {"Head": 1}
    with pytest.raises(TypeError):
        frame.head(2.5)  # type: ignore[arg-type]
    with pytest.raises(pr.InvalidArgumentError, match="limit"):
        frame.head(3).collect(limit=-1)


def test_a_pending_head_is_shown_without_making_its_handle(frame, calls):
    head = frame.head(3)
    html: list[str] = []
    made = calls.during(lambda: html.append(head._repr_html_()), expected=1)
    assert made == {"Collect": 1}
    assert "shape (3, 3)" in html[0] and "name-2" in html[0]
    assert head._handle is None
    assert repr(head) == f"<polaroid.DataFrame head(3) of {frame.handle}>"


def test_a_small_whole_result_makes_no_flight_connection(standalone, calls):
    with pr.Connection(standalone.address) as conn:
        assert conn._flight is not None, "Flight is on"
        small = pr.from_polars(FRAME, connection=conn).filter(pr.col("id") < 900)
        small.handle
        got: list[pl.DataFrame] = []
        made = calls.during(lambda: got.append(small.collect()), expected=1)
        assert made == {"Collect": 1}
        assert conn._flight._clients == {}, "no Flight connection was opened"
        assert_frame_equal(got[0], FRAME.filter(pl.col("id") < 900))


#: What the tests leave to come before a result moves to Flight: far less than the SDK's
#: default, so that large results stay a few MiB.
REST = 4 * 1024 * 1024


@pytest.fixture
def small_rest(monkeypatch) -> None:
    monkeypatch.setattr(polaroid.connection, "FLIGHT_REST_BYTES", REST)


def test_small_results_read_by_polars_keep_every_type(conn):
    # Small results reach collect() undecoded and Polars reads them; to_arrow() decodes
    # with pyarrow. Both must give what Polars has locally.
    local = pl.DataFrame({
        "i8": pl.Series([1, -2, None], dtype=pl.Int8),
        "u32": pl.Series([1, 2, 3], dtype=pl.UInt32),
        "f32": pl.Series([1.5, None, -0.0], dtype=pl.Float32),
        "b": [True, None, False],
        "s": ["a", None, "ccc"],
        "bin": [b"x", None, b"\x00\x01"],
        "d": [dt.date(2024, 1, 1), None, dt.date(1970, 1, 1)],
        "dtm": [dt.datetime(2024, 1, 1, 12), None, dt.datetime(2000, 2, 29)],
        "dtz": pl.Series([dt.datetime(2024, 1, 1, 12), None, dt.datetime(2000, 2, 29)])
        .dt.replace_time_zone("Europe/Paris"),
        "dur": [dt.timedelta(hours=1), None, dt.timedelta(microseconds=5)],
        "t": [dt.time(1, 2, 3), None, dt.time(23, 59)],
        "cat": pl.Series(["x", "y", None], dtype=pl.Categorical),
        "enum": pl.Series(["lo", "hi", "lo"], dtype=pl.Enum(["lo", "hi"])),
        "lst": [[1, 2], None, []],
        "st": [{"a": 1, "b": "x"}, None, {"a": 3, "b": None}],
        "dec": pl.Series([decimal.Decimal("1.25"), None, decimal.Decimal("-3.50")], dtype=pl.Decimal(10, 2)),
        "nul": [None, None, None],
    })
    frame = pr.from_polars(local, connection=conn)
    assert isinstance(conn._collect(frame.handle, None, None, payload=True), memoryview)
    assert_frame_equal(frame.collect(), local)
    assert_frame_equal(pl.from_arrow(frame.to_arrow()), local)
    assert_frame_equal(frame.head(2).collect(), local.head(2))
    assert_frame_equal(frame.collect(limit=0), local.head(0))


def big_frame(size: int) -> pl.DataFrame:
    """About `size` bytes once `with_y` adds its column: three 8-byte columns."""
    rows = size // 24
    return pl.DataFrame({"id": pl.int_range(0, rows, eager=True), "x": pl.int_range(0, rows, eager=True) * 0.5})


def with_y(frame: pr.DataFrame) -> pr.DataFrame:
    """A result computed on the server (and kept by its worker), not an upload."""
    return frame.with_columns(y=pr.col("x") + 1)


def test_a_large_whole_result_comes_over_flight_from_its_worker(standalone, calls, small_rest):
    # Twice what would stay on Collect: several Collect messages.
    local = big_frame(2 * (FLIGHT_PROBE_BYTES + REST))
    expected = local.with_columns(y=pl.col("x") + 1)
    with pr.Connection(standalone.address) as conn:
        large = with_y(pr.from_polars(local, connection=conn))
        large.handle
        seen: list[int] = []
        got: list[pa.Table] = []
        made = calls.during(
            lambda: got.append(conn.collect(large.handle, progress=seen.append)), expected=5
        )
        # The Collect that found it large was cut short, then Flight fetched it whole
        # from its worker, past the coordinator (the first connection to a worker is
        # probed with a ListFlights).
        assert made == {
            "Collect": 1,
            "flight.GetFlightInfo@coordinator": 1,
            "flight.GetFlightInfo@worker": 1,
            "flight.ListFlights@worker": 1,
            "flight.DoGet@worker": 1,
        }, made
        assert sum(seen) == expected.height, "progress counts each row once"
        assert_frame_equal(pl.from_arrow(got[0]), expected)
        # Found large, it is fetched over Flight at once from then on.
        made = calls.during(lambda: got.append(large.collect()), expected=3)
        assert made == {
            "flight.GetFlightInfo@coordinator": 1,
            "flight.GetFlightInfo@worker": 1,
            "flight.DoGet@worker": 1,
        }, made
        assert_frame_equal(got[1], expected)


def test_a_result_with_little_left_after_the_probe_stays_on_collect(standalone, calls, small_rest):
    local = big_frame(FLIGHT_PROBE_BYTES + REST // 2)
    with pr.Connection(standalone.address) as conn:
        medium = with_y(pr.from_polars(local, connection=conn))
        medium.handle
        got: list[pl.DataFrame] = []
        made = calls.during(lambda: got.append(medium.collect()), expected=3)
        # Asked about, found to have little left, and read to the end over Collect.
        assert made == {
            "Collect": 1,
            "flight.GetFlightInfo@coordinator": 1,
            "flight.GetFlightInfo@worker": 1,
        }, made
        assert_frame_equal(got[0], local.with_columns(y=pl.col("x") + 1))
        # Known to be kept and over the probe's size, it comes over Flight next time.
        made = calls.during(lambda: got.append(medium.collect()), expected=4)
        assert made == {
            "flight.GetFlightInfo@coordinator": 1,
            "flight.GetFlightInfo@worker": 1,
            "flight.ListFlights@worker": 1,
            "flight.DoGet@worker": 1,
        }, made
        assert_frame_equal(got[1], got[0])


def test_a_large_result_its_worker_did_not_keep_stays_on_collect(data_root, small_rest):
    # Workers that keep no result this size: Flight would compute it again.
    local = big_frame(2 * (FLIGHT_PROBE_BYTES + REST))
    with tempfile.TemporaryDirectory(prefix="polaroid-sdk-state-") as state:
        server = Process(
            "standalone", "--data-root", str(data_root), "--state-dir", state,
            "--cache-bytes", str(FLIGHT_PROBE_BYTES),
        )
        try:
            server.wait_ready()
            with pr.Connection(server.address) as conn:
                large = with_y(pr.from_polars(local, connection=conn))
                large.handle
                got: list[pl.DataFrame] = []
                made = Calls(server).during(lambda: got.append(large.collect()), expected=3)
            assert made == {
                "Collect": 1,
                "flight.GetFlightInfo@coordinator": 1,
                "flight.GetFlightInfo@worker": 1,
            }, made
            assert_frame_equal(got[0], local.with_columns(y=pl.col("x") + 1))
        finally:
            server.stop()
