"""The SDK against a real `polaroid standalone`: every public method, results compared
with the same operations in local Polars."""

from __future__ import annotations

import datetime as dt
import pathlib

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import polaroid as pr


@pytest.fixture(scope="module")
def conn(standalone):
    with pr.connect(standalone.address) as connection:
        yield connection


SALES = pl.DataFrame(
    {
        "id": list(range(12)),
        "region": ["north", "south", "east", "west"] * 3,
        "amount": [5.0, -1.0, 3.5, None, 8.0, 2.0, -4.0, 7.5, 1.0, 0.0, 6.0, 9.0],
        "name": ["Ann", "bob", "Cid", "dee", "Eve", "fay", "Gus", "hal", "Ida", "jo", "Kim", "lu"],
        "day": [dt.date(2024, 1, 1) + dt.timedelta(days=i * 9) for i in range(12)],
    }
)
REGIONS = pl.DataFrame({"region": ["north", "south", "east"], "manager": ["M1", "M2", "M3"]})


@pytest.fixture(scope="module")
def sales(conn):
    return pr.from_polars(SALES)


def same(remote: pr.DataFrame, local: pl.DataFrame) -> None:
    assert_frame_equal(remote.collect(), local, check_dtypes=True)


def test_upload_and_metadata(sales):
    same(sales, SALES)
    assert sales.columns == SALES.columns
    assert sales.shape == SALES.shape
    assert sales.schema == SALES.schema
    assert sales.width == 5 and sales.height == 12
    assert "amount" in sales.explain()


def test_transforms_match_polars(sales):
    lf = SALES.lazy()
    same(sales.filter(pr.col("amount") > 2), lf.filter(pl.col("amount") > 2).collect())
    same(
        sales.filter((pr.col("amount") > 0) & ~pr.col("region").is_in(["west"])),
        lf.filter((pl.col("amount") > 0) & ~pl.col("region").is_in(["west"])).collect(),
    )
    same(
        sales.with_columns((pr.col("amount") * 2 + 1).alias("double"), flag=pr.col("id") % 2 == 0),
        lf.with_columns((pl.col("amount") * 2 + 1).alias("double"), flag=pl.col("id") % 2 == 0).collect(),
    )
    same(sales.select("id", pr.col("amount").abs()), lf.select("id", pl.col("amount").abs()).collect())
    same(sales.drop("name", "day"), SALES.drop("name", "day"))
    same(sales.rename({"amount": "value"}), SALES.rename({"amount": "value"}))
    same(
        sales.sort("amount", descending=True, nulls_last=True),
        SALES.sort("amount", descending=True, nulls_last=True, maintain_order=True),
    )
    # Mixed keys (names and expressions) keep their order, each with its own flags.
    same(
        sales.sort("region", pr.col("amount") * -1, descending=[True, False], nulls_last=[False, True]),
        SALES.sort("region", pl.col("amount") * -1, descending=[True, False], nulls_last=[False, True], maintain_order=True),
    )
    for keep in ("first", "last", "none", "any"):
        same(sales.unique("region", keep=keep), SALES.unique("region", keep=keep, maintain_order=True))
    same(sales.head(3), SALES.head(3))
    same(sales.tail(2), SALES.tail(2))
    same(sales.limit(4), SALES.limit(4))
    same(sales.slice(2, 3), SALES.slice(2, 3))
    same(sales.slice(-4), SALES.slice(-4))
    same(sales.slice(5, 0), SALES.slice(5, 0))
    same(sales.fill_null(0.0), SALES.fill_null(0.0))
    same(sales.fill_null(strategy="forward"), SALES.fill_null(strategy="forward"))
    # The contract's FillMethod numbers (MEAN 3, MIN 4, MAX 5): each strategy is its own.
    for strategy in ("mean", "min", "max", "zero", "one", "backward"):
        same(
            sales.fill_null(strategy=strategy, columns=["amount", "id"]),
            SALES.with_columns(pl.col("amount", "id").fill_null(strategy=strategy)),
        )


