"""An existing Polaroid client: the eleven calls of shared/WIRE-COMPAT.md made with raw
request messages, each ArrowBatch opened on its own with pyarrow.ipc.open_stream, and the
results compared with pyarrow/polars computing the same thing here."""

import http.server
import json
import threading

import polars as pl
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal


def sales() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": list(range(1, 20001)),
            "region": [["north", "south", "east", "west"][i % 4] for i in range(20000)],
            "qty": [i % 13 for i in range(20000)],
            "price": [float(i) * 0.5 for i in range(20000)],
            "note": [f"order number {i} " * 20 for i in range(20000)],
        }
    )


def collect(pb, stub, handle, limit=None) -> pl.DataFrame:
    request = pb.df.CollectRequest(handle=handle)
    if limit is not None:
        request.limit = limit
    tables = []
    for batch in stub.Collect(request):
        assert not batch.HasField("error"), batch.error
        tables.append(pyarrow.ipc.open_stream(batch.arrow_ipc).read_all())
    assert tables, "Collect sends at least one ArrowBatch"
    return pl.from_arrow(pa.concat_tables(tables))


def upload(pb, stub, df: pl.DataFrame) -> str:
    sink = pa.BufferOutputStream()
    table = df.to_arrow()
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    reply = stub.CreateFromArrow(pb.df.CreateFromArrowRequest(arrow_ipc=sink.getvalue().to_pybytes(), name="sales"))
    assert reply.handle and not reply.HasField("error")
    return reply.handle


def test_create_collect_in_several_self_contained_batches(pb, stub):
    df = sales()
    handle = upload(pb, stub, df)
    batches = list(stub.Collect(pb.df.CollectRequest(handle=handle)))
    assert len(batches) > 1, "a result over 4 MiB must arrive in several messages"
    for batch in batches:
        assert len(batch.arrow_ipc) <= 4 * 1024 * 1024
    assert_frame_equal(collect(pb, stub, handle), df)
    assert_frame_equal(collect(pb, stub, handle, limit=7), df.head(7))


def test_read_parquet_select_filter_schema_shape(pb, stub, data_root):
    df = sales().drop("note")
    pq.write_table(df.to_arrow(), data_root / "sales.parquet")
    handle = stub.ReadParquet(
        pb.df.ReadParquetRequest(path="sales.parquet", columns=["id", "region", "qty"], n_rows=1500, parallel=True)
    ).handle
    selected = stub.Select(pb.df.SelectRequest(handle=handle, columns=["region", "qty"])).handle
    predicate = pb.expr.Expression(
        binary=pb.expr.BinaryExpr(
            left=pb.expr.Expression(column=pb.expr.ColumnExpr(name="qty")),
            op=pb.expr.GT,
            right=pb.expr.Expression(literal=pb.expr.LiteralExpr(int_val=10)),
        )
    )
    filtered = stub.Filter(pb.df.FilterRequest(handle=selected, predicate=predicate)).handle
    expected = df.head(1500).select("region", "qty").filter(pl.col("qty") > 10)
    assert_frame_equal(collect(pb, stub, filtered), expected)

    schema = stub.GetSchema(pb.df.GetSchemaRequest(handle=filtered))
    assert [(c.name, c.data_type) for c in schema.columns] == [("region", "String"), ("qty", "Int64")]
    assert json.loads(schema.schema_json)["fields"][1]["name"] == "qty"
    shape = stub.GetShape(pb.df.GetShapeRequest(handle=filtered))
    assert (shape.rows, shape.columns) == expected.shape

    # The predicate (a SQL expression) filters the scan, on a column the projection
    # leaves out.
    scanned = stub.ReadParquet(
        pb.df.ReadParquetRequest(
            path="sales.parquet", columns=["id", "price"], predicate="qty > 10 AND region = 'north'", n_rows=1500
        )
    ).handle
    expected = df.head(1500).filter(pl.sql_expr("qty > 10 AND region = 'north'")).select("id", "price")
    assert 0 < expected.height < 1500
    assert_frame_equal(collect(pb, stub, scanned), expected)

    # The row index option adds an "index" column first.
    indexed = stub.ReadParquet(pb.df.ReadParquetRequest(path="sales.parquet", n_rows=3, row_index_offset=5)).handle
    assert_frame_equal(collect(pb, stub, indexed), df.head(3).with_row_index("index", offset=5))


def test_write_parquet(pb, stub, data_root):
    df = sales().drop("note").head(100)
    handle = upload(pb, stub, df)
    reply = stub.WriteParquet(pb.df.WriteParquetRequest(handle=handle, path="out.parquet", compression="snappy", row_group_size=30))
    assert reply.success and not reply.HasField("error") and reply.rows_written == 100
    assert_frame_equal(pl.from_arrow(pq.read_table(data_root / "out.parquet")), df)
    reply = stub.WriteParquet(pb.df.WriteParquetRequest(handle=handle, path="out.parquet", append=True))
    assert reply.success
    assert_frame_equal(pl.from_arrow(pq.read_table(data_root / "out.parquet")), pl.concat([df, df]))


def test_drop_handle_and_heartbeat(pb, stub):
    first = upload(pb, stub, sales().head(3))
    second = upload(pb, stub, sales().head(3))
    alive = stub.Heartbeat(pb.df.HeartbeatRequest(handles=[first, second])).alive
    assert dict(alive) == {first: True, second: True}
    assert stub.DropHandle(pb.df.DropHandleRequest(handle=first)).success
    alive = stub.Heartbeat(pb.df.HeartbeatRequest(handles=[first, second])).alive
    assert dict(alive) == {first: False, second: True}
    assert_frame_equal(collect(pb, stub, second), sales().head(3))


def test_read_rest_api(pb, stub):
    records = [{"city": "Oslo", "temp": -3.5}, {"city": "Lima", "temp": 19.0}]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers["Content-Length"])
            body = json.loads(self.rfile.read(length))
            ok = self.headers.get("X-Key") == "secret" and body == {"want": "weather"}
            payload = json.dumps(records if ok else []).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/weather"
        request = pb.df.RestApiRequest(url=url, method="POST", headers={"X-Key": "secret"}, body='{"want": "weather"}')
        handle = stub.ReadRestApi(request).handle
        assert_frame_equal(collect(pb, stub, handle), pl.DataFrame(records))
        # Field 8 is the answer's format, the contract's MessageFormat.
        request.format = pb.df.JSON
        handle = stub.ReadRestApi(request).handle
        assert_frame_equal(collect(pb, stub, handle), pl.DataFrame(records))
    finally:
        server.shutdown()


def test_errors_are_statuses_with_empty_error_fields(pb, stub):
    import grpc

    with pytest.raises(grpc.RpcError) as raised:
        stub.GetShape(pb.df.GetShapeRequest(handle="not-a-handle"))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as raised:
        stub.ReadParquet(pb.df.ReadParquetRequest(path="../../etc/passwd"))
    assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    handle = upload(pb, stub, sales().head(2))
    with pytest.raises(grpc.RpcError) as raised:
        stub.Select(pb.df.SelectRequest(handle=handle, columns=["no_such_column"]))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no_such_column" in raised.value.details()
