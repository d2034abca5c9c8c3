"""Arrow Flight from pyarrow's own Flight client (Arrow C++), against a real `polaroid
standalone`: a handle is a ticket, `GetFlightInfo` on the coordinator points at the worker
that owns it, `DoPut` uploads a table as a handle, and errors arrive as Flight errors with
the server's message."""

from __future__ import annotations

import math
import socket
import time

import polars as pl
import pyarrow as pa
import pyarrow.flight as flight
import pytest
from polars.testing import assert_frame_equal

import polaroid as pr
from polaroid.v1 import dataframe_pb2 as pb

FRAME = pl.DataFrame(
    {
        "id": list(range(5_000)),
        "name": [f"name-{i}" for i in range(5_000)],
        "score": [None if i % 7 == 0 else i / 3 for i in range(5_000)],
    }
)
REUSE_CONNECTION = "arrow-flight-reuse-connection://?"


@pytest.fixture(scope="module")
def conn(standalone):
    with pr.connect(standalone.address, flight=True) as connection:
        yield connection


@pytest.fixture(scope="module")
def coordinator(standalone):
    client = flight.connect(f"grpc://{standalone.address}")
    yield client
    client.close()


def test_get_flight_info_points_at_the_owning_worker(conn, coordinator, standalone):
    frame = pr.from_polars(FRAME, connection=conn).filter(pr.col("id") >= 1_000)
    expected = FRAME.filter(pl.col("id") >= 1_000)

    info = coordinator.get_flight_info(flight.FlightDescriptor.for_path(frame.handle))
    assert info.schema.names == expected.columns
    assert (info.total_records, info.total_bytes) == (-1, -1), "not computed yet"
    [endpoint] = info.endpoints
    assert endpoint.ticket.ticket == frame.handle.encode()
    worker, reuse = (location.uri.decode() for location in endpoint.locations)
    assert worker.startswith("grpc+tcp://127.0.0.1:")
    assert worker != f"grpc+tcp://{standalone.address}", "a worker, not the coordinator"
    assert reuse == REUSE_CONNECTION

    with flight.connect(worker) as at_worker:
        direct = at_worker.do_get(endpoint.ticket).read_all()
    assert direct.schema == info.schema
    assert_frame_equal(pl.from_arrow(direct), expected)
    # Computed by the fetch, the result's size is known from then on.
    known = coordinator.get_flight_info(flight.FlightDescriptor.for_path(frame.handle))
    assert known.total_records == expected.height
    assert known.total_bytes >= expected.estimated_size() // 2 > 0
    # The coordinator serves the same rows to clients that cannot reach workers.
    relayed = coordinator.do_get(endpoint.ticket).read_all()
    assert_frame_equal(pl.from_arrow(relayed), expected)
    assert coordinator.get_schema(
        flight.FlightDescriptor.for_command(frame.handle)
    ).schema == info.schema


def test_do_put_uploads_a_table_the_sdk_reads(conn, coordinator):
    table = FRAME.to_arrow()
    writer, reader = coordinator.do_put(flight.FlightDescriptor.for_path("scores"), table.schema)
    writer.write_table(table, max_chunksize=700)
    writer.done_writing()
    handle = reader.read().to_pybytes().decode()
    writer.close()

    uploaded = pr.DataFrame(handle, conn)
    assert_frame_equal(uploaded.collect(), FRAME)
    assert_frame_equal(
        uploaded.group_by("score").agg(pr.col("id").count()).sort("score").collect(),
        FRAME.group_by("score").agg(pl.col("id").count()).sort("score"),
        check_dtypes=False,
    )


def test_bad_tickets_are_flight_errors_with_the_servers_message(conn, coordinator):
    with pytest.raises(pa.ArrowInvalid, match="handle"):
        coordinator.do_get(flight.Ticket(b"not-a-handle")).read_all()
    frame = pr.from_polars(FRAME.head(3), connection=conn)
    handle = frame.handle
    conn.call("DropHandle", pb.DropHandleRequest(handle=handle))
    with pytest.raises(KeyError, match="handle"):
        coordinator.do_get(flight.Ticket(handle.encode())).read_all()
    with pytest.raises(pa.ArrowInvalid, match="one Polaroid handle"):
        coordinator.get_flight_info(flight.FlightDescriptor.for_path("a", "b"))
    with pytest.raises(NotImplementedError, match="not listed"):
        list(coordinator.list_flights())
    assert list(coordinator.list_actions()) == []