def test_group_by_join_pivot_unpivot_sql(sales):
    lf = SALES.lazy()
    same(
        sales.group_by("region").agg(
            pr.col("amount").sum().alias("total"),
            pr.col("id").count().alias("rows"),
            pr.col("amount").mean().alias("mean"),
        ),
        lf.group_by("region", maintain_order=True)
        .agg(
            pl.col("amount").sum().alias("total"),
            pl.col("id").count().alias("rows"),
            pl.col("amount").mean().alias("mean"),
        )
        .collect(),
    )
    regions = pr.from_polars(REGIONS)
    for how in ("inner", "left", "semi", "anti"):
        same(sales.join(regions, on="region", how=how), SALES.join(REGIONS, on="region", how=how, maintain_order="left"))
    same(sales.join(regions, how="cross").select("id", "manager"), SALES.join(REGIONS, how="cross").select("id", "manager"))
    areas = REGIONS.rename({"region": "area"})
    same(
        sales.join(pr.from_polars(areas), left_on="region", right_on="area", how="left"),
        SALES.join(areas, left_on="region", right_on="area", how="left", maintain_order="left"),
    )
    small = SALES.head(4)
    same(
        pr.from_polars(small).pivot("region", index="id", values="amount"),
        small.pivot("region", index="id", values="amount"),
    )
    same(
        sales.pivot("region", index=["name"], values="amount", aggregate_function="sum"),
        SALES.pivot("region", index="name", values="amount", aggregate_function="sum"),
    )
    same(
        sales.pivot(["region"], index=["id", "name"], values="amount", aggregate_function="max"),
        SALES.pivot("region", index=["id", "name"], values="amount", aggregate_function="max"),
    )
    same(
        sales.select("id", "amount").unpivot(index="id"),
        SALES.select("id", "amount").unpivot(index="id"),
    )
    same(
        sales.sql("SELECT region, SUM(amount) AS total FROM self GROUP BY region ORDER BY region"),
        SALES.sql("SELECT region, SUM(amount) AS total FROM self GROUP BY region ORDER BY region"),
    )


def test_time_series_calls(sales):
    ordered = SALES.sort("day")
    same(sales.as_time_series("day"), ordered)
    same(sales.shift(1, columns=["id"]), SALES.with_columns(pl.col("id").shift(1)))
    same(sales.shift(-2, columns=["id"], suffix="_next"), SALES.with_columns(pl.col("id").shift(-2).alias("id_next")))
    same(sales.shift(1), SALES.shift(1))
    same(sales.shift(-1, suffix="_next"), SALES.with_columns(pl.all().shift(-1).name.suffix("_next")))
    same(sales.diff(columns=["id"]), SALES.with_columns(pl.col("id").diff(1)))
    same(sales.pct_change(columns=["amount"], suffix="_pct"), SALES.with_columns(pl.col("amount").pct_change(1).alias("amount_pct")))
    same(sales.interpolate(["amount"]), SALES.with_columns(pl.col("amount").interpolate()))
    same(
        sales.interpolate(["amount"], method="nearest"),
        SALES.with_columns(pl.col("amount").interpolate(method="nearest")),
    )
    same(
        sales.rolling("id", function="sum", window_size=3, suffix="_sum3"),
        SALES.with_columns(pl.col("id").rolling_sum(3).alias("id_sum3")),
    )
    same(
        sales.as_time_series("day").resample("day", "1mo", pr.col("amount").sum().alias("total")),
        ordered.group_by_dynamic("day", every="1mo").agg(pl.col("amount").sum().alias("total")),
    )
    prices = pl.DataFrame({"day": [dt.date(2024, 1, 1), dt.date(2024, 2, 1), dt.date(2024, 3, 1)], "price": [1.0, 2.0, 3.0]})
    same(
        sales.as_time_series("day").join_asof(pr.from_polars(prices), on="day").select("id", "price"),
        ordered.join_asof(prices, on="day").select("id", "price"),
    )
    renamed = prices.rename({"day": "on"})
    same(
        sales.as_time_series("day").join_asof(pr.from_polars(renamed), left_on="day", right_on="on", strategy="forward")
        .select("id", "price"),
        ordered.join_asof(renamed, left_on="day", right_on="on", strategy="forward").select("id", "price"),
    )
    nans = pl.DataFrame({"x": [1.0, float("nan"), 3.0]})
    same(pr.from_polars(nans).fill_nan(0.0), nans.fill_nan(0.0))
    same(pr.from_polars(nans).fill_nan(-2), nans.fill_nan(-2.0))
    same(pr.from_polars(nans).fill_nan(pr.col("x") * 0), nans.fill_nan(pl.col("x") * 0))
    same(pr.from_polars(nans).fill_nan(strategy="mean"), nans.fill_nan(2.0))
    same(pr.from_polars(nans).fill_nan(strategy="forward"), nans.fill_nan(1.0))


