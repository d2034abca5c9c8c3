"""The SDK against a coordinator and three worker processes: a session survives a
worker's death without the user doing anything; limits arrive as their exception."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import polaroid as pr
import polaroid.connection
from polaroid.v1 import cluster_pb2, cluster_pb2_grpc


def test_a_session_survives_a_killed_worker(cluster):
    with pr.Connection(cluster.address) as conn:
        local = pl.DataFrame({"k": [i % 7 for i in range(5000)], "v": list(range(5000))})
        frame = pr.from_polars(local, connection=conn).persist()
        steps = frame.filter(pr.col("v") > 100).with_columns(w=pr.col("v") * 2)
        # The worker that owns the pipeline dies.
        workers = cluster_pb2_grpc.ClusterServiceStub(conn._channel).ListWorkers(
            cluster_pb2.ListWorkersRequest()
        )
        assert len(workers.workers) == 3
        owner = conn.stub.GetSchema.with_call(
            pr.v1.dataframe_pb2.GetSchemaRequest(handle=steps.handle)
        )[1].initial_metadata()
        serving = dict(owner)["x-polaroid-worker"]
        address = next(w.address for w in workers.workers if w.worker_id == serving)
        victim = next(w for w in cluster.workers if w.address == address)
        victim.kill()
        # The next calls of the session just work.
        result = steps.group_by("k").agg(pr.col("w").sum().alias("total")).sort("k")
        expected = (
            local.filter(pl.col("v") > 100)
            .with_columns(w=pl.col("v") * 2)
            .group_by("k", maintain_order=True)
            .agg(pl.col("w").sum().alias("total"))
            .sort("k")
        )
        assert_frame_equal(result.collect(), expected)
        assert steps.shape == (local.height - 101, 3)


def serving_worker(conn: pr.Connection, cluster, handle: str):
    """The worker process that serves `handle`."""
    _, call = conn.stub.GetSchema.with_call(pr.v1.dataframe_pb2.GetSchemaRequest(handle=handle))
    serving = dict(call.initial_metadata())["x-polaroid-worker"]
    workers = cluster_pb2_grpc.ClusterServiceStub(conn._channel).ListWorkers(
        cluster_pb2.ListWorkersRequest()
    )
    address = next(w.address for w in workers.workers if w.worker_id == serving)
    return next(w for w in cluster.workers if w.address == address)


@pytest.mark.parametrize("flight", [True, False], ids=["flight", "collect"])
def test_a_collect_cut_midway_restarts_without_duplicates(cluster, flight, monkeypatch):
    # Over Flight, the cut DoGet falls back to Collect; without it, Collect starts again.
    # Results with over 2 MiB to come after the first 4 MiB go over Flight here.
    monkeypatch.setattr(polaroid.connection, "FLIGHT_REST_BYTES", 2 * 1024 * 1024)
    with pr.Connection(cluster.address, flight=flight) as conn:
        # About 9 MB: several messages of at most 4 MiB, large enough to go over Flight.
        local = pl.DataFrame({"i": range(90_000), "text": ["x" * 100] * 90_000})
        frame = pr.from_polars(local, connection=conn).persist()
        victim = serving_worker(conn, cluster, frame.handle)
        batches = []

        def kill_after_the_first_batch(rows: int) -> None:
            batches.append(rows)
            # With Flight, the first batch over Flight: what came over Collect before the
            # result proved large was set aside (its rows counted off).
            fetched_over_flight = any(r < 0 for r in batches)
            if victim.process.poll() is None and rows > 0 and (fetched_over_flight or not flight):
                victim.kill()

        try:
            table = conn.collect(frame.handle, progress=kill_after_the_first_batch)
            assert victim.process.poll() is not None, "the worker died during the collect"
            assert_frame_equal(pl.from_arrow(table), local)
        finally:
            cluster.replace(victim)


def test_limits_arrive_as_resource_exhausted(cluster):
    with pr.Connection(cluster.address) as conn:
        big = pr.from_polars(pl.DataFrame({"x": range(200_000)}), connection=conn)
        with pytest.raises(pr.ResourceExhaustedError, match="rows"):
            big.collect()
        assert big.collect(limit=10).height == 10


def test_a_retry_says_which_attempt_it_is():
    """The SDK marks its retries (`x-polaroid-attempt`), so that the coordinator tries one
    worker for each instead of failing over across several again: the two layers' retries
    add up instead of multiplying (docs/architecture.md, "Errors"). A gRPC server that is
    UNAVAILABLE twice records what each attempt carried."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from polaroid.v1 import dataframe_pb2 as pb

    seen: list[str | None] = []

    def heartbeat(request: pb.HeartbeatRequest, context: grpc.ServicerContext) -> pb.HeartbeatResponse:
        seen.append(dict(context.invocation_metadata()).get("x-polaroid-attempt"))
        if len(seen) < 3:
            context.abort(grpc.StatusCode.UNAVAILABLE, "not yet")
        return pb.HeartbeatResponse()

    handler = grpc.method_handlers_generic_handler(
        "polaroid.v1.DataFrameService",
        {"Heartbeat": grpc.unary_unary_rpc_method_handler(
            heartbeat,
            request_deserializer=pb.HeartbeatRequest.FromString,
            response_serializer=pb.HeartbeatResponse.SerializeToString)})
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with pr.Connection(f"127.0.0.1:{port}", backoff=0.01, flight=False) as connection:
            connection.call("Heartbeat", pb.HeartbeatRequest())
            # A later call starts again from the first attempt.
            connection.call("Heartbeat", pb.HeartbeatRequest())
    finally:
        server.stop(None)
    assert seen == [None, "2", "3", None]