def test_sdk_collect_comes_over_flight_and_falls_back_to_collect(conn, standalone):
    from polaroid.connection import _FlightFetcher

    frame = pr.from_polars(FRAME, connection=conn)
    assert conn._flight is not None, "Flight is on when asked for"
    # Connections, not pr.connect: the default connection stays the fixture's.
    with pr.Connection(standalone.address) as default:
        assert default._flight is not None, "and by default"
    with pr.Connection(standalone.address, flight=False) as plain:
        assert plain._flight is None, "and off when not"
    fetched = conn._flight.fetch(frame.handle, None)
    assert fetched is not None
    assert_frame_equal(pl.from_arrow(fetched), FRAME)
    assert_frame_equal(frame.collect(), FRAME)

    # A client that cannot reach the workers gets the rows through the coordinator.
    fetcher = _FlightFetcher(standalone.address, None, 30.0)
    info = fetcher._client(fetcher._target).get_flight_info(
        flight.FlightDescriptor.for_path(frame.handle)
    )
    worker = info.endpoints[0].locations[0].uri.decode()
    fetcher._unreachable[worker] = time.monotonic() + 60
    seen: list[int] = []
    relayed = fetcher.fetch(frame.handle, seen.append)
    assert relayed is not None
    assert_frame_equal(pl.from_arrow(relayed), FRAME)
    assert sum(seen) == FRAME.height
    assert worker not in fetcher._clients, "the worker was skipped"
    # Once its minute is over, the worker is tried again.
    fetcher._unreachable[worker] = time.monotonic() - 1
    again = fetcher.fetch(frame.handle, None)
    assert worker not in fetcher._unreachable and worker in fetcher._clients
    # A location that refuses connections is found out by its first probe.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        dead = f"grpc+tcp://127.0.0.1:{closed.getsockname()[1]}"
    with pytest.raises(flight.FlightUnavailableError):
        fetcher._client(dead)
    assert dead not in fetcher._clients
    assert fetcher._unreachable[dead] <= time.monotonic() + fetcher.UNREACHABLE_SECONDS
    # One that never answers (connections land in a backlog nobody accepts from) costs
    # the probe's timeout, so it is not tried again.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = f"grpc+tcp://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises((flight.FlightUnavailableError, flight.FlightTimedOutError)):
            fetcher._client(mute)
    assert fetcher._unreachable[mute] == math.inf
    fetcher.close()
    assert again is not None
    assert_frame_equal(pl.from_arrow(again), FRAME)


def test_flight_buffers_arrive_aligned_so_polars_copies_nothing(conn, coordinator, standalone):
    # Several record batches (a message is at most 4 MiB) of fixed-width columns.
    rows = 1_200_000
    big = pl.DataFrame({"id": pl.int_range(0, rows, eager=True), "x": pl.int_range(0, rows, eager=True) * 0.5})
    frame = pr.from_polars(big, connection=conn)
    info = coordinator.get_flight_info(flight.FlightDescriptor.for_path(frame.handle))
    with flight.connect(info.endpoints[0].locations[0]) as at_worker:
        table = at_worker.do_get(info.endpoints[0].ticket).read_all()
    assert table.column(0).num_chunks > 1
    for column in table.columns:
        for chunk in column.chunks:
            data = chunk.buffers()[1]
            # Polars uses a buffer in place only at its type's alignment.
            assert data.address % 8 == 0, f"a buffer at {data.address:#x}"
    assert_frame_equal(pl.from_arrow(table, rechunk=False), big)

    # Whatever Flight cannot do, Collect does, with the SDK's errors.
    dropped = pr.from_polars(FRAME.head(2), connection=conn).handle
    conn.call("DropHandle", pb.DropHandleRequest(handle=dropped))
    assert conn._flight.fetch(dropped, None) is None
    with pytest.raises(pr.NotFoundError, match="handle"):
        pr.DataFrame(dropped, conn).collect()
