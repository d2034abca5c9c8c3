"""Polaroid: Polars DataFrames on a pool of servers.

>>> import polaroid as pr
>>> pr.connect("127.0.0.1:50051")                                   # doctest: +SKIP
>>> sales = pr.read_parquet("sales.parquet")                        # doctest: +SKIP
>>> (sales.filter(pr.col("amount") > 0)
...       .group_by("region")
...       .agg(pr.col("amount").sum().alias("revenue"))
...       .collect())                                               # doctest: +SKIP
"""

# First: grpc is imported with the client settings the SDK wants (see _grpc).
from polaroid import _grpc  # noqa: F401, I001
from polaroid import jobs
from polaroid._memory import set_memory_retention
from polaroid.connection import Connection, connect, default_connection
from polaroid.errors import (
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    PolaroidError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from polaroid.expr import Expr, coalesce, col, lit, when
from polaroid.frame import (
    DataFrame,
    GroupBy,
    from_arrow,
    from_dict,
    from_pandas,
    from_polars,
    read_csv,
    read_ipc,
    read_json,
    read_parquet,
    read_rest_api,
    sql,
)
from polaroid import sources
from polaroid.streams import (
    read_stream,
    stream_grpc,
    stream_message_queue,
    stream_rest_api,
    stream_web_socket,
)

__all__ = [
    "CancelledError",
    "Connection",
    "DataFrame",
    "DeadlineExceededError",
    "Expr",
    "FailedPreconditionError",
    "GroupBy",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "UnauthenticatedError",
    "PolaroidError",
    "ResourceExhaustedError",
    "UnavailableError",
    "UnimplementedError",
    "coalesce",
    "col",
    "connect",
    "default_connection",
    "from_arrow",
    "from_dict",
    "from_pandas",
    "from_polars",
    "jobs",
    "lit",
    "read_csv",
    "read_ipc",
    "read_json",
    "read_parquet",
    "read_rest_api",
    "read_stream",
    "set_memory_retention",
    "sources",
    "sql",
    "stream_grpc",
    "stream_message_queue",
    "stream_rest_api",
    "stream_web_socket",
    "when",
]