def test_describe_and_stats_match_polars(sales):
    frame = SALES.with_columns(
        (pl.col("amount") > 2).alias("big"),
        pl.col("day").cast(pl.Datetime("us")).dt.offset_by("90m").alias("at"),
        pl.col("day").cast(pl.Datetime("ms", "UTC")).alias("at_utc"),
        (pl.col("day") - pl.date(2024, 2, 1) + pl.duration(microseconds=pl.col("id") * 250_001)).alias("since"),
    )
    remote = pr.from_polars(frame)
    same(remote.describe(), frame.describe())
    same(remote.describe(percentiles=[0.9, 0.1, 0.5]), frame.describe(percentiles=[0.9, 0.1, 0.5]))
    same(remote.describe(percentiles=[0.125, 1 / 3]), frame.describe(percentiles=[0.125, 1 / 3]))
    same(remote.describe(columns=["amount", "id"]), frame.select("amount", "id").describe())
    # Columns with counts only.
    counted = pl.DataFrame({"l": [[1, 2], [3], None], "n": pl.Series([None, None, None], dtype=pl.Null), "i": [1, 2, 3]})
    same(pr.from_polars(counted).describe(), counted.describe())
    counted_stats = pr.from_polars(counted).stats().collect()
    assert counted_stats.select("column", "count", "null_count", "min", "max").rows() == [
        ("l", 2, 1, None, None),
        ("n", 0, 3, None, None),
        ("i", 3, 0, "1", "3"),
    ]

    stats = remote.stats().collect()
    numeric = {"id", "amount", "big"}

    def text(value: object) -> str:
        # Temporal values as Python prints them, everything else as Polars casts it.
        if isinstance(value, (dt.date, dt.timedelta)):
            return str(value)
        return pl.Series([value]).cast(pl.String)[0]

    extremes = {
        "min": [text(frame[name].min()) for name in frame.columns],
        "max": [text(frame[name].max()) for name in frame.columns],
    }
    expected = pl.DataFrame(
        {
            "column": frame.columns,
            "dtype": ["Int64", "String", "Float64", "String", "Date", "Boolean", "Datetime[us]", "Datetime[ms, UTC]", "Duration[us]"],
            "count": [frame[name].count() for name in frame.columns],
            "null_count": [frame[name].null_count() for name in frame.columns],
            "n_unique": [frame[name].n_unique() for name in frame.columns],
            "min": extremes["min"],
            "max": extremes["max"],
            "mean": [frame[name].cast(pl.Float64).mean() if name in numeric else None for name in frame.columns],
            "std": [frame[name].cast(pl.Float64).std() if name in numeric else None for name in frame.columns],
        },
        schema={"column": pl.String, "dtype": pl.String, "count": pl.UInt64, "null_count": pl.UInt64,
                "n_unique": pl.UInt64, "min": pl.String, "max": pl.String, "mean": pl.Float64, "std": pl.Float64},
    )
    assert_frame_equal(stats, expected)


def test_expressions(sales):
    lf = SALES.lazy()
    same(
        sales.select(
            pr.when(pr.col("amount") > 5).then(pr.lit("big")).when(pr.col("amount") > 0).then(pr.lit("small")).otherwise(pr.lit("none")).alias("size"),
            pr.col("name").str.to_uppercase().alias("upper"),
            pr.col("name").str.contains("^[A-Z]").alias("capital"),
            pr.col("name").str.len_chars().alias("len"),
            pr.col("day").dt.month().alias("month"),
            pr.col("id").cast(pl.Float32).alias("as_float"),
            pr.col("amount").sum().over("region").alias("region_total"),
            pr.col("id").is_between(2, 5).alias("between"),
            pr.col("amount").rolling_sum(2).alias("sum2"),
            pr.col("id").rolling_mean(3, min_periods=1).alias("mean3"),
        ),
        lf.select(
            pl.when(pl.col("amount") > 5).then(pl.lit("big")).when(pl.col("amount") > 0).then(pl.lit("small")).otherwise(pl.lit("none")).alias("size"),
            pl.col("name").str.to_uppercase().alias("upper"),
            pl.col("name").str.contains("^[A-Z]").alias("capital"),
            pl.col("name").str.len_chars().alias("len"),
            pl.col("day").dt.month().alias("month"),
            pl.col("id").cast(pl.Float32).alias("as_float"),
            pl.col("amount").sum().over("region").alias("region_total"),
            pl.col("id").is_between(2, 5).alias("between"),
            pl.col("amount").rolling_sum(2).alias("sum2"),
            pl.col("id").rolling_mean(3, min_samples=1).alias("mean3"),
        ).collect(),
    )
    with pytest.raises(TypeError, match="truth value"):
        bool(pr.col("a") > 1)


def test_readers(conn, data_root: pathlib.Path):
    SALES.write_parquet(data_root / "sales.parquet")
    SALES.write_csv(data_root / "sales.csv")
    SALES.write_ipc(data_root / "sales.arrow")
    SALES.drop("day").write_ndjson(data_root / "sales.ndjson")
    same(pr.read_parquet("sales.parquet"), SALES)
    same(pr.read_parquet("sales.parquet", columns=["id", "amount"]), SALES.select("id", "amount"))
    same(pr.read_ipc("sales.arrow"), SALES)
    same(pr.read_csv("sales.csv", try_parse_dates=True), pl.read_csv(data_root / "sales.csv", try_parse_dates=True))
    same(pr.read_json("sales.ndjson"), pl.read_ndjson(data_root / "sales.ndjson"))


def test_results_and_lifecycle(conn, sales, data_root: pathlib.Path):
    assert sales.to_arrow().num_rows == 12
    assert sales.to_pandas()["id"].tolist() == list(range(12))
    assert sales.collect(limit=3).height == 3
    (data_root / "out").mkdir(exist_ok=True)
    assert sales.write_parquet("out/sales.parquet") == 12
    assert_frame_equal(pl.read_parquet(data_root / "out/sales.parquet"), SALES)
    assert sales.write_csv("out/sales.csv") == 12
    assert (data_root / "out/sales.csv").read_text().splitlines()[0] == "id,region,amount,name,day"
    assert sales.write_csv("out/bare.csv", include_header=False) == 12
    assert (data_root / "out/bare.csv").read_text().splitlines()[0] == "0,north,5.0,Ann,2024-01-01"
    assert sales.persist() is sales
    assert sales.pin() is sales and sales.unpin() is sales
    assert conn.heartbeat()[sales.handle] is True
    html = sales._repr_html_()
    assert "shape (12, 5)" in html and "amount: Float64" in html, html
    # A handle is released when its last Python object goes, then dropped on the server.
    twin = pr.DataFrame(sales.handle, conn)
    del twin
    conn.flush_released()
    assert sales.shape == (12, 5)
    temporary = sales.head(1)
    handle = temporary.handle
    del temporary
    assert conn.flush_released() >= 1
    with pytest.raises(pr.NotFoundError):
        pr.DataFrame(handle, conn).shape


def test_large_uploads_stream_in_chunks(standalone):
    frame = pl.DataFrame({"x": range(1_000_000), "y": [float(i) / 3 for i in range(1_000_000)]})
    with pr.Connection(standalone.address, upload_chunk_bytes=1 << 20) as small_chunks:
        remote = pr.from_polars(frame, connection=small_chunks)
        assert_frame_equal(remote.collect(), frame)


def test_from_dict_pandas_arrow(conn):
    same(pr.from_dict({"a": [1, 2]}), pl.DataFrame({"a": [1, 2]}))
    import pandas as pd

    same(pr.from_pandas(pd.DataFrame({"a": [1.5, 2.5]})), pl.DataFrame({"a": [1.5, 2.5]}))
    same(pr.from_arrow(pa.table({"s": ["x", None]})), pl.DataFrame({"s": ["x", None]}))


def test_server_errors_become_exceptions(conn, sales):
    with pytest.raises(pr.InvalidArgumentError, match="no_such_column"):
        sales.filter(pr.col("no_such_column") > 1)
    with pytest.raises(pr.InvalidArgumentError, match="malformed handle"):
        pr.DataFrame("not-a-handle", conn).shape
    with pytest.raises(pr.NotFoundError):
        pr.read_parquet("missing.parquet")
    with pytest.raises(pr.PermissionDeniedError, match="outside|not allowed"):
        pr.read_parquet("../../etc/passwd")
    with pytest.raises(pr.InvalidArgumentError, match="unknown join type"):
        sales.join(sales, on="id", how="sideways")  # type: ignore[arg-type]
    # Each class is also the matching Python built-in.
    assert issubclass(pr.NotFoundError, LookupError)
    assert issubclass(pr.PermissionDeniedError, PermissionError)


def test_batch_jobs(conn, sales, data_root: pathlib.Path):
    (data_root / "jobs").mkdir(exist_ok=True)
    revenue = sales.filter(pr.col("amount") > 0).group_by("region").agg(pr.col("amount").sum().alias("revenue"))
    expected = SALES.filter(pl.col("amount") > 0).group_by("region", maintain_order=True).agg(pl.col("amount").sum().alias("revenue"))
    job = pr.jobs.submit(revenue, sink="jobs/revenue.parquet", keep_handle=True, priority="high")
    record = job.wait(progress=False)
    assert record.result.rows == expected.height
    assert_frame_equal(pl.read_parquet(data_root / "jobs/revenue.parquet"), expected)
    kept = job.result()
    assert isinstance(kept, pr.DataFrame)
    assert_frame_equal(kept.collect(), expected)
    assert job.state == "succeeded"
    assert any(j.id == job.id for j in pr.jobs.list_jobs("succeeded"))
    with pytest.raises(pr.PermissionDeniedError):
        pr.jobs.submit(revenue, sink="/etc/revenue.parquet")
    with pytest.raises(pr.InvalidArgumentError, match="sink"):
        pr.jobs.submit(revenue)


def test_polars_conventions(sales):
    # Strings are column names where Polars reads them so.
    same(sales.with_columns(copy="id"), SALES.with_columns(copy="id"))
    same(
        sales.select(pr.when(pr.col("amount") > 0).then("id").otherwise("region").cast(pl.String).alias("pick")),
        SALES.select(pl.when(pl.col("amount") > 0).then("id").otherwise("region").cast(pl.String).alias("pick")),
    )
    # Mixed group keys keep their order.
    same(
        sales.group_by(pr.col("id") % 2, "region").agg(pr.col("amount").max().alias("top")),
        SALES.group_by(pl.col("id") % 2, "region", maintain_order=True).agg(pl.col("amount").max().alias("top")),
    )
    same(sales.shift(0), SALES)
    # A period of 0 is what Polars makes of it (zeros), as the wire now reads it.
    same(sales.diff(0, columns=["id"]), SALES.with_columns(pl.col("id").diff(0)))
    same(sales.clone(), SALES)
    assert pr.col("x").cast(pl.List(pl.Int64)).pb.cast.data_type == "List[Int64]"


def test_rest_sources_and_ipc_writes(conn, data_root: pathlib.Path):
    import http.server
    import json
    import threading

    records = [{"id": i, "name": f"n{i}"} for i in range(5)]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server API
            body = json.dumps({"data": {"items": records}}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/records"
        same(pr.read_rest_api(url, records_path="data.items"), pl.DataFrame(records))
    finally:
        server.shutdown()
    frame = pr.from_dict({"a": [1, 2, 3]})
    (data_root / "ipc").mkdir(exist_ok=True)
    assert frame.write_ipc("ipc/a.arrow") == 3
    assert_frame_equal(pl.read_ipc(data_root / "ipc/a.arrow"), pl.DataFrame({"a": [1, 2, 3]}))


def test_job_inputs_outlive_their_frames(conn, data_root: pathlib.Path):
    import gc

    (data_root / "jobs").mkdir(exist_ok=True)
    # The submitted frame is a temporary: nothing in this test keeps it.
    job = pr.jobs.submit(pr.from_polars(SALES).filter(pr.col("id") < 5), sink="jobs/first.parquet")
    gc.collect()
    conn.flush_released()
    record = job.wait(progress=False)
    assert record.result.rows == 5
    assert job.status().id == job.id
    assert job.cancel().state == record.state, "cancelling a finished job changes nothing"
    # Without an idempotency key, each submit is its own job.
    again = pr.jobs.submit(pr.from_polars(SALES), sink="jobs/second.parquet")
    assert again.id != job.id
    again.wait(progress=False)


def test_collect_reads_arrow_batches_without_protobuf():
    from polaroid.connection import arrow_payload
    from polaroid.v1 import dataframe_pb2 as pb

    payload = bytes(range(256)) * 5000
    encoded = pb.ArrowBatch(arrow_ipc=payload).SerializeToString()
    assert arrow_payload(encoded).tobytes() == payload
    with pytest.raises(pr.InternalError, match="without Arrow data"):
        arrow_payload(pb.ArrowBatch().SerializeToString())
    # An unknown varint field (a newer server) is skipped.
    assert arrow_payload(b"\x18\x07" + encoded).tobytes() == payload
    with pytest.raises(pr.InternalError, match="worker failed"):
        arrow_payload(pb.ArrowBatch(arrow_ipc=b"x", error="worker failed").SerializeToString())
    for broken in (encoded[:-1], encoded[:3], b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x0b"):
        with pytest.raises(pr.InternalError, match="malformed|truncated"):
            arrow_payload(broken)


def test_collected_arrow_buffers_are_aligned_in_place(conn, sales):
    from polaroid.connection import arrow_payload
    from polaroid.v1 import dataframe_pb2 as pb

    messages = list(conn._collect_raw(pb.CollectRequest(handle=sales.handle)))
    assert messages
    for message in messages:
        # The server aligns the payload, so Arrow (and Polars) use it without a copy.
        assert pa.py_buffer(arrow_payload(message)).address % 16 == 0
